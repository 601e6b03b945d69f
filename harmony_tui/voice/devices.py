"""Sound cards through sounddevice (PortAudio): device listing, ``SoundDeviceSource`` and
``SoundDeviceSink``. ``import sounddevice`` raises OSError where the PortAudio library is
missing, so it is imported here, lazily, and turned into one clear line."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from harmony_tui.voice.audio import SAMPLE_RATE, resample, to_int16
from harmony_tui.voice.audio_io import AudioSink, AudioSource
from harmony_tui.voice.errors import PORTAUDIO_HINT, AudioDeviceError

Kind = Literal["input", "output"]
DeviceSpec = str | int | None


def import_sounddevice() -> Any:
    """The sounddevice module, or AudioDeviceError saying what to install."""
    try:
        import sounddevice
    except OSError as err:  # the package is there, the PortAudio library is not
        raise AudioDeviceError(f"PortAudio library not found ({err}); {PORTAUDIO_HINT}") from err
    except ImportError as err:
        raise AudioDeviceError("the Python package 'sounddevice' is not installed: "
                               "pip install sounddevice") from err
    return sounddevice


@dataclass(frozen=True)
class DeviceInfo:
    """One PortAudio device."""

    index: int
    name: str
    hostapi: str
    inputs: int
    outputs: int
    default_rate: float
    default_input: bool = False
    default_output: bool = False

    def describe(self) -> str:
        marks = "".join(m for m, on in (("<", self.default_input), (">", self.default_output))
                        if on)
        return (f"{self.index:>3} {marks:<2} {self.name} ({self.hostapi}; {self.inputs} in, "
                f"{self.outputs} out, {self.default_rate:g} Hz)")


def list_devices() -> list[DeviceInfo]:
    """Every device PortAudio sees. Raises AudioDeviceError when PortAudio is missing."""
    sd = import_sounddevice()
    try:
        devices = sd.query_devices()
        apis = sd.query_hostapis()
        default_in, default_out = (sd.default.device if isinstance(sd.default.device, list | tuple)
                                   else (sd.default.device, sd.default.device))
    except sd.PortAudioError as err:
        raise AudioDeviceError(f"cannot list audio devices: {err}") from err
    return [DeviceInfo(index=i, name=d["name"], hostapi=apis[d["hostapi"]]["name"],
                       inputs=d["max_input_channels"], outputs=d["max_output_channels"],
                       default_rate=d["default_samplerate"], default_input=i == default_in,
                       default_output=i == default_out)
            for i, d in enumerate(devices)]


def find_device(spec: DeviceSpec, kind: Kind) -> DeviceInfo:
    """The device named by ``spec`` (index, exact name or unique part of a name; None = the
    default, else the first with channels of ``kind``). Raises AudioDeviceError."""
    devices = list_devices()
    usable = [d for d in devices if (d.inputs if kind == "input" else d.outputs) > 0]
    if not usable:
        raise AudioDeviceError(
            f"no audio {kind} device found (PortAudio sees {len(devices)} device(s)); "
            f"connect a {'microphone' if kind == 'input' else 'speaker'} or check your sound "
            "system (Linux: is your user allowed to use ALSA/PulseAudio/PipeWire?)")
    if spec is None or spec == "":
        default = [d for d in usable if (d.default_input if kind == "input"
                                         else d.default_output)]
        return (default or usable)[0]
    if isinstance(spec, int) or str(spec).isdigit():
        index = int(spec)
        for device in usable:
            if device.index == index:
                return device
        raise AudioDeviceError(f"{kind}_device={index}: no {kind} device has that index "
                               f"({_names(usable)})")
    exact = [d for d in usable if d.name == spec]
    if exact:
        return exact[0]
    partial = [d for d in usable if str(spec).lower() in d.name.lower()]
    if len(partial) == 1:
        return partial[0]
    what = "matches several" if partial else "matches no"
    raise AudioDeviceError(f"{kind}_device={spec!r} {what} {kind} device "
                           f"({_names(partial or usable)})")


def _names(devices: list[DeviceInfo]) -> str:
    shown = ", ".join(f"{d.index}: {d.name}" for d in devices[:8])
    return shown + (", …" if len(devices) > 8 else "")


class SoundDeviceSource(AudioSource):
    """A PortAudio input device, recorded at 16 kHz mono (resampled when the device cannot).

    A stream that ends by itself (device unplugged, PortAudio error) or stalls for
    ``stall_seconds`` makes ``read`` raise AudioDeviceError after every block already recorded
    has been returned.
    """

    def __init__(self, device: DeviceSpec = None, *, dtype: str = "int16",
                 block_seconds: float = 0.03, stall_seconds: float = 2.0) -> None:
        if dtype not in ("int16", "float32"):
            raise ValueError(f"dtype={dtype!r}: expected int16 or float32")
        self.device_spec = device
        self.dtype = dtype
        self.block_seconds = block_seconds
        self.stall_seconds = stall_seconds
        self.name = "input device"
        self.overflows = 0
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue()
        self._pending = np.zeros(0, np.int16)
        self._stream: Any = None
        self._rate = SAMPLE_RATE
        self._closing = False
        self._failed: str | None = None

    def open(self) -> None:
        sd = import_sounddevice()
        info = find_device(self.device_spec, "input")
        self.name = info.name
        self._closing = False
        self._failed = None
        for rate in (SAMPLE_RATE, int(info.default_rate)):
            try:
                self._stream = sd.InputStream(
                    samplerate=rate, channels=1, dtype=self.dtype, device=info.index,
                    blocksize=int(rate * self.block_seconds), callback=self._callback,
                    finished_callback=self._finished)
                self._rate = rate
                break
            except sd.PortAudioError as err:
                error = err
        else:
            raise AudioDeviceError(f"cannot record from {info.name!r}: {error}")
        try:
            self._stream.start()
        except sd.PortAudioError as err:
            raise AudioDeviceError(f"cannot start recording from {info.name!r}: {err}") from err

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status and status.input_overflow:
            self.overflows += 1
        self._queue.put(to_int16(indata.copy()))

    def _finished(self) -> None:
        if not self._closing:
            self._failed = (f"input device {self.name!r} stopped delivering audio "
                            "(unplugged or failed)")
        self._queue.put(None)

    def abort(self) -> None:
        """Abort the stream as a failing device would (the next reads report it)."""
        if self._stream is not None:
            self._stream.abort()

    def read(self, frames: int) -> np.ndarray | None:
        if self._stream is None:
            self.open()
        wanted = frames if self._rate == SAMPLE_RATE else round(frames * self._rate / SAMPLE_RATE)
        parts = [self._pending]
        have = self._pending.size
        deadline = time.monotonic() + self.stall_seconds
        ended = False
        while have < wanted:
            try:
                block = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self._failed = self._failed or (
                    f"input device {self.name!r} delivered no audio for "
                    f"{self.stall_seconds:g} s (unplugged or blocked by another program?)")
                ended = True
                break
            if block is None:
                ended = True
                self._queue.put(None)  # stays ended
                break
            parts.append(block)
            have += block.size
            deadline = time.monotonic() + self.stall_seconds
        data = np.concatenate(parts)
        out, self._pending = data[:wanted], data[wanted:]
        if out.size:
            return resample(out, self._rate, SAMPLE_RATE)
        if ended and self._failed:
            raise AudioDeviceError(self._failed)
        return None

    def close(self) -> None:
        self._closing = True
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort()
                stream.close()
            except Exception:  # closing a failed device: nothing more to do
                pass


class SoundDeviceSink(AudioSink):
    """A PortAudio output device. The stream stays open between plays of the same rate."""

    BLOCK_SECONDS = 0.05

    def __init__(self, device: DeviceSpec = None) -> None:
        self.device_spec = device
        self.name = "output device"
        self._stream: Any = None
        self._stream_rate = 0
        self._source_rate = 0
        self._stop_count = 0
        self._lock = threading.Lock()

    def _ensure_stream(self, sample_rate: int) -> None:
        if self._stream is not None and self._source_rate == sample_rate:
            return
        self._close_stream()
        sd = import_sounddevice()
        info = find_device(self.device_spec, "output")
        self.name = info.name
        for rate in (sample_rate, int(info.default_rate)):
            try:
                stream = sd.OutputStream(samplerate=rate, channels=1, dtype="int16",
                                         device=info.index)
                stream.start()
            except sd.PortAudioError as err:
                error = err
                continue
            self._stream, self._stream_rate, self._source_rate = stream, rate, sample_rate
            return
        raise AudioDeviceError(f"cannot play on {info.name!r}: {error}")

    def play(self, audio: np.ndarray, sample_rate: int) -> bool:
        stop_count = self._stop_count
        with self._lock:
            self._ensure_stream(sample_rate)
            samples = resample(to_int16(audio), sample_rate, self._stream_rate)
            step = int(self._stream_rate * self.BLOCK_SECONDS)
            sd = import_sounddevice()
            for start in range(0, samples.size, step):
                if self._stop_count != stop_count:
                    self._close_stream()  # abort: drops what the device still buffers
                    return False
                try:
                    self._stream.write(samples[start:start + step].reshape(-1, 1))
                except (sd.PortAudioError, AttributeError) as err:
                    self._close_stream()
                    raise AudioDeviceError(f"output device {self.name!r} failed while "
                                           f"playing: {err}") from err
            return self._stop_count == stop_count

    def stop(self) -> None:
        self._stop_count += 1

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort()
                stream.close()
            except Exception:  # a failed device: nothing more to do
                pass

    def close(self) -> None:
        self.stop()
        with self._lock:
            self._close_stream()
