"""Every turn reuses the prompt cache (issue 16 item 2) on a real tiny gpt_oss model.

The tiny model has a sliding-window layer (``RotatingKVCache``, window 128) and a full-attention
layer (``KVCache``); every prompt here is well past the window, so a checkpoint that is not an
exact prefix of the next prompt cannot be trimmed back. Assistant replies are written into the
history by the test (what a front end sends after a reply), so the turns are deterministic.
"""

from __future__ import annotations

import pytest

from harmony_tui.engine.engine import Engine, TurnRequest
from harmony_tui.engine.events import TextDelta, TurnStart
from harmony_tui.engine.formats.harmony import START, USER
from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.engine.params import GenerationParams

GREEDY = GenerationParams(temperature=0, max_tokens=6)
SETUP = PromptSetup(developer_instructions="Answer briefly and precisely. " * 6)
WORDS = ("river stone lantern orbit maple signal copper meadow harbor violet thunder "
         "pencil glacier saddle ember quartz tunnel falcon").split()


def text(seed: int, words: int = 150) -> str:
    """Distinct, deterministic prose of about ``words`` tokens."""
    return " ".join(WORDS[(seed * 7 + i * (seed + 3)) % len(WORDS)] for i in range(words))


def user(seed: int) -> Message:
    return Message("user", f"Question {seed}: " + text(seed))


def answer(seed: int) -> Message:
    return Message("assistant", f"Answer {seed}: " + text(seed + 100, 60), channel="final")


def tool_turn(seed: int) -> list[Message]:
    """The assistant part of a turn that called the python tool, as a front end keeps it."""
    return [Message("assistant", "I should compute this with python.", channel="analysis"),
            Message("assistant", f"print({seed} * 7)", channel="analysis", recipient="python",
                    content_type="code"),
            Message("tool", f"{seed * 7}", channel="analysis", name="python")]


def turn(engine: Engine, messages: list[Message], batched: bool = False) -> TurnStart:
    """Run one turn; returns its TurnStart (prompt and cached token counts)."""
    request = TurnRequest(list(messages), SETUP, GREEDY)
    stream = engine.submit_batched(request) if batched else engine.submit(request)
    events = list(stream)
    assert events[-1].reason != "error", events[-1].error
    return events[0]


def prompt_of(engine: Engine, messages: list[Message]) -> list[int]:
    return engine.render(TurnRequest(list(messages), SETUP, GREEDY))


def last_user_start(tokens: list[int]) -> int:
    return max(i for i in range(len(tokens) - 1) if tokens[i] == START and tokens[i + 1] == USER)


@pytest.fixture
def engine(tiny_gpt_oss):
    with Engine.start(str(tiny_gpt_oss)) as fresh:  # an empty prompt cache per test
        yield fresh


@pytest.mark.parametrize("batched", [False, True], ids=["serial", "batched"])
def test_the_turn_after_a_tool_call_reprocesses_only_its_new_tokens(engine, batched):
    first = [user(1)]
    turn(engine, first, batched)  # sub-turn 1: the model calls python
    turn(engine, [*first, *tool_turn(1)], batched)  # sub-turn 2: after the tool's result
    history = [*first, *tool_turn(1), answer(1), user(2)]
    start = turn(engine, history, batched)  # the next user turn drops turn 1's analysis
    shared = len(prompt_of(engine, first))  # ... <|start|>assistant, shared by both
    assert start.cached_tokens >= shared - 1
    # A third turn after another tool call: still only the new part.
    turn(engine, [*history, *tool_turn(2)], batched)
    later = [*history, *tool_turn(2), answer(2), user(3)]
    start = turn(engine, later, batched)
    assert start.cached_tokens >= len(prompt_of(engine, history)) - 1


@pytest.mark.parametrize("batched", [False, True], ids=["serial", "batched"])
def test_editing_the_last_message_reuses_everything_before_it(engine, batched):
    history = [user(1), answer(1), user(2), answer(2)]
    turn(engine, [user(1)], batched)
    turn(engine, [*history[:2], user(2)], batched)
    turn(engine, [*history, user(3)], batched)
    edited = [*history, Message("user", "Question 3, reworded: " + text(33))]
    start = turn(engine, edited, batched)
    assert start.cached_tokens >= last_user_start(prompt_of(engine, edited))


