"""Where the ``lkplug`` command starts (``[project.scripts]`` in pyproject.toml), and ``python -m lkplug``.

The CLI is imported here, under Ctrl-C handling of its own: a Ctrl-C (or SIGTERM) during the first
tenth of a second (click's decorators, the plugin manager) is ``lkplug: interrupted`` and exit 130
like one at any later moment, not Python's traceback and exit 1."""

import os
import signal


def console() -> None:
    # from the first moment lkplug's code runs (Python's own start-up, some 30-60 ms, comes before),
    # whatever the shell set: one that starts a job in the background sets SIGINT to "ignore", which
    # Python keeps until the run's own handler replaces it (about 0.3 s in), so an early `kill -INT`
    # was lost where a later one stops the run. SIGTERM as SIGINT: until then it ended the process
    # silently (exit 143), later it stops the run (exit 130)
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.default_int_handler)
    try:
        from .cli import console as run
    except KeyboardInterrupt:
        os.write(2, b"lkplug: interrupted\n")
        os._exit(130)  # lkplug.cli.EXIT_INTERRUPTED, which may be half imported
    run()


if __name__ == "__main__":
    console()
