"""GPT-OSS's Harmony format: rendering with openai-harmony, and a forgiving streaming decoder.

Rendering follows the Harmony spec: system content (identity, reasoning effort, knowledge cutoff,
date, built-in tools), developer content (instructions, function tools), example dialogues, then
the history with earlier turns' analysis dropped (openai-harmony's own auto-drop only covers the
first final message, so we drop it ourselves and render with auto-drop off).

Decoding is ``harmony_decoder.HarmonyDecoder``, re-exported here with the token ids.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

from harmony_tui.engine.formats.base import folded_instructions, split_turns
from harmony_tui.engine.formats.harmony_decoder import (  # noqa: F401 (re-exported)
    ASSISTANT,
    CALL,
    CHANNEL,
    CONSTRAIN,
    END,
    ENDOFTEXT,
    FIRST_SPECIAL,
    MESSAGE,
    RETURN,
    START,
    STRUCTURAL,
    VOCAB_SIZE,
    HarmonyDecoder,
    new_call_id,
    parse_arguments,
)
from harmony_tui.engine.messages import Message, PromptSetup
from harmony_tui.engine.params import GenerationParams

USER = 1428  # "user" in o200k_harmony: the role token after <|start|>


class HarmonyFormat:
    """Harmony rendering and decoding for gpt_oss models."""

    name = "harmony"
    vocab_size = VOCAB_SIZE
    stop_tokens = frozenset({RETURN, CALL, ENDOFTEXT})
    keep_tokens: Sequence[int] = tuple(sorted(STRUCTURAL | {ENDOFTEXT}))

    def __init__(self) -> None:
        from harmony_tui.engine.vocab import harmony_encoding

        self.encoding = harmony_encoding()

    # -- rendering ---------------------------------------------------------------------------

    def render(
        self,
        messages: Sequence[Message],
        setup: PromptSetup,
        params: GenerationParams,
        today: _dt.date | None = None,
    ) -> list[int]:
        from openai_harmony import Conversation, RenderConversationConfig, Role

        conversation = Conversation.from_messages(
            self.harmony_messages(messages, setup, params, today)
        )
        return self.encoding.render_conversation_for_completion(
            conversation, Role.ASSISTANT, RenderConversationConfig(auto_drop_analysis=False)
        )

    def harmony_messages(
        self,
        messages: Sequence[Message],
        setup: PromptSetup,
        params: GenerationParams,
        today: _dt.date | None = None,
    ) -> list[Any]:
        """The openai-harmony messages for a prompt (system, developer, examples, history)."""
        from openai_harmony import Message as HMessage
        from openai_harmony import Role

        out = [HMessage.from_role_and_content(Role.SYSTEM, system_content(setup, params, today))]
        developer = developer_content(setup, messages)
        if developer is not None:
            out.append(HMessage.from_role_and_content(Role.DEVELOPER, developer))
        for dialogue in setup.example_dialogues:
            out.extend(to_harmony(m) for m in dialogue if m.content)
        out.extend(to_harmony(m) for m in history_for_prompt(messages))
        return out

    # -- decoding ----------------------------------------------------------------------------

    def new_decoder(self, setup: PromptSetup, prompt: Sequence[int] = ()) -> HarmonyDecoder:
        return HarmonyDecoder(self.encoding, known_recipients(setup))

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode(text, allowed_special="all")

    def checkpoint_positions(self, tokens: Sequence[int]) -> list[int]:
        """Where a later prompt may diverge from ``tokens``: before each ``<|start|>user``
        (an edit, a regenerated older turn, or old turns dropped to fit the context)."""
        return [i for i, token in enumerate(tokens[:-1])
                if token == START and tokens[i + 1] == USER]

    def decode(self, tokens: Sequence[int]) -> str:
        return self.encoding.decode(list(tokens))


def system_content(setup: PromptSetup, params: GenerationParams, today: _dt.date | None):
    """Harmony system content for ``setup``; the date is today's unless the setup fixes it."""
    from openai_harmony import ReasoningEffort, SystemContent

    effort = {"low": ReasoningEffort.LOW, "medium": ReasoningEffort.MEDIUM,
              "high": ReasoningEffort.HIGH}[params.reasoning_effort]
    content = SystemContent.new().with_reasoning_effort(effort)
    date = setup.conversation_start_date or (today or _dt.date.today()).isoformat()
    content = content.with_conversation_start_date(date)
    if setup.model_identity:
        content = content.with_model_identity(setup.model_identity)
    if setup.knowledge_cutoff:
        content = content.with_knowledge_cutoff(setup.knowledge_cutoff)
    descriptions = dict(setup.tool_descriptions)
    if "browser" in setup.builtin_tools:
        content = content.with_browser_tool()
    if "python" in setup.builtin_tools:
        if "python" in descriptions:
            from openai_harmony import ToolNamespaceConfig

            content = content.with_tools(ToolNamespaceConfig(
                name="python", description=descriptions["python"], tools=[]))
        else:
            content = content.with_python_tool()
    return content


