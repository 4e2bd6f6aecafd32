"""The file source's decoder threads: lossless decoders that have FFmpeg's frame threads (FLAC, ALAC,
WavPack, TTA) use them in a run of their own, as the ffmpeg CLI does, and none in a batch's worker
process; either way every sample comes out as written."""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import av
import numpy as np
import pytest

from lkplug_av.source import FileSource

RATE = 44100
# codec -> container and the sample format its encoder takes (s32p for ALAC's 16-bit: FFmpeg's)
LOSSLESS = {
    "flac": ("flac", "s16"),
    "alac": ("m4a", "s16p"),
    "wavpack": ("wv", "s16p"),
    "tta": ("tta", "s16"),
}


def encode(path, codec: str, data: np.ndarray) -> None:
    """Encode int16 (samples, 2) with PyAV's (FFmpeg's) encoder ``codec``, independent of lkplug."""
    fmt = LOSSLESS[codec][1]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=RATE, layout="stereo")
        stream.format = fmt
        planes = data.T.copy() if fmt.endswith("p") else data.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes), format=fmt, layout="stereo")
        frame.sample_rate = RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)


def decode(path: str) -> tuple[str, np.ndarray]:
    """(the audio decoder's thread type, every sample the file source gives, as int16) for ``path``."""
    source = FileSource(path)
    source.probe()
    threads = source.streams["audio"].thread_type.name

    async def collect():
        return [frame.data async for frame in source.frames()]

    data = np.concatenate(asyncio.run(collect()))
    if data.dtype != np.int16:  # a decoder giving float or s32: back to the 16 bits written
        data = np.round(data * 32768).astype(np.int16)
    return threads, data


@pytest.fixture(params=sorted(LOSSLESS))
def lossless(request, tmp_path) -> tuple[str, np.ndarray]:
    data = np.random.default_rng(3).integers(-20000, 20000, (3 * RATE, 2), dtype=np.int16)
    path = tmp_path / f"noise.{LOSSLESS[request.param][0]}"
    encode(path, request.param, data)
    return str(path), data


def test_lossless_audio_is_decoded_on_frame_threads_with_the_same_samples(lossless):
    path, data = lossless
    threads, decoded = decode(path)
    assert threads == "AUTO"  # frame and slice threads, as the ffmpeg CLI asks for
    assert np.array_equal(decoded, data)  # every sample as written, in order


def test_a_batch_worker_decodes_lossless_audio_on_one_thread(lossless):
    path, data = lossless
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        threads, decoded = pool.submit(decode, path).result()
    assert threads in ("NONE", "SLICE")  # no frame threads (PyAV's default is SLICE, which these lack)
    assert np.array_equal(decoded, data)
