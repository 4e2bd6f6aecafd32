"""Built-in audio plugin: the ``tone`` source, ``gain``, ``resample`` and ``remix`` processors and the
``null`` sink. Each component's module (numpy, soxr) is imported only when it is built, so listing
stays fast."""

from lkplug import Component, Param, hookimpl, lazy

MIX_LAYOUTS = ("sum", "channels", "split")  # mix's layout= choices (mix.py takes them from here)


@hookimpl
def lkplug_sources():
    return [
        Component(
            "tone",
            lazy("lkplug_audio.tone:ToneSource"),
            "Test signal: sine, white noise or silence",
            params=(
                Param("freq", float, 440.0, "sine frequency in Hz", min=0.0, max=96000.0),
                Param("wave", str, "sine", "signal shape", choices=("sine", "noise", "silence")),
                Param("amplitude", float, -6.0, "peak level in dBFS", min=-150.0, max=0.0),
                Param("rate", int, 48000, "sample rate in Hz", min=1000, max=384000),
                Param("channels", int, 1, "channel count (the same signal in each)", min=1, max=32),
                Param("duration", float, 5.0, "length in seconds (0: endless)", min=0.0),
                Param("frame_ms", float, 20.0, "frame duration in ms", min=1.0, max=1000.0),
                Param("format", str, "s16", "sample format", choices=("s16", "flt")),
            ),
            positional="freq",
        )
    ]


@hookimpl
def lkplug_processors():
    return [
        Component(
            "gain",
            lazy("lkplug_audio.basic:Gain"),
            "Change the level by decibels or by a linear factor (float math, clipped to s16)",
            params=(
                Param("db", float, 0.0, "gain in dB (-6 halves the amplitude)", min=-150.0, max=60.0),
                Param("factor", float, None, "linear factor instead of db", min=0.0, max=1000.0),
            ),
            positional="db",
        ),
        Component(
            "resample",
            lazy("lkplug_audio.resample:Resampler"),
            "Change the sample rate with soxr (stateful stream, no seams between frames)",
            params=(
                Param("rate", int, help="output sample rate in Hz", min=1000, max=384000),
                Param(
                    "quality",
                    str,
                    "hq",
                    "soxr quality",
                    choices=("quick", "lq", "mq", "hq", "vhq"),
                ),
            ),
            positional="rate",
            converts=("rate",),
        ),
        Component(
            "remix",
            lazy("lkplug_audio.basic:Remix"),
            "Change the channel layout with libswresample (FFmpeg's own downmix and upmix, as -ac). A"
            " downmix is scaled so it cannot clip when the audio is next kept as integer (an s16 WAV,"
            " s32 FLAC), not as float (AAC, a float WAV), as ffmpeg's rematrix_maxval: decided by the"
            " next stage's format (an attenuating gain or resample passes it on), else the sink's",
            params=(
                Param(
                    "channels",
                    str,
                    help="output layout: a channel count FFmpeg has a layout for (1 to 8, 10, 12, 14, 16, 24)"
                    " or FFmpeg's name (stereo, 5.1(side))",
                ),
            ),
            positional="channels",
            converts=("layout",),
        ),
        Component(
            "mix",
            lazy("lkplug_audio.mix:Mix"),
            "Many streams into one (a room's tracks, several files), placed on one timeline by their"
            " times. sum: one mono channel, lowered by headroom= dB (default 6.0206, a half: two"
            " speakers at full scale cannot clip in an integer output; more at once are counted and"
            " reported as clipped where the output is integer); channels: one channel per stream at the level"
            " sent; split: left= streams left, the rest right, each side a sum lowered by headroom=",
            params=(
                Param("layout", str, "sum", "how streams are combined", choices=MIX_LAYOUTS),
                Param(
                    "order",
                    str,
                    "",
                    "channels: names (globs) in channel order, quoted: order='alice,bob,*'"
                    " (* = the others in join order; default: join order)",
                ),
                Param("left", str, "", "split: the streams (a glob of names) in the left channel"),
                Param(
                    "count",
                    int,
                    0,
                    "channels: output channels (0: one per --source, or the names in order=)",
                    min=0,
                    max=64,
                ),
                Param("rate", int, 48000, "output sample rate; every stream is resampled to it", min=8000),
                Param("headroom", float, 6.0206, "sum, split: dB the sum is lowered by", min=0.0, max=60.0),
            ),
            positional="layout",
        ),
    ]


@hookimpl
def lkplug_sinks():
    return [
        Component(
            "null", lazy("lkplug_audio.basic:NullSink"), "Discard every frame (for benchmarks and tests)"
        )
    ]
