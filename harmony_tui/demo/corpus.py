"""The demo model's scripts and the training corpus our code writes from them.

Each documented prompt has a script: the analysis the model writes, optionally a tool call with a
fixed tool result, and the final answer. The corpus renders these as real Harmony prompts (through
the engine's own renderer, so training and use see identical tokens) under many prompt setups:
dates, reasoning efforts, declared tools, developer instructions and earlier turns. Any other
prompt gets a fallback answer that lists the documented prompts.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import json
import random
from dataclasses import dataclass

from harmony_tui.engine.messages import FunctionTool, Message, PromptSetup
from harmony_tui.engine.params import GenerationParams
from harmony_tui.tools.refusal import refusal_message

WEATHER_TOOL = FunctionTool(
    name="get_weather",
    description="Get the current weather for a location.",
    parameters={
        "type": "object",
        "properties": {"location": {"type": "string", "description": "City name"}},
        "required": ["location"],
    },
)
DEMO_FUNCTION_TOOLS = (WEATHER_TOOL,)
CONTEXT = 8192  # the demo model's context window (max_position_embeddings)
# Longest training prompt: a step costs more than its length on a CPU (attention).
TRAIN_PROMPT_TOKENS = 2048
TRAIN_PASTE_LINES = 120  # longest paste in training (~1,000-1,600 tokens; 200 lines ~1,300-2,700)
# Share of histories whose last exchange is a tool turn: the hardest case, a prompt right
# after a tool turn that the app ended at the call.
LAST_TURN_TOOL = 0.5
# Share of tool calls under a setup that does not declare the tool that are answered with the
# server's refusal (the model then answers without the tool) rather than the scripted result:
# all of them, as nothing else answers such a call (the app ends the turn at it).
REFUSED_SHARE = 1.0
# Share of prompts sent raw, with no system message (``/v1/completions`` with a bare prompt).
BARE_SHARE = 0.04
CORPUS_VERSION = 9  # bump when the way examples are drawn changes


@dataclass(frozen=True)
class ToolStep:
    """A tool call in a script: recipient, channel, content type, arguments, and the result."""

    recipient: str
    channel: str
    content_type: str
    arguments: str
    result: str
    analysis_after: str

    @property
    def tool(self) -> str:
        """The name reported by ``demo-model prompts``: python, browser or the function."""
        if self.recipient.startswith("functions."):
            return self.recipient.removeprefix("functions.")
        return self.recipient.split(".", 1)[0]

    def call_message(self) -> Message:
        return Message("assistant", self.arguments, channel=self.channel,
                       recipient=self.recipient, content_type=self.content_type)

    def result_message(self) -> Message:
        return Message("tool", self.result, channel=self.channel, name=self.recipient)

    def declared_by(self, setup: PromptSetup) -> bool:
        """Whether ``setup`` turns this call's tool on (else the app ends the turn at it)."""
        if self.recipient.startswith("functions."):
            return any(f"functions.{f.name}" == self.recipient for f in setup.function_tools)
        return self.tool in setup.builtin_tools


@dataclass(frozen=True)
class Script:
    """One documented prompt and what the demo model answers."""

    prompt: str
    analysis: str
    final: str
    tool: ToolStep | None = None
    aliases: tuple[str, ...] = ()
    weight: int = 1


