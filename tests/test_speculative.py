"""Speculative decoding (issue 16 item 5): a draft model and prompt lookup on real tiny models.

The target is a random gpt_oss with a 16-token sliding window, so every prompt here is longer
than the window and the rewinds happen in the window caches that mlx-lm cannot roll back.
Greedy output must be the plain greedy output token for token.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tiny_models import build_tiny_gpt_oss

from harmony_tui.engine.engine import Engine, TurnRequest
from harmony_tui.engine.events import Stats, TurnEnd
from harmony_tui.engine.messages import PromptSetup
from harmony_tui.engine.params import GenerationParams

WINDOW = 16
GREEDY = GenerationParams(temperature=0, max_tokens=96)
CMD = [sys.executable, "-m", "harmony_tui"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("spec-models")
    return {
        "target": build_tiny_gpt_oss(root / "target", seed=0, sliding_window=WINDOW),
        # the target's weights quantized: agrees with it on most tokens, not all
        "close": build_tiny_gpt_oss(root / "close", seed=0, sliding_window=WINDOW,
                                    quantize_bits=4),
        "other": build_tiny_gpt_oss(root / "other", seed=1, sliding_window=WINDOW),
        "small-vocab": build_tiny_gpt_oss(root / "small-vocab", seed=0, vocab_size=200000),
    }


@pytest.fixture(scope="module")
def engine(models):
    with Engine.start(str(models["target"])) as fresh:
        yield fresh


def prompt_tokens(n: int = 80) -> list[int]:
    rng = random.Random(0)
    half = [rng.randrange(1000, 5000) for _ in range(n // 2)]
    return half * 2  # repeats: prompt lookup finds n-grams in it


def run(engine: Engine, params: GenerationParams, prompt: list[int],
        batched: bool = False) -> tuple[list[int], Stats, TurnEnd]:
    """The sampled token ids, the Stats and the TurnEnd of one raw-prompt turn."""
    engine.prompt_cache.clear()
    events: list[Any] = []
    request = TurnRequest([], PromptSetup(), params, prompt_tokens=prompt, logprobs=0)
    submit = engine.submit_batched if batched else engine.submit
    reply = submit(request, events.append).result()
    end = events[-1]
    assert isinstance(end, TurnEnd)
    assert end.reason != "error", end.error
    stats = next(e for e in events if isinstance(e, Stats))
    return [t.token for t in reply.logprobs], stats, end


def test_prompt_lookup_greedy_output_is_plain_greedy_output(engine):
    prompt = prompt_tokens()
    assert len(prompt) > WINDOW
    plain, plain_stats, _ = run(engine, GREEDY, prompt)
    spec, stats, _ = run(engine, GREEDY.updated(prompt_lookup=4), prompt)
    assert plain_stats.generation_tokens == stats.generation_tokens == 96
    assert spec == plain
    # Drafts were made, some accepted and some rejected (both rewind paths ran).
    assert 0 < stats.accepted_tokens < stats.draft_tokens
    assert stats.verify_steps == stats.generation_tokens - stats.accepted_tokens
    assert plain_stats.draft_tokens == plain_stats.verify_steps == 0
    # A plain turn ran before on this engine: the speed-up is measured against it.
    assert stats.speedup is not None and stats.speedup > 0
    assert stats.to_dict()["accepted_tokens"] == stats.accepted_tokens


@pytest.mark.parametrize("draft", ["close", "target", "other", "other+lookup"])
def test_draft_model_greedy_output_is_plain_greedy_output(engine, models, draft):
    prompt = prompt_tokens()
    plain, _, _ = run(engine, GREEDY, prompt)
    lookup = 3 if draft.endswith("+lookup") else None
    params = GREEDY.updated(draft_model=str(models[draft.removesuffix("+lookup")]),
                            draft_tokens=4, prompt_lookup=lookup)
    spec, stats, _ = run(engine, params, prompt)
    assert spec == plain
    assert stats.generation_tokens == 96
    assert stats.verify_steps == stats.generation_tokens - stats.accepted_tokens
    if draft == "target":  # the model drafting for itself: every draft is accepted
        assert stats.accepted_tokens == stats.draft_tokens > 64
    elif draft == "close" or lookup:  # (with lookup: its drafts where the context matches)
        assert 0 < stats.accepted_tokens < stats.draft_tokens
    else:  # an unrelated random model
        assert stats.accepted_tokens < stats.draft_tokens


def test_draft_model_keeps_its_prompt_cache_across_turns(engine, models):
    prompt = prompt_tokens()
    params = GREEDY.updated(draft_model=str(models["target"]), max_tokens=8)
    run(engine, params, prompt)
    assert len(engine.drafts.prompt_cache) > 0
    plain, _, _ = run(engine, GREEDY.updated(max_tokens=8), [*prompt, 7, 8, 9])
    spec, stats, _ = run(engine, params, [*prompt, 7, 8, 9])
    assert spec == plain and stats.accepted_tokens == stats.draft_tokens


def test_speculative_turn_runs_alone_when_batching_is_on(engine):
    prompt = prompt_tokens()
    plain, _, _ = run(engine, GREEDY, prompt, batched=True)
    spec, stats, _ = run(engine, GREEDY.updated(prompt_lookup=3), prompt, batched=True)
    assert spec == plain and stats.verify_steps > 0


def test_rewound_window_cache_matches_a_cache_that_never_saw_the_drafts(models):
    """Write 3 tokens past the window, take them back, continue: the logits equal those of a
    plain rotating cache that only ever saw the kept tokens."""
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache
    from mlx_lm.utils import load_model

    from harmony_tui.engine.rewind_cache import WindowKVCache, rewind, rewindable

    model, _ = load_model(models["target"])
    tokens = mx.array(prompt_tokens(40), dtype=mx.int32)[None]
    plain = make_prompt_cache(model)
    model(tokens[:, :30], cache=plain)
    spec = rewindable(make_prompt_cache(model), slack=3)
    assert isinstance(spec[0], WindowKVCache)
    model(tokens[:, :30], cache=spec)
    for t in range(30, 40):
        model(mx.array([[1, 2, 3, 4]]), cache=spec)  # a token and 3 drafts, all rejected
        rewind(spec, 4)
        want = model(tokens[:, t:t + 1], cache=plain)
        got = model(tokens[:, t:t + 1], cache=spec)
        assert mx.allclose(got, want, atol=1e-4).item(), t
    assert spec[0].offset == plain[0].offset == 40


def test_draft_model_with_another_vocabulary_is_refused(engine, models):
    params = GREEDY.updated(draft_model=str(models["small-vocab"]))
    events: list[Any] = []
    request = TurnRequest([], PromptSetup(), params, prompt_tokens=prompt_tokens())
    engine.submit(request, events.append).result()
    end = events[-1]
    assert end.reason == "error"
    assert end.error == ("draft model small-vocab: its vocabulary has 200000 tokens, the model "
                         "target's has 201088; a draft model must use the same tokenizer")


def test_draft_model_with_another_tokenizer_is_refused(engine, tiny_llama):
    with pytest.raises(Exception, match="draft model tiny-llama: it uses its own chat template "
                       r"tokens, the model target uses Harmony \(gpt_oss\)"):
        engine.load_draft(str(tiny_llama)).result()


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.mark.parametrize("args, needles", [
    (["--draft-model", "/no/such/draft"],
     ["draft model /no/such/draft: model folder /no/such/draft does not exist"]),
    (["--prompt-lookup", "0"], ["--prompt-lookup=0: input should be greater than or equal to 1"]),
    (["--prompt-lookup", "-2"], ["--prompt-lookup=-2"]),
    (["--draft-tokens", "0"], ["--draft-tokens=0"]),
])
def test_bad_speculation_settings_are_one_line(models, args, needles):
    result = subprocess.run([*CMD, "generate", "--prompt", "hi", "--model",
                             str(models["target"]), *args], capture_output=True, text=True,
                            timeout=240)
    assert_one_line_error(result, *needles)


def test_generate_reports_speculation_on_stderr(models):
    result = subprocess.run([*CMD, "--prompt-lookup", "4", "generate", "--prompt",
                             "one two three one two three one two three", "--model",
                             str(models["target"]), "--temperature", "0", "--max-tokens", "24",
                             "--json"], capture_output=True, text=True, timeout=240)
    import json

    stats = json.loads(result.stdout)["stats"]
    assert stats["verify_steps"] == stats["generation_tokens"] - stats["accepted_tokens"]
    result = subprocess.run([*CMD, "generate", "--prompt", "one two three", "--model",
                             str(models["target"]), "--draft-model", str(models["target"]),
                             "--temperature", "0", "--max-tokens", "24"],
                            capture_output=True, text=True, timeout=240)
    assert "harmony-tui: speculative decoding: " in result.stderr, result.stderr
    assert "drafted tokens accepted (100%)" in result.stderr


def test_sampling_turns_apply_the_turns_processors_to_every_verified_token(engine):
    """With sampling, each verified position is sampled with the turn's own sampler and
    processors: a bias that makes one token certain gives that token every time, and prompt
    lookup, which then drafts it, has its drafts accepted."""
    params = GenerationParams(temperature=1.0, top_p=0.9, repetition_penalty=1.1,
                              logit_bias={4242: 100.0}, max_tokens=40, seed=3, prompt_lookup=4)
    tokens, stats, _ = run(engine, params, prompt_tokens())
    assert tokens == [4242] * 40
    assert stats.accepted_tokens > 20 and stats.verify_steps < 20


def test_serve_honours_prompt_lookup_and_reports_drafts_in_usage():
    import openai
    from test_server_cli import USER_CMD, Served

    from harmony_tui.demo.corpus import SCRIPTS

    hello = next(s for s in SCRIPTS if s.prompt == "Write hello world in Python.")
    served = Served("--model", "demo", "--port", "0", "--temperature", "0", "--prompt-lookup",
                    "4", cmd=USER_CMD)
    try:
        client = openai.OpenAI(base_url=served.url(), api_key="unused", max_retries=0,
                               timeout=120)
        ask = {"role": "user", "content": hello.prompt}
        reply = client.chat.completions.create(model="demo", messages=[
            ask, {"role": "assistant", "content": hello.final}, ask])
        assert reply.choices[0].message.content == hello.final  # greedy: the plain answer
        details = reply.usage.completion_tokens_details
        assert details is not None
        # the answer repeats the context: prompt lookup drafts most of it
        assert details.accepted_prediction_tokens > reply.usage.completion_tokens // 2
        assert details.rejected_prediction_tokens >= 0
    finally:
        code = served.stop()
    assert code == 0, served.text()


def test_serve_refuses_a_missing_draft_model_in_one_line():
    result = subprocess.run([*CMD, "--serve", "--port", "0", "--draft-model", "/no/such/draft"],
                            capture_output=True, text=True, timeout=240)
    assert_one_line_error(result, "draft model /no/such/draft: model folder /no/such/draft "
                          "does not exist")


async def test_app_turns_speculate_and_the_status_bar_shows_it():
    """The app honours prompt_lookup: asked twice for the same program, the second answer
    repeats the first, prompt lookup drafts it, and the status bar shows the acceptance."""
    from test_app import WIDE, make_app, ready, send

    from harmony_tui.demo.corpus import SCRIPTS

    code = next(s for s in SCRIPTS if s.prompt == "Write hello world in Python.")
    app = make_app(params=GenerationParams(temperature=0, prompt_lookup=4))
    async with app.run_test(size=WIDE) as pilot:
        await ready(pilot)
        await send(pilot, code.prompt)
        await send(pilot, code.prompt)
        assert app.session.final_answers() == [code.final, code.final]
        rendered = app.status.render().plain
        assert "spec " in rendered and "%" in rendered, rendered
        assert app.status.spec.startswith("spec ")
        rate = int(app.status.spec.split()[1].rstrip("%"))
        assert rate >= 50, app.status.spec
