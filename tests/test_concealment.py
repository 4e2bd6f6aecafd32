"""What lkplug keeps of a received track's statistics (``lkplug_livekit.concealment``): a summary whose
size does not grow with the stream, with the amounts whole."""

from __future__ import annotations

import tracemalloc

from livekit.rtc._proto import stats_pb2

from lkplug_livekit.concealment import MAX_SPANS, PLACES, Concealment, bounded, describe

RATE = 48000


class Statistics:
    """A remote track's ``get_stats()``, as the SDK gives them (its own protobuf messages), at counts
    the test sets: ``made`` seconds of audio, ``concealed`` samples."""

    def __init__(self):
        self.made, self.concealed, self.stretched = 0.0, 0, 0

    async def get_stats(self):
        stats = stats_pb2.RtcStats()
        inbound = stats.inbound_rtp.inbound
        inbound.total_samples_duration = self.made
        inbound.total_samples_received = round(self.made * RATE)
        inbound.concealed_samples = self.concealed
        inbound.inserted_samples_for_deceleration = self.stretched
        return [stats]


# a receiver's jitter buffer finding its delay, as read from a clean 48 kHz tone through the dev server
# (seconds made, samples inserted or removed so far): stretched until 1.06 s, then steady
START_UP = [(0.30, 338), (0.55, 1210), (0.80, 2082), (1.06, 2518)]


async def readings(track: Statistics, watch: Concealment, position: list, until: float, events=()) -> None:
    """Readings 0.25 s apart after ``START_UP`` until ``until`` seconds made; ``events``: (seconds made,
    samples concealed, samples stretched) added by then."""
    steps = [*START_UP]
    while steps[-1][0] < until:
        steps.append((round(steps[-1][0] + 0.25, 2), steps[-1][1]))
    for made, stretched in steps:
        track.made = made
        track.stretched = stretched + sum(e[2] for e in events if e[0] <= made)
        track.concealed = sum(e[1] for e in events if e[0] <= made)
        position[0] = made - 0.1  # handed on 100 ms after the receiver made it
        await watch._take()


async def test_a_jitter_buffer_finding_its_delay_is_not_damage():
    """Before: "the receiver stretched 9 ms of audio at 0.70-1.06 s" in almost every run, of a tone whose
    every 10 ms was whole: the start-up stretching went on past the first second (SETTLE), and a span
    reaching past it counted whole."""
    track, position = Statistics(), [0.0]
    watch = Concealment(track, lambda: position[0])
    await readings(track, watch, position, until=4.0)
    assert await watch.stop() == []


async def test_what_the_receiver_makes_up_after_or_during_its_start_up_is_said():
    """Concealment is said wherever it is (its start-up stretching is not); stretching once the
    receiver was steady is said."""
    track, position = Statistics(), [0.0]
    watch = Concealment(track, lambda: position[0])
    # 20 ms concealed during the start-up; 10 ms stretched once it was steady
    await readings(track, watch, position, until=4.0, events=[(0.80, RATE // 50, 0), (3.06, 0, RATE // 100)])
    line = describe(await watch.stop())
    expected = "the receiver concealed 20 ms and stretched 10 ms of audio at 0.45-0.76 s, 2.71-3.02 s"
    assert line == expected, line


async def test_a_long_stream_concealed_all_along_keeps_a_bounded_summary():
    """Before: every reading was kept (four a second, about 14 MB in 10 hours). A stream whose receiver
    conceals 10 ms in every reading is the worst case: every reading would be a span of its own.
    Two hours of readings (as fast as they go): the second adds nothing that stays."""
    track = Statistics()
    position = [0.0]
    watch = Concealment(track, lambda: position[0])
    readings = 2 * 3600 * 4  # two hours of readings, POLL (0.25 s) apart

    async def read(count: int) -> None:
        for _ in range(count):
            track.made += 0.25
            track.concealed += RATE // 100
            position[0] = track.made - 0.1  # handed on 100 ms after the receiver made it
            await watch._take()

    await read(readings // 2)  # one hour
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    await read(readings // 2)  # one more
    grown = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    # bytes: the second hour added nothing that stays (before: 2.7 MB an hour, measured)
    assert grown < 20_000, grown
    spans = await watch.stop()
    assert len(spans) <= MAX_SPANS
    # every reading's 10 ms after the first counted, none twice (stop() reads once more: no change)
    assert sum(span[2] for span in spans) == (readings - 1) * 10
    line = describe(spans)
    # one place: each span reaches into the next (it holds the frame that carried it)
    assert line == f"the receiver concealed {(readings - 1) * 10} ms of audio at 0.15-{2 * 3600 - 0.1:.2f} s"


def test_spans_of_many_subscriptions_stay_bounded_with_their_amounts():
    spans = [(float(i), i + 0.5, 10.0, 1.0) for i in range(3 * MAX_SPANS)]
    kept = bounded(spans)
    assert len(kept) == MAX_SPANS and kept[: MAX_SPANS - 1] == spans[: MAX_SPANS - 1]
    assert kept[-1] == (MAX_SPANS - 1.0, 3 * MAX_SPANS - 0.5, 10.0 * (2 * MAX_SPANS + 1), 2.0 * MAX_SPANS + 1)
    assert bounded(spans[:5]) == spans[:5]
    line = describe(kept)
    assert line.startswith("the receiver concealed 3000 ms and stretched 300 ms of audio at 0.00-0.50 s, 1")
    last = f"{PLACES - 1:.2f}-{PLACES - 0.5:.2f} s"  # the last of the PLACES named
    assert line.endswith(f"{last} and {MAX_SPANS - PLACES} more places"), line