def developer_content(setup: PromptSetup, messages: Sequence[Message]):
    """Harmony developer content, or None when there are no instructions and no functions.

    The instructions are the setup's plus the system/developer messages that open the history;
    later ones are rendered where they stand (see ``to_harmony``).
    """
    from openai_harmony import DeveloperContent, ToolDescription

    head, _ = split_turns(messages)
    instructions = folded_instructions(setup, head)
    if not instructions and not setup.function_tools:
        return None
    content = DeveloperContent.new()
    if instructions:
        content = content.with_instructions(instructions)
    if setup.function_tools:
        content = content.with_function_tools(
            [
                ToolDescription.new(t.name, t.description, parameters=t.parameters)
                for t in setup.function_tools
            ]
        )
    return content


def history_for_prompt(messages: Sequence[Message]) -> list[Message]:
    """The history as Harmony wants it re-sent.

    System/developer messages before the first user message are folded into the developer
    message; later ones stay where they are. Earlier turns keep their final answers and
    function-tool exchanges but lose the analysis channel (thinking, built-in tool exchanges);
    the current (last) turn keeps everything, because its chain of thought continues across
    tool calls. Empty messages are skipped, except tool results (an
    empty result is still the tool's answer) and tool calls.
    """
    _, turns = split_turns(messages)
    out: list[Message] = []
    for index, turn in enumerate(turns):
        last = index == len(turns) - 1
        for msg in turn:
            if not msg.content and not msg.is_tool_call and msg.role != "tool":
                continue
            if not last and msg.channel == "analysis":
                continue
            out.append(msg)
    return out


def to_harmony(msg: Message):
    """One of our messages as an openai-harmony message.

    A system or developer message inside the history becomes a developer message with its
    text as instructions (Harmony's system message is the prompt setup's).
    """
    from openai_harmony import Author, DeveloperContent, Role
    from openai_harmony import Message as HMessage

    if msg.role == "tool":
        author = Author.new(Role.TOOL, msg.name or "tool")
        out = HMessage.from_author_and_content(author, msg.content).with_recipient("assistant")
        return out.with_channel(msg.channel or "commentary")
    if msg.role in ("system", "developer"):
        return HMessage.from_role_and_content(
            Role.DEVELOPER, DeveloperContent.new().with_instructions(msg.content))
    role = Role.USER if msg.role == "user" else Role.ASSISTANT
    out = HMessage.from_role_and_content(role, msg.content)
    if msg.role == "assistant":
        out = out.with_channel(msg.channel or "final")
        if msg.recipient:
            out = out.with_recipient(msg.recipient)
        if msg.content_type:
            out = out.with_content_type(msg.content_type)
    return out


def known_recipients(setup: PromptSetup) -> frozenset[str]:
    """Recipients the prompt declared: built-in namespaces and ``functions.NAME``."""
    names = {f"functions.{t.name}" for t in setup.function_tools}
    names.update(setup.builtin_tools)
    return frozenset(names)
