"""A one-line status on a terminal, and the closing summary.

A file job shows position, its length (the header's estimate, or ``-t`` when that is shorter) and the
real-time factor. A live source (a room's track) comes at real time by itself, so a factor would only
measure waiting: it shows the media received and the time since the start. A fan-out shows each
stream's media, not a sum of them. Redrawn at most a few times a second, so the per-frame cost is one
comparison.
"""

from __future__ import annotations

import time

REDRAW_SECONDS = 0.25
BAR_WIDTH = 30
MAX_STREAMS_SHOWN = 4


def counted(number: int, noun: str) -> str:
    """``counted(1, "stream")`` is "1 stream", ``counted(2, "stream")`` "2 streams"."""
    return f"{number} {noun}" + ("" if number == 1 else "s")


def clock(seconds: float) -> str:
    minutes, secs = divmod(max(seconds, 0.0), 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:04.1f}" if hours else f"{minutes:02d}:{secs:04.1f}"


class StatusLine:
    """``total``: the run's ``-t`` (seconds of media; None: until the source ends)."""

    def __init__(self, stream, total: float | None = None):
        self.stream = stream
        self.total = total
        self.source = None
        self.started = 0.0
        self.next_draw = 0.0
        self.position = 0.0
        self.streams: dict[str, float] = {}  # fan-out: stream label -> its media seconds

    def start(self, source) -> None:
        """``source.duration`` is read at each redraw: a file learns it when it is opened."""
        self.source = source
        self.started = time.monotonic()

    def update(self, position: float, stream: str | None = None) -> None:
        """``position``: seconds of media so far (of ``stream``, in a fan-out)."""
        if stream is None:
            self.position = position
        else:
            self.streams[stream] = position
        now = time.monotonic()
        if now >= self.next_draw:
            self.next_draw = now + REDRAW_SECONDS
            self.stream.write("\r" + self.render(now) + "\x1b[K")
            self.stream.flush()

    def length(self) -> float | None:
        """What the run will last in media seconds, as far as is known: the shorter of the source's
        (estimated) duration and ``-t``."""
        known = [d for d in (getattr(self.source, "duration", None), self.total) if d]
        return min(known) if known else None

    def render(self, now: float) -> str:
        elapsed = now - self.started
        if self.streams:
            return self._render_streams(elapsed)
        if getattr(self.source, "live", False):
            return self._render_live(elapsed)
        speed = f"{self.position / elapsed:6.1f}x" if elapsed > 0 else "     -"
        length = self.length()
        if length:
            # the header's duration can be wrong; never show more than 100 %
            done = min(self.position / length, 1.0)
            bar = "#" * int(done * BAR_WIDTH)
            exact = "" if length == self.total else "~"
            return f"[{bar:<{BAR_WIDTH}}] {done:4.0%} {clock(self.position)} / {exact}{clock(length)} {speed}"
        return f"{clock(self.position)} {speed}"

    def _render_live(self, elapsed: float) -> str:
        of = f" / {clock(self.total)}" if self.total else ""
        return f"live {clock(self.position)}{of} received, {clock(elapsed)} elapsed"

    def _render_streams(self, elapsed: float) -> str:
        shown = sorted(self.streams.items())[:MAX_STREAMS_SHOWN]
        more = len(self.streams) - len(shown)
        parts = [f"{label} {clock(seconds)}" for label, seconds in shown]
        of = f" (each to {clock(self.total)})" if self.total else ""
        more = f" +{more} more" if more else ""
        streams = counted(len(self.streams), "stream")
        return f"{streams}{of}: " + ", ".join(parts) + f"{more}; {clock(elapsed)} elapsed"

    def finish(self) -> None:
        if self.next_draw:
            self.stream.write("\r" + self.render(time.monotonic()) + "\x1b[K\n")
            self.stream.flush()


def summary(report, live: bool = False, streams: int | None = None) -> str:
    """The closing line: media and wall time; the real-time factor only where it measures speed (a
    file job), not for a live source (it only measures waiting) nor a fan-out (whose streams' media
    would add up)."""
    stopped = ", stopped by signal" if report.stopped else ""
    if streams is not None:
        return (
            f"{counted(streams, 'stream')}, {report.seconds:.2f} s of media in all, "
            f"in {report.wall:.2f} s{stopped}"
        )
    if live:
        return f"{report.seconds:.2f} s of media received in {report.wall:.2f} s{stopped}"
    speed = report.seconds / report.wall if report.wall > 0 else 0.0
    return f"{report.seconds:.2f} s of media in {report.wall:.2f} s ({speed:.1f}x real time){stopped}"


class BatchStatus:
    """A batch's progress: files done / total (and failed), media seconds, real-time factor, ETA.
    On a terminal one line is redrawn; ``print`` puts a message above it."""

    def __init__(self, stream, redraw: bool = True):
        self.stream = stream
        self.redraw = redraw
        self.total = 0
        self.done = self.failed = 0
        self.seconds = 0.0
        self.started = 0.0
        self.next_draw = 0.0

    def start(self, total: int) -> None:
        self.total = total
        self.started = time.monotonic()

    def update(self, ok: int, failed: int, seconds: float) -> None:
        """``seconds``: media done, of the inputs in progress too (never shown going back: one that
        ends leaves the in-progress count a moment before its result comes)."""
        changed = (ok + failed, failed) != (self.done, self.failed)
        self.done, self.failed, self.seconds = ok + failed, failed, max(seconds, self.seconds)
        now = time.monotonic()
        if self.redraw and (changed or now >= self.next_draw):
            self.next_draw = now + REDRAW_SECONDS
            self.stream.write("\r" + self.render(time.monotonic()) + "\x1b[K")
            self.stream.flush()

    def print(self, line: str) -> None:
        if self.redraw and self.next_draw:
            self.stream.write("\r\x1b[K" + line + "\n" + self.render(time.monotonic()) + "\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def render(self, now: float) -> str:
        elapsed = now - self.started
        speed = f"{self.seconds / elapsed:.1f}x" if elapsed > 0 else "-"
        failed = f" ({self.failed} failed)" if self.failed else ""
        # the inputs' lengths are not known before they are opened: the estimate counts files
        left = elapsed / self.done * (self.total - self.done) if self.done else None
        eta = clock(left) if left is not None else "-"
        return f"{self.done}/{self.total} files{failed}  {clock(self.seconds)} of media  {speed}  ETA {eta}"

    def finish(self) -> None:
        if self.redraw and self.next_draw:
            self.stream.write("\r" + self.render(time.monotonic()) + "\x1b[K\n")
            self.stream.flush()
