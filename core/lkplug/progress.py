"""A one-line status on a terminal: position, duration (an estimate from the header) and the
real-time factor. Redrawn at most a few times a second, so the per-frame cost is one comparison."""

from __future__ import annotations

import time

REDRAW_SECONDS = 0.25
BAR_WIDTH = 30


def clock(seconds: float) -> str:
    minutes, secs = divmod(max(seconds, 0.0), 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:04.1f}" if hours else f"{minutes:02d}:{secs:04.1f}"


class StatusLine:
    def __init__(self, stream):
        self.stream = stream
        self.source = None
        self.started = 0.0
        self.next_draw = 0.0
        self.position = 0.0

    def start(self, source) -> None:
        """``source.duration`` is read at each redraw: a file learns it when it is opened."""
        self.source = source
        self.started = time.monotonic()

    def update(self, position: float) -> None:
        self.position = position
        now = time.monotonic()
        if now >= self.next_draw:
            self.next_draw = now + REDRAW_SECONDS
            self.stream.write("\r" + self.render(now) + "\x1b[K")
            self.stream.flush()

    def render(self, now: float) -> str:
        elapsed = now - self.started
        speed = f"{self.position / elapsed:6.1f}x" if elapsed > 0 else "     -"
        duration = getattr(self.source, "duration", None)
        if duration:
            # the header's duration can be wrong; never show more than 100 %
            done = min(self.position / duration, 1.0)
            bar = "#" * int(done * BAR_WIDTH)
            return f"[{bar:<{BAR_WIDTH}}] {done:4.0%} {clock(self.position)} / ~{clock(duration)} {speed}"
        return f"{clock(self.position)} {speed}"

    def finish(self) -> None:
        if self.next_draw:
            self.stream.write("\r" + self.render(time.monotonic()) + "\x1b[K\n")
            self.stream.flush()


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
        changed = (ok + failed, failed, seconds) != (self.done, self.failed, self.seconds)
        self.done, self.failed, self.seconds = ok + failed, failed, seconds
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
