"""Turn a ``--model`` value into a local model folder.

Accepted: a registered name (``demo``, the built-in demo model, which ``harmony_tui.demo``
registers from above with ``register_named_model``), a folder, a folder name under the models
dir, or a Hugging Face repo id (``owner/name``) taken from the local HF cache when present or
when ``HF_HUB_OFFLINE=1``, otherwise downloaded with a progress bar.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from harmony_tui.errors import ModelLoadError

Progress = Callable[[str, float | None], None]
NamedModel = Callable[[Progress], Path]
_named: dict[str, NamedModel] = {}
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# What a model needs; skips the original PyTorch weights some repos also carry.
ALLOW_PATTERNS = ["*.json", "model*.safetensors", "*.py", "tokenizer.model", "*.tiktoken",
                  "tiktoken.model", "*.txt", "*.jsonl", "*.jinja"]


def _no_progress(message: str, fraction: float | None) -> None:
    pass


def register_named_model(name: str, resolve: NamedModel) -> None:
    """Make ``--model NAME`` mean the folder ``resolve(progress)`` returns (built on demand)."""
    _named[name] = resolve


def is_named_model(spec: str) -> bool:
    """Whether ``spec`` is a registered model name such as ``demo``."""
    return spec in _named


def looks_like_path(spec: str) -> bool:
    """True for values that can only mean a folder (``./x``, ``/x``, ``~/x``, ``a/b/c``)."""
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        return True
    return os.sep != "/" and os.sep in spec


def resolve_model_path(
    spec: str, models_dir: Path | None = None, progress: Progress | None = None
) -> Path:
    """The local folder for ``spec``; raises ModelLoadError with one line naming the cause."""
    progress = progress or _no_progress
    named = _named.get(spec)
    if named is not None:
        return named(progress)
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelLoadError(f"model {spec}: is a file, expected a model folder")
    if models_dir is not None and "/" not in spec and (models_dir / spec).is_dir():
        return models_dir / spec
    if looks_like_path(spec):
        raise ModelLoadError(f"model folder {spec} does not exist")
    if REPO_ID.match(spec):
        return hub_snapshot(spec, progress)
    where = f" or a folder under {models_dir}" if models_dir else ""
    names = "".join(f"{name!r}, " for name in _named)
    raise ModelLoadError(
        f"model {spec!r} not found: expected {names}a model folder{where}, "
        "or a Hugging Face repo id like owner/name"
    )


def hub_offline() -> bool:
    """Whether huggingface_hub is in offline mode (``HF_HUB_OFFLINE=1``)."""
    value = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return value in {"1", "true", "yes", "on"}


def hub_snapshot(repo_id: str, progress: Progress) -> Path:
    """A cached snapshot of ``repo_id``, downloading it when online and absent."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=ALLOW_PATTERNS,
                                      local_files_only=True))
    except Exception as cached_error:  # not cached (or incomplete): maybe download below
        if hub_offline():
            raise ModelLoadError(
                f"model {repo_id} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 "
                "forbids downloading it"
            ) from cached_error
    progress(f"Downloading {repo_id} from Hugging Face", None)
    try:
        return Path(snapshot_download(repo_id, allow_patterns=ALLOW_PATTERNS))
    except Exception as err:
        cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(
            f"model {repo_id}: could not download from Hugging Face ({type(err).__name__}: "
            f"{cause[:200]})"
        ) from err
