"""Built-in media-file plugin through PyAV (FFmpeg): the ``file`` source and sink, and the video
processors ``scale``, ``format`` and ``fps``.

PyAV, and each component's module, is imported when a file is opened or a stage is built, not when
plugins are listed."""

from lkplug import PIXEL_FORMATS, Component, Param, hookimpl, lazy

# extension or format= -> (FFmpeg muxer, default audio codec, default video codec or None: audio only);
# here, not in sink.py, because the file sink's format= choices come from it
CONTAINERS = {
    "mp4": ("mp4", "aac", "libx264"),
    "mov": ("mov", "aac", "libx264"),
    "m4a": ("ipod", "aac", None),
    "mkv": ("matroska", "libopus", "libx264"),
    "webm": ("webm", "libopus", "libvpx"),
    "ogg": ("ogg", "libopus", None),
    "opus": ("opus", "libopus", None),
    "flac": ("flac", "flac", None),
    "mp3": ("mp3", "libmp3lame", None),
    "wav": ("wav", "pcm_s16le", None),
}


@hookimpl
def lkplug_sources():
    return [
        Component(
            "file",
            lazy("lkplug_av.source:FileSource"),
            "Decode a media file with FFmpeg: any container and codec PyAV opens, audio and video",
            params=(
                Param("path", str, help="input file"),
                Param(
                    "stream",
                    str,
                    "",
                    "streams as ffmpeg -map: a:0, v:0, a:1+v:0 (default: first audio, and first video"
                    " when a stage takes video)",
                ),
                Param(
                    "video",
                    bool,
                    None,
                    "decode the first video stream (default: when a stage takes video; false: never)",
                ),
                Param("start", float, 0.0, "begin this many seconds in", min=0.0),
                Param("duration", float, 0.0, "stop after this many seconds (0: to the end)", min=0.0),
                Param("loop", int, 1, "play the file this many times (0: endlessly)", min=0),
            ),
            positional="path",
        )
    ]


@hookimpl
def lkplug_processors():
    return [
        Component(
            "scale",
            lazy("lkplug_av.video:Scale"),
            "Resize video (keeps the aspect ratio when only width or height is given)",
            params=(
                Param("width", int, 0, "output width in pixels (0: from height and the aspect)", min=0),
                Param("height", int, 0, "output height in pixels (0: from width and the aspect)", min=0),
            ),
            positional="height",
        ),
        Component(
            "format",
            lazy("lkplug_av.video:PixelFormat"),
            "Convert video to another pixel format (FFmpeg's swscale)",
            params=(Param("pixel_format", str, help="target pixel format", choices=PIXEL_FORMATS),),
            positional="pixel_format",
            converts=("pixel_format",),
        ),
        Component(
            "fps",
            lazy("lkplug_av.video:Fps"),
            "Change the video frame rate by dropping or repeating frames",
            params=(
                Param(
                    "rate",
                    str,
                    help="frames per second as ffmpeg's fps filter takes them: 25, 29.97, 30000/1001,"
                    " ntsc, pal, film (0.1 to 1000)",
                ),
            ),
            positional="rate",
        ),
    ]


@hookimpl
def lkplug_sinks():
    return [
        Component(
            "file",
            lazy("lkplug_av.sink:FileSink"),
            "Encode to a media file with FFmpeg (mp4, mov, m4a, mkv, webm, ogg, opus, flac, mp3, wav);"
            " finalised on every exit path",
            params=(
                Param("path", str, help="output file; its extension picks the container"),
                Param("format", str, "", "container instead of the extension's", choices=("", *CONTAINERS)),
                Param("codec", str, "", "audio codec (default: the container's usual one)"),
                Param("video_codec", str, "", "video codec (default: the container's usual one)"),
                Param(
                    "bitrate",
                    int,
                    0,
                    "audio bit rate in bit/s (0: the encoder's own default, as ffmpeg's: aac 341k for 5.1)",
                    min=0,
                ),
                Param("video_bitrate", int, 0, "video bit rate in bit/s (0: crf= decides)", min=0),
                Param("crf", int, -1, "video quality for x264/vpx (lower is better; -1: default)", min=-1),
                Param("preset", str, "", "encoder speed preset (x264: ultrafast ... veryslow)"),
                Param(
                    "sample_format",
                    str,
                    "",
                    "audio sample format as FFmpeg names it (s16, s32, flt, fltp; default: the one"
                    " ffmpeg gives the codec for the input: 24-bit stays 24-bit in FLAC, s32p in MP3)",
                ),
            ),
            positional="path",
        )
    ]
