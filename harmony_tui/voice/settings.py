"""The ``voice:`` settings section (prompt config and user config), one pydantic schema.

The old tool's Moshi fields are accepted where they map: ``stt_model_path`` (a faster-whisper
model folder) -> ``stt_model``; ``tts_model_path`` / ``tts_voice_path`` (a piper ``.onnx``
voice) -> ``tts_voice``. Moshi/Kyutai models and voice reference files cannot be used (moshi_mlx
pins mlx < 0.27); ``legacy_notes`` says so in one line each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LEGACY_FIELDS = ("stt_model_path", "tts_model_path", "tts_voice_path")
DeviceSetting = int | str | None


class VoiceSettings(BaseModel):
    """Push-to-talk voice: engines, devices, end-pointing and what is spoken."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    stt_engine: Literal["faster-whisper", "mlx-audio"] = Field(
        "faster-whisper", description="speech-to-text engine: faster-whisper (CPU, int8) or "
        "mlx-audio (Apple Silicon, the voice-mlx extra)")
    stt_model: str = Field(
        "tiny.en", description="speech model: a faster-whisper size (tiny.en, base.en, small, "
        "...), a Hugging Face repo id or a local model folder")
    tts_engine: Literal["auto", "piper", "espeak-ng", "say", "kokoro"] = Field(
        "auto", description="text-to-speech engine; auto = piper when a voice is installed, "
        "else say on macOS, else espeak-ng")
    tts_voice: str | None = Field(
        None, description="the voice: a piper .onnx file or name (default en_US-joe-medium), "
        "an espeak-ng or say voice name, a Kokoro voice")
    rate: float = Field(1.0, ge=0.5, le=2.0, description="speaking speed (1.0 normal)")
    input_device: DeviceSetting = Field(
        None, description="microphone: device index or (part of) its name; none = the default "
        "(see harmony-tui mic-check)")
    output_device: DeviceSetting = Field(
        None, description="loudspeaker: device index or (part of) its name; none = the default")
    silence_threshold_db: float = Field(
        -50.0, ge=-90.0, le=0.0, description="input level (RMS dBFS) below which audio counts "
        "as silence")
    silence_seconds: float = Field(
        0.8, ge=0.1, le=10.0, description="trailing silence that ends listening")
    max_seconds: float = Field(30.0, ge=1.0, le=600.0,
                               description="listening stops after this long")
    vad_aggressiveness: int = Field(
        2, ge=0, le=3, description="webrtcvad strictness: 0 keeps most audio as speech, 3 the "
        "least")
    confirm: bool = Field(
        False, description="show the transcript for editing before it is sent")
    speak_answers: bool = Field(True, description="speak the final answers aloud")

    @model_validator(mode="before")
    @classmethod
    def _legacy_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not any(k in data for k in LEGACY_FIELDS):
            return data
        data = dict(data)
        mapped = legacy_mapping(data)
        for key in LEGACY_FIELDS:
            data.pop(key, None)
        for key, value in mapped.items():
            data.setdefault(key, value)
        return data

    @field_validator("input_device", "output_device", mode="before")
    @classmethod
    def _device(cls, value: Any) -> Any:
        if isinstance(value, bool) or (value is not None and not isinstance(value, int | str)):
            raise ValueError("expected a device index or (part of) a device name")
        if isinstance(value, int) and value < 0:
            raise ValueError("expected a device index >= 0")
        return value.strip() or None if isinstance(value, str) else value

    @field_validator("stt_model")
    @classmethod
    def _model(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("expected a model name or folder")
        return value.strip()


def _is_piper_voice(value: Any) -> bool:
    return isinstance(value, str) and value.endswith(".onnx")


def _is_whisper_folder(value: Any) -> bool:
    return isinstance(value, str) and (Path(value).expanduser() / "model.bin").is_file()


def legacy_mapping(data: dict[str, Any]) -> dict[str, Any]:
    """The new fields that the old Moshi fields in ``data`` stand for (where they map)."""
    mapped: dict[str, Any] = {}
    if _is_whisper_folder(data.get("stt_model_path")):
        mapped["stt_model"] = str(data["stt_model_path"])
    for key in ("tts_voice_path", "tts_model_path"):
        if _is_piper_voice(data.get(key)) and "tts_voice" not in mapped:
            mapped["tts_voice"] = str(data[key])
            mapped["tts_engine"] = "piper"
    return mapped


def legacy_notes(data: Any, source: str) -> list[str]:
    """One line per old Moshi field: what it became, or that it is not supported."""
    if not isinstance(data, dict):
        return []
    mapped = legacy_mapping(data)
    notes = []
    for key in LEGACY_FIELDS:
        if key not in data:
            continue
        value = data[key]
        target = "stt_model" if key == "stt_model_path" else "tts_voice"
        kind = "a faster-whisper model folder" if key == "stt_model_path" else "a piper .onnx voice"
        if mapped.get(target) == str(value):
            notes.append(f"{source}: {key} is read as voice.{target} (rename it)")
        else:
            notes.append(f"{source}: {key}={value!r} is ignored: Moshi/Kyutai models and voice "
                         "files are not supported (moshi_mlx needs mlx < 0.27); use voice."
                         f"{target} with {kind}")
    return notes


def merge_voice(*layers: VoiceSettings | dict[str, Any] | None) -> VoiceSettings:
    """Later layers win, field by field (only fields a layer set): user config < prompt
    config < command line."""
    values: dict[str, Any] = {}
    for layer in layers:
        if layer is None:
            continue
        if isinstance(layer, VoiceSettings):
            values.update(layer.model_dump(include=layer.model_fields_set))
        else:
            values.update({k: v for k, v in layer.items() if v is not None})
    return VoiceSettings.model_validate(values)


def section_warnings(data: dict[str, Any], source: str) -> tuple[dict[str, Any], list[str]]:
    """A config mapping with old top-level Moshi fields moved into ``voice``, and the warnings
    for the ``voice`` section (unknown keys, old fields)."""
    from harmony_tui.config.files import unknown_key_warnings

    top = {k: data[k] for k in LEGACY_FIELDS if k in data}
    if top:
        voice = data.get("voice")
        data = {k: v for k, v in data.items() if k not in LEGACY_FIELDS}
        data["voice"] = {**top, **voice} if isinstance(voice, dict) else top
    voice = data.get("voice")
    if not isinstance(voice, dict):
        return data, []
    known = set(VoiceSettings.model_fields) | set(LEGACY_FIELDS)
    return data, (unknown_key_warnings(voice, known, f"{source}: voice")
                  + legacy_notes(voice, f"{source}: voice"))


def read_legacy_voice_file(path: Path) -> tuple[VoiceSettings, list[str]]:
    """An old ``moshi.json`` read as voice settings (what maps) and one note per field that
    does not. Raises ConfigError for an unreadable file or a bad value."""
    from pydantic import ValidationError

    from harmony_tui.config.files import read_mapping
    from harmony_tui.config.prompt_config import describe_validation_error
    from harmony_tui.errors import ConfigError

    data = read_mapping(Path(path))
    voice = {k: v for k, v in data.items() if k in VoiceSettings.model_fields}
    voice.update({k: v for k, v in data.items() if k in LEGACY_FIELDS})
    notes = legacy_notes(data, str(path))
    ignored = sorted(set(data) - set(voice))
    if ignored:
        notes.append(f"{path}: not supported (Moshi settings): {', '.join(ignored)}")
    try:
        return VoiceSettings.model_validate(voice), notes
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, str(path), voice)) from err
