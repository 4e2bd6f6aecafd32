"""The level of every channel-layout conversion is the ffmpeg CLI's for the same input and output.

libswresample scales a downmix's matrix so the sum cannot clip only when its output is an integer
format (rematrix.c); the ffmpeg CLI's ``-ac`` converts straight to what the encoder takes, so an s16
WAV gets a scaled downmix and a float WAV or AAC an unscaled one, whatever the input's format. The
expected samples here come from libswresample itself, run as ``ffmpeg -ac`` runs it (decoder format
in, the encoder's format out: one conversion); the dB figures beside them were read from the ffmpeg
5.1 CLI on these same inputs (``volumedetect``'s figure rounds them to 0.1 dB; ours are from the
decoded samples). No test here needs ffmpeg: every input is made with PyAV.
"""

from __future__ import annotations

import asyncio

import av
import numpy as np
import pytest
from conftest import run_lkplug

from lkplug import AudioFormat, Pipeline

RATE = 48000
AMPLITUDE = 0.1  # every channel a sine at this peak: sums stay far from clipping
DECODED_AS = {"s16": "pcm_s16le", "s32": "pcm_s32le", "flt": "pcm_f32le", "dbl": "pcm_f64le", "u8": "pcm_u8"}
DTYPES = {"s16": np.int16, "s32": np.int32, "flt": np.float32, "dbl": np.float64, "u8": np.uint8}
CONVERSIONS = {  # (input layout, output layout, the count given to remix: and to ffmpeg's -ac)
    "stereo->mono": ("stereo", "mono", 1),
    "5.1->stereo": ("5.1", "stereo", 2),
    "5.1(side)->mono": ("5.1(side)", "mono", 1),
    "mono->stereo": ("mono", "stereo", 2),
    "7.1->5.1": ("7.1", "5.1", 6),
}
# sink spec -> (the format the ffmpeg CLI's encoder takes there, its -c:a)
WAV_OUTPUTS = {
    "wav:{}": "s16",  # ffmpeg -c:a pcm_s16le
    "wav:{},subtype=float": "flt",  # -c:a pcm_f32le
    "wav:{},subtype=pcm24": "s32",  # -c:a pcm_s24le (the encoder takes s32)
    "file:{},sample_format=s32": "s32",  # a .flac: -sample_fmt s32
}


def sines(samples: int, channels: int) -> np.ndarray:
    """(samples, channels) float64: channel k a sine of 300 + 50 k Hz, phase k, at AMPLITUDE."""
    t = np.arange(samples) / RATE
    return np.stack([AMPLITUDE * np.sin(2 * np.pi * (300 + 50 * k) * t + k) for k in range(channels)], 1)


def write_wav(path, sample_format: str, layout: str, seconds: float = 0.25, data=None) -> None:
    """A WAV in ``sample_format`` (FFmpeg's name) and ``layout``, written by PyAV's PCM encoders:
    ``data`` ((samples, channels) float64, full scale 1.0), else ``sines`` for ``seconds``."""
    channels = av.AudioLayout(layout).nb_channels
    data = sines(round(seconds * RATE), channels) if data is None else data
    scale = {"s16": 32767, "s32": 2147483647, "u8": 127}.get(sample_format)
    if scale:
        data = np.round(data * scale) + (128 if sample_format == "u8" else 0)
    data = data.astype(DTYPES[sample_format])
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream(DECODED_AS[sample_format], rate=RATE, layout=layout)
        frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format=sample_format, layout=layout)
        frame.sample_rate, frame.pts = RATE, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def as_float(frame: av.AudioFrame) -> np.ndarray:
    """(samples, channels) float64 at full scale 1.0."""
    data = frame.to_ndarray()
    data = data.T if frame.format.is_planar else data.reshape(-1, len(frame.layout.channels))
    if frame.format.name.startswith("u8"):
        return (data.astype(np.float64) - 128) / 128
    if frame.format.name.startswith(("s16", "s32")):
        return data / float(-np.iinfo(data.dtype).min)
    return data.astype(np.float64)


