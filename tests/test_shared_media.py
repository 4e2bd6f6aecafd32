"""Every file in ../shared/media/expect.json gets its verdict's behaviour (rules at the top of that
file). Files that must decode are decoded in-process through the ``file`` source; the others go
through the real CLI, which must fail in one line or write a valid file, and never hang. The count
of files per verdict is printed at the end of the run (``pytest_terminal_summary`` in conftest)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import soundfile
from conftest import SHARED_MEDIA, assert_one_line_error, run_lkplug

from lkplug import LkplugError, RunContext
from lkplug_av.source import FileSource

pytestmark = pytest.mark.shared_media


def _entries() -> list:
    expect = SHARED_MEDIA / "expect.json"
    if not expect.is_file():
        return [pytest.param(None, id="shared-media-absent")]
    return [pytest.param(entry, id=entry["file"]) for entry in json.loads(expect.read_text())["files"]]


def decode(path, stream: str) -> dict:
    """Everything the file source delivers from one stream, summarised."""
    source = FileSource(str(path), stream=stream)
    source.bind(RunContext())

    async def collect():
        frames = []
        try:
            async for frame in source.frames():
                frames.append(frame)
        finally:
            stream = next(iter(source.streams.values()), None)
            await source.aclose()
        return frames, stream

    frames, stream = asyncio.run(collect())
    codec = stream.codec.canonical_name if stream is not None else source.reader  # "soundfile": plain WAV
    return {"frames": frames, "codec": codec, "probe": source.formats, "warnings": source.warnings}


def audio_facts(frames) -> tuple[set, set, int, float]:
    rates = {f.sample_rate for f in frames}
    channels = {f.channels for f in frames}
    samples = sum(f.samples for f in frames)
    peak = max(float(np.abs(f.data.astype(np.float32)).max()) for f in frames if f.samples)
    if frames[0].sample_format == "s16":
        peak /= 32768
    return rates, channels, samples, peak


def check_ok(path, entry) -> None:
    for number, stream in enumerate(entry["audio"]):
        result = decode(path, f"a:{number}")
        assert result["codec"] in (stream["codec"], "soundfile")
        rates, channels, samples, peak = audio_facts(result["frames"])
        assert rates == set(stream.get("pyav_rates") or [stream["sample_rate"]])
        assert channels == set(stream.get("pyav_channels") or [stream["channels"]])
        expected = stream.get("samples_per_channel_pyav_ffmpeg8") or stream["samples_per_channel_ffmpeg51"]
        assert abs(samples - expected) <= max(2048, expected * 0.01), (samples, expected)
        if "silent" in entry["tags"]:
            assert 20 * np.log10(max(peak, 1e-10)) <= -80  # float decoders leave residue near -88 dBFS
    pictures = [v for v in entry["video"] if not v.get("attached_pic")]
    if pictures:
        result = decode(path, "v:0")
        assert result["frames"]
        header = result["probe"]["video"]  # decoders disagree on some odd sizes; the stream's is listed
        assert (header.width, header.height) == (pictures[0]["width"], pictures[0]["height"])
        assert result["codec"] == pictures[0]["codec"]


def check_misdecoded(path, entry) -> None:
    reference = entry["reference"]
    try:
        frames = decode(path, "a:0")["frames"]
    except LkplugError as exc:  # refusing is acceptable; it must say why in one line
        assert "\n" not in str(exc)
        return
    data = np.concatenate([f.data for f in frames]).ravel()
    if "int16" in reference:
        assert data.dtype == np.int16 and data.tolist() == reference["int16"]
    else:
        expected = np.array(reference["int24_interleaved"]) / 2**23
        np.testing.assert_allclose(data.astype(np.float64), expected, atol=1e-6)


def check_through_cli(path, entry, tmp_path) -> None:
    out = tmp_path / "out.wav"
    result = run_lkplug("run", "--source", f"file:{path}", "--sink", f"wav:{out}", "--quiet", timeout=60)
    assert "Traceback" not in result.stderr
    if entry["verdict"] == "must_fail" or result.returncode != 0:
        assert_one_line_error(result)
        assert not out.exists(), "a failed run left output behind"
        if entry["verdict"] == "empty":
            assert "no audio" in result.stderr
        return
    assert entry["verdict"] in ("decode_with_errors", "empty"), result.stderr
    info = soundfile.info(out)  # what was written is a valid file
    if entry["verdict"] == "empty":
        assert info.frames == 0
    elif entry["audio"]:
        stream = entry["audio"][0]
        assert (info.samplerate, info.channels) == (stream["sample_rate"], stream["channels"])
    # one warning at most, besides the report of samples clipped going to s16 (a decoder's overshoot
    # beyond full scale; SoX reports the same as "output clipped N samples")
    lines = [line for line in result.stderr.splitlines() if line.strip() and " clipped " not in line]
    assert len(lines) <= 1


@pytest.mark.parametrize("entry", _entries())
def test_file_gets_its_verdicts_behaviour(entry, shared_media, tmp_path, record_property):
    record_property("verdict", entry["verdict"])
    path = shared_media / "files" / entry["file"]
    if entry["verdict"] == "ok":
        check_ok(path, entry)
    elif entry["verdict"] == "ffmpeg_misdecodes":
        check_misdecoded(path, entry)
    else:
        check_through_cli(path, entry, tmp_path)