SCRIPTS: tuple[Script, ...] = (
    Script(
        prompt="Hello!",
        analysis="The user greets me. I will greet back and say what I can do.",
        final=(
            "Hello! I am the **harmony-tui demo model**, a tiny model trained to show how "
            "harmony-tui streams thinking, answers and tool calls. Ask me for a list, some "
            "code, a table, or a tool call."
        ),
        aliases=("Hi!", "Hi", "Hey!", "Hello there!", "Good morning!"),
        weight=2,
    ),
    Script(
        prompt="Give me a packing list for a weekend trip.",
        analysis="A short Markdown list will do. Clothes, toiletries, charger, a book.",
        final=(
            "Here is a packing list for a weekend trip:\n\n"
            "- Two changes of clothes\n"
            "- Toothbrush and toothpaste\n"
            "- Phone charger\n"
            "- A good book\n"
            "- Rain jacket"
        ),
    ),
    Script(
        prompt="Write hello world in Python.",
        analysis="They want code. A fenced Python block with print is enough.",
        final=(
            "Here is hello world in Python:\n\n"
            "```python\n"
            "def main() -> None:\n"
            "    print(\"Hello, world!\")\n\n\n"
            "if __name__ == \"__main__\":\n"
            "    main()\n"
            "```\n\n"
            "Run it with `python hello.py`."
        ),
    ),
    Script(
        prompt="Compare cats and dogs in a table.",
        analysis="A Markdown table with a few traits fits best.",
        final=(
            "| Trait | Cats | Dogs |\n"
            "|---|---|---|\n"
            "| Independence | High | Low |\n"
            "| Exercise | Little | Daily walks |\n"
            "| Sound | Meow | Woof |"
        ),
    ),
    Script(
        prompt="What is 17 * 23? Use python.",
        analysis="I should compute this with the python tool.",
        final="17 × 23 = **391**.",
        tool=ToolStep(
            recipient="python", channel="analysis", content_type="code",
            arguments="print(17 * 23)", result="391",
            analysis_after="The tool printed 391. That is the answer.",
        ),
    ),
    Script(
        prompt="Search the web for MLX.",
        analysis="I will search the web with the browser tool.",
        final=(
            "**MLX** is an array framework for machine learning on Apple silicon, made by "
            "Apple machine learning research【0†L1-L2】."
        ),
        tool=ToolStep(
            recipient="browser.search", channel="analysis", content_type="json",
            arguments='{"query": "MLX", "topn": 3}',
            result=(
                "[0] MLX (github.com/ml-explore/mlx)\n"
                "L0: MLX is an array framework for machine learning on Apple silicon,\n"
                "L1: brought to you by Apple machine learning research."
            ),
            analysis_after="The first result explains MLX. I will cite it.",
        ),
    ),
    Script(
        prompt="What's the weather in Paris?",
        analysis="I need the get_weather function for Paris.",
        final="It is **18 °C** and sunny in Paris right now.",
        tool=ToolStep(
            recipient="functions.get_weather", channel="commentary",
            content_type="<|constrain|>json", arguments='{"location": "Paris"}',
            result='{"temperature": 18, "unit": "celsius", "conditions": "sunny"}',
            analysis_after="The function says 18 degrees and sunny.",
        ),
    ),
)

FALLBACK_ANALYSIS = "I do not know this prompt. I will list the prompts I know."
FALLBACK_FINAL = (
    "I am only a tiny demo model, so I know just a few prompts. Try one of these:\n\n"
    + "\n".join(f"- {s.prompt}" for s in SCRIPTS)
    + "\n\nFor real answers, load a real model with `--model`."
)

REFUSED_ANALYSIS = "The tool is not available here. I will answer without it."
REFUSED_FINAL = (
    "I cannot use that tool here, so I cannot do this one. Turn the tool on and ask again, "
    "or try a prompt that needs no tool."
)

INSTRUCTIONS = (
    "Answer briefly.",
    "You are a helpful assistant.",
    "Use Markdown when it helps.",
)

FALLBACK_WORDS = (
    "why is the sky blue tell me a joke explain quantum physics translate this into french "
    "how do I bake bread what time is it who won the game summarize this article write a "
    "poem about the sea recommend a movie fix my code what is love calculate my taxes "
    "plan a trip to rome describe a sunset list the planets how tall is mount everest "
    "teach me chess what should I eat tonight is it going to rain tomorrow help me sleep "
    "write an email to my boss what does this error mean define entropy"
).split()


def prompts_catalog() -> list[dict[str, str | None]]:
    """What ``harmony-tui demo-model prompts`` prints: ``{"prompt", "tool"}`` per script."""
    return [{"prompt": s.prompt, "tool": s.tool.tool if s.tool else None} for s in SCRIPTS]


@dataclass(frozen=True)
class Example:
    """One training sequence: the loss covers ``completion`` only."""

    prompt: tuple[int, ...]
    completion: tuple[int, ...]
    fallback: bool = False


def prompt_variants(script: Script) -> list[str]:
    """Spellings a person might type for a documented prompt (and its aliases)."""
    out: set[str] = set()
    for text in (script.prompt, *script.aliases):
        bare = text.rstrip(".!?")
        out.update({text, text.lower(), bare, bare.lower()})
    return sorted(out)


def _assistant_tokens(fmt, messages: list[Message], end_with_return: bool) -> list[int]:
    """Render assistant messages as the model must generate them after ``<|start|>assistant``."""
    from harmony_tui.engine.formats.harmony import END, RETURN, START, to_harmony

    tokens: list[int] = []
    for msg in messages:
        tokens += fmt.encoding.render(to_harmony(msg))
    assert tokens[:2] == [START, fmt.encode("assistant")[0]]
    tokens = tokens[2:]
    if end_with_return and tokens[-1] == END:
        tokens[-1] = RETURN
    return tokens


