"""What the receiver made up: libwebrtc's jitter buffer (NetEq) conceals audio whose packets came too
late or never (a publisher or a server that stalled, a lost packet) and stretches or squeezes what it
has to keep its delay. The SDK hands those samples on like any others; only the track's receiver
statistics (``concealed_samples``, ``inserted_samples_for_deceleration``,
``removed_samples_for_acceleration``) count them. A recording made through such a stretch is not
what was sent there (a tone dips in level and turns in phase), so lkplug says where they were.

The statistics are cumulative and have no time: they are read every ``POLL`` seconds. Audio the
receiver made up between two readings was made after the first was asked for, so it is handed on
after what had been handed on then, and before what has been handed on ``AFTER`` readings after the
second (the SDK's frames and the stream's queue delay it by less than that)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

POLL = 0.25  # seconds between readings of the receiver's statistics
READ_TIMEOUT = 1.0  # seconds a reading may take
AFTER = 4  # readings (1 s) by which what the receiver made up has been handed on
SETTLE = 1.0  # seconds at the start when the jitter buffer finds its delay (stretching is normal then)


class Concealment:
    """Reads a remote audio track's receiver statistics while it is received. ``position()`` gives
    the seconds of media handed on so far. ``spans`` are (start, end, concealed ms, stretched ms) in
    those seconds: where the receiver concealed audio, or stretched it past the first ``SETTLE`` s."""

    def __init__(self, track, position: Callable[[], float]):
        self.track, self.position = track, position
        self.spans: list[tuple[float, float, float, float]] = []
        self._last: tuple[float, float] | None = None  # (concealed, stretched) samples at the last reading
        self._rate = 48000
        self._pending: list[list[float]] = []  # [readings to wait, start, concealed ms, stretched ms]
        self._since = 0.0  # position when the last reading was asked for
        self._task = asyncio.ensure_future(self._watch())

    async def _read(self) -> tuple[float, float] | None:
        # bounded: a track torn down under it must not hold the end of a recording; asyncio.wait, not
        # wait_for: 3.11's wait_for swallows a cancel (stop()) that comes as the reading does, and
        # _watch would then read on for ever and stop() wait for it
        reading = asyncio.ensure_future(self.track.get_stats())
        try:
            await asyncio.wait({reading}, timeout=READ_TIMEOUT)
        finally:
            reading.cancel()
        if not reading.done() or reading.cancelled():
            return None
        for stats in reading.result():
            if stats.WhichOneof("stats") == "inbound_rtp":
                inbound = stats.inbound_rtp.inbound
                if inbound.total_samples_duration > 0:
                    self._rate = inbound.total_samples_received / inbound.total_samples_duration
                stretched = (
                    inbound.inserted_samples_for_deceleration + inbound.removed_samples_for_acceleration
                )
                return float(inbound.concealed_samples), float(stretched)
        return None

    def _reading(self, counts: tuple[float, float] | None, asked: float) -> None:
        """``counts`` read now; ``asked``: the position when they were asked for."""
        now = self.position()
        for pending in self._pending:  # handed on by now: it ends here
            pending[0] -= 1
            if pending[0] <= 0:
                self.spans.append((pending[1], now, pending[2], pending[3]))
        self._pending = [pending for pending in self._pending if pending[0] > 0]
        if counts is not None and self._last is not None:
            concealed = (counts[0] - self._last[0]) / self._rate * 1000
            stretched = (counts[1] - self._last[1]) / self._rate * 1000 if now > SETTLE else 0.0
            if concealed > 0 or stretched > 0:
                self._pending.append([AFTER, self._since, concealed, stretched])
        self._last = counts if counts is not None else self._last
        self._since = asked

    async def _watch(self) -> None:
        while True:
            asked = self.position()
            with contextlib.suppress(Exception):  # statistics are a report, never a reason to fail
                self._reading(await self._read(), asked)
            await asyncio.sleep(POLL)

    async def stop(self) -> list[tuple[float, float, float, float]]:
        """Stop reading (a last reading first) and return ``spans``."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        asked = self.position()
        with contextlib.suppress(Exception):
            self._reading(await self._read(), asked)
        self.spans += [
            (start, self.position(), concealed, stretched) for _, start, concealed, stretched in self._pending
        ]
        self._pending = []
        return self.spans


def describe(spans, offset: float = 0.0) -> str:
    """``spans`` as one line, the overlapping ones merged: "the receiver concealed 65 ms and stretched
    20 ms of audio at 1.40-1.90 s, 5.00-5.50 s" (seconds shifted by ``offset``); what it did not do is
    left out ("the receiver stretched 20 ms of audio at ..."), and a part of a millisecond is 1 ms."""
    amounts = {
        what: sum(span[index] for span in spans) for what, index in (("concealed", 2), ("stretched", 3))
    }
    done = " and ".join(f"{what} {max(1, round(ms))} ms" for what, ms in amounts.items() if ms > 0)
    merged: list[list[float]] = []
    for start, end, *_ in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    where = ", ".join(f"{start + offset:.2f}-{end + offset:.2f} s" for start, end in merged)
    return f"the receiver {done} of audio at {where}"
