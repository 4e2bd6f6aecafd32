"""Files through PyAV: every output format round-trips, video is scaled and muxed with its audio,
damaged and misread inputs are handled, and Ctrl-C leaves a playable file. All media is made here."""

from __future__ import annotations

import asyncio
import signal
import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
from conftest import assert_one_line_error, run_lkplug, wait_for_bytes

from lkplug import Built, Pipeline, Registry, RunContext, Source, VideoFormat, VideoFrame, build
from lkplug.testing import dominant_frequency, sine, to_s16
from lkplug_av.source import FileSource

AUDIO_FORMATS = ["mp4", "mov", "m4a", "mkv", "webm", "ogg", "opus", "flac", "mp3", "wav"]
VIDEO_FORMATS = ["mp4", "mov", "mkv", "webm"]
QUADRANTS = {
    "top_left": (230, 40, 40),
    "top_right": (40, 200, 40),
    "bottom_left": (40, 40, 230),
    "bottom_right": (230, 230, 230),
}


# media made here ------------------------------------------------------------------------------


def pattern(width: int, height: int) -> np.ndarray:
    """Four coloured quadrants (RGB)."""
    picture = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    picture[:h, :w] = QUADRANTS["top_left"]
    picture[:h, w:] = QUADRANTS["top_right"]
    picture[h:, :w] = QUADRANTS["bottom_left"]
    picture[h:, w:] = QUADRANTS["bottom_right"]
    return picture


