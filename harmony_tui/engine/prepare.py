"""Prompt preparation (render, tokenize, fit to the context) before a turn reaches the
generation thread.

Measured on the idle 2-core Linux box with openai-harmony 0.0.8: rendering holds the GIL for
its whole duration, and its BPE is quadratic in the length of one pre-token (a run of letters,
spaces or punctuation without a break): a 10,000-character run takes 0.05 s, 30,000 0.4 s,
100,000 4 s (three times that on a busy machine), and 1,000,000 panics (a regex stack overflow
surfacing as pyo3's ``PanicException``, a ``BaseException``) -- on whatever thread renders.
Ordinary text is linear: 1.5 MB in 0.25 s.

So a prompt is never rendered on the generation thread, and a thread alone is not enough:

- Every turn is prepared on a preparation thread (``PromptPreparer``); any exception there,
  ``PanicException`` included, fails that turn alone, and the generation thread never sees it.
- A run longer than ``MAX_RUN_BYTES`` is refused at once with one line (``PromptRefused``):
  beyond it the cost explodes (see above), and no text people write has such runs.
- A Harmony prompt longer than ``IN_PROCESS_MAX_CHARS`` (even scanning it for runs holds the
  GIL: about 25-300 ms per MB), or whose estimated render time exceeds
  ``IN_PROCESS_BUDGET_S``, is checked and rendered in a child process (a fresh interpreter
  holding only the format: about 1 s to start), so its GIL and CPU time stay out of this
  process; a crash, a panic, a cancel or ``RENDER_TIMEOUT_S`` end that child and fail that
  turn alone. Cheaper prompts, and every chat-template prompt, render in this process, one at a
  time (a tokenizer object is not guaranteed to be safe to share between threads).

A turn whose prompt takes long to prepare lets turns submitted after it go first.
"""

from __future__ import annotations

import datetime as _dt
import os
import pickle
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harmony_tui.engine.context import fit_prompt
from harmony_tui.engine.messages import Message
from harmony_tui.engine.sampling import check_params, one_line
from harmony_tui.errors import ContextLengthExceeded, HarmonyTuiError

if TYPE_CHECKING:
    from harmony_tui.engine.loader import LoadedModel
    from harmony_tui.engine.turns import TurnRequest

