"""The file sink keeps a video stream's first picture size when a live track changes size mid-stream
(a publisher adapting to bandwidth does: 1280x720 -> 640x360), scaling later pictures to it as the
ffmpeg CLI's auto-inserted scaler does, with one notice."""

from __future__ import annotations

import av
import numpy as np

from lkplug import RunContext, VideoFrame
from lkplug_av.sink import FileSink
from lkplug_livekit.devserver.peers import BARS, bar_colours, colour_bars

FPS = 15


def bars_yuv420p(width: int, height: int) -> np.ndarray:
    picture = av.VideoFrame.from_ndarray(colour_bars(width, height)[..., :3].copy(), format="rgb24")
    return picture.reformat(format="yuv420p").to_ndarray()


def test_a_size_change_is_recorded_whole_at_the_first_size(tmp_path):
    out = tmp_path / "talk_rec.mp4"
    notices: list[str] = []
    sink = FileSink(str(out))
    sink.bind(RunContext(notify=notices.append))
    sink.start({"video": None})
    sizes = [(1280, 720)] * FPS + [(640, 360)] * FPS + [(480, 264)] * FPS  # 3 s, two changes
    for index, (width, height) in enumerate(sizes):
        data = bars_yuv420p(width, height)
        sink.write(VideoFrame(data, "yuv420p", width, height, index / FPS, 1 / FPS))
    sink.close()
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (1280, 720)
        pictures = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(pictures) == len(sizes)  # every picture, none dropped
    assert {p.shape for p in pictures} == {(720, 1280, 3)}
    for picture in (pictures[FPS + 2], pictures[-1]):  # scaled pictures keep their content
        for seen, sent in zip(bar_colours(picture), BARS, strict=True):
            assert np.abs(np.subtract(seen, sent)).max() < 40, bar_colours(picture)
    assert len(notices) == 1 and "1280x720 -> 640x360" in notices[0], notices