def make_clip(path, seconds=2.0, width=1280, height=720, fps=30, rate=48000, freq=440.0):
    """An H.264 + AAC clip made with PyAV alone (independent of lkplug's sink)."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast"}
        audio = container.add_stream("aac", rate=rate)
        audio.layout = "stereo"
        audio.bit_rate = 128000
        picture = pattern(width, height)
        for index in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
            frame.pts = index
            container.mux(video.encode(frame))
        samples = to_s16(sine(freq, seconds, rate, 2))
        step = 1024
        for start in range(0, len(samples), step):
            chunk = np.ascontiguousarray(samples[start : start + step].reshape(1, -1))
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
            frame.sample_rate, frame.pts = rate, start
            container.mux(audio.encode(frame))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))


def decode_all(path, stream="a:0"):
    """Every frame the file source gives for ``stream``."""
    source = FileSource(str(path), stream=stream)
    source.bind(RunContext())

    async def collect():
        try:
            return [frame async for frame in source.frames()]
        finally:
            await source.aclose()

    return asyncio.run(collect()), source


def audio_of(path):
    frames, _ = decode_all(path)
    data = np.concatenate([f.data for f in frames])
    return data, frames[0].sample_rate


def region_means(frame: VideoFrame) -> dict[str, np.ndarray]:
    """Mean RGB in the middle of each quadrant, converted by FFmpeg from whatever the frame holds."""
    rgb = av.VideoFrame.from_ndarray(frame.data, format=frame.pixel_format).to_ndarray(format="rgb24")
    h, w = frame.height // 4, frame.width // 4
    centres = {
        "top_left": (h, w),
        "top_right": (h, 3 * w),
        "bottom_left": (3 * h, w),
        "bottom_right": (3 * h, 3 * w),
    }
    return {
        name: rgb[y - h // 2 : y + h // 2, x - w // 2 : x + w // 2].reshape(-1, 3).mean(axis=0)
        for name, (y, x) in centres.items()
    }


class PatternSource(Source):
    """RGB test pattern frames (so the engine must insert the pixel-format converter for encoders)."""

    def __init__(self, seconds=1.0, width=320, height=240, fps=25):
        self.count, self.width, self.height, self.fps = round(seconds * fps), width, height, fps

    def probe(self):
        return {"video": VideoFormat(self.width, self.height, "rgb24", self.fps)}

    async def frames(self):
        picture = pattern(self.width, self.height)
        for index in range(self.count):
            yield VideoFrame(picture, "rgb24", self.width, self.height, index / self.fps, 1 / self.fps)


@pytest.fixture(scope="module")
def registry():
    return Registry.load()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    make_clip(path)
    return path


# audio round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("ext", AUDIO_FORMATS)
def test_tone_round_trips_through_every_output_format(ext, tmp_path, registry):
    out = tmp_path / f"tone.{ext}"
    pipeline = Pipeline.from_specs("tone:freq=1000,duration=2,rate=48000", [], [f"file:{out}"], registry)
    asyncio.run(pipeline.run())
    data, rate = audio_of(out)
    assert rate == 48000
    # encoders add priming and padding (AAC 1024 samples, MP3 a frame), never more than ~60 ms
    assert abs(len(data) / rate - 2.0) < 0.06, len(data) / rate
    assert abs(dominant_frequency(data, rate) - 1000) < 5


def test_m4a_resampled_to_48k_into_opus(tmp_path):
    speech = tmp_path / "speech.m4a"
    made = run_lkplug("run", "--source", "tone:freq=300,duration=3,rate=44100", "--sink", f"file:{speech}")
    assert made.returncode == 0, made.stderr
    out = tmp_path / "out.opus"
    result = run_lkplug(
        "run", "--source", f"file:{speech}", "--proc", "resample:rate=48000", "--sink", f"file:{out}"
    )
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name in ("opus", "libopus")
    data, rate = audio_of(out)
    assert rate == 48000
    assert abs(len(data) / rate - 3.0) < 0.06
    assert abs(dominant_frequency(data, rate) - 300) < 5


def test_an_opus_sink_gets_48k_without_asking(tmp_path, registry):
    out = tmp_path / "x.opus"
    pipeline = Pipeline.from_specs("tone:rate=44100,duration=1", [], [f"file:{out}"], registry)
    assert "resample:rate=48000  [inserted]" in pipeline.explain()


# video ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", VIDEO_FORMATS)
def test_video_pattern_round_trips(ext, tmp_path, registry):
    out = tmp_path / f"pattern.{ext}"
    pipeline = Pipeline(
        Built("pattern", PatternSource()), [], [build(registry, "sink", f"file:{out}")], registry
    )
    plan = pipeline.explain()
    assert "format:pixel_format=yuv420p  [inserted]" in plan  # rgb24 in, the encoder takes yuv420p
    asyncio.run(pipeline.run())
    frames, _ = decode_all(out, "v:0")
    assert len(frames) == 25
    assert (frames[0].width, frames[0].height) == (320, 240)
    assert abs(frames[-1].time - 24 / 25) < 0.01
    for name, mean in region_means(frames[len(frames) // 2]).items():
        assert np.abs(mean - QUADRANTS[name]).max() < 12, (name, mean)


def test_scale_720p_clip_to_360p_h264_aac_with_matching_durations(clip, tmp_path):
    out = tmp_path / "small.mp4"
    result = run_lkplug(
        "run", "--source", f"file:{clip}", "--proc", "scale:height=360", "--sink", f"file:{out}"
    )
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "aac"
    pictures, _ = decode_all(out, "v:0")
    assert (pictures[0].width, pictures[0].height) == (640, 360)
    video_seconds = pictures[-1].time + 1 / 30
    data, rate = audio_of(out)
    assert abs(video_seconds - 2.0) < 0.05
    assert abs(len(data) / rate - video_seconds) <= 0.05
    for name, mean in region_means(pictures[10]).items():
        assert np.abs(mean - QUADRANTS[name]).max() < 12, (name, mean)


def test_wav_sink_on_a_video_file_decodes_only_audio(clip, tmp_path):
    out = tmp_path / "a.wav"
    plan = run_lkplug("run", "--source", f"file:{clip}", "--sink", f"wav:{out}", "--explain")
    assert "audio 48000 Hz" in plan.stdout and "  video:" not in plan.stdout
    both = run_lkplug(
        "run", "--source", f"file:{clip}", "--proc", "scale:height=360", "--sink", "null", "--explain"
    )
    assert "video 1280x720 yuv420p" in both.stdout and "video 640x360" in both.stdout


def test_fps_drops_and_repeats(tmp_path, registry):
    # 1 s at 25 fps, each picture 1/25 s long, in Matroska: ffmpeg -i in.mkv -vf fps=12.5 (and fps=50)
    # -fps_mode passthrough gives 13 and 50 pictures (the end, 1 s, is 12.5 slots: rounded up)
    for rate, expected in ((12.5, 13), (50, 50)):
        out = tmp_path / f"fps{rate}.mkv"
        pipeline = Pipeline(
            Built("pattern", PatternSource()),
            [build(registry, "processor", f"fps:{rate}")],
            [build(registry, "sink", f"file:{out}")],
            registry,
        )
        asyncio.run(pipeline.run())
        frames, _ = decode_all(out, "v:0")
        assert len(frames) == expected, (rate, len(frames))


def test_start_duration_and_loop(tmp_path):
    path = tmp_path / "ramp.wav"
    soundfile.write(path, to_s16(sine(500, 3.0, 16000)), 16000)
    frames, _ = decode_all_with(path, start=1.0, duration=1.5)
    assert sum(f.samples for f in frames) == 24000
    frames, source = decode_all_with(path, loop=3)
    assert sum(f.samples for f in frames) == 3 * 48000
    assert [f.timestamp for f in frames] == sorted(f.timestamp for f in frames)


def encode_noise(path, codec: str, sample_format: str, seconds=5.0, rate=44100) -> None:
    """Mono noise encoded with PyAV alone (FLAC: 4608-sample frames at 44.1 kHz, as ffmpeg makes)."""
    noise = np.random.default_rng(5).uniform(-0.3, 0.3, (1, round(seconds * rate))).astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout="mono", format=sample_format)
        for at in range(0, noise.shape[1], 4096):
            frame = av.AudioFrame.from_ndarray(noise[:, at : at + 4096], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, at
            resampler = av.AudioResampler(format=sample_format, layout="mono", rate=rate)
            for piece in resampler.resample(frame):
                container.mux(stream.encode(piece))
        container.mux(stream.encode(None))


def samples_of(frames) -> np.ndarray:
    return np.concatenate([frame.data for frame in frames])


@pytest.mark.parametrize(
    "name, codec, sample_format",
    [
        ("noise24.flac", "flac", "s32"),  # 24-bit FLAC decodes to s32: converted to flt here
        ("noise24.m4a", "alac", "s32p"),
        ("noise16.flac", "flac", "s16"),  # s16: taken as it is (it was right before too)
    ],
)
def test_start_is_exact_to_the_sample_for_converted_sample_formats(tmp_path, name, codec, sample_format):
    # ffmpeg 5.1: `ffmpeg -f lavfi -i anoisesrc=d=5:r=44100 -c:a flac -sample_fmt s32 noise24.flac`, then
    # `ffmpeg -ss 1.25 -i noise24.flac -c:a pcm_f32le ref.wav` gives 165375 samples, the full decode's from
    # sample 55125 (1.25 x 44100) on; the same for ALAC s32p and 16-bit FLAC. Before the fix lkplug began
    # at 50688 (11 x 4608, the frame the seek lands on) for s32/s32p: the converted frames lost their time
    path = tmp_path / name
    encode_noise(path, codec, sample_format)
    full = samples_of(decode_all_with(path)[0])
    cut = samples_of(decode_all_with(path, start=1.25)[0])
    assert len(full) == 220500
    assert len(cut) == 165375
    np.testing.assert_array_equal(cut, full[55125:])


@pytest.mark.parametrize(
    "name, start, length, first",
    [
        # a FLAC behind a padded ID3 tag: FFmpeg's seek fails ("Operation not permitted") and leaves
        # the demuxer at its end. ffmpeg 5.1 -ss 0.18 -i X -c:a pcm_f32le ref.wav gives 12062 of the
        # file's 20000 samples, from 7938 = 0.18 x 44100 on; lkplug before: "start=0.18 is past the
        # end: the file is 0.45 s", exit 1
        ("tinytag__with_padded_id3_header.flac", 0.18, 20000, 7938),
        # laced Matroska blocks: ALAC at 41000 Hz whose frames after the first have no pts. ffmpeg 5.1
        # -ss 0.3 gives 217076 of 229376 samples, from 12300 = 0.3 x 41000 on; lkplug before: 225280,
        # from sample 4096
        ("mm__alac-in-matroska-short.mka", 0.3, 229376, 12300),
    ],
)
def test_start_is_exact_where_the_seek_fails_or_frames_have_no_time(shared_media, name, start, length, first):
    path = shared_media / "files" / name
    full = samples_of(decode_all_with(path)[0])
    cut = samples_of(decode_all_with(path, start=start)[0])
    assert len(full) == length
    np.testing.assert_array_equal(cut, full[first:])


def vorbis(path, freq: float, rate: int, seconds: float = 1.0) -> None:
    """A stereo sine in Ogg Vorbis (FFmpeg's own encoder, the one PyAV's FFmpeg has)."""
    samples = np.ascontiguousarray(sine(freq, seconds, rate, 2).T, np.float32)
    with av.open(str(path), "w") as container:
        options = {"strict": "experimental"}
        stream = container.add_stream("vorbis", rate=rate, layout="stereo", options=options)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = rate, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def test_a_chained_ogg_whose_next_link_changes_rate_is_decoded_to_the_end(tmp_path):
    first, second, chained = tmp_path / "a.ogg", tmp_path / "b.ogg", tmp_path / "ab.ogg"
    vorbis(first, 440, 44100)
    vorbis(second, 660, 48000)
    chained.write_bytes(first.read_bytes() + second.read_bytes())  # cat a.ogg b.ogg > ab.ogg
    out = tmp_path / "out.wav"
    result = run_lkplug("run", "--source", f"file:{chained}", "--sink", f"wav:{out},subtype=float")
    assert result.returncode == 0, result.stderr
    assert "damaged" not in result.stderr
    assert "audio changed mid-stream at 1.00 s (44100 Hz stereo -> 48000 Hz stereo)" in result.stderr
    data, rate = soundfile.read(out, always_2d=True)
    # ffmpeg 5.1 -i X.ogg -c:a pcm_f32le: a.ogg 44160 samples, b.ogg 48000 (48 kHz), ab.ogg 89201 at
    # 44100 Hz stereo. lkplug: 44160 + b.ogg resampled to 44100 Hz (44100) = 88260; ffmpeg 5.1 gives
    # 941 more: it keeps b's 1024-sample pre-roll (ffprobe: a frame at pts -1024 after the link change),
    # which it drops when b.ogg is read alone, as Ogg Vorbis says (a link's first granule position).
    # lkplug before: 44160 samples, the second link lost, exit 0 with a "damaged input" warning
    assert (rate, data.shape[1]) == (44100, 2)
    assert len(data) == 88260
    assert dominant_frequency(data[:44100], rate) == pytest.approx(440, abs=2)
    assert dominant_frequency(data[44160:], rate) == pytest.approx(660, abs=2)


def ogg_link(path, codec: str, freq: float, channels: int, rate: int = 48000, seconds: float = 2.0) -> None:
    """One Ogg link: a sine in ``codec`` (libopus, or FFmpeg's own vorbis), made with PyAV."""
    layout = "stereo" if channels == 2 else "mono"
    with av.open(str(path), "w", format="ogg") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout, options={"strict": "experimental"})
        fmt = stream.codec_context.codec.audio_formats[0]  # libopus: s16; vorbis: fltp
        samples = sine(freq, seconds, rate, channels)  # (samples, channels)
        samples = samples.T if fmt.is_planar else samples.reshape(1, -1)
        samples = np.ascontiguousarray(to_s16(samples) if fmt.name == "s16" else samples.astype(np.float32))
        frame = av.AudioFrame.from_ndarray(samples, format=fmt.name, layout=layout)
        frame.sample_rate, frame.pts = rate, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def chained(tmp_path, name: str, links: list[tuple]) -> tuple:
    """``cat`` of the links (codec, freq, channels) into ``name``; the paths of the links alone too."""
    parts = []
    for number, (codec, freq, channels) in enumerate(links):
        part = tmp_path / f"link{number}{Path(name).suffix}"
        ogg_link(part, codec, freq, channels, 44100 if codec == "vorbis" else 48000)
        parts.append(part)
    whole = tmp_path / name
    whole.write_bytes(b"".join(part.read_bytes() for part in parts))
    return whole, parts


