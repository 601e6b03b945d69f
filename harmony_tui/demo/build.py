"""Build, pack and unpack the demo model.

The package ships the compact trained weights (``weights/demo.safetensors``, a few MB). The first
use unpacks them into a normal mlx-lm model folder under the user cache dir (about a second); later
launches load that folder directly. ``harmony-tui demo-model build`` retrains from scratch with the
same code, deterministically for a given seed. When the shipped weights are missing or were made
from a different corpus, the first use trains them (with progress) instead.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harmony_tui import paths
from harmony_tui.demo.corpus import SCRIPTS, build_examples, corpus_fingerprint
from harmony_tui.demo.train import TrainConfig, TrainedDemo, train_demo

Progress = Callable[[str, float | None], None]
FORMAT = "harmony-tui-demo/1"
PACKAGED = Path(__file__).parent / "weights" / "demo.safetensors"
COMPACT_NAME = "demo-compact.safetensors"
MARKER = "harmony_tui_demo.json"
# Scales the exported head: the trained distribution, made sharper so that the default
# temperature of 1.0 reproduces the scripts reliably.
SHARPEN = 2.0
CONTEXT = 8192


def _quiet(message: str, fraction: float | None) -> None:
    pass


def demo_root() -> Path:
    return paths.cache_dir() / "demo-model"


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# -- compact weights -------------------------------------------------------------------------


def save_compact(trained: TrainedDemo, path: Path) -> None:
    """Write the compact weights and their metadata (atomically)."""
    import mlx.core as mx

    arrays = dict(trained.weights)
    arrays["vocab_ids"] = mx.array(trained.vocab_ids, dtype=mx.int32)
    metadata = {
        "format": FORMAT,
        "corpus": corpus_fingerprint(),
        "train_config": json.dumps(trained.config.to_dict(), sort_keys=True),
        "final_loss": f"{trained.final_loss:.6g}",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        tmp_file = Path(tmp) / "compact.safetensors"
        mx.save_safetensors(str(tmp_file), arrays, metadata=metadata)
        tmp_file.replace(path)


def read_compact(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Arrays and metadata of a compact file; raises ValueError if it is not one."""
    import mlx.core as mx

    try:
        arrays, metadata = mx.load(str(path), return_metadata=True)
    except Exception as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from err
    if metadata.get("format") != FORMAT or "vocab_ids" not in arrays:
        raise ValueError(f"{path}: not a {FORMAT} file")
    return arrays, metadata


def packaged_weights_usable() -> bool:
    """True when the shipped weights exist and were trained on today's corpus."""
    if not PACKAGED.is_file():
        return False
    try:
        _, metadata = read_compact(PACKAGED)
    except ValueError:
        return False
    return metadata.get("corpus") == corpus_fingerprint()


# -- model folder ----------------------------------------------------------------------------


def expand(compact: Path, target: Path) -> Path:
    """Turn compact weights into an mlx-lm ``gpt_oss`` folder at ``target`` (atomically)."""
    import mlx.core as mx

    from harmony_tui.engine.formats.harmony import VOCAB_SIZE

    arrays, metadata = read_compact(compact)
    config = TrainConfig(**json.loads(metadata["train_config"]))
    vocab = arrays.pop("vocab_ids")
    embed = arrays.pop("model.embed_tokens.weight")
    head = arrays.pop("lm_head.weight")
    unk = embed.shape[0] - 1
    full_embed = mx.tile(embed[unk: unk + 1], (VOCAB_SIZE, 1))
    full_embed[vocab] = embed[:unk]
    full_head = mx.zeros((VOCAB_SIZE, head.shape[1]), dtype=head.dtype)
    full_head[vocab] = head[:unk] * SHARPEN
    arrays["model.embed_tokens.weight"] = full_embed
    arrays["lm_head.weight"] = full_head
    model_config = config.model_config(VOCAB_SIZE)
    model_config["max_position_embeddings"] = CONTEXT
    marker = {
        "name": "harmony-tui demo model",
        "compact_sha256": file_digest(compact),
        "corpus": metadata.get("corpus"),
        "final_loss": metadata.get("final_loss"),
        "sharpen": SHARPEN,
        "prompts": [s.prompt for s in SCRIPTS],
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        mx.save_safetensors(str(tmp / "model.safetensors"), arrays)
        (tmp / "config.json").write_text(json.dumps(model_config, indent=2) + "\n")
        shutil.copyfile(compact, tmp / COMPACT_NAME)
        (tmp / MARKER).write_text(json.dumps(marker, indent=2, ensure_ascii=False) + "\n")
        if target.exists():
            shutil.rmtree(target)
        tmp.replace(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def is_demo_folder(path: Path) -> bool:
    return (path / MARKER).is_file() and (path / "model.safetensors").is_file()


# -- building --------------------------------------------------------------------------------


def build_compact(config: TrainConfig, output: Path, progress: Progress | None = None) -> Path:
    """Train from scratch and write compact weights to ``output``."""
    from harmony_tui.engine.formats.harmony import HarmonyFormat

    progress = progress or _quiet
    progress("Writing the demo corpus", 0.0)
    fmt = HarmonyFormat()
    examples = build_examples(fmt, config.seed, config.examples)

    def on_step(step: int, steps: int, loss: float) -> None:
        if step == steps or step % 10 == 0:
            progress(f"Training the demo model: step {step}/{steps}, loss {loss:.4f}",
                     step / steps)

    trained = train_demo(examples, config, on_step)
    save_compact(trained, output)
    return output


def ensure_demo_model(progress: Progress | None = None) -> Path:
    """The demo model folder in the user cache, unpacking or building it on first use."""
    progress = progress or _quiet
    root = demo_root()
    if packaged_weights_usable():
        compact = PACKAGED
    else:
        config = TrainConfig()
        key = hashlib.sha256(
            (corpus_fingerprint() + json.dumps(config.to_dict(), sort_keys=True)).encode()
        ).hexdigest()[:16]
        compact = root / f"trained-{key}.safetensors"
        if not compact.is_file():
            progress("The packaged demo weights do not match this corpus: training them", 0.0)
            build_compact(config, compact, progress)
    target = root / file_digest(compact)
    if is_demo_folder(target):
        return target
    progress("Unpacking the demo model", None)
    expand(compact, target)
    for other in root.iterdir():  # keep one unpacked version
        if other.is_dir() and other != target and not other.name.startswith("."):
            shutil.rmtree(other, ignore_errors=True)
    return target
