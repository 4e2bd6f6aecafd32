"""Built-in WAV sink through soundfile (libsndfile)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from lkplug import (
    AudioContract,
    AudioFrame,
    Component,
    MediaError,
    OutputFile,
    Param,
    Sink,
    UsageError,
    hookimpl,
)
from lkplug.convert import clip_float
from lkplug.frames import LAYOUTS
from lkplug.paths import check_folder, is_pipe

SFC_SET_UPDATE_HEADER_AUTO = 0x1061  # sndfile.h; soundfile does not name it
SFC_SET_CHANNEL_MAP_INFO = 0x1101
# FFmpeg's channel names -> sndfile.h's SF_CHANNEL_MAP_*, as libsndfile's WAVEX writer turns them into
# WAVE_FORMAT_EXTENSIBLE mask bits (it takes LEFT/RIGHT/CENTER, not FRONT_*, for the front three)
CHANNEL_MAP = {
    "FL": 2, "FR": 3, "FC": 4, "BC": 8, "BL": 9, "BR": 10, "LFE": 11, "FLC": 12, "FRC": 13, "SL": 14,
    "SR": 15, "TC": 16, "TFL": 17, "TFR": 18, "TFC": 19, "TBL": 20, "TBR": 21, "TBC": 22,
}  # fmt: skip

# subtype -> (libsndfile subtype, the sample format the engine must deliver, the format the file
# keeps by FFmpeg's name: pcm_s24le takes s32; it decides the engine's downmix scaling): the one table
# the sink's contract, `lkplug inspect wav`'s "Accepts" and the subtype= help are all made from
SUBTYPES = {
    "pcm16": ("PCM_16", "s16", "s16"),
    "pcm24": ("PCM_24", "flt", "s32"),
    "float": ("FLOAT", "flt", "flt"),
}


def contract(subtype: str) -> AudioContract:
    """What the sink takes for ``subtype`` (a key of SUBTYPES): any rate and layout, one sample format."""
    return AudioContract(sample_formats=(SUBTYPES[subtype][1],))


def _takes() -> str:
    """``pcm16 takes s16; pcm24, float take flt``, from SUBTYPES."""
    by_format: dict[str, list[str]] = {}
    for name, (_, sample_format, _) in SUBTYPES.items():
        by_format.setdefault(sample_format, []).append(name)
    return "; ".join(
        f"{', '.join(names)} take{'s' if len(names) == 1 else ''} {sample_format}"
        for sample_format, names in by_format.items()
    )


class WavSink(Sink):
    """Streams to disk as frames arrive; the file is created at the first frame, so a run that
    fails before any audio leaves nothing behind, and closing (also on Ctrl-C) fixes the header.
    A WAV numbers samples and has no timestamps: a hole in the audio's timestamps (lost packets,
    DTX) is written as silence, so the audio after it stays at its time."""

    emits = "a WAV file"

    def __init__(self, path: str, subtype: str = "pcm16"):
        if is_pipe(path):  # ffmpeg writes a WAV there with its sizes unknown; libsndfile cannot
            raise UsageError(
                f"wav: {path} is a pipe, where libsndfile cannot finish a WAV (it writes the sizes back"
                f" at the start); use file:{path},format=wav (FFmpeg's WAV muxer, as ffmpeg -f wav)"
            )
        self.path = Path(path)
        self.subtype, _, self._stored = SUBTYPES[subtype]
        self.accepts = {"audio": contract(subtype)}
        self._file = None
        self._format = None
        self.clipped = 0  # float samples beyond full scale, clipped for an integer subtype
        self._next: int | None = None  # timestamp (in samples) where what is written ends
        self._started = None  # the audio format the engine announced
        self.writes = (path,)

    def stored_sample_format(self, fmt) -> str:
        """The sample format this WAV keeps (FFmpeg's name: s16, s32 for 24-bit, flt)."""
        return self._stored

    def start(self, formats) -> None:
        # before the source starts: a recording of a room must not wait an hour to learn this
        check_folder(self.path)
        self._started = formats.get("audio")

    def end(self) -> None:
        """No frame came (an input too short for one whole output sample): a valid empty WAV."""
        fmt = self._started
        if self._file is None and fmt is not None:
            dtype = np.int16 if fmt.sample_format == "s16" else np.float32
            self._open(AudioFrame(np.zeros((0, fmt.channels), dtype), fmt.rate, layout=fmt.layout))

    def write(self, frame) -> None:
        if frame.kind != "audio":
            return  # a WAV holds audio only; video passes it by
        if self._file is None:
            self._open(frame)
        elif frame.format != self._format:
            raise MediaError(
                f"{self.path}: audio changed mid-stream at {frame.time:.2f} s ({self._format} ->"
                f" {frame.format}); a WAV holds one format"
            )
        data = frame.data
        if data.dtype == np.float32 and self.subtype != "FLOAT":
            data, clipped = clip_float(data)  # libsndfile would wrap out-of-range floats
            self.clipped += clipped
        with self._writing():
            if self._next is not None and frame.timestamp > self._next:
                self._file.write(np.zeros((frame.timestamp - self._next, data.shape[1]), data.dtype))
            self._file.write(data)
        self._next = max(self._next or 0, frame.timestamp + len(data))

    @contextmanager
    def _writing(self):
        """libsndfile's errors as one line naming the output, with the system's reason (soundfile
        says only "System error."; libsndfile keeps "No space left on device" per handle)."""
        import soundfile

        try:
            yield
        except soundfile.LibsndfileError as exc:
            handle = self._file._file if self._file is not None else soundfile._ffi.NULL
            said = soundfile._ffi.string(soundfile._snd.sf_strerror(handle)).decode(errors="replace")
            reason = said.removeprefix("System error : ").rstrip(".") or exc.error_string
            raise MediaError(f"cannot write {self.path}: {reason}") from None

    def _open(self, frame) -> None:
        import soundfile

        check_folder(self.path)
        # more than two channels: WAVE_FORMAT_EXTENSIBLE with the layout's channel mask, as FFmpeg's
        # WAV muxer writes it (mono and stereo stay plain PCM there too)
        names = LAYOUTS.get(frame.layout) or frame.layout.split("+")
        channel_map = [CHANNEL_MAP.get(name) for name in names] if frame.channels > 2 else []
        extensible = len(channel_map) == frame.channels and None not in channel_map
        self._output = OutputFile(self.path)  # in a batch: written aside, renamed when complete
        # bytes: soundfile cannot encode a non-UTF-8 name; "./" before a relative one: libsndfile
        # takes the name "-" (which wav:./- becomes as a Path) for standard output
        with self._writing():
            self._file = soundfile.SoundFile(
                os.fsencode(os.path.join(".", self._output.temp)),
                "w",
                frame.sample_rate,
                frame.channels,
                self.subtype,
                format="WAVEX" if extensible else "WAV",
            )
        snd, ffi = soundfile._snd, soundfile._ffi
        if extensible:
            # libsndfile writes the mask from this map (it answers 0 when it cannot make one)
            given = ffi.new("int[]", channel_map)
            if not snd.sf_command(self._file._file, SFC_SET_CHANNEL_MAP_INFO, given, ffi.sizeof(given)):
                self._file.close()
                self._file = None
                self._output.discard()
                raise MediaError(
                    f"cannot write {self.path}: libsndfile takes no channel mask for {frame.layout}"
                )
        # libsndfile rewrites the header after every write, so the file stays valid even if the
        # process is killed or a native library aborts before close() (sndfile.h's SF_TRUE)
        snd.sf_command(self._file._file, SFC_SET_UPDATE_HEADER_AUTO, ffi.NULL, 1)
        self._format = frame.format

    def close(self) -> None:
        if self._file is not None:
            try:
                with self._writing():
                    self._file.close()
            finally:
                self._file = None
            self._output.complete()


# `lkplug inspect wav`: every format some subtype= takes (which one takes which: subtype='s help)
WavSink.accepts = {
    "audio": AudioContract(sample_formats=tuple(dict.fromkeys(fmt for _, fmt, _ in SUBTYPES.values())))
}


@hookimpl
def lkplug_sinks():
    return [
        Component(
            "wav",
            WavSink,
            "Write a WAV file (soundfile), streamed to disk, valid on every exit path",
            params=(
                Param("path", str, help="output file"),
                Param("subtype", str, "pcm16", f"sample encoding ({_takes()})", choices=tuple(SUBTYPES)),
            ),
            positional="path",
        )
    ]