MAX_RUN_BYTES = 32_768  # longest run without a break a message may hold (~0.5 s to tokenize)
IN_PROCESS_BUDGET_S = 0.05  # estimated render time above which a child process renders
IN_PROCESS_MAX_CHARS = 65_536  # longer prompts go to the child without being scanned here
RENDER_TIMEOUT_S = 120.0
PREPARE_THREADS = 4  # a few, so that one slow child render never holds up the others
_BYTE_COST_S = 1.7e-7  # measured: linear cost per byte of ordinary text
_RUN_COST_S = 4e-10  # measured: quadratic cost per (run bytes)^2
_COUNTED_RUN = 1024  # runs shorter than this are priced as ordinary text
_MARKS = "\u0300-\u036f\u0483-\u0489\u0591-\u05bd\u064b-\u065f\u0900-\u0903\u093a-\u094f" \
         "\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_SPACE_RUN = re.compile(rf"\s{{{_COUNTED_RUN // 4},}}")
_NONSPACE_RUN = re.compile(rf"\S{{{_COUNTED_RUN // 4},}}")
_LETTER_RUN = re.compile(rf"(?:[^\W\d_]|[{_MARKS}]){{{_COUNTED_RUN // 4},}}")
_PUNCT_RUN = re.compile(rf"(?:[^\w\s{_MARKS}]|_){{{_COUNTED_RUN // 4},}}")
_in_process_lock = threading.Lock()


class PromptRefused(HarmonyTuiError):
    """The prompt cannot be tokenized (a run too long, a tokenizer failure, too slow)."""

    error_code = "invalid_request"


@dataclass(frozen=True)
class PreparedPrompt:
    """A turn's prompt tokens, made for ``loaded`` (re-made if another model is loaded)."""

    loaded: LoadedModel
    prompt: list[int]
    dropped_messages: int
    dropped_tokens: int
    limit: int


class PromptPreparer:
    """Prepares turns on a small pool of threads (never the generation thread).

    Prompts that go to a child process wait for it on a second pool, so a few huge prompts
    never hold up the preparation of ordinary ones.
    """

    def __init__(self, threads: int = PREPARE_THREADS) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="harmony-prepare")
        self._children = ThreadPoolExecutor(threads, thread_name_prefix="harmony-prepare-child")

    def submit(self, request: TurnRequest, loaded: LoadedModel | None,
               cancelled: Callable[[], bool]) -> Future[PreparedPrompt | None]:
        """A future of the prepared prompt (None when no model is loaded); its exception is
        the turn's error. ``cancelled()`` is polled while a child process renders."""
        future: Future[PreparedPrompt | None] = Future()

        def run() -> None:
            try:
                result = None if loaded is None else prepare(request, loaded, cancelled)
            except BaseException as err:  # PanicException is a BaseException
                future.set_exception(err if isinstance(err, Exception) else PromptRefused(
                    f"the prompt could not be tokenized: {one_line(err)}"))
                return
            future.set_result(result)

        def route() -> None:
            try:
                if loaded is not None and needs_child(request, loaded.format):
                    self._children.submit(run)
                    return
            except BaseException as err:
                future.set_exception(err if isinstance(err, Exception) else
                                     RuntimeError(one_line(err)))
                return
            run()

        try:
            self._pool.submit(route)
        except RuntimeError as err:  # shut down (the engine closed, or the interpreter exits)
            future.set_exception(err)
        return future

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=False)
        self._children.shutdown(wait=False, cancel_futures=False)


def needs_child(request: TurnRequest, fmt: Any) -> bool:
    """Whether ``request``'s prompt is rendered in a child process (see the module
    docstring)."""
    if fmt.name != "harmony":
        return False
    raw = request.prompt_tokens
    if raw is not None:
        return isinstance(raw, str) and not _cheap([raw])
    return not _cheap([m.content for m in request.messages] + _setup_texts(request))


def prepare(request: TurnRequest, loaded: LoadedModel,
            cancelled: Callable[[], bool] = lambda: False) -> PreparedPrompt:
    """Render and fit ``request`` for ``loaded`` (any thread but the generation thread)."""
    params = request.params
    check_params(params)
    fmt = loaded.format
    limit = params.max_context_tokens or loaded.context_limit
    if request.prompt_tokens is not None:
        raw = request.prompt_tokens
        prompt = encode(raw, fmt, cancelled) if isinstance(raw, str) else [int(t) for t in raw]
        if not prompt:
            raise PromptRefused("the prompt is empty")
        bad = next((t for t in prompt if not 0 <= t < fmt.vocab_size), None)
        if bad is not None:
            raise HarmonyTuiError(f"prompt token id {bad} is outside the vocabulary "
                                  f"(0 to {fmt.vocab_size - 1})")
        if len(prompt) >= limit:
            raise ContextLengthExceeded(len(prompt), limit,
                                        "leave room for at least one generated token")
        return PreparedPrompt(loaded, prompt, 0, 0, limit)
    messages, today = list(request.messages), request.today or _dt.date.today()
    if needs_child(request, fmt):
        prompt, dropped_msgs, dropped_tokens = in_child(
            ("fit", MAX_RUN_BYTES, messages, request.setup, params, limit, today), cancelled)
    else:
        with _in_process_lock:
            prompt, dropped_msgs, dropped_tokens = checked_fit(
                fmt, messages, request.setup, params, limit, today)
    return PreparedPrompt(loaded, prompt, dropped_msgs, dropped_tokens, limit)


def encode(text: str, fmt: Any, cancelled: Callable[[], bool] = lambda: False) -> list[int]:
    """Raw prompt text to tokens (special tokens allowed), with the same guards as
    rendering."""
    if fmt.name == "harmony" and not _cheap([text]):
        return in_child(("encode", MAX_RUN_BYTES, text), cancelled)
    with _in_process_lock:
        return checked_encode(fmt, text)


def checked_fit(fmt: Any, messages: Sequence[Message], *args: Any) -> tuple[list[int], int, int]:
    """``fit_prompt`` after ``check_runs`` on every message."""
    for index, msg in enumerate(messages):
        check_runs(msg.content, f"message {index + 1} ({msg.role})")
    return fit_prompt(fmt, messages, *args)


def checked_encode(fmt: Any, text: str) -> list[int]:
    check_runs(text, "the prompt")
    return fmt.encode(text)


def _cheap(texts: Sequence[str]) -> bool:
    """Whether rendering ``texts`` may run in this process: short enough to scan here, and
    estimated under ``IN_PROCESS_BUDGET_S``."""
    return sum(len(t) for t in texts) <= IN_PROCESS_MAX_CHARS \
        and estimate_render_s(texts) <= IN_PROCESS_BUDGET_S


def check_runs(text: str, where: str) -> float:
    """PromptRefused naming ``where`` if ``text`` holds a run longer than ``MAX_RUN_BYTES``;
    otherwise the estimated seconds to tokenize it."""
    runs = run_sizes(text)
    longest = max(runs, default=0)
    if longest > MAX_RUN_BYTES:
        raise PromptRefused(
            f"{where} has a run of {longest} bytes with no space or punctuation; the tokenizer "
            f"takes at most {MAX_RUN_BYTES} (its time grows with the square of a run's length)")
    return _estimate(text, runs)


def estimate_render_s(texts: Sequence[str]) -> float:
    """Rough seconds openai-harmony needs for ``texts`` (see the module docstring)."""
    return sum(_estimate(text, run_sizes(text)) for text in texts)


def _estimate(text: str, runs: Sequence[int]) -> float:
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return size * _BYTE_COST_S + sum(run * run * _RUN_COST_S for run in runs)


def run_sizes(text: str) -> list[int]:
    """UTF-8 sizes of the runs of at least ``_COUNTED_RUN`` bytes in ``text``: what the o200k
    pre-tokenizer keeps in one piece, approximately (whitespace, letters with combining marks,
    or punctuation; digits are split every 3).

    A scan for long whitespace and non-whitespace stretches (a fast single-class regex), then
    a finer split of the long non-whitespace ones: 25 ms per MB of spaced text, up to 300 ms
    per MB of text without spaces (such as Chinese).
    """
    min_chars = _COUNTED_RUN // 4
    if len(text) < min_chars:
        return []
    sizes = []
    for match in _SPACE_RUN.finditer(text):
        sizes.append(_utf8_size(match.group()))
    for match in _NONSPACE_RUN.finditer(text):
        for pattern in (_LETTER_RUN, _PUNCT_RUN):
            sizes.extend(_utf8_size(m.group()) for m in pattern.finditer(match.group()))
    return [size for size in sizes if size >= _COUNTED_RUN]


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _setup_texts(request: TurnRequest) -> list[str]:
    setup = request.setup
    texts = [setup.developer_instructions or "", setup.model_identity or ""]
    texts += [f"{t.name} {t.description} {t.parameters!r}" for t in setup.function_tools]
    texts += [m.content for dialogue in setup.example_dialogues for m in dialogue]
    return texts


# -- the child process -----------------------------------------------------------------------


def in_child(job: tuple[Any, ...], cancelled: Callable[[], bool],
             timeout: float = RENDER_TIMEOUT_S) -> Any:
    """Run ``job`` (``("fit", max_run, messages, setup, params, limit, today)`` or
    ``("encode", max_run, text)``) with a fresh ``HarmonyFormat`` in a child process; its
    result, or its error (the child applies ``check_runs`` too)."""
    env = dict(os.environ, RUST_BACKTRACE="0")
    root = str(Path(__file__).resolve().parents[2])  # where ``harmony_tui`` lives
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    # The job goes in through a file: ``communicate(input, timeout)`` cannot resume writing a
    # large input after its first timeout, and this loop polls for cancels every 0.1 s.
    with tempfile.TemporaryFile() as file:
        pickle.dump(job, file)
        file.seek(0)
        proc = subprocess.Popen([sys.executable, "-m", "harmony_tui.engine.prepare"],
                                stdin=file, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                if cancelled() or not threading.main_thread().is_alive():  # or exiting
                    raise PromptRefused("the turn was cancelled while its prompt was "
                                        "tokenized") from None
                if time.monotonic() > deadline:
                    raise PromptRefused(f"the prompt took longer than {timeout:.0f} s to "
                                        "tokenize; shorten it") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    try:
        kind, *rest = pickle.loads(out)
    except Exception:
        last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise PromptRefused(f"the tokenizer process failed (exit code {proc.returncode}: "
                            f"{last[0][:200]})") from None
    if kind == "ok":
        return rest[0]
    if kind == "context":
        error = ContextLengthExceeded(rest[0], rest[1])
        error.args = (rest[2],)
        raise error
    if kind == "refused":
        raise PromptRefused(rest[0])
    raise HarmonyTuiError(rest[0]) if kind == "user" else RuntimeError(rest[0])


def _child_main() -> None:
    """Read a pickled job from stdin, write the pickled result to stdout."""
    global MAX_RUN_BYTES
    kind, MAX_RUN_BYTES, *args = pickle.loads(sys.stdin.buffer.read())
    try:
        from harmony_tui.engine.formats.harmony import HarmonyFormat

        fmt = HarmonyFormat()
        value = checked_encode(fmt, *args) if kind == "encode" else checked_fit(fmt, *args)
        result: tuple[Any, ...] = ("ok", value)
    except ContextLengthExceeded as err:
        result = ("context", err.prompt_tokens, err.limit, str(err))
    except PromptRefused as err:
        result = ("refused", str(err))
    except HarmonyTuiError as err:
        result = ("user", str(err))
    except Exception as err:
        result = ("error", one_line(err))
    except BaseException as err:  # the tokenizer's PanicException
        result = ("refused", f"the prompt could not be tokenized: {one_line(err)}")
    sys.stdout.buffer.write(pickle.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    _child_main()
