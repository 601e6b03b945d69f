"""The settings reference (``docs/config-reference.md``), generated from the pydantic schemas.

Regenerate with ``python -m harmony_tui.config.reference > docs/config-reference.md``; a test
fails when the file is out of date.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined


def _type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("pathlib.", "")
    text = text.replace("<class '", "").replace("'>", "")
    for long, short in (("harmony_tui.tools.python_tool.", ""), ("harmony_tui.tools.browser.", ""),
                        ("harmony_tui.tools.config.", ""), ("harmony_tui.tools.function_tools.",
                                                            ""),
                        ("harmony_tui.tools.mcp_tools.", ""), ("harmony_tui.config.", ""),
                        ("prompt_config.", ""), ("user_config.", ""), ("PosixPath", "Path"),
                        ("harmony_tui.voice.settings.", "")):
        text = text.replace(long, short)
    return text


def _default(info: Any) -> str:
    if info.default_factory is not None:
        value = info.default_factory()
        if isinstance(value, BaseModel):
            return "(see below)"
    else:
        value = info.default
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "none"
    if isinstance(value, str) and value.startswith("/"):
        return "(this Python)" if "python" in value else value
    return f"`{json.dumps(value, default=str)}`"


def _limits(info: Any) -> str:
    parts = []
    for meta in info.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(meta, attr, None)
            if value is not None:
                parts.append(f"{sign} {value}")
        pattern = getattr(meta, "pattern", None)
        if pattern:
            parts.append(f"matches `{pattern}`")
    return ", ".join(parts)


def table(model: type[BaseModel]) -> str:
    rows = ["| Field | Type | Default | Allowed | Meaning |", "|---|---|---|---|---|"]
    for name, info in model.model_fields.items():
        description = (info.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{name}` | {_type_name(info.annotation).replace('|', '∣')} | "
                    f"{_default(info)} | {_limits(info)} | {description} |")
    return "\n".join(rows)


def render_reference() -> str:
    from harmony_tui.config.profiles import Profile
    from harmony_tui.config.prompt_config import PromptConfig
    from harmony_tui.config.user_config import ServerSettings, UserConfig
    from harmony_tui.engine.params import GenerationParams
    from harmony_tui.tools.browser import BrowserSettings
    from harmony_tui.tools.config import ApplyPatchSettings, ToolsConfig
    from harmony_tui.tools.function_tools import FunctionToolSpec
    from harmony_tui.tools.mcp_tools import McpServerSpec
    from harmony_tui.tools.python_tool import PythonToolSettings
    from harmony_tui.voice.settings import VoiceSettings

    sections = [
        ("Prompt config: prompt, display and session fields", PromptConfig,
         "Top-level keys of a prompt config file (JSON or YAML)."),
        ("Prompt config: generation fields", GenerationParams,
         "Also top-level keys of a prompt config; most are command-line flags too "
         "(`--top-k 40`) and rows of the settings sidebar."),
        ("tools", ToolsConfig, "The `tools:` mapping of a prompt config."),
        ("tools.python", PythonToolSettings, "`python: true` uses these defaults."),
        ("tools.browser", BrowserSettings, "`browser: true` uses these defaults."),
        ("tools.apply_patch", ApplyPatchSettings, "`apply_patch: true` uses these defaults."),
        ("tools.functions[]", FunctionToolSpec, "Each entry needs `command` or `callable`."),
        ("tools.mcp_servers[]", McpServerSpec, "Each entry needs `command` (stdio) or `url` "
         "(streamable HTTP)."),
        ("Profiles file: each profile", Profile, "`profiles.yaml`: profile name -> these keys."),
        ("User config (`config.yaml`)", UserConfig, "In the config dir "
         "(`harmony-tui` under the platform's config folder, or `HARMONY_TUI_CONFIG_DIR`)."),
        ("User config: server", ServerSettings, "The `server:` mapping of `config.yaml`."),
        ("voice", VoiceSettings, "The `voice:` mapping of a prompt config or of `config.yaml` "
         "(see `voice.md`)."),
    ]
    parts = ["# Settings reference", "",
             "Generated from the schemas by `python -m harmony_tui.config.reference`; do not edit "
             "by hand. See `config.md` for how the files fit together.", ""]
    for title, model, intro in sections:
        parts += [f"## {title}", "", intro, "", table(model), ""]
    return "\n".join(parts)


if __name__ == "__main__":
    print(render_reference(), end="")
