"""Components for the batch tests, loaded the way users load theirs: ``-p tests/batch_hooks.py``."""

from __future__ import annotations

import os
import signal
import time

from lkplug import AudioContract, Component, Param, Sink, hookimpl


class CtrlCInSetup(Sink):
    """A Ctrl-C that comes while this sink is being set up (as one pressed 0.6 s into a batch, while
    its sinks are checked): SIGINT to its own process, then a moment for Python to handle it."""

    accepts = {"audio": AudioContract()}

    def __init__(self, path: str):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)

    async def write(self, frame):
        pass

    def close(self):
        pass


@hookimpl
def lkplug_sinks():
    return [
        Component("ctrlcsetup", CtrlCInSetup, "Ctrl-C while it is set up", (Param("path", str),), "path"),
    ]
