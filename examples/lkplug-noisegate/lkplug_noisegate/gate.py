"""The gate: a hold detector and a linear gain ramp, computed a block (frame) at a time with numpy."""

from __future__ import annotations

import numpy as np

from lkplug import AudioContract, Processor
from lkplug.convert import to_s16

NEVER = -(2**62)  # the sample index of "no sample above the threshold yet"


def _ramp_step(ms: float, rate: int) -> float:
    """Gain change per sample for a full 0-to-1 ramp in ``ms`` (0 ms: at once)."""
    samples = ms * rate / 1000
    return 1.0 if samples <= 1 else 1.0 / samples


class NoiseGate(Processor):
    accepts = {"audio": AudioContract()}  # any rate, channels and sample format
    emits = "the format it takes"

    def __init__(
        self, threshold: float = -40.0, attack: float = 1.0, release: float = 50.0, hold: float = 20.0
    ):
        self.threshold = 10 ** (threshold / 20)
        self.attack_ms, self.release_ms, self.hold_ms = attack, release, hold
        self.rate = 0
        self.position = 0  # samples seen so far
        self.last_loud = NEVER  # index of the last sample at or above the threshold
        self.gain = 0.0  # starts closed

    def _configure(self, rate: int) -> None:
        self.rate = rate
        self.up = _ramp_step(self.attack_ms, rate)
        self.down = _ramp_step(self.release_ms, rate)
        self.hold = round(self.hold_ms * rate / 1000)

    def gains(self, level: np.ndarray) -> np.ndarray:
        """Per-sample gain for the per-sample peak ``level`` (max over channels), updating the state."""
        n = len(level)
        if not n:
            return np.empty(0)
        index = np.arange(self.position, self.position + n)
        loud_at = np.where(level >= self.threshold, index, NEVER)
        last_loud = np.maximum.accumulate(np.maximum(loud_at, self.last_loud))
        is_open = index - last_loud <= self.hold
        gains = np.empty(n)
        # between changes of open/closed the gain is a straight ramp, clipped to [0, 1]
        edges = np.flatnonzero(np.diff(is_open)) + 1
        start, gain = 0, self.gain
        for end in [*edges, n]:
            steps = np.arange(1, end - start + 1)
            if is_open[start]:
                ramp = np.minimum(1.0, gain + steps * self.up)
            else:
                ramp = np.maximum(0.0, gain - steps * self.down)
            gains[start:end] = ramp
            gain = ramp[-1]
            start = end
        self.gain, self.position, self.last_loud = gain, self.position + n, int(last_loud[-1])
        return gains

    def process(self, frame) -> list:
        if frame.sample_rate != self.rate:
            self._configure(frame.sample_rate)
        data = frame.data
        samples = data.astype(np.float32) / 32768 if data.dtype == np.int16 else data
        gated = samples * self.gains(np.abs(samples).max(axis=1))[:, None].astype(np.float32)
        return [frame.replace(data=to_s16(gated) if data.dtype == np.int16 else gated)]
