"""Long chats at the context limit stay fast (issue 16 item 3), on a real tiny gpt_oss model.

Old turns are dropped in steps (hysteresis), so the turns after a trim extend a cached prefix
again instead of re-processing the whole context; each trim is reported once.
"""

from __future__ import annotations

import itertools
import statistics

import pytest

from harmony_tui.engine.context import fit_prompt
from harmony_tui.engine.engine import Engine, TurnRequest
from harmony_tui.engine.events import ContextTrimmed
from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.engine.params import GenerationParams

LIMIT = 1024
PARAMS = GenerationParams(temperature=0, max_tokens=4, max_context_tokens=LIMIT)
SETUP = PromptSetup(developer_instructions="Keep answers short. " * 8)
WORDS = "amber basin cedar delta ember fjord grove heron inlet juniper kelp lagoon".split()


def words(seed: int, n: int) -> str:
    return " ".join(WORDS[(seed * 5 + i * (seed % 7 + 1)) % len(WORDS)] for i in range(n))


@pytest.fixture
def engine(tiny_gpt_oss):
    with Engine.start(str(tiny_gpt_oss)) as fresh:
        yield fresh


@pytest.mark.parametrize("batched", [False, True], ids=["serial", "batched"])
def test_a_chat_at_the_limit_reprocesses_only_its_new_tokens(engine, batched):
    history: list[Message] = []
    previous_full = 0
    reprocessed, new_tokens, trims = [], [], []
    for i in range(40):
        history.append(Message("user", f"Turn {i}: " + words(i, 40)))
        request = TurnRequest(list(history), SETUP, PARAMS)
        full = len(engine.render(request))  # the untrimmed prompt
        stream = engine.submit_batched(request) if batched else engine.submit(request)
        events = list(stream)
        assert events[-1].reason != "error", events[-1].error
        start = events[0]
        assert start.prompt_tokens <= LIMIT - PARAMS.max_tokens
        if i:
            reprocessed.append(start.prompt_tokens - start.cached_tokens)
            new_tokens.append(full - previous_full)
        trims += [e for e in events if isinstance(e, ContextTrimmed)]
        previous_full = full
        history.append(Message("assistant", f"Reply {i}: " + words(i + 50, 30), channel="final"))
    assert len({t.dropped_messages for t in trims}) >= 3  # the chat crossed the limit often
    assert statistics.median(reprocessed) <= 2 * statistics.median(new_tokens)
    # Each trim is announced once; the turns that repeat it say so.
    announced = [t for t in trims if t.new]
    assert [t.dropped_messages for t in announced] == sorted({t.dropped_messages for t in trims})
    assert len(trims) > len(announced)
    assert all(t.first_dropped == 0 for t in trims)  # the setup is not a message here


def test_a_trim_drops_down_to_about_seventy_percent_and_then_stays_put(harmony_format):
    history: list[Message] = []
    budget = LIMIT - PARAMS.max_tokens
    kept_starts, lengths = [], []
    for i in range(40):
        history.append(Message("user", f"Turn {i}: " + words(i, 40)))
        prompt, dropped, _ = fit_prompt(harmony_format, history, SETUP, PARAMS, LIMIT)
        kept_starts.append(dropped)
        lengths.append(len(prompt))
        history.append(Message("assistant", f"Reply {i}: " + words(i + 50, 30), channel="final"))
    changes = [i for i in range(1, len(kept_starts)) if kept_starts[i] != kept_starts[i - 1]]
    assert len(changes) >= 3
    turn_size = max(b - a for a, b in itertools.pairwise(lengths))  # one turn's growth
    for i in changes:  # dropped a whole step (30 %), not just enough to fit
        assert lengths[i] <= 0.7 * budget + turn_size < 0.85 * budget
    # Between trims the same turns stay: most turns keep the previous turn's start.
    assert len(changes) <= len(kept_starts) // 3
