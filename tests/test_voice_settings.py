"""The voice: section of the prompt config and the user config; old Moshi fields."""

from __future__ import annotations

import json

import pytest

from harmony_tui.config.prompt_config import load_prompt_config
from harmony_tui.config.user_config import load_user_config
from harmony_tui.errors import ConfigError
from harmony_tui.voice.settings import VoiceSettings, merge_voice, read_legacy_voice_file


def write(path, data):
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_defaults():
    voice = VoiceSettings()
    assert (voice.stt_engine, voice.stt_model, voice.tts_engine, voice.silence_seconds,
            voice.speak_answers, voice.confirm) == ("faster-whisper", "tiny.en", "auto", 0.8,
                                                    True, False)


def test_the_prompt_config_voice_section_is_validated(tmp_path):
    path = write(tmp_path / "p.json", {"voice": {
        "stt_model": "base.en", "tts_engine": "espeak-ng", "tts_voice": "en-us", "rate": 1.25,
        "input_device": "USB", "output_device": 3, "silence_threshold_db": -45,
        "silence_seconds": 1.2, "max_seconds": 20, "confirm": True, "speak_answers": False}})
    config, _overrides, warnings = load_prompt_config(path)
    assert warnings == []
    voice = config.voice
    assert (voice.stt_model, voice.tts_engine, voice.rate, voice.input_device,
            voice.output_device, voice.silence_seconds, voice.confirm) == (
        "base.en", "espeak-ng", 1.25, "USB", 3, 1.2, True)


@pytest.mark.parametrize(("voice", "message"), [
    ({"rate": 5}, "p.json: voice.rate=5: Input should be less than or equal to 2"),
    ({"silence_seconds": 0}, "voice.silence_seconds=0: Input should be greater than or equal"),
    ({"tts_engine": "pyttsx3"},
     "voice.tts_engine='pyttsx3': expected 'auto', 'piper', 'espeak-ng', 'say' or 'kokoro'"),
    ({"stt_engine": "moshi"}, "voice.stt_engine='moshi': expected 'faster-whisper' or"),
    ({"input_device": -1}, "voice.input_device=-1: expected a device index >= 0"),
    ({"input_device": True}, "voice.input_device=True: expected a device index or"),
    ({"stt_model": " "}, "voice.stt_model=' ': expected a model name or folder"),
    ({"max_seconds": "long"}, "voice.max_seconds='long': Input should be a valid number"),
])
def test_bad_values_are_one_line_errors_naming_the_field(tmp_path, voice, message):
    path = write(tmp_path / "p.json", {"voice": voice})
    with pytest.raises(ConfigError) as caught:
        load_prompt_config(path)
    text = str(caught.value)
    assert message in text and "\n" not in text


def test_unknown_voice_keys_are_warned_about(tmp_path):
    path = write(tmp_path / "p.json", {"voice": {"sillence_seconds": 2}})
    _config, _overrides, warnings = load_prompt_config(path)
    assert warnings == [f"{path}: voice: unknown setting 'sillence_seconds' ignored (did you "
                        "mean 'silence_seconds'?)"]


def test_the_user_config_has_a_voice_section(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("voice:\n  tts_engine: piper\n  rate: 0.9\n  colour: red\n",
                    encoding="utf-8")
    config, warnings = load_user_config(path)
    assert config.voice.tts_engine == "piper" and config.voice.rate == 0.9
    assert warnings == [f"{path}: voice: unknown setting 'colour' ignored"]
    path.write_text("voice:\n  rate: fast\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"voice\.rate='fast'"):
        load_user_config(path)


def test_layers_merge_field_by_field():
    user = VoiceSettings(rate=1.5, tts_engine="espeak-ng")
    prompt = VoiceSettings(rate=0.8)
    merged = merge_voice(user, prompt, {"input_device": "mic", "confirm": None})
    assert (merged.rate, merged.tts_engine, merged.input_device, merged.confirm) == (
        0.8, "espeak-ng", "mic", False)


def test_old_moshi_fields_map_where_they_can(tmp_path):
    whisper = tmp_path / "whisper"
    whisper.mkdir()
    (whisper / "model.bin").write_bytes(b"x")
    voice_file = tmp_path / "en_US-amy-low.onnx"
    path = write(tmp_path / "p.json", {"stt_model_path": str(whisper),
                                       "voice": {"tts_voice_path": str(voice_file)}})
    config, _overrides, warnings = load_prompt_config(path)
    assert config.voice.stt_model == str(whisper)
    assert (config.voice.tts_engine, config.voice.tts_voice) == ("piper", str(voice_file))
    assert warnings == [f"{path}: voice: stt_model_path is read as voice.stt_model (rename it)",
                        f"{path}: voice: tts_voice_path is read as voice.tts_voice (rename it)"]


def test_old_moshi_models_are_ignored_with_one_clear_line(tmp_path):
    path = write(tmp_path / "p.json", {"voice": {
        "stt_model_path": "kyutai/stt-1b-en_fr-mlx", "tts_voice_path": "voices/alba.safetensors"}})
    config, _overrides, warnings = load_prompt_config(path)
    assert config.voice == VoiceSettings()
    assert len(warnings) == 2 and all("\n" not in w for w in warnings)
    assert warnings[0] == (
        f"{path}: voice: stt_model_path='kyutai/stt-1b-en_fr-mlx' is ignored: Moshi/Kyutai "
        "models and voice files are not supported (moshi_mlx needs mlx < 0.27); use "
        "voice.stt_model with a faster-whisper model folder")
    assert "tts_voice_path='voices/alba.safetensors' is ignored" in warnings[1]
    assert "piper .onnx voice" in warnings[1]


def test_an_old_moshi_json_file_is_read_with_notes(tmp_path):
    path = write(tmp_path / "moshi.json", {
        "stt_model_path": "kyutai/stt-1b-en_fr-mlx", "tts_model_path": "kyutai/tts-1.6b",
        "tts_voice_path": "voices/en.safetensors", "quantize": 8, "rate": 1.1})
    voice, notes = read_legacy_voice_file(path)
    assert voice.rate == 1.1 and voice.stt_model == "tiny.en"
    assert len(notes) == 4
    assert notes[-1] == f"{path}: not supported (Moshi settings): quantize"