def decode(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.concatenate([as_float(frame) for frame in container.decode(audio=0)])


def ffmpeg_ac(path, layout: str, stored: str) -> np.ndarray:
    """What ``ffmpeg -i path -ac N`` hands an encoder that takes ``stored``: one libswresample
    conversion from the decoder's format and layout (libavfilter's auto-inserted aresample)."""
    resampler = av.AudioResampler(format=stored, layout=layout, rate=RATE)
    with av.open(str(path)) as container:
        frames = [out for frame in container.decode(audio=0) for out in resampler.resample(frame)]
    return np.concatenate([as_float(frame) for frame in frames + resampler.resample(None)])


def run(source: str, processors: list[str], sink: str) -> None:
    asyncio.run(Pipeline.from_specs(source, processors, [sink]).run())


def dbfs(data: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(data)))))


@pytest.mark.parametrize("sink", list(WAV_OUTPUTS))
@pytest.mark.parametrize("conversion", list(CONVERSIONS))
@pytest.mark.parametrize("sample_format", list(DECODED_AS))
def test_remix_gives_ffmpegs_samples_for_what_the_sink_stores(sample_format, conversion, sink, tmp_path):
    # before, the scaling followed the frame's format (s16 scaled, float not) where ffmpeg follows
    # the encoder's: e.g. flt stereo -> remix:1 -> wav: -23.01 dBFS, ffmpeg -i in.wav -ac 1 out.wav
    # -26.02; s16 5.1(side) -> remix:1 -> wav:subtype=float -29.70, ffmpeg -c:a pcm_f32le -19.03
    source, out = tmp_path / "in.wav", tmp_path / ("out.flac" if sink.startswith("file") else "out.wav")
    layout_in, layout_out, count = CONVERSIONS[conversion]
    write_wav(source, sample_format, layout_in)
    run(f"file:{source}", [f"remix:{count}"], sink.format(out))
    got, expected = decode(out), ffmpeg_ac(source, layout_out, WAV_OUTPUTS[sink])
    assert got.shape == expected.shape
    # within one s16 step (lkplug carries float frames between libswresample and the sink)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1.01 / 32768, err_msg=f"{sink}")


# ffmpeg 5.1 -i in.wav -ac N out.wav (pcm_s16le) and -c:a pcm_f32le, RMS of channel 1 in dBFS, for
# the 0.25 s inputs above (the same figure for every input format: s16 shown)
FFMPEG_DBFS = {
    ("stereo->mono", "s16"): -26.02,
    ("stereo->mono", "flt"): -23.01,
    ("5.1->stereo", "s16"): -27.66,
    ("5.1->stereo", "flt"): -20.00,
    ("5.1(side)->mono", "s16"): -29.70,
    ("5.1(side)->mono", "flt"): -19.03,
    ("mono->stereo", "s16"): -26.02,  # an upmix copies at -3 dB (centre_mix_level): no scaling
    ("mono->stereo", "flt"): -26.02,
    ("7.1->5.1", "s16"): -27.66,
    ("7.1->5.1", "flt"): -23.01,
}


@pytest.mark.parametrize("case", list(FFMPEG_DBFS))
@pytest.mark.parametrize("sample_format", ["s16", "flt"])
def test_remix_levels_are_the_ffmpeg_clis(case, sample_format, tmp_path):
    conversion, stored = case
    source, out = tmp_path / "in.wav", tmp_path / "out.wav"
    layout_in, _, count = CONVERSIONS[conversion]
    write_wav(source, sample_format, layout_in, seconds=1.0)
    run(f"file:{source}", [f"remix:{count}"], f"wav:{out}" + (",subtype=float" if stored == "flt" else ""))
    assert dbfs(decode(out)[:, 0]) == pytest.approx(FFMPEG_DBFS[case], abs=0.02)


