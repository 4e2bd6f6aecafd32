"""Built-in WAV sink through soundfile (libsndfile)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lkplug import AudioContract, Component, MediaError, OutputFile, Param, Sink, hookimpl

# subtype -> (libsndfile subtype, the sample format the engine must deliver)
SUBTYPES = {"pcm16": ("PCM_16", "s16"), "pcm24": ("PCM_24", "flt"), "float": ("FLOAT", "flt")}


class WavSink(Sink):
    """Streams to disk as frames arrive; the file is created at the first frame, so a run that
    fails before any audio leaves nothing behind, and closing (also on Ctrl-C) fixes the header."""

    emits = "a WAV file"

    def __init__(self, path: str, subtype: str = "pcm16"):
        self.path = Path(path)
        self.subtype, sample_format = SUBTYPES[subtype]
        self.accepts = {"audio": AudioContract(sample_formats=(sample_format,))}
        self._file = None
        self._format = None

    def write(self, frame) -> None:
        if frame.kind != "audio":
            return  # a WAV holds audio only; video passes it by
        if self._file is None:
            self._open(frame)
        elif frame.format != self._format:
            raise MediaError(
                f"{self.path}: audio format changed mid-stream ({self._format} -> {frame.format})"
            )
        data = frame.data
        if data.dtype == np.float32 and self.subtype != "FLOAT":
            data = np.clip(data, -1.0, 1.0)  # libsndfile would wrap out-of-range floats
        self._file.write(data)

    def _open(self, frame) -> None:
        import soundfile

        if self.path.parent and not self.path.parent.exists():
            raise MediaError(f"cannot write {self.path}: folder {self.path.parent} does not exist")
        self._output = OutputFile(self.path)  # written aside, renamed to path when closed
        try:
            self._file = soundfile.SoundFile(
                self._output.temp, "w", frame.sample_rate, frame.channels, self.subtype, format="WAV"
            )
        except (OSError, RuntimeError) as exc:
            raise MediaError(f"cannot write {self.path}: {exc}") from None
        self._format = frame.format

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._output.complete()


# `lkplug inspect wav` shows the default contract (pcm16 wants s16; pcm24 and float want flt).
WavSink.accepts = {"audio": AudioContract(sample_formats=("s16",))}


@hookimpl
def lkplug_sinks():
    return [
        Component(
            "wav",
            WavSink,
            "Write a WAV file (soundfile), streamed to disk, valid on every exit path",
            params=(
                Param("path", str, help="output file"),
                Param("subtype", str, "pcm16", "sample encoding", choices=tuple(SUBTYPES)),
            ),
            positional="path",
        )
    ]
