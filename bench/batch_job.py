"""A batch of files: lkplug -j 2 beside a shell loop of ffmpeg and `xargs -P 2` running ffmpeg.

The job, per file: decode -> gain -6 dB -> 16 kHz mono (soxr in both) -> 16-bit WAV, for 20 inputs of
2 minutes each in WAV, FLAC, MP3, M4A (AAC) and Opus. The three tools run interleaved in every round,
in an order that rotates from round to round (machine load hits all alike, and none always runs
first; round 0 warms the page cache and is not counted); every round's outputs are checked (20
files, 16 kHz, mono, 2 minutes). Prints each round (the 1-minute load average before it, each tool's
wall time, lkplug's wall over xargs's in that round), then the median wall time (min-max) per tool,
its ratio to `xargs -P 2 ffmpeg`, the median of the per-round ratios (paired: a round's load hits
both tools of the pair), and the same for the CPU time of all the tool's processes (user + system;
less sensitive than wall time to other load on the machine).

The inputs are made with ffmpeg on first use (pink noise and a sine, stereo) in --data.

    python bench/batch_job.py -n 5
    python bench/batch_job.py -n 3 --count 10 --minutes 1 --data /tmp/batch-inputs
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile

# extension -> ffmpeg encoder options; the inputs cycle through them
FORMATS = {
    "wav": ["-c:a", "pcm_s16le"],
    "flac": ["-c:a", "flac"],
    "mp3": ["-c:a", "libmp3lame", "-b:a", "192k"],
    "m4a": ["-c:a", "aac", "-b:a", "128k"],
    "opus": ["-c:a", "libopus", "-b:a", "96k"],
}
FF = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
# the same job as bench/file_job.py's ffmpeg peer: FFmpeg's soxr resampler, -ac 1 downmix
FF_JOB = "-vn -af volume=-6dB,aresample=16000:resampler=soxr -ac 1 -c:a pcm_s16le"


def make_inputs(folder: Path, count: int, minutes: float) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    names = list(FORMATS)
    paths = []
    for index in range(count):
        ext = names[index % len(names)]
        path = folder / f"rec{index:02d}.{ext}"
        if not path.exists():
            print(f"making {path}", file=sys.stderr)
            seconds = minutes * 60
            rate = 44100 if ext == "mp3" else 48000
            sources = [
                "-f", "lavfi", "-i", f"anoisesrc=d={seconds}:c=pink:r={rate}:a=0.1:seed={index}",
                "-f", "lavfi", "-i", f"sine=f={220 + 40 * index}:d={seconds}:r={rate}",
            ]  # fmt: skip
            mix = ["-filter_complex", "amix=inputs=2,aformat=channel_layouts=stereo"]
            subprocess.run([*FF, *sources, *mix, *FORMATS[ext], str(path)], check=True)
        paths.append(path)
    return paths


def commands(inputs: Path, out: Path, jobs: int) -> dict[str, list[str]]:
    pattern = f"{inputs}/*"
    ffmpeg = "ffmpeg -nostdin -hide_banner -loglevel error -y"
    per_file = f'{ffmpeg} -i "$f" {FF_JOB} "{out}/$(basename "$f").wav"'
    return {
        "lkplug": [sys.executable, "-m", "lkplug", "run", "--quiet", "--source", f"file:{pattern}"]
        + ["--proc", "gain:db=-6", "--proc", "resample:rate=16000", "--proc", "remix:channels=1"]
        + ["--sink", f"wav:{out}/{{name}}.wav", "-j", str(jobs)],
        "ffmpeg loop": ["sh", "-c", f"for f in {shlex.quote(str(inputs))}/*; do {per_file} || exit 1; done"],
        f"xargs -P {jobs}": [
            "sh",
            "-c",
            f"printf '%s\\0' {shlex.quote(str(inputs))}/* | xargs -0 -n 1 -P {jobs} sh -c"
            f" {shlex.quote('f=$1; ' + per_file)} _",
        ],
    }


def check(out: Path, count: int, minutes: float) -> str:
    files = sorted(out.glob("*.wav"))
    if len(files) != count:
        raise SystemExit(f"{out}: {len(files)} outputs, expected {count}")
    for path in files:
        info = soundfile.info(path)
        if (info.samplerate, info.channels) != (16000, 1) or abs(info.duration - minutes * 60) > 0.1:
            raise SystemExit(f"{path}: {info.samplerate} Hz, {info.channels} ch, {info.duration:.2f} s")
    return f"{count} x 16000 Hz mono {minutes * 60:g} s"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "lkplug-batch-inputs")
    parser.add_argument("-n", "--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("-j", "--jobs", type=int, default=2)
    args = parser.parse_args()
    if not shutil.which("ffmpeg"):
        raise SystemExit("needs the ffmpeg command (apt-get install ffmpeg)")
    inputs = args.data / f"{args.count}x{args.minutes:g}min"
    make_inputs(inputs, args.count, args.minutes)
    tools = commands(inputs, Path("OUT"), args.jobs)
    walls: dict[str, list[float]] = {name: [] for name in tools}
    cpus: dict[str, list[float]] = {name: [] for name in tools}
    checked = {}
    base_name = f"xargs -P {args.jobs}"
    names = list(tools)
    loads: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs + 1):  # run 0 warms the page cache and is not counted
            load = os.getloadavg()[0]
            for name in names[run % len(names) :] + names[: run % len(names)]:
                out = Path(tmp) / f"out-{run}-{name.split()[0]}"
                out.mkdir()
                command = commands(inputs, out, args.jobs)[name]
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                started = time.perf_counter()
                result = subprocess.run(command, capture_output=True, text=True)
                wall = time.perf_counter() - started
                after = resource.getrusage(resource.RUSAGE_CHILDREN)  # every process of the tool
                cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
                if result.returncode != 0:
                    raise SystemExit(f"{name} failed ({result.returncode}): {result.stderr[-2000:]}")
                checked[name] = check(out, args.count, args.minutes)
                shutil.rmtree(out)
                if run:
                    walls[name].append(wall)
                    cpus[name].append(cpu)
            if run:
                loads.append(load)
                times = "  ".join(f"{name} {walls[name][-1]:.2f}" for name in names)
                ratio = walls["lkplug"][-1] / walls[base_name][-1]
                print(f"round {run}: load {load:.2f}  {times}  lkplug/xargs {ratio:.2f}", flush=True)
    base = statistics.median(walls[base_name])
    print(
        f"\n## batch: {args.count} inputs x {args.minutes:g} min ({', '.join(FORMATS)}), decode -> gain -6 dB"
        f" -> 16 kHz mono -> WAV  (runs={args.runs}, -j {args.jobs}, {os.cpu_count()} cores)"
    )
    cpu_base = statistics.median(cpus[base_name])
    header = f"{'wall_s median (min-max)':>25} {'vs xargs':>9} {'cpu_s median':>13} {'vs xargs':>9}"
    print(f"{'tool':<12} {header}  output")
    for name, values in walls.items():
        median, cpu = statistics.median(values), statistics.median(cpus[name])
        spread = f"{median:.2f} ({min(values):.2f}-{max(values):.2f})"
        ratios = f"{median / base:>8.2f}x {cpu:>13.2f} {cpu / cpu_base:>8.2f}x"
        print(f"{name:<12} {spread:>25} {ratios}  {checked[name]}")
    paired = statistics.median(a / b for a, b in zip(walls["lkplug"], walls[base_name], strict=True))
    paired_cpu = statistics.median(a / b for a, b in zip(cpus["lkplug"], cpus[base_name], strict=True))
    print(
        f"lkplug / {base_name}, median of the per-round ratios: wall {paired:.2f}x, cpu {paired_cpu:.2f}x;"
        f" 1-minute load before the rounds: {min(loads):.2f}-{max(loads):.2f} (median"
        f" {statistics.median(loads):.2f}) on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
