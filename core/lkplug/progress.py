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
