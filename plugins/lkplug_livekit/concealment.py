"""What the receiver made up: libwebrtc's jitter buffer (NetEq) conceals audio whose packets came too
late or never (a publisher or a server that stalled, a lost packet) and stretches or squeezes what it
has to keep its delay. The SDK hands those samples on like any others; only the track's receiver
statistics (``concealed_samples``, ``inserted_samples_for_deceleration``,
``removed_samples_for_acceleration``) count them. A recording made through such a stretch is not
what was sent there (a tone dips in level and turns in phase), so lkplug says where they were.

The statistics are cumulative and have no time: they are read every ``POLL`` seconds. Each reading
also gives how much audio the receiver has made in all (``total_samples_duration``), and the SDK
hands every 10 ms the receiver makes to lkplug's stream, one for one: what it made up between two
readings is the stretch of the stream between those two counts, once the count at which the stream
began is known. That is found from the readings themselves: a reading asked for when ``position``
seconds had been handed on counts at least that much audio past the stream's beginning, so the
smallest (count - position) bounds it; the shortest time the SDK takes to hand on what the receiver
made is its regrouping of 10 ms into the stream's frames (``frame`` seconds) and ``MARGIN`` more."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable

POLL = 0.25  # seconds between readings of the receiver's statistics
READ_TIMEOUT = 1.0  # seconds a reading may take
MARGIN = 0.05  # seconds past a frame: what the receiver made is handed on sooner, at some reading
SETTLE = 3.0  # seconds at most that the jitter buffer's start-up (when stretching is normal) may last
MAX_SPANS = 100  # spans kept per stream: a long stream that is made up again and again stays bounded
PLACES = 30  # places named in a warning (the amounts count them all; a short run names all of its)


class Concealment:
    """Reads a remote audio track's receiver statistics while it is received. ``position()`` gives
    the seconds of media handed on so far, in frames of ``frame`` seconds. ``stop()`` gives (start,
    end, concealed ms, stretched ms) in those seconds: where the receiver concealed audio, or
    stretched it once steady.

    Stretching is normal while the receiver's jitter buffer finds its delay at the start: it inserts
    and removes some 40 ms in the first second (read from a clean tone through the dev server: every
    10 ms of it whole), and on a busy machine for longer. So stretching counts from the first reading
    interval without any (the buffer is steady), or from ``SETTLE`` s at the latest; concealment,
    audio made up for packets that did not come, counts from the start."""

    def __init__(self, track, position: Callable[[], float], frame: float = 0.01):
        self.track, self.position, self.frame = track, position, frame
        # a bounded summary, not every reading (four a second: 2.7 MB an hour, measured): the last
        # reading (seconds the receiver made, concealed samples, stretched samples, position when
        # asked), the smallest (made - position) so far, and the pairs of readings between which the
        # receiver made something up (at most MAX_SPANS: later ones join the last)
        self._last: tuple[float, float, float, float] | None = None
        self._began = math.inf
        self._changes: list[tuple[tuple[float, float, float, float], tuple[float, float, float, float]]] = []
        self._rate = 48000
        # the count at which the receiver was first steady (no stretching between two readings after
        # some), and whether it has stretched yet
        self._steady = math.inf
        self._started = False
        self._task = asyncio.ensure_future(self._watch())

    async def _read(self) -> tuple[float, float, float] | None:
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
                return inbound.total_samples_duration, float(inbound.concealed_samples), float(stretched)
        return None

    async def _take(self) -> None:
        asked = self.position()
        with contextlib.suppress(Exception):  # statistics are a report, never a reason to fail
            counts = await self._read()
            if counts is not None:
                self._add((*counts, asked))

    def _add(self, now: tuple[float, float, float, float]) -> None:
        before, self._last = self._last, now
        self._began = min(self._began, now[0] - now[3])
        if before is not None and self._steady == math.inf:
            if now[2] > before[2]:
                self._started = True
            elif self._started:
                self._steady = before[0]
        if before is None or (now[1] <= before[1] and now[2] <= before[2]):
            return
        if len(self._changes) < MAX_SPANS:
            self._changes.append((before, now))
        else:  # the last span grows to hold the rest: amounts stay whole, places get coarse
            self._changes[-1] = (self._changes[-1][0], now)

    async def _watch(self) -> None:
        while True:
            await self._take()
            await asyncio.sleep(POLL)

    async def stop(self) -> list[tuple[float, float, float, float]]:
        """Stop reading (a last reading first) and return the spans."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        await self._take()
        began = self._began  # the count at the stream's start
        steady = min(self._steady, began + SETTLE)
        handed = self.position()
        spans = []
        for before, now in self._changes:
            start, end = before[0] - began, now[0] - began + self.frame + MARGIN
            if start >= handed:  # made after the last frame lkplug took (the run ended): not recorded
                break
            concealed = (now[1] - before[1]) / self._rate * 1000
            stretched = (now[2] - before[2]) / self._rate * 1000 if before[0] >= steady else 0.0
            if concealed > 0 or stretched > 0:
                spans.append((max(0.0, start), min(end, handed), concealed, stretched))
        return spans


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
    where = ", ".join(f"{start + offset:.2f}-{end + offset:.2f} s" for start, end in merged[:PLACES])
    more = f" and {len(merged) - PLACES} more places" if len(merged) > PLACES else ""
    return f"the receiver {done} of audio at {where}{more}"


def bounded(spans: list) -> list:
    """``spans`` (of one stream, in time order) at most ``MAX_SPANS`` long: the last one holds the
    rest (from its first start to the last end, their amounts summed)."""
    if len(spans) <= MAX_SPANS:
        return spans
    rest = spans[MAX_SPANS - 1 :]
    last = (rest[0][0], rest[-1][1], sum(s[2] for s in rest), sum(s[3] for s in rest))
    return [*spans[: MAX_SPANS - 1], last]
