"""Where the ``lkplug`` command starts (``[project.scripts]`` in pyproject.toml), and ``python -m lkplug``.

The CLI is imported here, under Ctrl-C handling of its own: a Ctrl-C during the first tenth of a
second (click's decorators, the plugin manager) is ``lkplug: interrupted`` and exit 130 like one at
any later moment, not Python's traceback and exit 1."""

import os
import signal


def console() -> None:
    # from the first instant, whatever the shell set: one that starts a job in the background sets
    # SIGINT to "ignore", which Python keeps until the run's own handler replaced it (about 0.3 s in),
    # so an early `kill -INT` was lost where a later one stops the run (ffmpeg takes it at any time)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        from .cli import console as run
    except KeyboardInterrupt:
        os.write(2, b"lkplug: interrupted\n")
        os._exit(130)  # lkplug.cli.EXIT_INTERRUPTED, which may be half imported
    run()


if __name__ == "__main__":
    console()
