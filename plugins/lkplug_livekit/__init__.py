"""LiveKit rooms: participant tracks as sources (``track:alice``) and sinks (``track:NAME``), and a
local LiveKit-protocol server for tests and demos (``lkplug devserver``).

The livekit SDK is imported only when a room is joined, so listing plugins stays fast."""

from __future__ import annotations

import math

import click

from lkplug import Component, Param, hookimpl, lazy

from .selector import SOURCES

# lkplug's pixel format -> the SDK's VideoBufferType name (here, not in source.py: the track source's
# pixel_format= choices come from it, and listing imports no component module)
SDK_PIXEL_FORMATS = {"yuv420p": "I420", "nv12": "NV12", "rgb24": "RGB24", "rgba": "RGBA", "bgra": "BGRA"}


# the lowest frame-rate cap a video track is published with: the SDK's default for a size is meant
# for cameras (320x240: 20 fps, 640x360: 25), and a source that names no rate (a relayed track) or
# averages below its peaks (a variable-rate recording) may well send 30
LEAST_MAX_FPS = 30


def video_encoding(width: int, height: int, fps: float | None = None):
    """The SDK's ``VideoEncoding`` for pictures of ``width`` x ``height`` at ``fps`` a second (None:
    not known): capped at that rate rounded up (29.97 -> 30) and at no less than 30 fps, with
    ``video_kbps`` at the cap."""
    from livekit import rtc

    cap = max(LEAST_MAX_FPS, math.ceil(fps or 0))
    return rtc.VideoEncoding(max_framerate=cap, max_bitrate=video_kbps(width, height, cap) * 1000)


def video_kbps(width: int, height: int, fps: float = 30.0) -> int:
    """kbit/s for video of ``width`` x ``height`` pixels at ``fps``: 1 per 300 pixels at 30 fps (300 at
    least), in proportion to the frame rate. Near what LiveKit's SDK picks by size at its own rates
    (1280x720: 3000 at 30 fps; 640x360: 800 at 25), and what kept 1280x720 at its size through
    libwebrtc's bandwidth estimate in the dev server (1000 gave 960x540)."""
    return round(max(300, width * height // 300) * fps / 30)


@hookimpl
def lkplug_sources():
    return [
        Component(
            "track",
            lazy("lkplug_livekit.source:TrackSource"),
            "A participant's track in a LiveKit room (alice, alice/camera, alice/name=music)",
            params=(
                Param(
                    "selector",
                    str,
                    help="IDENTITY[/microphone|camera|screen_share|screen_share_audio"
                    "|name=NAME|TR_sid][?kind=audio|video]",
                ),
                Param(
                    "wait", float, 0.0, "seconds to wait for the participant and track (0: forever)", min=0.0
                ),
                Param("follow", bool, False, "when the participant leaves, wait for them to come back"),
                Param("rate", int, 0, "ask the SDK for this sample rate (0: 48000)", min=0, max=192000),
                Param(
                    "channels",
                    int,
                    0,
                    "ask the SDK for this many channels (0: 1); it decodes mono, so 2 repeats it (README)",
                    min=0,
                    max=8,
                ),
                Param(
                    "format",
                    str,
                    "yuv420p",
                    "video: ask the SDK for this pixel format",
                    choices=tuple(SDK_PIXEL_FORMATS),
                ),
            ),
            positional="selector",
        )
    ]


@hookimpl
def lkplug_processors():
    return [
        Component(
            "apm",
            lazy("lkplug_livekit.apm:Apm"),
            "WebRTC audio processing (LiveKit SDK): noise suppression, high-pass, gain control, echo",
            params=(
                Param("noise_suppression", bool, True, "suppress stationary noise"),
                Param("high_pass", bool, True, "remove rumble below about 80 Hz"),
                Param("gain_control", bool, False, "automatic gain control"),
                Param(
                    "echo_cancellation", bool, False, "cancel echo of a far-end stream (Python: .reverse())"
                ),
                Param("delay_ms", int, 0, "echo path delay in ms (with echo_cancellation)", min=0, max=500),
            ),
        )
    ]


@hookimpl
def lkplug_sinks():
    return [
        Component(
            "track",
            lazy("lkplug_livekit.sink:TrackSink"),
            "Publish as a track of lkplug's participant in a LiveKit room",
            params=(
                Param("name", str, help="track name"),
                Param(
                    "source",
                    str,
                    "",
                    "track source kind (default: microphone for audio, camera for video)",
                    choices=tuple(SOURCES),
                ),
                # the SDK takes whole 10 ms frames (any other size is a Rust panic, exit 134)
                Param(
                    "queue_ms",
                    int,
                    None,
                    "capture queue: latency against jitter (default: 0, none, for a live source; 200 else)",
                    min=0,
                    max=2000,
                    step=10,
                ),
                Param(
                    "wait",
                    float,
                    0.0,
                    "hold the first frame until someone subscribes, up to this many seconds",
                    min=0,
                ),
                Param("simulcast", bool, True, "send video in several layers (the devserver takes one)"),
                Param(
                    "wait_for",
                    str,
                    "",
                    "hold the first frame until this participant (a name or glob) is in the room and a "
                    "subscription is made after they came (up to wait= seconds; 0: forever)",
                ),
            ),
            positional="name",
        )
    ]


@hookimpl
def lkplug_register_commands(cli):
    # by name: their modules (asyncio, the engine, the SDK's connection) load only when they run; the
    # summaries are their help texts' first paragraphs (tests/test_cli.py checks --help is the same)
    cli.add_lazy_command(
        "devserver",
        "lkplug_livekit.devserver.cli:devserver_command",
        "A local LiveKit-protocol server for tests and demos, on 127.0.0.1 only.",
    )
    cli.add_lazy_command(
        "worker",
        "lkplug_livekit.worker:worker_command",
        "Run a chain in every room (or for every publisher) as a LiveKit Agents worker.",
    )


@hookimpl
def lkplug_run_options():
    return [
        click.Option(
            ["--devserver"],
            is_flag=True,
            help="Run against a local dev server with demo participant alice (no LiveKit server needed).",
        ),
        click.Option(["--url"], envvar="LIVEKIT_URL", help="LiveKit server URL [env LIVEKIT_URL]."),
        click.Option(["--api-key"], envvar="LIVEKIT_API_KEY", help="API key [env LIVEKIT_API_KEY]."),
        click.Option(
            ["--api-secret"],
            envvar="LIVEKIT_API_SECRET",
            help="API secret [env LIVEKIT_API_SECRET] (prefer the env or --api-secret-file: ps shows argv).",
        ),
        click.Option(
            ["--api-secret-file"],
            type=click.File("r"),
            callback=lambda ctx, param, file: file.read().strip() if file is not None else None,
            help="Read the API secret from this file.",
        ),
        click.Option(
            ["--token"], envvar="LIVEKIT_TOKEN", help="A ready access token instead of key and secret."
        ),
        click.Option(["--room"], envvar="LIVEKIT_ROOM", help="Room to join [env LIVEKIT_ROOM]."),
        click.Option(
            ["--identity"],
            help="lkplug's participant identity [default: lkplug-recorder-XXXX, lkplug-publisher-XXXX or "
            "lkplug-relay-XXXX, new for each run; two processes under one identity replace each other].",
        ),
    ]