def mp3_file(path, freq: float, rate: int, seconds: float = 2.0, channels: int = 1) -> bytes:
    """A sine as an MP3 made with PyAV (libmp3lame; FFmpeg's muxer starts it with an ID3v2 tag)."""
    layout = "stereo" if channels == 2 else "mono"
    with av.open(str(path), "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=rate, layout=layout)
        samples = sine(freq, seconds, rate, channels).T.astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=layout)
        frame.sample_rate, frame.pts = rate, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path.read_bytes()


# an ID3v1 tag as taggers append it: "TAG", title, artist, album (30 bytes each), year, comment, genre
ID3V1 = b"TAG" + b"a tone".ljust(30, b"\0") + b"lkplug".ljust(60, b"\0") + b"2026" + bytes(30) + b"\xff"


@pytest.mark.parametrize(
    "b_rate, between, length",
    [
        # ffmpeg 5.1 -i ab.mp3 -f f32le: 178808 samples, b converted to 44.1 kHz; the same samples as
        # lkplug's (compared). Before: 179960, a frame of silence (1152 samples) where b's ID3v2 tag is,
        # and "damaged input ... Header missing"
        (48000, b"", 178808),
        # ffmpeg 5.1: 178607 samples, both; before: 179759 (an ID3v1 tag decodes to nothing, silently)
        (44100, b"", 178607),
        (44100, ID3V1, 178607),
    ],
    ids=["rate-change", "id3v2", "id3v1-and-v2"],
)
def test_mp3_files_joined_end_to_end_play_without_a_hole_for_their_tags(tmp_path, b_rate, between, length):
    a = mp3_file(tmp_path / "a.mp3", 440, 44100)
    b = mp3_file(tmp_path / "b.mp3", 660, b_rate)
    whole = tmp_path / "ab.mp3"
    whole.write_bytes(a + between + b)
    data, stderr = read_through_lkplug(whole, tmp_path)
    assert len(data) == length, stderr
    assert "damaged" not in stderr
    assert dominant_frequency(data[4410:88200, 0], 44100) == pytest.approx(440, abs=2)
    assert dominant_frequency(data[-88200:-4410, 0], 44100) == pytest.approx(660, abs=2)