# ffmpeg 5.1 -i in.wav -ac N out.EXT, RMS of channel 1 of the decoded output in dBFS (1 s inputs).
# The encoder's format decides: native aac takes fltp only (unscaled); libopus and libmp3lame take
# s16 from s16 input (scaled) and float from float input (unscaled)
FFMPEG_CODEC_DBFS = {
    ("s16", "stereo->mono", "m4a"): -22.97,  # before: -26.01
    ("s16", "5.1->stereo", "m4a"): -19.99,  # before: -27.66
    ("s16", "stereo->mono", "opus"): -26.01,
    ("flt", "stereo->mono", "opus"): -23.05,
    ("flt", "5.1->stereo", "mp3"): -20.45,
    ("s16", "5.1->stereo", "mp3"): -28.10,
    # u8 is given to libopus as s16 and to libmp3lame as s16p (ffmpeg's pick); lkplug's file source
    # before made it flt, so the encoder took float: -23.04 and -23.31, unscaled
    ("u8", "stereo->mono", "opus"): -26.00,
    ("u8", "stereo->mono", "mp3"): -26.49,
}


@pytest.mark.parametrize("case", list(FFMPEG_CODEC_DBFS))
def test_a_downmix_into_a_codec_has_the_ffmpeg_clis_level(case, tmp_path):
    sample_format, conversion, extension = case
    source, out = tmp_path / "in.wav", tmp_path / f"out.{extension}"
    layout_in, _, count = CONVERSIONS[conversion]
    write_wav(source, sample_format, layout_in, seconds=1.0)
    run(f"file:{source}", [f"remix:{count}"], f"file:{out}")
    # a lossy codec at the encoder's own bit rate, as ffmpeg's: within 0.05 dB (0.03 measured; mp3
    # was 0.18 dB above at the 192k lkplug used to set); the scaling it is about is 3 dB or more
    assert dbfs(decode(out)[:, 0]) == pytest.approx(FFMPEG_CODEC_DBFS[case], abs=0.05)


@pytest.mark.parametrize(
    "processors, ffmpeg_dbfs",
    [
        # ffmpeg 5.1 -i in.wav -af volume=-6dB -ac 1 out.wav: an attenuation commutes with the
        # downmix (the planner may move it), so it does not change the scaling: -32.02
        (["remix:1", "gain:-6"], -32.02),
        (["gain:-6", "remix:1"], -32.02),
        # ffmpeg -i in.wav -af aresample=ochl=mono,volume=6dB out.wav: a filter after the downmix
        # takes it in the input's format (flt), unscaled, and the s16 encoder comes after: -17.01
        (["remix:1", "gain:6"], -17.01),
    ],
)
def test_a_stage_after_remix_decides_as_in_an_ffmpeg_filter_chain(processors, ffmpeg_dbfs, tmp_path):
    source, out = tmp_path / "in.wav", tmp_path / "out.wav"
    write_wav(source, "flt", "stereo", seconds=1.0)
    run(f"file:{source}", processors, f"wav:{out}")
    assert dbfs(decode(out)[:, 0]) == pytest.approx(ffmpeg_dbfs, abs=0.02)


@pytest.mark.parametrize(
    "sample_format, options, ffmpeg_dbfs",
    [("flt", "", -20.45), ("s16", "", -28.10), ("flt", ",sample_format=s16p", -28.10)],
)
def test_the_downmix_the_engine_inserts_for_a_sink_has_ffmpegs_level(
    sample_format, options, ffmpeg_dbfs, tmp_path
):
    # libmp3lame takes mono or stereo: 5.1 is downmixed with no remix: asked. ffmpeg 5.1 -i in.wav
    # out.mp3 gives libmp3lame fltp from float input (unscaled: -20.45 dBFS) and s16p from s16
    # (scaled: -28.10); -sample_fmt s16p scales float input too (-28.10; lkplug before: -20.26).
    # At lame's own 128k, as ffmpeg's, lkplug's mp3 is ffmpeg's to 0.01 dB (0.18 dB above at 192k)
    source, out = tmp_path / "in.wav", tmp_path / "out.mp3"
    write_wav(source, sample_format, "5.1", seconds=1.0)
    run(f"file:{source}", [], f"file:{out}{options}")
    assert dbfs(decode(out)[:, 0]) == pytest.approx(ffmpeg_dbfs, abs=0.05)


