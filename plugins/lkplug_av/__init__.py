"""Built-in media-file plugin through PyAV (FFmpeg): the ``file`` source.

PyAV is imported when a file is opened, not when plugins are listed."""

from lkplug import Component, Param, hookimpl

from .source import FileSource


@hookimpl
def lkplug_sources():
    return [
        Component(
            "file",
            FileSource,
            "Decode a media file with FFmpeg (any container and codec PyAV opens)",
            params=(
                Param("path", str, help="input file"),
                Param("stream", str, "a:0", "stream to decode, as ffmpeg -map: a:0, a:1"),
            ),
            positional="path",
        )
    ]