def test_regenerate_edit_and_branch_switch_keep_every_branch(engine):
    p1 = [user(1)]
    p2 = [user(1), answer(1), user(2)]
    p3 = [*p2, answer(2), user(3)]
    for messages in (p1, p2, p3):
        turn(engine, messages)
    # Regenerate turn 2: its whole prompt is still checkpointed.
    start = turn(engine, p2)
    assert start.cached_tokens == start.prompt_tokens - 1
    # Edit turn 2's question: everything before it is reused.
    edited = [user(1), answer(1), Message("user", "Another second question: " + text(22))]
    start = turn(engine, edited)
    assert start.cached_tokens >= last_user_start(prompt_of(engine, edited))
    # Switch back to the first branch and continue it: its checkpoints survived the edit.
    back = [*p3, answer(3), user(4)]
    start = turn(engine, back)
    assert start.cached_tokens >= len(prompt_of(engine, p3)) - 1


def test_reused_checkpoints_give_the_same_answer_as_a_cold_start(engine, tiny_gpt_oss):
    history = [user(1), *tool_turn(1), answer(1)]
    turn(engine, [user(1)])
    turn(engine, [user(1), *tool_turn(1)])
    edited = [*history, Message("user", "Something else: " + text(5))]
    turn(engine, [*history, user(2)])

    def reply(eng: Engine) -> tuple[int, str]:
        events = list(eng.submit(TurnRequest(edited, SETUP, GenerationParams(
            temperature=0, max_tokens=24))))
        return events[0].cached_tokens, "".join(e.text for e in events
                                                if isinstance(e, TextDelta))

    cached, warm = reply(engine)
    assert cached > 128  # continued from a checkpoint past the sliding window
    with Engine.start(str(tiny_gpt_oss)) as cold_engine:
        cold_cached, cold = reply(cold_engine)
    assert cold_cached == 0
    assert warm == cold


def test_checkpoints_cost_one_cache_plus_small_snapshots(engine):
    history: list[Message] = []
    tool_tokens = 0  # the sub-turns' own tokens: the only part a dead branch keeps
    for i in range(1, 7):
        history.append(user(i))
        turn(engine, history)
        if i % 2:
            before = len(prompt_of(engine, history))
            history += tool_turn(i)
            turn(engine, history)
            tool_tokens += len(prompt_of(engine, history)) - before + 1
        history.append(answer(i))
    stats = engine.prompt_cache.stats()
    longest = len(prompt_of(engine, history[:-1]))
    # gpt_oss tiny: 1 full-attention + 1 sliding layer, 1 KV head of 16 float32 values.
    per_token_layer = 2 * 1 * 16 * 4
    full_cache = per_token_layer * (longest + 256)  # KVCache grows in steps of 256 tokens
    snapshot = per_token_layer * 128  # one sliding layer, at most one window
    assert stats["checkpoints"] >= 9  # every turn start and every user message
    assert stats["shared_bytes"] - stats["branch_bytes"] <= full_cache  # one full cache
    assert stats["branch_bytes"] <= per_token_layer * tool_tokens  # branches: own parts only
    assert stats["snapshot_bytes"] <= stats["checkpoints"] * snapshot


def test_memory_budget_evicts_least_recently_used_not_a_count(engine):
    engine.prompt_cache.budget_bytes = 10**9
    branches = [[user(1), answer(1), user(10 + i)] for i in range(6)]
    turn(engine, [user(1)])
    for branch in branches:
        turn(engine, branch)
    assert engine.prompt_cache.stats()["trunks"] == 6  # more than the old limit of 4 entries
    for branch in branches:  # every branch is still whole
        start = turn(engine, branch)
        assert start.cached_tokens == start.prompt_tokens - 1
    engine.prompt_cache.budget_bytes = 1
    turn(engine, branches[0])
    stats = engine.prompt_cache.stats()
    assert stats["trunks"] == 1 and stats["checkpoints"] == 1  # only the newest is free
    start = turn(engine, branches[0])  # ... and the next turn still continues from it
    assert start.cached_tokens == start.prompt_tokens - 1
