"""The tools of a session: built from the config, declared to the model, run on request.

``ToolSet`` owns the tool objects, adds their declarations to a ``PromptSetup`` (python and
browser as Harmony built-in namespaces in the system message; apply_patch, config functions and
MCP tools as function tools in the developer message), routes a call to the tool that answers
its recipient, and remembers "allow for this chat" approvals.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from harmony_tui.engine.messages import FunctionTool, Message, PromptSetup
from harmony_tui.tools.base import ApprovalRequest, Tool, ToolInvocation, ToolResult, run_safely
from harmony_tui.tools.config import ToolsConfig

Decision = Literal["once", "chat", "deny"]
Approver = Callable[[ToolInvocation, ApprovalRequest], Awaitable[Decision]]
LIMIT_TEXT = ("tool call limit reached ({limit} calls in this turn); answer the user with what "
              "you have")


@dataclasses.dataclass(frozen=True)
class ToolOutcome:
    """A finished call: its result, the message for the model, and how it was approved."""

    invocation: ToolInvocation
    result: ToolResult
    message: Message
    decision: Decision | Literal["auto"]


class ToolSet:
    """The enabled tools and the approvals given in each chat."""

    def __init__(self, config: ToolsConfig | None = None) -> None:
        self.config = config or ToolsConfig()
        self.tools: list[Tool] = []
        self.python: Any = None
        self.browser: Any = None
        self.functions: list[FunctionTool] = []
        self.instructions: list[str] = []
        self.errors: list[str] = []
        self._allowed: set[tuple[str | None, str]] = set()
        self._mcp: Any = None
        self._build()

    def _build(self) -> None:
        config = self.config
        if config.python is not None:
            from harmony_tui.tools.python_tool import PythonTool

            self.python = PythonTool(config.python)
            self.tools.append(self.python)
        if config.browser is not None:
            from harmony_tui.tools.browser import BrowserTool

            self.browser = BrowserTool(config.browser)
            self.tools.append(self.browser)
        if config.apply_patch is not None:
            from harmony_tui.tools.apply_patch import (
                APPLY_PATCH_INSTRUCTIONS,
                APPLY_PATCH_TOOL,
                ApplyPatchTool,
            )

            tool = ApplyPatchTool(config.apply_patch.workspace.expanduser())
            self.tools.append(_AutoApprove(tool) if config.apply_patch.auto_approve else tool)
            self.functions.append(APPLY_PATCH_TOOL)
            self.instructions.append(APPLY_PATCH_INSTRUCTIONS)
        if config.functions:
            from harmony_tui.tools.function_tools import FunctionTools

            functions = FunctionTools(config.functions)
            self.tools.append(functions)
            self.functions.extend(functions.declarations())
        if config.mcp_servers:
            from harmony_tui.tools.mcp_tools import McpTools

            self._mcp = McpTools(config.mcp_servers)

    @property
    def enabled(self) -> bool:
        return bool(self.tools) or self._mcp is not None

    @property
    def max_calls(self) -> int:
        return self.config.max_calls_per_turn

    def start(self) -> None:
        """Connect to MCP servers (blocking); servers that fail are skipped, see ``errors``."""
        if self._mcp is not None and self._mcp not in self.tools:
            self._mcp.start(raise_on_error=False)
            self.errors.extend(self._mcp.errors)
            self.tools.append(self._mcp)
            self.functions.extend(self._mcp.declarations())

    async def astart(self) -> None:
        if self._mcp is not None and self._mcp not in self.tools:
            await self._mcp.astart(raise_on_error=False)
            self.errors.extend(self._mcp.errors)
            self.tools.append(self._mcp)
            self.functions.extend(self._mcp.declarations())

    def names(self) -> list[str]:
        """What the model can call, for messages and errors."""
        names = [t.namespace for t in self.tools if t.namespace != "functions"
                 and not t.namespace.startswith("functions.")]
        names += [f"functions.{f.name}" for f in self.functions]
        return names

    # -- declaring -----------------------------------------------------------------------------

    def declare(self, setup: PromptSetup) -> PromptSetup:
        """``setup`` with every enabled tool declared the way Harmony expects."""
        builtin = tuple(dict.fromkeys(setup.builtin_tools + tuple(
            name for name, tool in (("python", self.python), ("browser", self.browser))
            if tool is not None)))
        # python keeps openai-harmony's standard description: GPT-OSS was trained with it
        # (PythonTool.model_description() describes our sandbox more exactly, if wanted).
        descriptions = dict(setup.tool_descriptions)
        known = {f.name for f in setup.function_tools}
        functions = setup.function_tools + tuple(f for f in self.functions if f.name not in known)
        instructions = setup.developer_instructions
        if self.instructions:
            instructions = "\n\n".join([instructions, *self.instructions] if instructions
                                       else self.instructions)
        return dataclasses.replace(setup, builtin_tools=builtin, function_tools=functions,
                                   developer_instructions=instructions,
                                   tool_descriptions=tuple(descriptions.items()))

    # -- running -------------------------------------------------------------------------------

    def find(self, recipient: str) -> Tool | None:
        for tool in self.tools:
            handles = getattr(tool, "handles", None)
            if handles is not None:
                if handles(recipient):
                    return tool
            elif recipient == tool.namespace or recipient.startswith(tool.namespace + "."):
                return tool
        return None

    def approval(self, call: ToolInvocation) -> ApprovalRequest | None:
        """What to ask before ``call`` runs; None when no question is needed."""
        tool = self.find(call.recipient)
        if tool is None or (call.chat_id, _scope(call.recipient)) in self._allowed:
            return None
        return tool.approval(call)

    def allow_for_chat(self, call: ToolInvocation) -> None:
        self._allowed.add((call.chat_id, _scope(call.recipient)))

    def forget_chat(self, chat_id: str | None) -> None:
        self._allowed = {a for a in self._allowed if a[0] != chat_id}
        if self.browser is not None:
            self.browser.forget_chat(chat_id)
        if self.python is not None:
            self.python.forget_chat(chat_id)

    async def handle(self, call: ToolInvocation, approver: Approver | None,
                     channel: str | None = None) -> ToolOutcome:
        """Ask (when needed) and run ``call``; denial and failures become error results."""
        tool = self.find(call.recipient)
        decision: Decision | Literal["auto"] = "auto"
        if tool is None:
            known = ", ".join(self.names()) or "none"
            result = ToolResult(f"unknown tool {call.recipient!r}; the tools you can call are: "
                                f"{known}", is_error=True)
        else:
            request = self.approval(call)
            if request is not None and approver is not None:
                decision = await approver(call, request)
                if decision == "chat":
                    self.allow_for_chat(call)
            if decision == "deny":
                result = ToolResult(f"{call.recipient}: the user denied this call; do not "
                                    "retry it unless they ask", is_error=True)
            else:
                result = await run_safely(tool, call)
        return ToolOutcome(call, result, result_message(call, result, channel), decision)

    def limit_outcome(self, call: ToolInvocation, channel: str | None = None) -> ToolOutcome:
        result = ToolResult(LIMIT_TEXT.format(limit=self.max_calls), is_error=True)
        return ToolOutcome(call, result, result_message(call, result, channel), "deny")

    def render_citations(self, text: str, chat_id: str | None) -> str:
        if self.browser is None:
            return text
        return self.browser.render_citations(text, chat_id)

    async def aclose(self) -> None:
        for tool in self.tools:
            await tool.aclose()
        if self._mcp is not None and self._mcp not in self.tools:
            await self._mcp.aclose()


def _scope(recipient: str) -> str:
    """What "allow for this chat" covers: a whole built-in namespace, or one function."""
    if recipient.startswith("functions."):
        return recipient
    return recipient.split(".", 1)[0]


def result_message(call: ToolInvocation, result: ToolResult, channel: str | None) -> Message:
    """The tool message the model reads: from the tool, to the assistant, on the call's
    channel."""
    text = result.text.rstrip("\n")  # a command's final newline is not part of its answer
    if result.is_error and not text.lower().startswith(("error", call.recipient.lower())):
        text = f"error: {text}"
    return Message("tool", text, channel=channel or "commentary", name=call.recipient)


class _AutoApprove:
    """A tool whose calls run without asking (its ``auto_approve`` setting)."""

    def __init__(self, tool: Tool) -> None:
        self._tool = tool
        self.namespace = tool.namespace

    def approval(self, call: ToolInvocation) -> ApprovalRequest | None:
        return None

    async def run(self, call: ToolInvocation) -> ToolResult:
        self._tool.approval(call)  # some tools bind the run to what approval computed
        return await self._tool.run(call)

    async def aclose(self) -> None:
        await self._tool.aclose()


def tool_calls_json(outcomes: list[ToolOutcome]) -> list[dict[str, Any]]:
    """``generate --json``'s ``tool_calls``: recipient, arguments, result."""
    out = []
    for outcome in outcomes:
        arguments: Any = outcome.invocation.arguments
        try:
            arguments = json.loads(arguments)
        except (json.JSONDecodeError, TypeError):
            pass
        out.append({"recipient": outcome.invocation.recipient, "arguments": arguments,
                    "result": outcome.result.text, "is_error": outcome.result.is_error})
    return out
