"""Voice errors: one line naming the device, file or model, and what to do."""

from __future__ import annotations

from harmony_tui.errors import HarmonyTuiError

PORTAUDIO_HINT = ("install the PortAudio library: Debian/Ubuntu `sudo apt install libportaudio2`, "
                  "macOS `brew install portaudio`")
VOICE_EXTRA_HINT = 'pip install "harmony-tui[voice]"'


class VoiceError(HarmonyTuiError):
    """A voice component cannot work (no device, missing engine or model, bad audio file)."""


class AudioDeviceError(VoiceError):
    """No usable audio device, PortAudio missing, or a stream failed (device unplugged)."""


class ModelMissingError(VoiceError):
    """A speech model (STT or TTS) is missing or corrupt."""


class EngineMissingError(VoiceError):
    """A speech engine's package is not installed."""


def missing_engine(package: str, engine: str, extra: str = "voice") -> EngineMissingError:
    """The error for an engine whose Python package cannot be imported."""
    return EngineMissingError(
        f"{engine} needs the Python package {package!r}: "
        f'pip install "harmony-tui[{extra}]"')


def first_line(err: BaseException) -> str:
    """The first line of an error's message (at most 200 characters), or its type's name."""
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__
