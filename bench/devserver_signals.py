"""SIGINT/SIGTERM at random moments of `lkplug run --devserver …` (issue 17): joining, starting the
dev server, recording. After each: is any dev server left, and is every output that exists valid?

    python bench/devserver_signals.py [--trials 50] [--seed 1]

Audio trials record alice's tone to WAV, video trials her camera to MP4 (one of each kind in turn).
Linux only (finds the child by its environment in /proc). tests/test_devserver_process.py runs a few
fixed moments of the same.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import signal
import sys
import tempfile
from pathlib import Path

import av
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from sockets import processes_with_env  # noqa: E402

from lkplug_livekit.devserver.cli import PARENT_ENV  # noqa: E402


def wav_header_problem(path: Path) -> str:
    """'' when the RIFF and data chunk sizes match the file (its header was finalised), else what
    does not (libsndfile reads an unfinished WAV without complaint)."""
    raw = path.read_bytes()
    if int.from_bytes(raw[4:8], "little") != len(raw) - 8:
        return f"RIFF size {int.from_bytes(raw[4:8], 'little')} for a {len(raw)}-byte file"
    at = raw.find(b"data")
    if at < 0 or at + 8 + int.from_bytes(raw[at + 4 : at + 8], "little") != len(raw):
        return "data chunk size does not match the file"
    return ""


def valid(path: Path) -> str:
    """'' when the file is a valid recording, else why not."""
    try:
        if path.suffix == ".wav":
            data, rate = soundfile.read(path)
            return wav_header_problem(path) or ("" if rate == 48000 else f"rate {rate}")
        with av.open(str(path)) as container:
            frames = sum(1 for _ in container.decode(video=0))
        return "" if frames else "no frames"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


async def trial(index: int, rng: random.Random, workdir: Path) -> dict:
    video = index % 2 == 1
    out = workdir / (f"{index}.mp4" if video else f"{index}.wav")
    source = "track:alice/camera" if video else "track:alice"
    sink = f"file:{out}" if video else f"wav:{out}"
    sig = rng.choice([signal.SIGINT, signal.SIGTERM])
    after = rng.uniform(0.0, 12.0)  # under load the join alone can take 5 s
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lkplug", "run", "--devserver", "--source", source, "--sink", sink, "-t", "60",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await asyncio.sleep(after)
    children = processes_with_env(PARENT_ENV, str(process.pid))
    process.send_signal(sig)
    try:
        _, err = await asyncio.wait_for(process.communicate(), 60)
    except asyncio.TimeoutError:
        process.kill()
        _, err = await process.communicate()
        err += b"\n(did not end within 60 s: killed)"
    for _ in range(50):
        if not [pid for pid in children if os.path.exists(f"/proc/{pid}")]:
            break
        await asyncio.sleep(0.1)
    left = [pid for pid in children if os.path.exists(f"/proc/{pid}")]
    left += [pid for pid in processes_with_env(PARENT_ENV, str(process.pid)) if pid not in left]
    for pid in left:  # not to disturb the next trials
        os.kill(pid, signal.SIGKILL)
    recording = "receiving alice" in err.decode(errors="replace")
    return {
        "signal": signal.Signals(sig).name,
        "after": after,
        "kind": "video" if video else "audio",
        "code": process.returncode,
        "left": len(left),
        "output": "none" if not out.exists() else (valid(out) or "valid"),
        "phase": "recording" if recording else "joining",
        "err": err.decode(errors="replace").strip().splitlines()[-1:] or [""],
    }


async def main(trials: int, seed: int) -> None:
    rng = random.Random(seed)
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for index in range(trials):
            result = await trial(index, rng, Path(workdir))
            results.append(result)
            print(
                f"{index:3d} {result['signal']:7} at {result['after']:4.1f} s ({result['phase']:9}) "
                f"{result['kind']}: exit {result['code']}, dev servers left {result['left']}, "
                f"output {result['output']}  | {result['err'][0]}",
                flush=True,
            )
    print(f"\n{trials} trials (seed {seed}):")
    print(f"  dev servers left behind: {sum(r['left'] for r in results)}")
    outputs = collections.Counter(
        "valid" if r["output"] == "valid" else ("none" if r["output"] == "none" else "INVALID")
        for r in results
    )
    print(f"  outputs: {dict(outputs)}")
    phases = collections.Counter((r["phase"], r["code"]) for r in results)
    print(f"  (phase, exit status): {dict(phases)}")


if __name__ == "__main__":
    # started in the background (nohup … &), this process ignores SIGINT, and a child inherits that
    # until it sets its own handler: a caught signal is reset to the default at exec, an ignored one not
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    options = parser.parse_args()
    asyncio.run(main(options.trials, options.seed))
