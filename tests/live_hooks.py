"""Components for the live tests, loaded the way users load theirs: ``-p tests/live_hooks.py``."""

from __future__ import annotations

import time

from lkplug import AudioContract, Component, Param, Processor, VideoContract, hookimpl


class SlowVideo(Processor):
    """Passes pictures on after blocking the event loop ``seconds`` per picture, as an encoder slower
    than real time does (x264 at 1280x720 on a loaded machine)."""

    accepts = {"video": VideoContract()}

    def __init__(self, seconds: float = 0.1):
        self.seconds = seconds

    def process(self, frame):
        time.sleep(self.seconds)
        return [frame]


class HoldUp(Processor):
    """Passes audio on, blocking the event loop ``seconds`` once, at the first frame from ``at`` media
    seconds on: the whole process held up, as on a machine too busy to run it."""

    accepts = {"audio": AudioContract()}

    def __init__(self, at: float = 1.0, seconds: float = 0.6):
        self.at, self.seconds, self.done = at, seconds, False

    def process(self, frame):
        if not self.done and frame.time >= self.at:
            self.done = True
            time.sleep(self.seconds)
        return [frame]


@hookimpl
def lkplug_processors():
    return [
        Component(
            "holdup",
            HoldUp,
            "blocks seconds= once, at at= s",
            params=(Param("at", float, 1.0), Param("seconds", float, 0.6)),
        ),
        Component(
            "slowvideo",
            SlowVideo,
            "blocks seconds= per picture",
            params=(Param("seconds", float, 0.1),),
            positional="seconds",
        ),
    ]
