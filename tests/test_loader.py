"""Model resolution and loading: every bad input is one line naming the path and the cause."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from harmony_tui.engine.loader import load_model
from harmony_tui.errors import ModelLoadError


def load_error(spec: str, models_dir: Path | None = None) -> str:
    with pytest.raises(ModelLoadError) as info:
        load_model(spec, models_dir)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_folder(tmp_path):
    message = load_error(str(tmp_path / "nope"))
    assert str(tmp_path / "nope") in message and "does not exist" in message


def test_folder_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    message = load_error(str(tmp_path / "empty"))
    assert "has no config.json" in message and str(tmp_path / "empty") in message


def test_invalid_config_json(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama",\n  oops}')
    message = load_error(str(folder))
    assert f"{folder / 'config.json'}:2:3: invalid JSON" in message


def test_unsupported_model_type(tmp_path):
    folder = tmp_path / "alien"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "alien_transformer"}))
    message = load_error(str(folder))
    assert "model_type 'alien_transformer' is not supported by mlx-lm" in message


def test_missing_weights(tmp_path, tiny_llama):
    folder = tmp_path / "noweights"
    shutil.copytree(tiny_llama, folder)
    (folder / "model.safetensors").unlink()
    message = load_error(str(folder))
    assert "has no weights" in message and str(folder) in message


def test_corrupt_weights(tmp_path, tiny_llama):
    folder = tmp_path / "corrupt"
    shutil.copytree(tiny_llama, folder)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 3])
    message = load_error(str(folder))
    assert "weights could not be loaded" in message and str(folder) in message


def test_weights_that_do_not_match_the_config(tmp_path, tiny_llama):
    folder = tmp_path / "mismatch"
    shutil.copytree(tiny_llama, folder)
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    assert "weights could not be loaded" in load_error(str(folder))


def test_repo_not_in_cache_while_offline():
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    message = load_error("someone/not-cached-model")
    assert "someone/not-cached-model" in message and "HF_HUB_OFFLINE=1" in message


def test_unknown_name(tmp_path):
    message = load_error("no_such_model", tmp_path)
    assert "'no_such_model' not found" in message and str(tmp_path) in message


def test_name_under_models_dir(tmp_path, tiny_llama):
    shutil.copytree(tiny_llama, tmp_path / "my-llama")
    loaded = load_model("my-llama", tmp_path)
    assert loaded.path == tmp_path / "my-llama"


def _fake_hub_cache(repo_id: str, source: Path) -> Path:
    """Lay out a model the way huggingface_hub caches it (HF_HOME is a test temp dir)."""
    cache = Path(os.environ["HF_HOME"]) / "hub" / f"models--{repo_id.replace('/', '--')}"
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = cache / "snapshots" / revision
    shutil.copytree(source, snapshot, dirs_exist_ok=True)
    (cache / "refs").mkdir(parents=True, exist_ok=True)
    (cache / "refs" / "main").write_text(revision)
    return snapshot


def test_repo_id_from_the_local_hf_cache(tiny_gpt_oss):
    snapshot = _fake_hub_cache("test-org/tiny-oss", tiny_gpt_oss)
    loaded = load_model("test-org/tiny-oss")
    assert loaded.path == snapshot
    assert loaded.name == "test-org/tiny-oss"
    assert loaded.is_gpt_oss and loaded.format.name == "harmony"


def test_gpt_oss_is_detected_by_config_not_by_name(tmp_path, tiny_gpt_oss, tiny_llama):
    shutil.copytree(tiny_gpt_oss, tmp_path / "llama-3-8b-instruct")
    shutil.copytree(tiny_llama, tmp_path / "gpt-oss-20b")
    assert load_model(str(tmp_path / "llama-3-8b-instruct")).format.name == "harmony"
    assert load_model(str(tmp_path / "gpt-oss-20b")).format.name == "chat_template"


def test_context_limit_comes_from_the_model(tiny_gpt_oss, tiny_llama):
    assert load_model(str(tiny_gpt_oss)).context_limit == 4096  # max_position_embeddings
    assert load_model(str(tiny_llama)).context_limit == 2048  # tokenizer model_max_length


def test_a_file_is_not_a_model_folder(tmp_path):
    file = tmp_path / "model.bin"
    file.write_text("x")
    assert "is a file, expected a model folder" in load_error(str(file))