def test_a_joined_mp3_that_changes_rate_and_channels_is_told_as_it_changes(tmp_path):
    """44.1 kHz stereo, then 16 kHz mono. Before: "(44100 Hz stereo -> 44100 Hz mono)": the first
    frame of the second file carries the first file's rate (FFmpeg's decoder sets the new one after
    it), and the warning was made from that frame."""
    whole = tmp_path / "ab.mp3"
    whole.write_bytes(
        mp3_file(tmp_path / "a.mp3", 440, 44100, channels=2) + mp3_file(tmp_path / "b.mp3", 660, 16000)
    )
    _, stderr = read_through_lkplug(whole, tmp_path)
    assert "audio changed mid-stream at 2.0" in stderr
    assert "(44100 Hz stereo -> 16000 Hz mono)" in stderr


def read_through_lkplug(path, tmp_path):
    out = tmp_path / f"{path.name}.wav"
    result = run_lkplug("run", "--source", f"file:{path}", "--sink", f"wav:{out},subtype=float")
    assert result.returncode == 0, result.stderr
    return soundfile.read(out, always_2d=True)[0], result.stderr


@pytest.mark.parametrize(
    "codec, ext, length, second",
    [
        # ffmpeg 5.1 -i ab.opus -f f32le: 192000 samples, b.opus (96000 alone) from 96000 on. lkplug
        # before: 192312, b's first frame at the time where a ended + its 312 samples of pre-skip
        ("libopus", "opus", 192000, 96000),
        # ffmpeg 5.1 -i ab.ogg -f f32le: 177536 samples (a.ogg and b.ogg 88256 each), b.ogg from 89280 on:
        # it keeps b's 1024-sample pre-roll. Right before too (FFmpeg's encoder starts a link with a long
        # block): libvorbis's short first block is the shared-media case below
        ("vorbis", "ogg", 177536, 89280),
    ],
)
def test_a_chained_ogg_of_one_format_is_its_links_end_to_end(tmp_path, codec, ext, length, second):
    whole, (first, later) = chained(tmp_path, f"ab.{ext}", [(codec, 440, 2), (codec, 660, 2)])
    data, _ = read_through_lkplug(whole, tmp_path)
    alone, _ = read_through_lkplug(later, tmp_path)
    assert len(data) == length
    # b's samples as when it is read alone, once the decoder has left a's state behind (0.1 s)
    np.testing.assert_allclose(data[-len(alone) + 4800 :], alone[4800:], atol=1e-3)
    assert len(data) - len(alone) == second
    assert not np.any(np.all(data[second - 100 : second + 2000] == 0, axis=1))  # no hole at the join


