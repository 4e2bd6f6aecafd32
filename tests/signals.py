"""Media for the tests that lkplug.testing does not make (generated here, never read from ../shared)."""

from __future__ import annotations

import numpy as np


def write_flac(path, data: np.ndarray, rate: int) -> None:
    """Encode int16 (samples, channels) to FLAC with PyAV (FFmpeg), independent of lkplug."""
    import av

    layout = {1: "mono", 2: "stereo"}[data.shape[1]]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("flac", rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(data.reshape(1, -1)), format="s16", layout=layout
        )
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
