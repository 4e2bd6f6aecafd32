"""Files with real-world quirks come out right (issue 11): timing, channel layouts, picture metadata,
sample formats, odd headers, and runs that cannot do what was asked.

Every input is made here with PyAV, numpy and soundfile. Each expected value is what the ffmpeg CLI
(5.1, on the machine this was written on) gives for the same input; the comment beside it says which
command measured it."""

from __future__ import annotations

import asyncio
import io
import struct
from fractions import Fraction

import av
import numpy as np
import pytest
import soundfile
from conftest import assert_one_line_error, run_lkplug

from lkplug import AudioFrame, MediaError, Pipeline
from lkplug.frames import LAYOUTS
from lkplug_av.sink import FileSink
from lkplug_wav import WavSink

RATE = 48000


# media made here ------------------------------------------------------------------------------


def click_track(seconds: float, clicks: list[float], rate: int = RATE, channels: int = 1) -> np.ndarray:
    """Silence with a 2 ms full-scale-ish burst at each time in ``clicks`` (int16, (n, channels))."""
    data = np.zeros((round(seconds * rate), channels), np.int16)
    for at in clicks:
        start = round(at * rate)
        data[start : start + rate // 500] = 20000
    return data


def grey_picture(width: int, height: int, value: int = 128) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def write_av(
    path,
    video_times: list[float] | None = None,
    audio: np.ndarray | None = None,
    audio_start: float = 0.0,
    drop: tuple[float, float] | None = None,
    size: tuple[int, int] = (320, 240),
    audio_codec: str = "aac",
    video_codec: str = "libx264",
    picture=None,
    rate: int = RATE,
):
    """A file with pictures at ``video_times`` (seconds) and ``audio`` starting at ``audio_start``,
    in packets of 1024 samples; packets starting inside ``drop`` (start, end) are left out, the way
    lost packets leave a hole in a recording."""
    with av.open(str(path), "w") as container:
        streams = {}
        if video_times is not None:
            video = container.add_stream(video_codec, rate=30)
            video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
            video.codec_context.time_base = Fraction(1, 1000)
            video.options = {"preset": "ultrafast"} if video_codec == "libx264" else {}
            streams["video"] = video
        if audio is not None:
            layout = "mono" if audio.shape[1] == 1 else "stereo"
            streams["audio"] = container.add_stream(audio_codec, rate=rate, layout=layout)
        packets = []
        if video_times is not None:
            for time in video_times:
                image = picture(time) if picture else grey_picture(*size)
                frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
                frame.pts, frame.time_base = round(time * 1000), Fraction(1, 1000)
                packets += streams["video"].encode(frame)
            packets += streams["video"].encode(None)
        if audio is not None:
            stream = streams["audio"]
            for start in range(0, len(audio), 1024):
                at = audio_start + start / rate
                if drop and drop[0] <= at < drop[1]:
                    continue
                chunk = np.ascontiguousarray(audio[start : start + 1024]).reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout=stream.layout)
                frame.sample_rate, frame.time_base = rate, Fraction(1, rate)
                frame.pts = round(at * rate)
                packets += stream.encode(frame)
            packets += stream.encode(None)
        packets.sort(key=lambda p: float(p.dts * p.time_base) if p.dts is not None else 0.0)
        for packet in packets:
            container.mux(packet)


# reading results --------------------------------------------------------------------------------


def origin(container) -> float:
    """The file's time 0: the earliest start of its streams (as ffprobe's start_time)."""
    starts = [float(s.start_time * s.time_base) for s in container.streams if s.start_time is not None]
    return min(starts, default=0.0)


def onsets(path, threshold: float = 0.2) -> list[float]:
    """Times (s, on the file's clock) where audio bursts begin."""
    with av.open(str(path)) as container:
        zero = origin(container)
        found, last = [], -1.0
        for frame in container.decode(container.streams.audio[0]):
            data = frame.to_ndarray()
            level = np.abs(data.astype(np.float32)).max(axis=0)
            if data.dtype == np.int16:
                level = level / 32768
            for index in np.flatnonzero(level > threshold):
                when = frame.time - zero + index / frame.sample_rate
                if when - last > 0.1:
                    found.append(when)
                last = when
    return found


def video_times(path) -> list[float]:
    """Each picture's time (s, on the file's clock)."""
    with av.open(str(path)) as container:
        zero = origin(container)
        return [frame.time - zero for frame in container.decode(container.streams.video[0])]


def run(*args):
    return run_lkplug("run", *args, "--quiet", timeout=120)


# timing ------------------------------------------------------------------------------------------


