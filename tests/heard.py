"""What a participant heard over the network, measured as a listener would: past the decoder's start,
with the receiver's dropouts (Opus concealing packets that came late or not at all, on a loaded
machine) told apart from the level a tone arrives at."""

from __future__ import annotations

import numpy as np

from lkplug.testing import level_dbfs
from lkplug_livekit.devserver.peers import RATE


def steady(data: np.ndarray) -> np.ndarray:
    """Past the first packets (silence, then the decoder's fade-in): from 0.25 s after the first sound."""
    sound = np.flatnonzero(np.abs(data) > 1e-3)
    return data[sound[0] + RATE // 4 :] if len(sound) else data


def window_levels(data: np.ndarray, rate: int, ms: int = 50) -> np.ndarray:
    """The level (dBFS, all channels) of each whole ``ms`` window."""
    size = rate * ms // 1000
    return np.array([level_dbfs(data[i : i + size]) for i in range(0, len(data) - size + 1, size)])


def sounding_level(data: np.ndarray, rate: int) -> float:
    """The level (dBFS) a signal arrives at: the 90th percentile of its 50 ms windows' levels. A gain
    error moves every window; a dropout (Opus's concealment fading out a lost packet) lowers a few,
    which this leaves out: tests that are about gaps count them (``dropouts``), not hide them here."""
    return float(np.percentile(window_levels(data, rate), 90))


def dropouts(data: np.ndarray, rate: int, sent_db: float) -> int:
    """How many times a steady tone fell more than 3 dB below ``sent_db`` (50 ms windows)."""
    low = window_levels(data, rate) < sent_db - 3
    return int(np.count_nonzero(low[1:] & ~low[:-1]) + low[0])