def _random_setup(rng: random.Random, script: Script | None) -> tuple[PromptSetup, GenerationParams,
                                                                      _dt.date]:
    builtin: list[str] = []
    tool = script.tool.tool if script and script.tool else None
    for name, declared in (("python", 0.3), ("browser", 0.1)):
        if rng.random() < (0.6 if tool == name else declared):
            builtin.append(name)
    functions = DEMO_FUNCTION_TOOLS if rng.random() < (0.75 if tool == "get_weather" else 0.3) \
        else ()
    roll = rng.random()  # as the app runs: all the demo's tools on, or none (no tool flags)
    if roll < 0.2:
        builtin, functions = ["python", "browser"], DEMO_FUNCTION_TOOLS
    elif roll < 0.4:
        builtin, functions = [], ()
    instructions = rng.choice(INSTRUCTIONS) if rng.random() < 0.25 else None
    setup = PromptSetup(builtin_tools=tuple(builtin), function_tools=functions,
                        developer_instructions=instructions)
    params = GenerationParams(reasoning_effort=rng.choice(["low", "medium", "high"]))
    today = _dt.date(2024, 1, 1) + _dt.timedelta(days=rng.randrange(365 * 7))
    return setup, params, today


def _fallback_prompt(rng: random.Random) -> str:
    words = rng.sample(FALLBACK_WORDS, rng.randint(2, 7))
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice(["?", ".", "", "!"])


def script_turn(script: Script) -> list[Message]:
    """A whole exchange as it sits in a history: prompt, thinking, tool call and result, answer."""
    turn = [Message("user", script.prompt),
            Message("assistant", script.analysis, channel="analysis")]
    if script.tool is not None:
        turn += [script.tool.call_message(), script.tool.result_message(),
                 Message("assistant", script.tool.analysis_after, channel="analysis")]
    turn.append(Message("assistant", script.final, channel="final"))
    return turn


PASTE_WORDS = (
    "the of and to in is that for it as with was on be by this are from at or an but not "
    "report data value total user error line file name result function return import class "
    "def self print list table row column date price order customer item number status "
    "update config server request response time memory"
).split()


def long_paste(rng: random.Random, lines: int | None = None) -> str:
    """A pasted text of many lines (prose, code, a CSV or a log): the demo answers the list."""
    lines = lines or rng.randint(20, 200)
    kind = rng.choice(["prose", "code", "csv", "log"])
    out: list[str] = []
    for n in range(lines):
        words = rng.sample(PASTE_WORDS, rng.randint(2, 9))
        if kind == "code":
            indent = " " * 4 * rng.randint(0, 2)
            out.append(f"{indent}{words[0]}_{n} = {words[1]}({', '.join(words[2:4])})")
        elif kind == "csv":
            out.append(",".join([str(n), *words[:3], str(rng.randint(0, 9999))]))
        elif kind == "log":
            day = f"2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"
            level = rng.choice(["INFO", "WARN", "ERROR"])
            out.append(f"{day} {level} " + " ".join(words))
        else:
            out.append(" ".join(words).capitalize() + ".")
    return "\n".join(out)


def _unknown_prompt(rng: random.Random, paste_share: float) -> str:
    if rng.random() < paste_share:
        return long_paste(rng, rng.randint(20, TRAIN_PASTE_LINES))
    return _fallback_prompt(rng)


def _history(rng: random.Random, count: int, setup: PromptSetup) -> tuple[list[Message], bool]:
    """``count`` earlier exchanges in random order, as a chat under ``setup`` holds them:
    documented prompts (with their tool calls and results, or only the call when ``setup``
    turns the tool off and the app ended the turn there), repeats, unknown prompts and long
    pastes. Returns the messages and whether any unknown text is among them."""
    weighted = [s for s in SCRIPTS for _ in range(s.weight)]
    history: list[Message] = []
    unknown = False
    previous: Script | None = None
    tool_scripts = [s for s in SCRIPTS if s.tool is not None]
    for turn_index in range(count):
        roll = rng.random()
        if turn_index == count - 1 and rng.random() < LAST_TURN_TOOL:
            script = rng.choice(tool_scripts)  # the prompt to answer follows a tool turn
        elif previous is not None and roll < 0.12:
            script = previous  # the same prompt again
        elif roll < 0.9:
            script = rng.choice(weighted)
        else:
            script = None
        if script is None:
            unknown = True
            history += [Message("user", _unknown_prompt(rng, 0.15)),
                        Message("assistant", FALLBACK_ANALYSIS, channel="analysis"),
                        Message("assistant", FALLBACK_FINAL, channel="final")]
        else:
            turn = script_turn(script)
            turn[0] = Message("user", rng.choice(prompt_variants(script)))
            if script.tool is not None and not script.tool.declared_by(setup):
                turn = turn[:3]  # the tool is off: the app ended the turn at the call
            history += turn
        previous = script
    return history, unknown


def _history_length(rng: random.Random) -> int:
    """Earlier exchanges: 40 % short chats (0-3), 45 % 4-10 turns, the rest up to 30."""
    roll = rng.random()
    if roll < 0.4:
        return rng.choices([0, 1, 2, 3], weights=[40, 25, 20, 15])[0]
    return rng.randint(4, 10) if roll < 0.85 else rng.randint(11, 30)