def test_libvorbis_block_switches_and_links_leave_no_hole(shared_media, tmp_path):
    # libvorbis switches from long to short blocks: FFmpeg 8 decodes such a 128-sample packet to 576
    # samples (the long block's overlap) and gives them the packet's time, 448 samples late.
    # ffmpeg 5.1 -i mozfc__ting-48k-1ch.ogg -f f32le: 33297 samples; cat of it twice: 66722, the second
    # link from 33425 on (its 128-sample first packet kept). lkplug before: 33745 and 67170 (before the
    # link fix: 67618), a 448-sample silence in each link where the blocks switch
    ting = shared_media / "files" / "mozfc__ting-48k-1ch.ogg"
    alone, _ = read_through_lkplug(ting, tmp_path)
    twice = tmp_path / "twice.ogg"
    twice.write_bytes(ting.read_bytes() * 2)
    data, _ = read_through_lkplug(twice, tmp_path)
    assert len(alone) == 33297
    assert len(data) == 66722
    np.testing.assert_allclose(data[:33297], alone, atol=1e-6)
    np.testing.assert_allclose(data[33425 + 4800 :], alone[4800:], atol=1e-3)


def test_a_chained_opus_with_a_mono_link_between_is_as_long_as_its_links(tmp_path):
    # cat a.opus b.opus d.opus a.opus (d mono): ffmpeg 5.1 -i abda.opus -f f32le gives 384000 samples
    # (4 x 96000), nothing silent. lkplug before: 576936, 2 s of digital silence after b and after d
    links = [("libopus", 440, 2), ("libopus", 660, 2), ("libopus", 880, 1), ("libopus", 440, 2)]
    whole, _ = chained(tmp_path, "abda.opus", links)
    data, stderr = read_through_lkplug(whole, tmp_path)
    assert len(data) == 384000
    # ffmpeg 5.1 reads on without a word of damage (before: "damaged input ... failed to create or
    # replace stream", FFmpeg 8's demuxer on the change from d back to a)
    assert "damaged" not in stderr
    silent = np.all(np.abs(data) < 1e-4, axis=1)
    assert silent[1000:-1000].sum() < 100  # a sine's zero crossings, not seconds of silence
    for link, freq in enumerate((440, 660, 880, 440)):
        piece = data[link * 96000 + 2000 : (link + 1) * 96000 - 2000]
        assert dominant_frequency(piece, 48000) == pytest.approx(freq, abs=2)


