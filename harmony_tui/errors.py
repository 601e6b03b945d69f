"""User-facing errors: each carries one line that names the culprit and what was expected."""

from __future__ import annotations


class HarmonyTuiError(Exception):
    """An error caused by user input or the environment; shown as one line, never a traceback."""

    exit_code = 2


class ModelLoadError(HarmonyTuiError):
    """A model could not be found, validated or loaded."""


class ConfigError(HarmonyTuiError):
    """A config file or a setting is invalid."""


class ContextLengthExceeded(HarmonyTuiError):
    """The prompt cannot fit in the context window even after dropping old turns."""

    def __init__(self, prompt_tokens: int, limit: int, detail: str = "") -> None:
        self.prompt_tokens = prompt_tokens
        self.limit = limit
        msg = (
            f"the prompt needs {prompt_tokens} tokens but the context limit is {limit} "
            f"(max_context_tokens)"
        )
        super().__init__(f"{msg}; {detail}" if detail else msg)


class ChatFileError(HarmonyTuiError):
    """A chat file cannot be read as a chat; it is left untouched."""



def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters, so an error never echoes a huge value
    (an aliased YAML structure can expand to gigabytes when printed in full)."""
    import reprlib

    shortener = reprlib.Repr()
    shortener.maxlevel, shortener.maxstring, shortener.maxother = 3, limit, limit
    shortener.maxlist = shortener.maxdict = shortener.maxtuple = shortener.maxset = 6
    text = shortener.repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
