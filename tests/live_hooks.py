"""Components for the live tests, loaded the way users load theirs: ``-p tests/live_hooks.py``."""

from __future__ import annotations

import time

from lkplug import Component, Param, Processor, VideoContract, hookimpl


class SlowVideo(Processor):
    """Passes pictures on after blocking the event loop ``seconds`` per picture, as an encoder slower
    than real time does (x264 at 1280x720 on a loaded machine)."""

    accepts = {"video": VideoContract()}

    def __init__(self, seconds: float = 0.1):
        self.seconds = seconds

    def process(self, frame):
        time.sleep(self.seconds)
        return [frame]


@hookimpl
def lkplug_processors():
    return [
        Component(
            "slowvideo",
            SlowVideo,
            "blocks seconds= per picture",
            params=(Param("seconds", float, 0.1),),
            positional="seconds",
        )
    ]