def test_one_chain_into_an_integer_and_a_float_sink_is_scaled_for_the_integer_one(tmp_path):
    # ffmpeg gives each output its own filter graph; lkplug's chain feeds every sink, so an integer
    # sink decides (none clips): the s16 WAV has ffmpeg -i in.wav -ac 1 out.wav's -26.02 dBFS, and
    # the float WAV the same samples (ffmpeg's own float output would be -23.01)
    source, fixed, floating = tmp_path / "in.wav", tmp_path / "s16.wav", tmp_path / "flt.wav"
    write_wav(source, "flt", "stereo", seconds=1.0)
    sinks = [f"wav:{floating},subtype=float", f"wav:{fixed}"]
    asyncio.run(Pipeline.from_specs(f"file:{source}", ["remix:1"], sinks).run())
    assert dbfs(decode(fixed)[:, 0]) == pytest.approx(-26.02, abs=0.02)
    np.testing.assert_allclose(decode(floating), decode(fixed), rtol=0, atol=0.51 / 32768)


def test_a_batch_downmixes_each_file_as_ffmpeg_does(tmp_path):
    # a glob of inputs runs one job per file: ffmpeg 5.1 -i a.wav -ac 1 a_out.wav (flt stereo in):
    # -26.02 dBFS, and for an s16 5.1 b.wav -29.70; the samples are libswresample's s16 downmix
    folder = tmp_path / "in"
    folder.mkdir()
    write_wav(folder / "a.wav", "flt", "stereo", seconds=1.0)
    write_wav(folder / "b.wav", "s16", "5.1(side)", seconds=1.0)
    result = run_lkplug(
        "run",
        "-q",
        "--source",
        f"file:{folder}/*.wav",
        "--proc",
        "remix:1",
        "--sink",
        f"wav:{tmp_path}/out/{{stem}}.wav",
    )
    assert result.returncode == 0, result.stderr
    for stem, ffmpeg_dbfs in (("a", -26.02), ("b", -29.70)):
        got = decode(tmp_path / "out" / f"{stem}.wav")
        assert dbfs(got[:, 0]) == pytest.approx(ffmpeg_dbfs, abs=0.02)
        np.testing.assert_allclose(
            got, ffmpeg_ac(folder / f"{stem}.wav", "mono", "s16"), rtol=0, atol=1.01 / 32768
        )


# ffmpeg 5.1 -i in.wav -c:a ENCODER -f null - for write_wav's inputs: the format the encoder is given
# (its stream line; -loglevel debug shows libavfilter "picking s32p out of 3 ref:s32")
FFMPEG_ENCODER_FORMAT = {  # encoder: formats for u8, s16, s32, flt, dbl input
    "libmp3lame": ("s16p", "s16p", "s32p", "fltp", "fltp"),
    "flac": ("s16", "s16", "s32", "s32", "s32"),
    "alac": ("s16p", "s16p", "s32p", "s32p", "s32p"),
    "wavpack": ("u8p", "s16p", "s32p", "fltp", "fltp"),
    "libopus": ("s16", "s16", "flt", "flt", "flt"),
    "aac": ("fltp", "fltp", "fltp", "fltp", "fltp"),
}
INPUT_FORMATS = ("u8", "s16", "s32", "flt", "dbl")
CONTAINER_OF = {"libmp3lame": "mp3", "flac": "flac", "alac": "m4a", "wavpack": "mkv", "libopus": "opus"}


@pytest.mark.parametrize("encoder", list(FFMPEG_ENCODER_FORMAT))
@pytest.mark.parametrize("decoded", INPUT_FORMATS)
def test_an_encoder_is_given_the_format_ffmpeg_gives_it(encoder, decoded, tmp_path):
    # before, the pick followed lkplug's s16/flt frames: 24-bit (s32) input went to lame as fltp
    # (ffmpeg: s32p) and to wavpack as fltp (ffmpeg: s32p); dbl to lame as s32p (ffmpeg: fltp)
    from lkplug_av.sink import FileSink

    expected = FFMPEG_ENCODER_FORMAT[encoder][INPUT_FORMATS.index(decoded)]
    sink = FileSink(str(tmp_path / f"out.{CONTAINER_OF.get(encoder, 'm4a')}"), codec=encoder)
    carried = "s16" if decoded in ("u8", "s16") else "flt"  # what lkplug's file source gives
    fmt = AudioFormat(RATE, 2, carried, layout="stereo", ffmpeg_format=decoded)
    assert sink.stored_sample_format(fmt) == expected