def test_a_mono_opus_link_after_a_stereo_one_is_at_full_level_on_both_channels(tmp_path):
    # ffmpeg 5.1 decodes every link with the first link's decoder: cat a.opus d.opus (d mono),
    # ffmpeg -i ad.opus -f f32le: d's part at -9.00 dB RMS on both channels, d alone -9.01 dB;
    # lkplug equal to it sample for sample (2.4e-7). lkplug before: -12.02 dB, upmixed at -3 dB with
    # an "audio changed mid-stream" warning
    whole, (_, mono) = chained(tmp_path, "ad.opus", [("libopus", 440, 2), ("libopus", 880, 1)])
    data, stderr = read_through_lkplug(whole, tmp_path)
    alone, _ = read_through_lkplug(mono, tmp_path)
    assert len(data) == 192000 and "changed mid-stream" not in stderr
    # once the decoder has left the stereo link's state behind (0.2 s), the mono link as it is alone,
    # the same on both channels
    np.testing.assert_array_equal(data[96000 + 9600 :, 0], data[96000 + 9600 :, 1])
    np.testing.assert_allclose(data[96000 + 9600 :, 0], alone[9600:, 0], atol=1e-3)


def decode_all_with(path, **params):
    source = FileSource(str(path), **params)

    async def collect():
        return [frame async for frame in source.frames()]

    return asyncio.run(collect()), source


