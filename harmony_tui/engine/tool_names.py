"""How a tool call's Harmony recipient and an OpenAI tool-call name map onto each other.

Shared by the API server (OpenAI requests in) and the remote engine (OpenAI requests out), so
both read and write the same names: ``functions.NAME`` is ``NAME`` on the commentary channel;
gpt-oss's built-ins (``python``, ``browser.*``) keep their recipients on the analysis channel
unless a declared function has that name.
"""

from __future__ import annotations

from collections.abc import Collection

JSON_CONTENT = "<|constrain|>json"
BUILTIN_CONTENT_TYPES = {"python": "code", "browser": "json"}


def recipient_for(name: str, declared: Collection[str] = ()) -> tuple[str, str]:
    """(recipient, channel) of a tool-call name as OpenAI clients see it; ``declared`` are the
    request's function names (a function may be called ``python``)."""
    if name not in declared and (name == "python" or name.startswith("browser.")):
        return name, "analysis"
    return f"functions.{name.removeprefix('functions.')}", "commentary"


def default_content_type(recipient: str, channel: str) -> str | None:
    """The content type the model uses for a call it would write to ``recipient``."""
    if channel == "commentary":
        return JSON_CONTENT
    return BUILTIN_CONTENT_TYPES.get(recipient.split(".", 1)[0])


def tool_name(recipient: str) -> str:
    """The name clients see for a recipient: ``functions.X`` -> ``X``; built-ins unchanged."""
    return recipient.removeprefix("functions.")