# ffmpeg 5.1 -i in.wav -ac N out.mp3, RMS of channel 1 of the decoded output in dBFS (1 s inputs):
# 24-bit input (decoded as s32) gives libmp3lame s32p, so the downmix is scaled
FFMPEG_MP3_DBFS = {
    ("s32", "5.1", 2): -28.10,  # lkplug before: -20.45 (+7.65 dB: given fltp, unscaled)
    ("s32", "5.1", 1): -30.14,  # before: -19.48
    ("s32", "7.1", 2): -29.36,  # before: -19.48
    ("s32", "stereo", 1): -26.47,  # before: -23.46
    ("dbl", "5.1", 2): -20.45,  # dbl gives lame fltp: unscaled
}


@pytest.mark.parametrize("case", list(FFMPEG_MP3_DBFS))
def test_a_24_bit_downmix_into_mp3_has_the_ffmpeg_clis_level(case, tmp_path):
    sample_format, layout, count = case
    source, out = tmp_path / "in.wav", tmp_path / "out.mp3"
    write_wav(source, sample_format, layout, seconds=1.0)
    run(f"file:{source}", [f"remix:{count}"], f"file:{out}")
    assert dbfs(decode(out)[:, 0]) == pytest.approx(FFMPEG_MP3_DBFS[case], abs=0.05)


@pytest.mark.parametrize(
    "processors, extension, ffmpeg_dbfs",
    [
        # s16 stereo in. ffmpeg 5.1 -i in.wav -af aformat=channel_layouts=mono,volume=3dB out.wav
        # (and -af aresample=ochl=mono,volume=3dB): the volume filter takes float, so the downmix
        # is kept in float, unscaled: -20.01 dBFS (lkplug before: -23.02, scaled as for s16)
        (["remix:1", "gain:3"], "wav", -20.01),
        (["remix:1", "gain:3"], "mp3", -20.46),  # before: -23.47
        # ffmpeg -i in.wav -af volume=3dB -ac 1 out.mp3: the volume filter hands float on, lame
        # takes fltp, the downmix is unscaled: -20.46 (before: -23.47, given s16p); into an s16
        # WAV it is scaled, as before: -23.02
        (["gain:3", "remix:1"], "mp3", -20.46),
        (["gain:3", "remix:1"], "wav", -23.02),
    ],
)
def test_a_gain_works_in_float_as_ffmpegs_volume_filter(processors, extension, ffmpeg_dbfs, tmp_path):
    source, out = tmp_path / "in.wav", tmp_path / f"out.{extension}"
    write_wav(source, "s16", "stereo", seconds=1.0)
    run(f"file:{source}", processors, f"file:{out}")
    assert dbfs(decode(out)[:, 0]) == pytest.approx(ffmpeg_dbfs, abs=0.05)


def in_phase_wav(path, layout: str, peak: float, seconds: float = 1.0) -> None:
    """An s16 WAV in ``layout``: every channel the same 440 Hz sine at ``peak``, in phase, so a fold
    of them goes beyond full scale."""
    channels = av.AudioLayout(layout).nb_channels
    tone = peak * np.sin(2 * np.pi * 440 * np.arange(round(seconds * RATE)) / RATE)
    write_wav(path, "s16", layout, data=np.repeat(tone[:, None], channels, 1))


# ffmpeg 5.1 -i in.wav -ac 1 -c:a pcm_f32le out.wav, then ffmpeg -i out.wav -af astats: "Max level"
# for in_phase_wav(layout, 0.9). lkplug before: 0.999969, with "remix:1 clipped 20400 samples"
# (37840 for 5.1): s16 was mixed into float, then rounded back to s16 at remix:
FFMPEG_UNCLIPPED_PEAK = {"stereo": 1.272740, "5.1": 3.072667}