# damaged and misread input ------------------------------------------------------------------


def test_corrupted_middle_decodes_past_the_damage_with_one_warning(tmp_path):
    clean = tmp_path / "clean.mp3"
    # at 192k, where the damage costs one frame; at lame's default 128k these bytes cost 2 s, in
    # ffmpeg 5.1 as in lkplug (ffmpeg -i damaged.mp3 out.wav: 1.993 s of 4)
    made = run_lkplug(
        "run", "--source", "tone:freq=1000,duration=4", "--sink", f"file:{clean},bitrate=192000"
    )
    assert made.returncode == 0, made.stderr
    damaged = tmp_path / "damaged.mp3"
    content = bytearray(clean.read_bytes())
    middle = len(content) // 2
    content[middle : middle + 3000] = (
        np.random.default_rng(7).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    )
    damaged.write_bytes(bytes(content))
    out = tmp_path / "out.wav"
    result = run_lkplug("run", "--source", f"file:{damaged}", "--sink", f"wav:{out}", "--quiet")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("lkplug: warning: "), result.stderr
    assert "damaged" in lines[0]
    info = soundfile.info(out)
    assert 3.0 < info.frames / info.samplerate < 4.1  # the part after the damage is there too
    data, rate = soundfile.read(out)
    assert abs(dominant_frequency(data[-rate:], rate) - 1000) < 5


def test_big_endian_rifx_wav_is_read_right(tmp_path):
    samples = to_s16(sine(440, 0.5, 22050, 2))
    path = tmp_path / "be.wav"
    soundfile.write(path, samples, 22050, subtype="PCM_16", endian="BIG")
    assert path.read_bytes()[:4] == b"RIFX"
    data, rate = audio_of(path)
    assert rate == 22050 and data.dtype == np.int16
    assert np.array_equal(data, samples)  # FFmpeg alone would give byte-swapped noise


def test_24_bit_in_4_byte_wav_is_refused(tmp_path):
    path = tmp_path / "odd.wav"
    values = np.array([-96, 23052, 8388607, -8360672], np.int32)
    data = values.astype("<i4").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 2, 48000, 48000 * 8, 8, 24)
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    out = tmp_path / "out.wav"
    line = assert_one_line_error(run_lkplug("run", "--source", f"file:{path}", "--sink", f"wav:{out}"))
    assert "24-bit samples in 4-byte slots" in line
    assert not out.exists()


