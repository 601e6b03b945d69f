"""The ``tools:`` section of a prompt config: which tools are on and how they behave.

```yaml
tools:
  python: {timeout_s: 10, stateful: true}     # or `python: true` for the defaults
  browser: {search_backend: searxng, search_url: http://localhost:8888}
  apply_patch: {workspace: ., auto_approve: false}
  functions:
    - {name: lookup, description: ..., parameters: {...}, command: ./lookup.sh}
  mcp_servers:
    - {name: files, command: npx, args: [-y, "@modelcontextprotocol/server-filesystem", .]}
  max_calls_per_turn: 8
```
A tool left out (or ``false``) is off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from harmony_tui.tools.browser import BrowserSettings
from harmony_tui.tools.function_tools import FunctionToolSpec
from harmony_tui.tools.mcp_tools import McpServerSpec
from harmony_tui.tools.python_tool import PythonToolSettings


class ApplyPatchSettings(BaseModel):
    """Settings of the apply_patch tool."""

    model_config = ConfigDict(extra="forbid")

    workspace: Path = Field(Path("."), description="folder the patches may change (relative to "
                            "the config file; the current folder by default)")
    auto_approve: bool = Field(False, description="apply patches without showing the diff first")


def _switch(value: Any) -> Any:
    """``true`` means the defaults, ``false``/null means off."""
    if value is True:
        return {}
    if value is False:
        return None
    return value


class ToolsConfig(BaseModel):
    """Every tool setting of a prompt config."""

    model_config = ConfigDict(extra="forbid")

    python: PythonToolSettings | None = Field(None, description="the python tool (GPT-OSS "
                                              "built-in): true or its settings")
    browser: BrowserSettings | None = Field(None, description="the browser tool (GPT-OSS "
                                            "built-in): true or its settings")
    apply_patch: ApplyPatchSettings | None = Field(None, description="the apply_patch function: "
                                                   "true or its settings")
    functions: list[FunctionToolSpec] = Field(default_factory=list, description="your own "
                                              "function tools: a command or a Python callable")
    mcp_servers: list[McpServerSpec] = Field(default_factory=list, description="MCP servers "
                                             "whose tools are offered as functions")
    max_calls_per_turn: int = Field(8, ge=1, le=100, description="tool calls one turn may make "
                                    "before the model is told to answer")

    _on = field_validator("python", "browser", "apply_patch", mode="before")(
        classmethod(lambda cls, value: _switch(value)))

    def enabled(self) -> list[str]:
        names = [n for n in ("python", "browser", "apply_patch") if getattr(self, n) is not None]
        names += [f"functions.{f.name}" for f in self.functions]
        names += [f"mcp:{s.name}" for s in self.mcp_servers]
        return names

    def resolve_paths(self, base: Path) -> ToolsConfig:
        """Relative workspace / cwd paths anchored at ``base``."""
        changes: dict[str, Any] = {}
        if self.apply_patch is not None and not self.apply_patch.workspace.expanduser() \
                .is_absolute():
            changes["apply_patch"] = self.apply_patch.model_copy(
                update={"workspace": base / self.apply_patch.workspace})
        if self.python is not None and self.python.workdir is not None and not \
                self.python.workdir.expanduser().is_absolute():
            changes["python"] = self.python.model_copy(
                update={"workdir": base / self.python.workdir})
        functions = [f.model_copy(update={"cwd": base / f.cwd}) if f.cwd is not None and not
                     f.cwd.expanduser().is_absolute() else f for f in self.functions]
        servers = [s.model_copy(update={"cwd": base / s.cwd}) if s.cwd is not None and not
                   s.cwd.expanduser().is_absolute() else s for s in self.mcp_servers]
        changes.update(functions=functions, mcp_servers=servers)
        return self.model_copy(update=changes)

    def with_flags(self, python: bool = False, browser: bool = False,
                   apply_patch: bool = False) -> ToolsConfig:
        """Turn tools on from command-line flags (keeping configured settings)."""
        changes: dict[str, Any] = {}
        if python and self.python is None:
            changes["python"] = PythonToolSettings()
        if browser and self.browser is None:
            changes["browser"] = BrowserSettings()
        if apply_patch and self.apply_patch is None:
            changes["apply_patch"] = ApplyPatchSettings(workspace=Path.cwd())
        return self.model_copy(update=changes)