@pytest.mark.parametrize("layout", list(FFMPEG_UNCLIPPED_PEAK))
def test_s16_folded_beyond_full_scale_for_a_float_output_is_kept_as_ffmpeg_keeps_it(layout, tmp_path):
    source, out = tmp_path / "in.wav", tmp_path / "out.wav"
    in_phase_wav(source, layout, 0.9)
    result = run_lkplug(
        "run", "--source", f"file:{source}", "--proc", "remix:1", "--sink", f"wav:{out},subtype=float"
    )
    assert result.returncode == 0, result.stderr
    assert "clipped" not in result.stderr
    got = decode(out)
    assert np.abs(got).max() == pytest.approx(FFMPEG_UNCLIPPED_PEAK[layout], abs=1e-6)
    # ffmpeg's samples: libswresample's one conversion from s16 to flt (same within float rounding)
    np.testing.assert_allclose(got, ffmpeg_ac(source, "mono", "flt"), rtol=0, atol=1e-6)


def test_s16_folded_beyond_full_scale_into_aac_is_kept_as_ffmpeg_keeps_it(tmp_path):
    # native aac takes fltp: ffmpeg 5.1 -i in.wav -ac 1 out.m4a, astats "Max level" of the decoded
    # output: 1.301760 (lkplug before: 1.047220, the fold clipped before the encoder)
    source, out = tmp_path / "in.wav", tmp_path / "out.m4a"
    in_phase_wav(source, "stereo", 0.9)
    run(f"file:{source}", ["remix:1"], f"file:{out}")
    assert np.abs(decode(out)).max() == pytest.approx(1.301760, abs=0.005)


@pytest.mark.parametrize(
    "peak, db, ffmpeg_peak",
    [
        # ffmpeg 5.1 -i in.wav -af aresample=ochl=mono,volume=-3dB -c:a pcm_f32le out.wav, astats
        # "Max level": 0.901031 (lkplug before: 0.707924, the fold clipped at remix:, then lowered)
        (0.9, -3, 0.901031),
        # -af aresample=ochl=mono,volume=6dB: 1.410863 (before: 1.410835, the fold rounded to s16)
        (0.5, 6, 1.410863),
    ],
)
def test_a_gain_after_a_downmix_of_s16_takes_it_in_float_for_a_float_output(peak, db, ffmpeg_peak, tmp_path):
    source, out = tmp_path / "in.wav", tmp_path / "out.wav"
    in_phase_wav(source, "stereo", peak)
    run(f"file:{source}", ["remix:1", f"gain:{db}"], f"wav:{out},subtype=float")
    got = decode(out)
    assert np.abs(got).max() == pytest.approx(ffmpeg_peak, abs=1e-6)
    expected = ffmpeg_ac(source, "mono", "flt") * np.float32(10 ** (db / 20))  # volume: float math
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_streams_downmixed_for_a_float_mix_keep_a_fold_beyond_full_scale(tmp_path):
    # ffmpeg 5.1 -i a.wav -i b.wav -filter_complex "[0]aformat=channel_layouts=mono[a];
    # [1]aformat=channel_layouts=mono[b];[a][b]amix" -c:a pcm_f32le out.wav: amix takes float, so
    # each stream is folded into float unscaled; astats "Max level" 0.989924 (lkplug before:
    # 0.853531, stream a's fold clipped at its inserted remix)
    a, b, out = tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "out.wav"
    in_phase_wav(a, "stereo", 0.9)
    in_phase_wav(b, "stereo", 0.5)
    sink = f"wav:{out},subtype=float"
    result = run_lkplug(
        "run", "-q", "--source", f"file:{a}", "--source", f"file:{b}", "--proc", "mix", "--sink", sink
    )
    assert result.returncode == 0, result.stderr
    got = decode(out)
    assert np.abs(got).max() == pytest.approx(0.989924, abs=1e-6)
    expected = (ffmpeg_ac(a, "mono", "flt") + ffmpeg_ac(b, "mono", "flt")) / 2
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("layout, channels", [("22.2", 24), ("hexadecagonal", 16)])
@pytest.mark.parametrize("sink, stored", [("wav:{},subtype=float", "flt"), ("wav:{}", "s16")])
def test_remix_into_a_layout_of_more_than_8_channels_is_ffmpegs(layout, channels, sink, stored, tmp_path):
    # before: exit 1, nothing written ("remix:22.2 failed: ValueError: cannot reshape array of size
    # 0", the channel count of a name outside lkplug's table taken as 0). ffmpeg 5.1 -i in.wav -af
    # aformat=channel_layouts=22.2 -c:a pcm_f32le out.wav (and pcm_s16le) writes 24 channels with
    # libswresample's one conversion's samples (compared sample for sample: equal)
    source, out = tmp_path / "in.wav", tmp_path / "out.wav"
    write_wav(source, "s16", "5.1")
    run(f"file:{source}", [f"remix:{layout}"], sink.format(out))
    got = decode(out)
    assert got.shape[1] == channels
    np.testing.assert_allclose(got, ffmpeg_ac(source, layout, stored), rtol=0, atol=1e-6)