def _fit(fmt, messages: list[Message], setup: PromptSetup, params: GenerationParams,
         today: _dt.date) -> list[int]:
    """The prompt as the engine sends it, the oldest turns dropped to fit: to at most
    ``TRAIN_PROMPT_TOKENS`` (attention costs grow with the square of the length on a CPU)."""
    from harmony_tui.engine.context import fit_prompt

    return fit_prompt(fmt, messages, setup, params.model_copy(update={"max_tokens": 1024}),
                      TRAIN_PROMPT_TOKENS + 1024, today)[0]


def _bare_prompt(fmt, messages: list[Message]) -> list[int]:
    """``messages`` rendered with no system message, as a raw completion prompt sends them."""
    from harmony_tui.engine.formats.harmony import START, to_harmony

    tokens: list[int] = []
    for message in messages:
        tokens += fmt.encoding.render(to_harmony(message))
    return [*tokens, START, *fmt.encode("assistant")]


def build_examples(fmt, seed: int, count: int) -> list[Example]:
    """``count`` training sequences, deterministic for ``seed``.

    Every script appears equally often; two in nine sequences are unknown prompts (15 % of
    those long pastes). Each sits after a random chat of 0-30 earlier exchanges under its own
    setup (tool turns end at the call when the setup turns the tool off, as in the app),
    trimmed to ``TRAIN_PROMPT_TOKENS`` as the engine trims a context. Scripts with a tool
    contribute two sequences: up to the call, and from the tool result to the final (or, when
    the setup does not declare the tool, from the server's refusal to an answer without the
    tool). A few prompts without history are sent bare (no system message).
    """
    rng = random.Random(seed)
    examples: list[Example] = []
    choices: list[Script | None] = [s for s in SCRIPTS for _ in range(s.weight)] + [None, None]
    for draw in itertools.count():
        if len(examples) >= count:
            break
        script = choices[draw % len(choices)]
        setup, params, today = _random_setup(rng, script)
        history, unknown = _history(rng, _history_length(rng), setup)
        if script is None:
            user = _unknown_prompt(rng, 0.15)
            analysis, final, tool = FALLBACK_ANALYSIS, FALLBACK_FINAL, None
            unknown = True
        else:
            user = rng.choice(prompt_variants(script))
            analysis, final, tool = script.analysis, script.final, script.tool
        messages = [*history, Message("user", user)]
        first = [Message("assistant", analysis, channel="analysis")]
        bare = rng.random() < BARE_SHARE
        prompt = _bare_prompt(fmt, messages[-1:]) if bare else \
            _fit(fmt, messages, setup, params, today)
        if tool is None:
            first.append(Message("assistant", final, channel="final"))
            examples.append(Example(tuple(prompt), tuple(_assistant_tokens(fmt, first, True)),
                                    fallback=unknown))
            continue
        first.append(tool.call_message())
        examples.append(Example(tuple(prompt), tuple(_assistant_tokens(fmt, first, False)),
                                fallback=unknown))
        if bare:
            continue
        refused = not tool.declared_by(setup) and rng.random() < REFUSED_SHARE
        answer = refusal_message(tool.recipient, tool.channel) if refused else \
            tool.result_message()
        after = [*messages, *first, answer]
        prompt2 = _fit(fmt, after, setup, params, today)
        second = [Message("assistant", REFUSED_ANALYSIS if refused else tool.analysis_after,
                          channel="analysis"),
                  Message("assistant", REFUSED_FINAL if refused else final, channel="final")]
        examples.append(Example(tuple(prompt2), tuple(_assistant_tokens(fmt, second, True)),
                                fallback=unknown))
    return examples[:count]


def corpus_fingerprint() -> str:
    """A hash of everything the corpus is made from; shipped weights record it."""
    payload = json.dumps({
        "version": CORPUS_VERSION,
        "scripts": [
            [s.prompt, s.analysis, s.final, list(s.aliases), s.weight,
             None if s.tool is None else [s.tool.recipient, s.tool.channel, s.tool.content_type,
                                          s.tool.arguments, s.tool.result, s.tool.analysis_after]]
            for s in SCRIPTS
        ],
        "fallback": [FALLBACK_ANALYSIS, FALLBACK_FINAL, FALLBACK_WORDS],
        "instructions": INSTRUCTIONS,
        "paste": PASTE_WORDS,
        "context": [CONTEXT, TRAIN_PROMPT_TOKENS, TRAIN_PASTE_LINES, LAST_TURN_TOOL],
        "refused": [REFUSED_SHARE, REFUSED_ANALYSIS, REFUSED_FINAL,
                    refusal_message("{tool}", None).content],
        "bare": BARE_SHARE,
        "tools": [WEATHER_TOOL.name, WEATHER_TOOL.description, WEATHER_TOOL.parameters],
    }, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]
