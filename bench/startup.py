"""lkplug's fixed cost: start-up and the work around a tiny run, as whole processes.

Each case runs ``-n`` times, the cases interleaved so machine load hits all alike; prints the median
wall time (min-max), the median CPU time (user + system) and the load average (on a shared machine
CPU time is the steadier figure). ``--against DIR`` runs the same cases with another
checkout's ``core`` and ``plugins`` first on ``PYTHONPATH`` (the built-in plugins' entry points name
modules, so they resolve there too), for before/after figures in one run.

    python bench/startup.py -n 15
    python bench/startup.py -n 15 --against /work/main
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

PY = sys.executable


def cases(tmp: Path) -> dict[str, list[str]]:
    wav = tmp / "one.wav"
    if not wav.exists():  # a 1-second 48 kHz stereo 16-bit WAV
        t = np.arange(48000) / 48000
        sf.write(wav, np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)], 1) / 2, 48000)
    lkplug = [PY, "-m", "lkplug"]
    return {
        "python -c pass": [PY, "-c", "pass"],
        "import lkplug.cli": [PY, "-c", "import lkplug.cli"],
        "lkplug --help": [*lkplug, "--help"],
        "lkplug list": [*lkplug, "list"],
        "run tone 0.1 s -> null": [*lkplug, "run", "-q", "--source", "tone:duration=0.1", "--sink", "null"],
        "run 1 s WAV -> issue-15 chain": [*lkplug, "run", "-q", "--source", f"file:{wav}"]
        + ["--proc", "gain:db=-6", "--proc", "resample:rate=16000", "--proc", "remix:channels=1"]
        + ["--sink", f"wav:{tmp / 'out.wav'}"],
    }


def timed(command: list[str], env: dict) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.decode()[-400:]}")
    return elapsed, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=15, help="runs per case [15]")
    parser.add_argument("--against", type=Path, help="another checkout to run beside this one")
    args = parser.parse_args()
    envs = {"this": dict(os.environ)}
    if args.against:
        other = dict(os.environ)
        paths = [str(args.against / "core"), str(args.against / "plugins")]
        other["PYTHONPATH"] = os.pathsep.join(paths + [os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        envs = {str(args.against): other, **envs}
    with tempfile.TemporaryDirectory() as tmp:
        commands = cases(Path(tmp))
        times = {(name, label): [] for name in commands for label in envs}
        loads = [os.getloadavg()[0]]
        for _ in range(args.n):
            for name, command in commands.items():
                for label, env in envs.items():
                    times[(name, label)].append(timed(command, env))
            loads.append(os.getloadavg()[0])
    print(f"median of {args.n} runs (min-max), load average {min(loads):.2f}-{max(loads):.2f}")
    for name in commands:
        row = [f"{name:<30}"]
        for label in envs:
            wall = [w for w, _ in times[(name, label)]]
            cpu = statistics.median(c for _, c in times[(name, label)])
            row.append(
                f"{label}: wall {statistics.median(wall):.3f} s ({min(wall):.3f}-{max(wall):.3f})"
                f" cpu {cpu:.3f} s"
            )
        print("  ".join(row))


if __name__ == "__main__":
    main()