def write_aac(path, layout: str) -> None:
    """An AAC (fltp: planar, as most lossy decoders give) of ``sines`` in ``layout``, by PyAV."""
    channels = av.AudioLayout(layout).nb_channels
    data = sines(RATE // 2, channels).T.astype(np.float32)  # planar: (channels, samples)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=RATE, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="fltp", layout=layout)
        frame.sample_rate, frame.pts = RATE, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.mark.parametrize("sink", ["wav:{}", "wav:{},subtype=float"])
@pytest.mark.parametrize("conversion", ["5.1->stereo", "stereo->mono"])
def test_a_downmix_the_file_source_makes_from_planar_frames_is_ffmpegs(conversion, sink, tmp_path):
    """A chain that starts with a downmix has the file source make it from FFmpeg's planar frames
    (no interleaved copy in between), with remix's own libswresample set-up: the same samples as
    ``ffmpeg -ac`` (fltp in, what the sink stores out), scaled for s16 and not for float."""
    source, out = tmp_path / "in.m4a", tmp_path / "out.wav"
    layout_in, layout_out, count = CONVERSIONS[conversion]
    write_aac(source, layout_in)
    pipeline = Pipeline.from_specs(f"file:{source}", [f"remix:{count}"], [sink.format(out)])
    assert "mixed in the source" in pipeline.explain()
    run(f"file:{source}", [f"remix:{count}"], sink.format(out))
    got, expected = decode(out), ffmpeg_ac(source, layout_out, WAV_OUTPUTS[sink])
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1.01 / 32768, err_msg=f"{sink}")


def test_a_downmix_of_channels_in_no_stated_order_is_ffmpegs(tmp_path):
    """PCM in Matroska states no channel layout ("2 channels"); the ffmpeg CLI guesses FFmpeg's
    default for the count (stereo) and mixes from it, and so does the mix the file source makes."""
    source, out = tmp_path / "in.mkv", tmp_path / "out.wav"
    t = np.arange(RATE // 2) / RATE
    data = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 660 * t)], 1)
    with av.open(str(source), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=RATE, layout="stereo")
        frame = av.AudioFrame.from_ndarray(
            np.round(data * 32767).astype(np.int16).reshape(1, -1), format="s16"
        )
        frame.sample_rate, frame.pts = RATE, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with av.open(str(source)) as container:
        assert container.streams.audio[0].codec_context.layout.name == "2 channels"
    assert (
        "mixed in the source" in Pipeline.from_specs(f"file:{source}", ["remix:1"], [f"wav:{out}"]).explain()
    )
    run(f"file:{source}", ["remix:1"], f"wav:{out}")
    # ffmpeg 5.1 -i in.mkv -ac 1 out.wav ("Guessed Channel Layout ... stereo"): -14.08 dBFS, and the
    # same samples as lkplug's (compared one by one when this test was written: no difference)
    assert dbfs(decode(out)[:, 0]) == pytest.approx(-14.08, abs=0.01)