def test_audio_that_starts_after_the_video_is_kept_at_its_time(tmp_path):
    source, out = tmp_path / "late_audio.mp4", tmp_path / "out.mp4"
    write_av(source, [i / 30 for i in range(150)], click_track(3.0, [1.0]), audio_start=2.0)
    result = run("--source", f"file:{source}", "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    # ffmpeg -i late_audio.mp4 out.mp4: an audio stream, click at 2.999 s; 150 pictures
    # (before: no audio stream at all)
    assert onsets(out) == pytest.approx([2.999], abs=0.02)
    assert len(video_times(out)) == 150


def test_video_that_starts_after_the_audio_is_kept_at_its_time(tmp_path):
    source, out = tmp_path / "late_video.mp4", tmp_path / "out.mp4"
    write_av(source, [2 + i / 30 for i in range(90)], click_track(5.0, [3.0]))
    result = run("--source", f"file:{source}", "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    # ffmpeg -i late_video.mp4 -fps_mode passthrough out.mp4: click at 3.0 s, 90 pictures from 2.0 s
    # (ffmpeg's default for mp4, cfr, repeats the first picture back to 0 s: 150 pictures)
    assert onsets(out) == pytest.approx([3.0], abs=0.02)
    times = video_times(out)
    assert len(times) == 90 and times[0] == pytest.approx(2.0, abs=0.02)


@pytest.fixture
def holed_mkv(tmp_path):
    """Video 0-6 s; audio with clicks at 1, 4 and 5 s and its packets from 2.5 to 3.5 s missing."""
    path = tmp_path / "hole.mkv"
    write_av(
        path,
        [i / 30 for i in range(180)],
        click_track(6.0, [1.0, 4.0, 5.0]),
        drop=(2.5, 3.5),
        audio_codec="pcm_s16le",
    )
    return path


@pytest.mark.parametrize("extension", ["mkv", "mp4"])
def test_a_hole_in_the_audio_keeps_later_audio_at_its_time(holed_mkv, tmp_path, extension):
    out = tmp_path / f"out.{extension}"
    result = run("--source", f"file:{holed_mkv}", "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    # ffmpeg -i hole.mkv out.mkv: clicks at 1.003, 4.003, 5.003 s; out.mp4: 1.0, 4.0, 5.0
    # (lkplug before: 1.0, 2.98, 3.98). The PCM-in-Matroska input states no channel layout
    # ("1 channels", which AAC refuses): the mp4 case also checks it gets FFmpeg's guess, mono
    assert onsets(out) == pytest.approx([1.0, 4.0, 5.0], abs=0.02)


@pytest.mark.parametrize("sink", ["wav:{}", "file:{}"])
def test_a_wav_gets_silence_in_the_hole(holed_mkv, tmp_path, sink):
    out = tmp_path / "out.wav"
    result = run("--source", f"file:{holed_mkv}", "--sink", sink.format(out))
    assert result.returncode == 0, result.stderr
    # ffmpeg -i hole.mkv -af aresample=async=1 out.wav: clicks at 1.0, 4.0, 5.0 s
    # (plain ffmpeg -i hole.mkv out.wav gives 1.0, 2.997, 3.997, as lkplug did before)
    assert onsets(out) == pytest.approx([1.0, 4.0, 5.0], abs=0.02)
    assert soundfile.info(out).frames == pytest.approx(6 * RATE, abs=1024)


@pytest.mark.parametrize("proc", ["resample:rate=16000", "apm"])
def test_a_hole_stays_a_hole_through_a_resampler_and_a_fixed_frame_stage(holed_mkv, tmp_path, proc):
    # a new user's damaged FLAC through resample:rate=16000 came out 104 ms short, everything after
    # the damage early (the resampler numbered its output from the first frame on); the rechunker
    # before a 10 ms stage (apm) closed holes the same way.
    # ffmpeg -i hole.mkv -af aresample=async=1,aresample=16000 out.wav: clicks at 1.0, 4.0, 5.0 s, 6 s
    out = tmp_path / "out.wav"
    result = run("--source", f"file:{holed_mkv}", "--proc", proc, "--sink", f"wav:{out}")
    assert result.returncode == 0, result.stderr
    info = soundfile.info(out)
    assert onsets(out) == pytest.approx([1.0, 4.0, 5.0], abs=0.02)
    assert info.frames / info.samplerate == pytest.approx(6.0, abs=0.03)


def test_variable_frame_rate_keeps_every_picture_at_its_time(tmp_path):
    source, out = tmp_path / "vfr.mkv", tmp_path / "out.mp4"
    times = [i / 60 for i in range(60)] + [1 + i / 5 for i in range(20)]  # 60 fps for 1 s, then 5 fps
    write_av(source, times)
    result = run("--source", f"file:{source}", "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    # ffmpeg -i vfr.mkv -fps_mode passthrough out.mp4: 80 frames (ffmpeg's default cfr gives 149
    # by repeating pictures, -vsync vfr 51; lkplug before: 37)
    got = video_times(out)
    assert len(got) == 80
    np.testing.assert_allclose(got, times, atol=0.002)


# channel layouts ---------------------------------------------------------------------------------

BLOCK, LEVEL = 64, 16384

# ffmpeg -i in.wav -ac 2 out.wav and -ac 1 (s16 throughout, as here), for a WAV whose channel k
# holds LEVEL in block k (layout_wav): (stereo rows (to L, to R) per input channel, mono row)
FFMPEG_DOWNMIX = {
    "2.1": ([(1.0, 0.0), (0.0, 1.0), (0.0, 0.0)], [0.5, 0.5, 0.0]),
    "3.0": ([(0.5858, 0.0), (0.0, 0.5858), (0.4142, 0.4142)], [0.2929, 0.2929, 0.4142]),
    "3.0(back)": ([(0.6667, 0.0), (0.0, 0.6667), (0.3334, 0.3334)], [0.3694, 0.3694, 0.2612]),
    "4.0": (
        [(0.4531, 0.0), (0.0, 0.4531), (0.3204, 0.3204), (0.2266, 0.2266)],
        [0.2427, 0.2427, 0.3431, 0.1716],
    ),
    "quad": ([(0.5858, 0.0), (0.0, 0.5858), (0.4142, 0.0), (0.0, 0.4142)], [0.2929, 0.2929, 0.2071, 0.2071]),
    "quad(side)": (
        [(0.5858, 0.0), (0.0, 0.5858), (0.4142, 0.0), (0.0, 0.4142)],
        [0.2929, 0.2929, 0.2071, 0.2071],
    ),
    "3.1": ([(0.5858, 0.0), (0.0, 0.5858), (0.4142, 0.4142), (0.0, 0.0)], [0.2929, 0.2929, 0.4142, 0.0]),
    "5.0": (
        [(0.4142, 0.0), (0.0, 0.4142), (0.2929, 0.2929), (0.2929, 0.0), (0.0, 0.2929)],
        [0.2071, 0.2071, 0.2929, 0.1465, 0.1465],
    ),
    "5.0(side)": (
        [(0.4142, 0.0), (0.0, 0.4142), (0.2929, 0.2929), (0.2929, 0.0), (0.0, 0.2929)],
        [0.2071, 0.2071, 0.2929, 0.1465, 0.1465],
    ),
    "4.1": (
        [(0.4531, 0.0), (0.0, 0.4531), (0.3204, 0.3204), (0.0, 0.0), (0.2266, 0.2266)],
        [0.2427, 0.2427, 0.3431, 0.0, 0.1716],
    ),
    "5.1": (
        [(0.4142, 0.0), (0.0, 0.4142), (0.2929, 0.2929), (0.0, 0.0), (0.2929, 0.0), (0.0, 0.2929)],
        [0.2071, 0.2071, 0.2929, 0.0, 0.1465, 0.1465],
    ),
    "5.1(side)": (
        [(0.4142, 0.0), (0.0, 0.4142), (0.2929, 0.2929), (0.0, 0.0), (0.2929, 0.0), (0.0, 0.2929)],
        [0.2071, 0.2071, 0.2929, 0.0, 0.1465, 0.1465],
    ),
    "6.0": (
        [(0.3431, 0.0), (0.0, 0.3431), (0.2427, 0.2427), (0.1716, 0.1716), (0.2427, 0.0), (0.0, 0.2427)],
        [0.1807, 0.1807, 0.2555, 0.1277, 0.1277, 0.1277],
    ),
    "6.0(front)": (
        [(0.3694, 0.0), (0.0, 0.3694), (0.3694, 0.0), (0.0, 0.3694), (0.2612, 0.0), (0.0, 0.2612)],
        [0.1847, 0.1847, 0.1847, 0.1847, 0.1306, 0.1306],
    ),
    "hexagonal": (
        [(0.3431, 0.0), (0.0, 0.3431), (0.2427, 0.2427), (0.2427, 0.0), (0.0, 0.2427), (0.1716, 0.1716)],
        [0.1807, 0.1807, 0.2555, 0.1277, 0.1277, 0.1277],
    ),
    "6.1": (
        [
            (0.3431, 0.0),
            (0.0, 0.3431),
            (0.2427, 0.2427),
            (0.0, 0.0),
            (0.1716, 0.1716),
            (0.2427, 0.0),
            (0.0, 0.2427),
        ],
        [0.1807, 0.1807, 0.2555, 0.0, 0.1277, 0.1277, 0.1277],
    ),
    "6.1(back)": (
        [
            (0.3431, 0.0),
            (0.0, 0.3431),
            (0.2427, 0.2427),
            (0.0, 0.0),
            (0.2427, 0.0),
            (0.0, 0.2427),
            (0.1716, 0.1716),
        ],
        [0.1807, 0.1807, 0.2555, 0.0, 0.1277, 0.1277, 0.1277],
    ),
    "6.1(front)": (
        [
            (0.3694, 0.0),
            (0.0, 0.3694),
            (0.0, 0.0),
            (0.3694, 0.0),
            (0.0, 0.3694),
            (0.2612, 0.0),
            (0.0, 0.2612),
        ],
        [0.1847, 0.1847, 0.0, 0.1847, 0.1847, 0.1306, 0.1306],
    ),
    "7.0": (
        [
            (0.3204, 0.0),
            (0.0, 0.3204),
            (0.2266, 0.2266),
            (0.2266, 0.0),
            (0.0, 0.2266),
            (0.2266, 0.0),
            (0.0, 0.2266),
        ],
        [0.1602, 0.1602, 0.2266, 0.1133, 0.1133, 0.1133, 0.1133],
    ),
    "7.0(front)": (
        [
            (0.2929, 0.0),
            (0.0, 0.2929),
            (0.2071, 0.2071),
            (0.2929, 0.0),
            (0.0, 0.2929),
            (0.2071, 0.0),
            (0.0, 0.2071),
        ],
        [0.1465, 0.1465, 0.2071, 0.1465, 0.1465, 0.1036, 0.1036],
    ),
    "7.1": (
        [
            (0.3204, 0.0),
            (0.0, 0.3204),
            (0.2266, 0.2266),
            (0.0, 0.0),
            (0.2266, 0.0),
            (0.0, 0.2266),
            (0.2266, 0.0),
            (0.0, 0.2266),
        ],
        [0.1602, 0.1602, 0.2266, 0.0, 0.1133, 0.1133, 0.1133, 0.1133],
    ),
    "7.1(wide)": (
        [
            (0.2929, 0.0),
            (0.0, 0.2929),
            (0.2071, 0.2071),
            (0.0, 0.0),
            (0.2071, 0.0),
            (0.0, 0.2071),
            (0.2929, 0.0),
            (0.0, 0.2929),
        ],
        [0.1465, 0.1465, 0.2071, 0.0, 0.1036, 0.1036, 0.1465, 0.1465],
    ),
    "7.1(wide-side)": (
        [
            (0.2929, 0.0),
            (0.0, 0.2929),
            (0.2071, 0.2071),
            (0.0, 0.0),
            (0.2929, 0.0),
            (0.0, 0.2929),
            (0.2071, 0.0),
            (0.0, 0.2071),
        ],
        [0.1465, 0.1465, 0.2071, 0.0, 0.1465, 0.1465, 0.1036, 0.1036],
    ),
}


def layout_wav(path, layout: str) -> int:
    """A 16-bit WAV in ``layout`` (its channel mask) whose channel k holds LEVEL in samples
    [k*BLOCK, (k+1)*BLOCK) and nothing elsewhere; returns the channel count."""
    channels = av.AudioLayout(layout).nb_channels
    data = np.zeros((BLOCK * channels, channels), np.int16)
    for k in range(channels):
        data[k * BLOCK : (k + 1) * BLOCK, k] = LEVEL
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=RATE, layout=layout)
        frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format="s16", layout=layout)
        frame.sample_rate, frame.pts = RATE, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return channels


def run_here(source: str, processors: list[str], sink: str):
    """A run in this process (faster than the CLI for many small runs)."""
    return asyncio.run(Pipeline.from_specs(source, processors, [sink]).run())


@pytest.mark.parametrize("layout", list(FFMPEG_DOWNMIX))
def test_downmix_coefficients_are_ffmpegs(layout, tmp_path):
    source = tmp_path / "in.wav"
    channels = layout_wav(source, layout)
    stereo, mono = FFMPEG_DOWNMIX[layout]
    for target, expected in (("2", np.array(stereo)), ("mono", np.array(mono)[:, None])):
        out = tmp_path / f"out{target}.wav"
        run_here(f"file:{source}", [f"remix:{target}"], f"wav:{out}")
        data = soundfile.read(out, dtype="int16", always_2d=True)[0]
        got = np.array([data[k * BLOCK + BLOCK // 2] / LEVEL for k in range(channels)])
        np.testing.assert_allclose(got, expected, atol=0.01, err_msg=f"{layout} -> {target}")


@pytest.mark.parametrize("layout", ["3.0", "quad", "5.0(side)", "hexagonal"])
@pytest.mark.parametrize("extension", ["m4a", "flac", "opus"])
def test_the_file_sink_writes_the_layout_it_gets(layout, extension, tmp_path):
    source, out = tmp_path / "in.wav", tmp_path / f"out.{extension}"
    layout_wav(source, layout)
    result = run("--source", f"file:{source}", "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        written = container.streams.audio[0].codec_context.layout.name
    # ffmpeg -i in.wav out.m4a / out.flac / out.opus: 3.0 and quad are written as 3.0 and quad
    # (before: 2.1 and 4.0 in m4a and flac, an FFmpeg argument error for opus). libopus takes
    # neither 5.0(side) nor hexagonal (ffmpeg 5.1 stops: "Invalid channel layout"); lkplug
    # converts to the libopus layout FFmpeg's own format negotiation picks (libavfilter's, the
    # test below): 5.0, its sides as backs, and 7.1 (before: 6.1 and 5.0, a guess of our own)
    # AAC has no channel configuration for 5.0(side) and hexagonal: ffprobe reads ffmpeg's own
    # out.m4a as "unknown" (5 and 6 unordered channels), and so it reads lkplug's
    expected = {
        "opus": {"5.0(side)": "5.0", "hexagonal": "7.1"},
        "m4a": {"5.0(side)": "5 channels", "hexagonal": "6 channels"},
    }.get(extension, {})
    assert written == expected.get(layout, layout)


@pytest.mark.parametrize(
    "layout", ["2.1", "3.0", "quad", "5.0", "5.0(side)", "5.1(side)", "hexagonal", "7.1"]
)
def test_the_wav_sink_writes_the_channel_mask(layout, tmp_path):
    source, out = tmp_path / "in.wav", tmp_path / "out.wav"
    layout_wav(source, layout)
    run_here(f"file:{source}", [], f"wav:{out}")
    # ffmpeg -i in.wav out.wav writes WAVE_FORMAT_EXTENSIBLE with the layout's mask (3.0: 0x7,
    # quad: 0x33, 5.1(side): 0x60f), which PyAV reads back as the same name; the wav sink before:
    # plain PCM, no mask ("3 channels", "6 channels")
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.layout.name == layout
    assert soundfile.info(out).format == "WAVEX"


def libavfilter_pick(layout: str, allowed: tuple) -> str:
    """The layout FFmpeg's filter graph negotiates for ``layout`` into a filter taking ``allowed``
    (aformat, as the ffmpeg CLI puts an encoder's layouts): FFmpeg's own choice, through PyAV."""
    graph = av.filter.Graph()
    source = graph.add_abuffer(format="s16", sample_rate=RATE, layout=layout, time_base=Fraction(1, RATE))
    narrow = graph.add("aformat", f"sample_fmts=s16:channel_layouts={'|'.join(allowed)}")
    sink = graph.add("abuffersink")
    source.link_to(narrow)
    narrow.link_to(sink)
    graph.configure()
    channels = av.AudioLayout(layout).nb_channels
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 960 * channels), np.int16), format="s16", layout=layout)
    frame.sample_rate, frame.pts, frame.time_base = RATE, 0, Fraction(1, RATE)
    graph.push(frame)
    return graph.pull().layout.name


@pytest.mark.parametrize(
    "allowed",
    [
        ("mono", "stereo", "3.0", "quad", "5.0", "5.1", "6.1", "7.1"),  # libopus
        ("mono", "stereo"),  # libmp3lame
        ("mono", "stereo", "5.1", "7.1"),
    ],
)
def test_a_layout_a_sink_does_not_take_becomes_the_one_ffmpeg_negotiates(allowed):
    from lkplug.convert import pick_layout  # noqa: PLC0415

    # every standard layout: lkplug's pick equals libavfilter's. ffmpeg 5.1 itself refuses them all
    # for libopus ("Invalid channel layout 5.1(side) for specified mapping family -1"). Before (a
    # scoring of our own), 15 of 18 differed for libopus's list, e.g. 5.1(side) -> 6.1 (FFmpeg: 5.1),
    # 5.0(side) -> 6.1 (5.0), 2.1 -> 5.1 (stereo), hexagonal -> 5.0 (7.1)
    for layout in (name for name in LAYOUTS if name != "downmix"):
        if layout not in allowed:
            expected = libavfilter_pick(layout, allowed)
            assert pick_layout(layout, av.AudioLayout(layout).nb_channels, None, allowed) == expected, layout


def test_a_sink_that_takes_two_channels_gets_ffmpegs_downmix_inserted(tmp_path):
    source = tmp_path / "in.wav"
    layout_wav(source, "5.1(side)")
    result = run_lkplug(
        "run", "--source", f"file:{source}", "--sink", f"file:{tmp_path / 'o.mp3'}", "--explain"
    )
    assert "remix:channels=stereo" in result.stdout and "(5.1(side))" in result.stdout


# runs that cannot do what was asked ---------------------------------------------------------------


def tone_file(path, seconds: float, rate: int = RATE, channels: int = 1, subtype: str = "PCM_16"):
    t = np.arange(round(seconds * rate)) / rate
    data = np.repeat((0.5 * np.sin(2 * np.pi * 440 * t))[:, None], channels, axis=1)
    soundfile.write(path, data, rate, subtype=subtype)
    return data


@pytest.mark.parametrize("sink", ["file:{}", "wav:{}"])
def test_the_input_as_output_is_refused_and_left_untouched(tmp_path, sink):
    source = tmp_path / "in.flac"
    tone_file(source, 10.0)
    before = source.read_bytes()
    result = run("--source", f"file:{source}", "--sink", sink.format(source))
    # ffmpeg -i in.flac in.flac refuses (exit 1: "already exists"; with -y: "Output same as Input
    # #0"); lkplug before: exit 0 and a 10 s FLAC became 6.27 s
    assert "is also the input" in assert_one_line_error(result)
    assert source.read_bytes() == before


def test_two_sinks_into_one_file_are_refused(tmp_path):
    # a new user's `--sink wav:c.out --sink file:./c.out,format=flac`: exit 0 and the WAV was lost
    # (the FLAC overwrote it). ffmpeg 5.1 takes `-map 0 c.wav -map 1 c.wav` with exit 0 and keeps
    # one of the two; lkplug refuses rather than lose an output
    out = tmp_path / "c.out"
    result = run(
        "--source",
        "tone:440,duration=1",
        "--sink",
        f"wav:{out}",
        "--sink",
        f"file:{tmp_path}/./c.out,format=flac",
    )
    assert "both write" in assert_one_line_error(result)
    assert not out.exists()


def test_start_past_the_end_says_how_long_the_file_is(tmp_path):
    source, out = tmp_path / "in.flac", tmp_path / "out.wav"
    tone_file(source, 10.0)
    result = run("--source", f"file:{source},start=12", "--sink", f"wav:{out}")
    # ffmpeg -ss 12 -i in.flac out.wav writes an empty WAV (exit 0); lkplug refuses, saying the
    # length (before: "no audio could be decoded")
    assert "past the end: the file is 10.00 s" in assert_one_line_error(result)
    assert not out.exists()


def test_an_input_too_short_for_one_output_sample_gives_a_valid_empty_file(tmp_path):
    source, out = tmp_path / "one.wav", tmp_path / "out.wav"
    soundfile.write(source, np.array([[1000]], np.int16), RATE)
    result = run("--source", f"file:{source}", "--proc", "resample:16000", "--sink", f"wav:{out}")
    assert result.returncode == 0, result.stderr
    # ffmpeg -i one.wav -ar 16000 out.wav: a valid WAV of 0 samples (before: no file at all)
    info = soundfile.info(out)
    assert (info.frames, info.samplerate) == (0, 16000)


@pytest.mark.parametrize("extension", ["wav", "flac", "m4a", "mp4", "mov"])
def test_the_file_sink_writes_a_valid_empty_file(extension, tmp_path):
    source, out = tmp_path / "one.wav", tmp_path / f"out.{extension}"
    soundfile.write(source, np.array([[1000]], np.int16), RATE)
    result = run("--source", f"file:{source}", "--proc", "resample:16000", "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    # ffmpeg 5.1 -i one.wav -ar 16000 out.EXT: wav and flac hold one 16 kHz stream of 0 samples;
    # mp4, mov and m4a hold no stream at all (nb_streams=0, its mov muxer drops an empty track);
    # lkplug keeps the stream, 0 s long (before: exit 0 and no file for wav, m4a, mp4, mov)
    with av.open(str(out)) as container:
        (stream,) = container.streams
        assert (stream.type, stream.codec_context.sample_rate) == ("audio", 16000)
        assert sum(frame.samples for frame in container.decode(stream)) == 0


@pytest.mark.parametrize("extension", ["mkv", "webm", "ogg", "opus", "mp3"])
def test_an_empty_output_that_cannot_be_read_back_is_refused(extension, tmp_path):
    source, out = tmp_path / "one.wav", tmp_path / f"out.{extension}"
    soundfile.write(source, np.array([[1000]], np.int16), RATE)
    result = run("--source", f"file:{source}", "--proc", "resample:16000", "--sink", f"file:{out}")
    # ffmpeg 5.1 -i one.wav -ar 16000 out.EXT exits 0 with a file that its own ffprobe cannot open
    # ("End of file"; mp3: "Failed to read frame size"), nor can PyAV's FFmpeg 8. lkplug before:
    # exit 0 and no file; now a one-line refusal and no file
    assert "cannot be read back" in assert_one_line_error(result)
    assert not out.exists()


def test_video_false_leaves_the_video_out(tmp_path):
    source, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    write_av(source, [i / 30 for i in range(30)], click_track(1.0, [0.5]))
    result = run("--source", f"file:{source},video=false", "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    # ffmpeg -vn -i ... keeps the audio alone (before: video=false still wrote the video)
    with av.open(str(out)) as container:
        assert [s.type for s in container.streams] == ["audio"]


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    write_av(path, [i / 10 for i in range(10)], click_track(1.0, [0.5]), size=(64, 48))
    return path


@pytest.mark.parametrize(
    ("sink", "said"),
    [
        # ffmpeg -i clip.mp4 -c:v libvpx -crf 99 out.webm: "Value 99.000000 for parameter 'crf' out
        # of range [-1 - 63]", exit 1 (lkplug before: the same words as a PyAV OverflowError
        # "file:out.webm,crf=99 ... failed", exit 1)
        (
            "out.webm,crf=99",
            "crf=99 is refused by libvpx: Value 99.000000 for parameter 'crf' out of range [-1 - 63]",
        ),
        # ffmpeg -preset foo: "x264 [error]: invalid preset 'foo'", exit 1
        ("out.mp4,preset=foo", "preset=foo: libx264 takes ultrafast, superfast, veryfast"),
        ("out.webm,preset=fast", "preset= is for libx264 or libx265, not libvpx"),
        # ffmpeg -b:v 1: "Bitrate 1 is extremely low, maybe you mean 1k ... bitrate not specified"
        # (lkplug before: exit 1 with a header-only out.mp4 left)
        ("out.mp4,video_bitrate=1", "video_bitrate=1 is refused by libx264: Bitrate 1 is extremely low"),
        # ffmpeg -b:a 100 out.opus: "Please choose a value between 500 and 256000" (mono)
        ("out.opus,bitrate=100", "bitrate=100 is refused by libopus: Bitrate 100 is extremely low"),
        # a bit rate libopus takes for stereo but not for this mono input: found when it opens, still
        # before the file is made (ffmpeg: the same "between 500 and 256000", exit 1)
        ("out.opus,bitrate=300000", "bitrate=300000 is refused by libopus for audio 48000 Hz, 1 ch"),
    ],
)
def test_bad_encoder_options_are_usage_errors_before_anything_is_written(sink, said, small_clip, tmp_path):
    result = run("--source", f"file:{small_clip}", "--sink", f"file:{tmp_path}/{sink}")
    assert result.returncode == 2, result.stderr
    assert said in assert_one_line_error(result)
    assert list(tmp_path.iterdir()) == []


def test_scale_beyond_ffmpegs_largest_picture_is_a_usage_error(small_clip, tmp_path):
    result = run(
        "--source", f"file:{small_clip}", "--proc", "scale:width=100000", "--sink", f"file:{tmp_path}/o.mp4"
    )
    # ffmpeg -vf scale=100000:-2: "Picture size 100000x75000 is invalid", exit 1 (lkplug before: the
    # same FFmpeg words as "scale:width=100000 ... failed: ArgumentError", exit 1, and o.mp4 left)
    assert result.returncode == 2, result.stderr
    assert "makes 100000x75000 of 64x48, beyond FFmpeg's largest picture" in assert_one_line_error(result)
    assert list(tmp_path.iterdir()) == []


def test_scale_to_two_rows_is_written(small_clip, tmp_path):
    out = tmp_path / "o.mp4"
    result = run(
        "--source", f"file:{small_clip}", "--proc", "scale:width=4,height=2", "--sink", f"file:{out}"
    )
    # ffmpeg -vf scale=4:2 writes 4x2 pictures; lkplug before: "Failed initializing scaling graph"
    # (PyAV took the 2-row picture's buffer for one plane), exit 1
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        frames = list(container.decode(video=0))
    assert (frames[0].width, frames[0].height, len(frames)) == (4, 2, 10)


@pytest.mark.parametrize(
    ("proc", "said"),
    [
        # ffmpeg -i clip.mp4 -vf scale=-2:31 -c:v libx264 -pix_fmt yuv420p o.mp4: scale keeps 42x31, then
        # "[libx264] height not divisible by 2 (42x31)", exit 1 (scale=-1:31: "width not divisible by
        # 2"); lkplug before: exit 0 with 42x30 pictures, the height asked for changed without a word
        ("scale:height=31", "scale:height=31: yuv420p needs an even height"),
        ("scale:width=41", "scale:width=41: yuv420p needs an even width"),
        ("scale:width=3", "use 2 or 4"),
    ],
)
def test_scale_to_an_odd_side_of_yuv420p_is_refused_as_ffmpegs_encoders_do(proc, said, small_clip, tmp_path):
    result = run("--source", f"file:{small_clip}", "--proc", proc, "--sink", f"file:{tmp_path}/o.mp4")
    assert result.returncode == 2, result.stderr
    assert said in assert_one_line_error(result)
    assert list(tmp_path.iterdir()) == []


def test_scale_rounds_a_derived_half_up_as_ffmpeg(small_clip, tmp_path):
    out = tmp_path / "o.mp4"
    result = run("--source", f"file:{small_clip}", "--proc", "scale:width=12", "--sink", f"file:{out}")
    # ffmpeg -i clip.mp4 (64x48) -vf scale=12:-2 o.mp4: 12x10 (12 x 48 / 64 = 9 = 2 x 4.5, the half
    # rounded up by av_rescale); lkplug before: 12x8 (Python's round() takes a half to even)
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (12, 10)


@pytest.mark.parametrize("sink", ["wav:{}", "file:{}", "file:{}.wav"])
def test_an_output_that_is_a_folder_is_named_so(sink, tmp_path):
    folder = tmp_path / "adir"
    folder.mkdir()
    (tmp_path / "adir.wav").mkdir()
    result = run("--source", "tone:440,duration=0.2", "--sink", sink.format(folder))
    # ffmpeg -i in.wav adir: "adir: Is a directory", exit 1 (lkplug before: "Error opening b'adir':
    # System error." from wav:, "cannot tell the container" or an IsADirectoryError from file:)
    assert "it is a folder; name a file in it" in assert_one_line_error(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "adir.wav"]
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize(
    ("source", "sink"),
    [
        ("file:{}", "wav:{}.wav"),
        ("file:{}", "file:{}.flac"),
        ("file:{},video=true", "wav:{}.wav"),
        ("file:{},stream=v:0", "wav:{}.wav"),
    ],
)
def test_a_video_only_input_into_an_audio_only_sink_is_a_usage_error(source, sink, tmp_path):
    clip, out = tmp_path / "v.mp4", tmp_path / "out"
    write_av(clip, [i / 10 for i in range(10)], size=(64, 48))
    result = run("--source", source.format(clip), "--sink", sink.format(out))
    # ffmpeg -i v.mp4 out.wav: "Output file #0 does not contain any stream", exit 1; lkplug gave
    # exit 2 with video=true or stream=v:0 (the engine's "takes none of") and exit 1 without them
    # ("no audio stream (it has video: add video=true ...)", advice that led to the other error)
    assert result.returncode == 2, result.stderr
    assert "video" in assert_one_line_error(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


def damaged_ogg(path, at: float) -> None:
    """4 s of Ogg Opus (a 440 Hz tone) with 300 bytes spoiled at ``at`` (a fraction) of the file."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=RATE, layout="mono")
        data = (0.3 * np.sin(2 * np.pi * 440 * np.arange(4 * RATE) / RATE) * 32767).astype(np.int16)
        for start in range(0, len(data), 960):
            frame = av.AudioFrame.from_ndarray(data[None, start : start + 960], format="s16", layout="mono")
            frame.sample_rate, frame.pts = RATE, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    spoiled = bytearray(buffer.getvalue())
    start = int(len(spoiled) * at)
    spoiled[start : start + 300] = bytes(b ^ 0x5A for b in spoiled[start : start + 300])
    path.write_bytes(bytes(spoiled))


@pytest.mark.parametrize("at", [0.1, 0.5])
def test_a_damaged_ogg_is_reported_once_with_ffmpegs_count(at, tmp_path):
    source, out = tmp_path / "damaged.opus", tmp_path / "out.wav"
    damaged_ogg(source, at)
    result = run_lkplug("run", "--source", f"file:{source}", "--sink", f"wav:{out}")
    assert result.returncode == 0, result.stderr
    # ffmpeg -v error -i damaged.opus -f null -: "CRC mismatch!" and "Last message repeated 3 times",
    # 4 errors, for damage at 10% and at 50% alike. lkplug before: no warning at all for 10% (the
    # pages read while the file was opened were not counted) and "1 error(s)" for 50% (PyAV
    # collapsed the repeats)
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, result.stderr
    assert (
        "damaged input, decoded past it: FFmpeg reported 4 error(s), the first: CRC mismatch" in warnings[0]
    )


def test_skip_existing_is_honoured_for_one_file(tmp_path):
    source, out = tmp_path / "in.flac", tmp_path / "out.wav"
    tone_file(source, 0.5)
    out.write_bytes(b"an earlier output")
    result = run_lkplug("run", "--source", f"file:{source}", "--sink", f"wav:{out}", "--skip-existing")
    # as a batch skips an input whose outputs all exist (README, Batch); before: the flag was
    # ignored on one file and out.wav was written over (ffmpeg's -n likewise leaves it: "already
    # exists. Exiting.")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == b"an earlier output"
    assert f"skipped: {out} already exists (--skip-existing)" in result.stderr
    out.unlink()
    assert run("--source", f"file:{source}", "--sink", f"wav:{out}", "--skip-existing").returncode == 0
    assert soundfile.info(out).frames == 24000


# picture metadata ---------------------------------------------------------------------------------

RAMP = (0, 32, 128, 224, 255)


def rotated_clip(path, degrees: int, width: int = 64, height: int = 48, hflip: bool = False):
    """A phone-style clip: pictures stored wide, a red top-left quarter, and a display matrix
    saying "turn ``degrees`` counter-clockwise (and mirror, with ``hflip``) to show"."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.set_display_rotation(degrees, hflip=hflip)
        image = np.zeros((height, width, 3), np.uint8)
        image[: height // 2, : width // 2] = (255, 0, 0)
        for index in range(5):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def shown(path) -> tuple[tuple[int, int], str]:
    """The first picture as a player shows it: (width, height) and the corner that is red."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        assert frame.rotation == 0  # nothing left for the player to turn
        picture = frame.to_ndarray(format="rgb24")
    height, width = picture.shape[:2]
    corners = {"top left": (2, 2), "top right": (2, -3), "bottom left": (-3, 2), "bottom right": (-3, -3)}
    red = [name for name, (y, x) in corners.items() if picture[y, x, 0] > 200]
    return (width, height), red[0]


@pytest.mark.parametrize(
    "degrees, hflip, size, corner",
    # ffmpeg -i rotN.mp4 out.mp4 (autorotate): 90 -> 48x64, red bottom left; 180 -> 64x48, bottom
    # right; 270 and -90 -> 48x64, top right; mirrored: (0, hflip) -> 64x48, top right; (90, hflip)
    # -> 48x64, bottom right
    # (before: 64x48, top left, the flag dropped)
    [
        (90, False, (48, 64), "bottom left"),
        (180, False, (64, 48), "bottom right"),
        (270, False, (48, 64), "top right"),
        (0, True, (64, 48), "top right"),
        (90, True, (48, 64), "bottom right"),
    ],
)
def test_rotation_is_applied_as_ffmpegs_autorotate(degrees, hflip, size, corner, tmp_path):
    source, out = tmp_path / "rot.mp4", tmp_path / "out.mp4"
    rotated_clip(source, degrees, hflip=hflip)
    result = run("--source", f"file:{source}", "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    assert shown(out) == (size, corner)


@pytest.mark.parametrize("degrees, size", [(90, (54, 64)), (180, (64, 54))])
def test_rotation_of_a_height_that_is_not_a_multiple_of_4(degrees, size, tmp_path):
    # 64x54: each chroma plane is 27 rows of 32, so in the stacked (81, 64) array a plane ends
    # mid-row (a new user's 480x270 phone clip: "cannot reshape array", exit 1). ffmpeg's autorotate
    # of the same clip: 90 -> 54x64 red bottom left, 180 -> 64x54 red bottom right (ffmpeg 5.1)
    source, out = tmp_path / "rot.mp4", tmp_path / "out.mp4"
    rotated_clip(source, degrees, height=54)
    result = run("--source", f"file:{source}", "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    assert shown(out) == (size, "bottom left" if degrees == 90 else "bottom right")


def full_range_ramp(path, width: int = 160, height: int = 32):
    """yuvj420p (full range) H.264, lossless: five bands of grey at RAMP."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuvj420p"
        stream.options = {"preset": "ultrafast", "qp": "0"}
        luma = np.zeros((height, width), np.uint8)
        for index, value in enumerate(RAMP):
            luma[:, index * width // 5 : (index + 1) * width // 5] = value
        planes = np.concatenate([luma.ravel(), np.full(height * width // 2, 128, np.uint8)])
        for index in range(5):
            frame = av.VideoFrame.from_ndarray(planes.reshape(height * 3 // 2, width), format="yuvj420p")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def displayed_ramp(path) -> list[int]:
    """The grey of each band as displayed (the frame's own colour range honoured)."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
    full = frame.format.name.startswith("yuvj") or frame.color_range == 2
    source_range = "JPEG" if full else "MPEG"
    rgb = frame.reformat(format="rgb24", src_color_range=source_range, dst_color_range="JPEG").to_ndarray()
    width = rgb.shape[1]
    return [round(float(rgb[:, i * width // 5 + width // 10, 1].mean())) for i in range(5)]


def test_full_range_video_keeps_its_contrast(tmp_path):
    source, out = tmp_path / "ramp.mp4", tmp_path / "out.mp4"
    full_range_ramp(source)
    assert displayed_ramp(source) == list(RAMP)
    result = run("--source", f"file:{source}", "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    # ffmpeg -i ramp.mp4 out.mp4 keeps yuvj420p: 0/32/128/224/255 as displayed
    # (lkplug before: 0/18/130/242/255, full range read as limited)
    np.testing.assert_allclose(displayed_ramp(out), [0, 32, 128, 224, 255], atol=4)


def test_scale_gives_an_even_derived_side_as_ffmpeg(tmp_path):
    source, out = tmp_path / "odd.mkv", tmp_path / "out.mp4"
    with av.open(str(source), "w") as container:  # 641x359, which 4:2:0 cannot hold
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 641, 359, "yuv444p"
        for index in range(5):
            frame = av.VideoFrame.from_ndarray(grey_picture(641, 359), format="rgb24").reformat(
                format="yuv444p"
            )
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    result = run("--source", f"file:{source}", "--proc", "scale:height=360", "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    # ffmpeg -i odd.mkv -vf scale=-2:360 out.mp4: 642x360 (before: "needs even sizes ... put
    # scale: before it")
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (642, 360)


# sample formats and headers -----------------------------------------------------------------------


def wav_bytes(samples: bytes, channels: int, rate: int, bits: int, sizes: tuple | None = None) -> bytes:
    """A RIFF/WAVE file (integer PCM) around ``samples``; ``sizes`` (riff, data) overrides the
    header's sizes, as a recorder that stopped before closing the file leaves them (0, 0)."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, bits)
    riff, data = sizes or (4 + 8 + len(fmt) + 8 + len(samples), len(samples))
    return b"".join(
        [b"RIFF", struct.pack("<I", riff), b"WAVE", b"fmt ", struct.pack("<I", len(fmt)), fmt]
        + [b"data", struct.pack("<I", data), samples]
    )


def half_scale_sine(seconds: float = 1.0, rate: int = RATE) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * 440 * np.arange(round(seconds * rate)) / rate)


def test_64_bit_integer_pcm_wav_is_read(tmp_path):
    source, out = tmp_path / "s64.wav", tmp_path / "out.wav"
    source.write_bytes(wav_bytes((half_scale_sine() * 2**63).astype("<i8").tobytes(), 1, RATE, 64))
    result = run("--source", f"file:{source}", "--sink", f"wav:{out}")
    assert result.returncode == 0, result.stderr
    # ffmpeg -i s64.wav -c:a pcm_s16le out.wav: 48000 samples, peak 0.5 (before: a PyAV ValueError)
    data = soundfile.read(out)[0]
    assert len(data) == 48000 and np.abs(data).max() == pytest.approx(0.5, abs=1e-3)


def test_a_wav_whose_sizes_were_never_filled_in_is_read_to_its_end(tmp_path):
    source, out = tmp_path / "zero.wav", tmp_path / "out.wav"
    samples = (half_scale_sine() * 32767).astype("<i2").tobytes()
    source.write_bytes(wav_bytes(samples, 1, RATE, 16, sizes=(0, 0)))
    result = run("--source", f"file:{source}", "--sink", f"wav:{out}")
    assert result.returncode == 0, result.stderr
    # ffmpeg -i zero.wav out.wav: 48000 samples (before: "no audio could be decoded")
    assert soundfile.info(out).frames == 48000


@pytest.mark.parametrize("sizes", [None, (0xFFFFFFFF, 0xFFFFFFFF)], ids=["sizes-given", "sizes-unset"])
def test_a_wav_cut_short_is_read_to_its_end_and_told_so_where_its_header_said_more(tmp_path, sizes):
    source, out = tmp_path / "cut.wav", tmp_path / "out.wav"
    samples = (half_scale_sine() * 32767).astype("<i2").tobytes()
    whole = wav_bytes(samples, 1, RATE, 16, sizes=sizes)
    source.write_bytes(whole[:50037])  # half a second and a byte: an unfinished copy
    result = run("--source", f"file:{source}", "--sink", f"wav:{out}")
    assert result.returncode == 0, result.stderr
    # ffmpeg -i cut.wav out.wav: 24996 samples, and "cut.wav: corrupt input packet in stream 0", both
    # ways (its last read is short of a sample). lkplug tells where the header said more (before: nothing)
    assert soundfile.info(out).frames == 24996
    told = [line for line in result.stderr.splitlines() if "header announces" in line]
    if sizes is None:
        assert told == [
            f"lkplug: warning: {source}: the file ends before the audio its header announces:"
            " 0.52 s of 1.00 s are there"
        ], result.stderr
    else:  # sizes a writer could not fill in announce nothing
        assert told == [], result.stderr
    source.write_bytes(whole)  # the whole file: nothing to tell
    result = run("--source", f"file:{source}", "--sink", f"wav:{out}")
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr


def test_an_mp3_cut_short_between_two_frames_is_told_so(tmp_path):
    whole, source, out = tmp_path / "whole.mp3", tmp_path / "cut.mp3", tmp_path / "out.wav"
    whole.write_bytes(mp3_part(RATE, 10.0, 440, whole=True))  # its Xing header counts 10 s of frames
    with av.open(str(whole)) as container:
        frames = [packet.pos for packet in container.demux(audio=0) if packet.size]
    source.write_bytes(
        whole.read_bytes()[: frames[len(frames) // 2]]
    )  # no frame cut: nothing to decode wrongly
    result = run("--source", f"file:{source}", "--sink", f"wav:{out}")
    assert result.returncode == 0, result.stderr
    # ffmpeg -i cut.mp3 out.wav: 239663 samples, and "[mp3] filesize and duration do not match (growing
    # file?)" (before: lkplug said nothing)
    assert soundfile.info(out).frames == 239663
    assert (
        f"lkplug: warning: {source}: the file ends before the audio its header announces: 4.99 s of 10.00 s"
        " are there"
    ) in result.stderr.splitlines(), result.stderr
    result = run("--source", f"file:{whole}", "--sink", f"wav:{out}")  # the whole file: nothing to tell
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr


def mp3_part(rate: int, seconds: float, freq: float, whole: bool = False, kbps: int = 0) -> bytes:
    """Bare MP3 frames (no ID3 tag, no Xing header), so two parts joined make one stream; ``whole``:
    with the ID3 tag and the Xing header (its count of frames) that FFmpeg writes into a file.
    ``kbps``: a constant bitrate (0: libmp3lame's default)."""
    buffer = io.BytesIO()
    options = {} if whole else {"id3v2_version": "0", "write_xing": "0"}
    with av.open(buffer, "w", format="mp3", options=options) as container:
        stream = container.add_stream("libmp3lame", rate=rate, layout="mono")
        if kbps:
            stream.bit_rate = kbps * 1000
        count = round(seconds * rate)
        data = (0.5 * np.sin(2 * np.pi * freq * np.arange(count) / rate) * 32767).astype(np.int16)
        for start in range(0, count, 1152):
            frame = av.AudioFrame.from_ndarray(
                data[start : start + 1152].reshape(1, -1), format="s16", layout="mono"
            )
            frame.sample_rate, frame.pts = rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def test_a_length_ffmpeg_guessed_from_the_bitrate_is_no_header_announcing_one(tmp_path):
    # an MP3 without a Xing frame (a stream recorded off the air) whose bitrate rises after a quiet
    # start: FFmpeg has no length from any header and guesses one from the first packets' bitrate
    source, out = tmp_path / "radio.mp3", tmp_path / "out.wav"
    source.write_bytes(mp3_part(RATE, 2.0, 440, kbps=32) + mp3_part(RATE, 8.0, 440, kbps=256))
    # ffprobe radio.mp3: "Estimating duration from bitrate, this may be inaccurate", Duration: 00:01:06.36;
    # ffmpeg -i radio.mp3 out.wav: 483840 samples, nothing more said with -loglevel error
    result = run("--source", f"file:{source}", "--sink", f"wav:{out}")
    assert result.returncode == 0, result.stderr
    assert soundfile.info(out).frames == 483840
    # before: "the file ends before the audio its header announces: 10.08 s of 66.36 s are there"
    assert "warning" not in result.stderr, result.stderr


def test_an_mp3_whose_rate_changes_midway_is_converted_to_the_first_rate(tmp_path):
    source, out = tmp_path / "change.mp3", tmp_path / "out.wav"
    source.write_bytes(mp3_part(44100, 2.0, 440) + mp3_part(48000, 2.0, 880))
    result = run_lkplug("run", "--source", f"file:{source}", "--sink", f"wav:{out}")
    assert result.returncode == 0, result.stderr
    # ffmpeg -i change.mp3 out.wav: 44100 Hz, 179913 samples, the 880 Hz half included
    # (before: "audio format changed mid-stream" halfway)
    info = soundfile.info(out)
    assert info.samplerate == 44100 and info.frames == 179913  # the same samples as ffmpeg's, within 1e-3
    data = soundfile.read(out)[0]
    second_half = data[-44100:]
    spectrum = np.abs(np.fft.rfft(second_half))
    assert np.argmax(spectrum) * 44100 / len(second_half) == pytest.approx(880, abs=5)
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "44100 Hz mono -> 48000 Hz mono" in warnings[0]


@pytest.mark.parametrize("sink", [WavSink, FileSink])
def test_a_format_change_reaching_a_sink_says_when_and_what(sink, tmp_path):
    # a sink that cannot change format mid-stream names the media time and old -> new (before: no
    # time: "audio format changed mid-stream (...)"); the file source converts such changes itself
    # (the test above), so frames in two formats are handed to the sink here directly
    stage = sink(str(tmp_path / "out.wav"))
    stage.start({"audio": None})
    stage.write(AudioFrame(np.zeros((44100, 1), np.int16), 44100, 0))
    with pytest.raises(MediaError) as caught:
        stage.write(AudioFrame(np.zeros((4800, 1), np.int16), 48000, 48000))
    stage.close()
    message = str(caught.value)
    assert "changed mid-stream at 1.00 s (audio 44100 Hz, 1 ch, s16 -> audio 48000 Hz, 1 ch, s16)" in message


def test_24_bit_flac_stays_24_bit(tmp_path):
    source, out, out16 = tmp_path / "in24.flac", tmp_path / "out.flac", tmp_path / "out16.flac"
    samples = (half_scale_sine(2.0) * 2**23).astype(np.int32) << 8  # 24 bits, in s32's top bits
    soundfile.write(source, samples, RATE, subtype="PCM_24")
    assert run("--source", f"file:{source}", "--sink", f"file:{out}").returncode == 0
    # ffmpeg -i in24.flac out.flac: sample_fmt s32, bits_per_raw_sample 24, samples identical
    # (before: written as 16-bit)
    assert soundfile.info(out).subtype == "PCM_24"
    np.testing.assert_array_equal(soundfile.read(out, dtype="int32")[0], samples)
    assert run("--source", f"file:{source}", "--sink", f"file:{out16},sample_format=s16").returncode == 0
    assert soundfile.info(out16).subtype == "PCM_16"  # ffmpeg -sample_fmt s16: 16-bit


def test_the_colour_description_is_carried(tmp_path):
    source, out = tmp_path / "bt709.mp4", tmp_path / "out.mp4"
    with av.open(str(source), "w") as container:  # an HD-style clip tagged BT.709 throughout
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        context = stream.codec_context
        context.colorspace = context.color_primaries = context.color_trc = 1
        for index in range(5):
            picture = np.full((48, 64, 3), (200, 60, 40), np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709")
            frame.colorspace = frame.color_primaries = frame.color_trc = 1
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    result = run("--source", f"file:{source}", "--proc", "scale:height=24", "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    # ffmpeg -i bt709.mp4 -vf scale=-2:24 out.mp4: color_space, primaries, transfer bt709, the patch
    # shows as (199, 58, 39) (before: all three "unknown", so players may pick the BT.601 matrix)
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0))
    assert (frame.colorspace, frame.color_primaries, frame.color_trc) == (1, 1, 1)
    np.testing.assert_allclose(frame.to_ndarray(format="rgb24")[10, 10], (199, 58, 39), atol=4)


def test_hdr_metadata_that_is_not_carried_is_said_once(tmp_path):
    source, out = tmp_path / "hdr.mp4", tmp_path / "out.mp4"
    with av.open(str(source), "w") as container:  # an HDR10-style clip: BT.2020, PQ, SEI metadata
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        context = stream.codec_context
        context.colorspace, context.color_primaries, context.color_trc = 9, 9, 16
        stream.options = {
            "x264-params": "mastering-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)"
            "L(10000000,50):cll=1000,400"
        }
        for index in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 100, np.uint8), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    result = run_lkplug("run", "--source", f"file:{source}", "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    # ffmpeg 5.1 -i hdr.mp4 out.mp4 drops both with no word (ffprobe shows no mastering display or
    # light level side data in out.mp4) and keeps bt2020nc/bt2020/smpte2084; lkplug keeps the same
    # colour description and says what it drops (before: dropped with no word)
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, result.stderr
    assert "HDR metadata (mastering display, content light level) is not carried" in warnings[0]
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0))
    assert (frame.colorspace, frame.color_primaries, frame.color_trc) == (9, 9, 16)


def test_the_file_sink_reports_what_it_clips(tmp_path):
    # a new user's 0 dBFS float tone through gain:db=6 into file:out.flac: 31920 of 48000 samples
    # clipped with no word (wav: said it). A sine at twice full scale is beyond it for 2/3 of its
    # samples (|2 sin x| > 1): 32000, less the rounding of where a 20 ms frame's samples fall
    out = tmp_path / "out.flac"
    result = run(
        "--source", "tone:format=flt,amplitude=0,duration=1", "--proc", "gain:db=6", "--sink", f"file:{out}"
    )
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "clipped" in line]
    assert len(warning) == 1 and f"file:{out} clipped" in warning[0], result.stderr
    clipped = int(warning[0].split(" clipped ")[1].split()[0])
    assert abs(clipped - 32000) <= 160, clipped


def test_joined_mpeg_ts_pieces_keep_every_picture(tmp_path):
    # `cat a.ts a.ts` (as HLS segments and recorders leave them): the second piece's timestamps
    # start again. lkplug before: 25 of 50 pictures, "1.00 s of media", exit 0. ffmpeg 5.1
    # (`ffmpeg -i p2.ts out.mp4`) keeps 50 pictures, 2.00 s: the demuxer of a format with
    # timestamp discontinuities (AVFMT_TS_DISCONT) lets the second piece go on after the first
    piece, joined, out = tmp_path / "p1.ts", tmp_path / "p2.ts", tmp_path / "out.mp4"
    with av.open(str(piece), "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(25):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), index * 10, np.uint8), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    joined.write_bytes(piece.read_bytes() * 2)
    result = run("--source", f"file:{joined}", "--sink", f"file:{out}")
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        times = [frame.time for frame in container.decode(video=0)]
    assert len(times) == 50
    assert times == sorted(times) and times[-1] - times[0] == pytest.approx(49 / 25, abs=0.002)


def test_a_stream_a_wav_does_not_have_is_refused(tmp_path):
    # a new user's `file:a.wav,stream=a:3` wrote stream a:0 with exit 0 (the WAV reader skipped the
    # check every other format has); ffmpeg -i a.wav -map 0:a:3: "Stream map '0:a:3' matches no streams"
    source = tmp_path / "a.wav"
    soundfile.write(source, np.zeros((4800, 1), np.int16), 48000)
    line = assert_one_line_error(run("--source", f"file:{source},stream=a:3", "--sink", "null"))
    assert "has only 1 audio stream(s), wanted a:3" in line


def test_a_file_source_without_a_path_says_so():
    # before: "bad component spec 'file:': text after the closing quote in ''" (there is no quote)
    result = run("--source", "file:", "--sink", "null")
    assert result.returncode == 2
    assert "needs a path" in assert_one_line_error(result)


@pytest.mark.parametrize("size", [(480, 270), (104, 78), (12, 10), (480, 272)])
def test_a_picture_goes_through_with_its_colours_where_ffmpeg_puts_them(size, tmp_path):
    """Lossless in, lossless out (ffv1), no stage: every plane as it went in, which is what ffmpeg
    gives (ffmpeg 5.1 -i in.mkv -c:v ffv1 ref.mkv decodes to the input's own planes, checked for these
    sizes). Before: a height not a multiple of 4 (270, 78, 10) went out with its chroma planes read
    from the wrong place (PyAV's from_numpy_buffer took 480x270 for 480x268): PSNR U 16.5 dB."""
    width, height = size
    source, out = tmp_path / "in.mkv", tmp_path / "out.mkv"
    rng = np.random.default_rng(7)
    pictures = [rng.integers(16, 236, (height * 3 // 2, width), dtype=np.uint8) for _ in range(5)]
    with av.open(str(source), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index, picture in enumerate(pictures):
            frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    result = run("--source", f"file:{source}", "--sink", f"file:{out},video_codec=ffv1")
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        ours = [frame.to_ndarray() for frame in container.decode(video=0)]
    assert len(ours) == len(pictures)
    for mine, sent in zip(ours, pictures, strict=True):
        np.testing.assert_array_equal(mine, sent)
