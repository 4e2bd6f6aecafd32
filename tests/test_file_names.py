"""File names in any bytes the OS allows (issue 17): a name that is not UTF-8 reaches Python as
surrogate escapes, which soundfile could not encode ('unexpected UnicodeEncodeError')."""

from __future__ import annotations

import os
import sys

import av
import pytest
import soundfile

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="file names are bytes on Linux")


def name(raw: bytes) -> str:
    return os.fsdecode(raw)  # as Python shows it: b"\xff" is "\udcff"


def test_wav_and_file_sinks_and_sources_take_non_utf8_names(lkplug_cli, tmp_path):
    wav, mkv, copy = (
        tmp_path / name(b"\xff\xfe tone.wav"),
        tmp_path / name(b"\xfd.mkv"),
        tmp_path / name(b"\xfa.wav"),
    )
    for args in (
        ["--source", "tone:freq=440,duration=1", "--sink", f"wav:{wav}"],
        ["--source", "tone:freq=440,duration=1", "--sink", f"file:{mkv}"],
        ["--source", f"file:{wav}", "--sink", f"wav:{copy}"],  # read through soundfile
        ["--source", f"file:{mkv}", "--sink", "null"],  # read through FFmpeg
    ):
        result = lkplug_cli("run", *args)
        assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(os.fsencode(tmp_path))) == [b"\xfa.wav", b"\xfd.mkv", b"\xff\xfe tone.wav"]
    for path in (wav, copy):
        data, rate = soundfile.read(os.fsencode(path))
        assert (len(data), rate) == (48000, 48000)
    with av.open(str(mkv)) as container:  # PyAV takes the str as it is
        samples = sum(frame.samples for frame in container.decode(audio=0))
    assert samples == 48000  # ffmpeg -i on the same file decodes 1.00 s