def test_nothing_decodable_is_one_error_and_no_output(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0" * 4096)
    out = tmp_path / "out.mp4"
    assert_one_line_error(run_lkplug("run", "--source", f"file:{junk}", "--sink", f"file:{out}"))
    assert not out.exists()


# each packet in its own stream ---------------------------------------------------------------


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("media") / "short.mp4"
    make_clip(path, seconds=1.0, width=640, height=360)
    return path


# Expected values from ffmpeg 5.1 on the same 1 s clip (30 pictures; `ffmpeg -i short.mp4 -f s16le -`:
# 48128 samples, 47 AAC frames): `ffmpeg -i short.mp4 ref.mp4` -> ffprobe nb_frames h264 30, aac 48
# (47 + the encoder's priming frame), 48128 samples decoded; `-c:a libopus ref.mkv` -> 48128 samples;
# `ffmpeg -stream_loop 1 -i short.mp4 ref.mp4` -> aac 95, 96256 samples (its h264 61 is a picture it
# repeats at the seam; each pass here gives its 30). -t 2 stops the loop=0 source on its seam, after
# 2 s x 48 kHz = 96000 samples: AAC carries them in 94 whole frames (96256), Opus in Matroska cut to
# the sample.
@pytest.mark.parametrize(
    "extension, loop, stop, pictures, samples, header",
    [
        ("mp4", 1, [], 30, 48128, (30, 48)),
        ("mp4", 2, [], 60, 96256, (60, 95)),
        ("mp4", 0, ["-t", "2"], 60, 96256, (60, 95)),
        ("mkv", 1, [], 30, 48128, None),
        ("mkv", 0, ["-t", "2"], 60, 96000, None),
    ],
)
def test_each_encoders_packets_go_into_its_own_stream(
    extension, loop, stop, pictures, samples, header, short_clip, tmp_path
):
    # the audio encoder's last packets, drained at close, went into the video stream (index 0): the
    # mp4 of one pass had 32 video samples and 46 audio, the demuxer hiding 2, or showing the last
    # as a broken picture ("missing picture in access unit"), as a Ctrl-C left it now and then
    out = tmp_path / f"out.{extension}"
    result = run_lkplug("run", "--source", f"file:{short_clip},loop={loop}", "--sink", f"file:{out}", *stop)
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        if header:  # the sample tables (stsz) count every packet, shown or not
            assert (video.frames, audio.frames) == header
        assert sum(1 for _ in container.decode(video)) == pictures  # each decodes as a picture
    with av.open(str(out)) as container:
        assert sum(frame.samples for frame in container.decode(audio=0)) == samples


# Ctrl-C ---------------------------------------------------------------------------------------


def test_ctrl_c_during_a_video_encode_leaves_a_playable_file(tmp_path):
    clip = tmp_path / "short.mp4"
    make_clip(clip, seconds=1.0, width=640, height=360)
    out = tmp_path / "endless.mp4"
    process = subprocess.Popen(
        [sys.executable, "-m", "lkplug", "run", "--source", f"file:{clip},loop=0", "--sink", f"file:{out}"],
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_bytes(out, 50_000)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    with av.open(str(out)) as container:  # the trailer (moov) is written: the file opens and plays
        video = container.streams.video[0]
        pictures = sum(1 for _ in container.decode(video))
        samples = video.frames  # the sample table's count: a packet of the audio's would be one more
    assert pictures >= 30 and samples == pictures
    data, rate = audio_of(out)  # the audio is there too; how far it got depends on the interleaving
    assert abs(len(data) / rate - pictures / 30) < 0.6


def test_frame_rate_is_kept(clip):
    frames, source = decode_all(clip, "v:0")
    assert source.formats["video"].fps == 30
    assert len(frames) == 60
    assert Fraction(round(frames[1].time - frames[0].time, 6)).limit_denominator(100) == Fraction(1, 30)


def test_start_and_duration_on_audio_and_video_share_one_clock(clip):
    frames, _ = decode_all_with(clip, start=1.0, duration=0.5, video=True)
    audio = [f for f in frames if f.kind == "audio"]
    pictures = [f for f in frames if f.kind == "video"]
    assert sum(f.samples for f in audio) == 24000 and audio[0].timestamp == 0
    assert len(pictures) == 15 and pictures[0].time == 0.0


def test_duration_option_cuts_audio_and_video_alike(clip, tmp_path):
    out = tmp_path / "cut.mkv"
    result = run_lkplug(
        "run", "--source", f"file:{clip}", "--proc", "scale:height=180", "--sink", f"file:{out}", "-t", "1.5"
    )
    assert result.returncode == 0, result.stderr
    pictures, _ = decode_all(out, "v:0")
    data, rate = audio_of(out)
    assert len(pictures) == 45
    assert abs(len(data) / rate - 1.5) < 0.03
