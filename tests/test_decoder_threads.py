"""The file source's decoder threads: FLAC is decoded on FFmpeg's frame threads (as the ffmpeg CLI
does) in a run of its own, on one thread in a batch's worker process, and gives the same samples."""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from signals import write_flac

from lkplug_av.source import FileSource


def decode(path: str) -> tuple[str, np.ndarray]:
    """(the audio decoder's thread type, every sample the file source gives) for ``path``."""
    source = FileSource(path)
    source.probe()
    threads = source.streams["audio"].thread_type.name

    async def collect():
        return [frame.data async for frame in source.frames()]

    return threads, np.concatenate(asyncio.run(collect()))


def noise_flac(tmp_path) -> tuple[str, np.ndarray]:
    data = np.random.default_rng(3).integers(-20000, 20000, (3 * 44100, 2), dtype=np.int16)
    path = tmp_path / "noise.flac"
    write_flac(path, data, 44100)
    return str(path), data


def test_flac_is_decoded_on_frame_threads_with_the_same_samples(tmp_path):
    path, data = noise_flac(tmp_path)
    threads, decoded = decode(path)
    assert threads == "AUTO"  # frame and slice threads, as the ffmpeg CLI asks for (FLAC has frame threads)
    assert np.array_equal(decoded, data)  # lossless: every sample as written, in order


def test_a_batch_worker_decodes_flac_on_one_thread(tmp_path):
    path, data = noise_flac(tmp_path)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        threads, decoded = pool.submit(decode, path).result()
    assert threads in ("NONE", "SLICE")  # no frame threads (PyAV's default is SLICE, which FLAC lacks)
    assert np.array_equal(decoded, data)
