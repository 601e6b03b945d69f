"""Models a person can pick: the demo model, folders under the models dir, the local HF cache."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelChoice:
    """One loadable model: the ``--model`` value and where it was found."""

    spec: str
    source: str  # demo | folder | hf-cache
    model_type: str = ""
    problem: str = ""  # why it cannot load as it is (a folder with a bad config.json ...)


def _model_type(folder: Path) -> str | None:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(config, dict) or not any(folder.glob("model*.safetensors")):
        return None
    return str(config.get("model_type") or "")


def folder_problem(folder: Path) -> str:
    """Why a folder that looks like a model (it has a config.json) cannot load; "" if none."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except OSError as err:
        return f"config.json unreadable ({err.strerror or err})"
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return f"config.json is not valid JSON ({err})"
    if not isinstance(config, dict):
        return "config.json is not a JSON object"
    if not any(folder.glob("model*.safetensors")):
        return "no model*.safetensors weights"
    return ""


def local_models(models_dir: Path | None, broken: bool = False) -> list[ModelChoice]:
    """Every model that can be loaded without a download (``broken``: also the folders with a
    config.json that cannot load, each with its ``problem``)."""
    choices = [ModelChoice("demo", "demo", "gpt_oss")]
    if models_dir is not None and models_dir.is_dir():
        for folder in sorted(p for p in models_dir.iterdir() if p.is_dir()):
            model_type = _model_type(folder)
            if model_type is not None:
                choices.append(ModelChoice(str(folder), "folder", model_type))
            elif broken and (folder / "config.json").exists():  # shown, with why it cannot load
                choices.append(ModelChoice(str(folder), "folder", "",
                                           folder_problem(folder)))
    choices.extend(hf_cache_models())
    return choices


def hf_cache_models() -> list[ModelChoice]:
    """Repos in the local Hugging Face cache whose snapshot holds a model."""
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir()
    except Exception:  # no cache yet, or unreadable: nothing to offer
        return []
    out = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        for revision in repo.revisions:
            model_type = _model_type(Path(revision.snapshot_path))
            if model_type is not None:
                out.append(ModelChoice(repo.repo_id, "hf-cache", model_type))
                break
    return out
