"""lkplug against ffmpeg and sox on the same inputs, in the same run.

Jobs (each tool as a whole process, output checked, runs interleaved so machine load hits all alike):
  audio  decode -> gain -6 dB -> 16 kHz mono -> 16-bit WAV, for WAV, FLAC, Opus, MP3 and AAC inputs
  video  720p H.264 + AAC -> scale to 360p -> H.264 (x264 medium, crf 23) + AAC 128k in MP4
  rss    peak memory of the audio job on a 10-minute and a 60-minute FLAC

With --floor the audio job also times two processes that only decode (no output): ffmpeg's
(`-f null`) and a Python process that imports what lkplug's job imports (numpy, av, soxr, soundfile)
and decodes the input with PyAV. The second is the floor for any design that decodes with one PyAV
decoder: if it is slower than ffmpeg's whole job, no chain work done on other threads can win.

Prints the median wall time (min-max), the median CPU time (user + system, all threads) and peak
RSS per tool, each tool's median divided by ffmpeg's, and the load average (machines are shared: CPU
time is the steadier figure when others run). Inputs come from shared/bench/make_data.sh (BENCH_DATA
or --data); the 60-minute FLAC is made from music.wav on first use.

With --realtime every timed process runs under SCHED_FIFO (`chrt -f 10`, root or CAP_SYS_NICE): it
takes a core whenever it is runnable, so a shared machine's other processes stop counting and the
figures are a quiet machine's (each run briefly starves the others: keep -n small). Without it, the
machine's load shapes the wall times, and a tool with threads gains from a busy machine (each
runnable thread gets its share) in a way it would not on a quiet one.

    python bench/file_job.py --data /work/benchdata -n 5
    python bench/file_job.py --data /work/benchdata -n 3 --jobs audio --floor --realtime
    python bench/file_job.py --jobs video -n 3
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AUDIO_INPUTS = ["music.wav", "music.flac", "music.opus", "music.mp3", "music.m4a"]
SOX_READS = {".wav", ".flac", ".mp3"}  # sox has no Opus or AAC reader (and mp3 only when built with it)
FF = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
LKPLUG = [sys.executable, "-m", "lkplug"]
PRIORITY: list[str] = []  # prefix of every timed command (--realtime: chrt)
PYAV_DECODE = """import sys, av, numpy, soxr, soundfile
with av.open(sys.argv[1]) as container:
    for frame in container.decode(audio=0):
        pass
"""


def audio_commands(src: Path, out: Path, floor: bool = False) -> dict[str, list[str]]:
    commands = {
        "ffmpeg": [*FF, "-i", str(src), "-vn", "-af", "volume=-6dB,aresample=16000:resampler=soxr"]
        + ["-ac", "1", "-c:a", "pcm_s16le", str(out)],
        "lkplug": [*LKPLUG, "run", "--quiet", "--source", f"file:{src}", "--proc", "gain:db=-6"]
        + ["--proc", "resample:rate=16000", "--proc", "remix:channels=1", "--sink", f"wav:{out}"],
    }
    if src.suffix in SOX_READS and src.suffix[1:] in sox_formats():
        commands["sox"] = [
            "sox",
            "-q",
            str(src),
            "-b",
            "16",
            "-c",
            "1",
            str(out),
            "gain",
            "-6",
            "rate",
            "16k",
        ]
    if floor:
        commands["ff-dec"] = [*FF, "-i", str(src), "-vn", "-f", "null", "-"]
        commands["pyav-dec"] = [sys.executable, "-c", PYAV_DECODE, str(src)]
    return commands


@functools.cache
def sox_formats() -> set[str]:
    """The file types this machine's sox reads (``sox -h``: Debian's has no mp3 without libsox-fmt-mp3)."""
    if not shutil.which("sox"):
        return set()
    text = subprocess.run(["sox", "-h"], capture_output=True, text=True).stdout
    line = next((row for row in text.splitlines() if row.startswith("AUDIO FILE FORMATS:")), "")
    return set(line.split(":", 1)[-1].split())


def video_commands(src: Path, out: Path) -> dict[str, list[str]]:
    return {
        "ffmpeg": [*FF, "-i", str(src), "-vf", "scale=-2:360:flags=bilinear", "-c:v", "libx264"]
        + ["-preset", "medium", "-crf", "23", "-c:a", "aac", "-b:a", "128k", str(out)],
        "lkplug": [*LKPLUG, "run", "--quiet", "--source", f"file:{src}", "--proc", "scale:height=360"]
        + ["--sink", f"file:{out},preset=medium,crf=23,bitrate=128000"],
    }


def timed(command: list[str]) -> tuple[float, float, float]:
    """(wall seconds, peak RSS in MiB, CPU seconds) of one run of ``command``."""
    with tempfile.NamedTemporaryFile("r") as report:
        wrapped = [*PRIORITY, "/usr/bin/time", "-f", "%M %U %S", "-o", report.name, *command]
        started = time.perf_counter()
        result = subprocess.run(wrapped, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"failed: {' '.join(command)}\n{result.stderr[-2000:]}")
        rss, user, system = report.read().split()[-3:]
        return wall, int(rss) / 1024, float(user) + float(system)


def probe(path: Path) -> str:
    args = ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,sample_rate,channels,width,height"]
    args += ["-show_entries", "format=duration", "-of", "compact=p=0:nk=1", str(path)]
    return " ".join(subprocess.run(args, capture_output=True, text=True).stdout.split())


def compare(title: str, commands: dict[str, list[str]], out: Path, runs: int) -> dict[str, float]:
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    rss: dict[str, float] = {name: 0.0 for name in commands}
    outputs: dict[str, str] = {}
    for run in range(runs + 1):  # run 0 warms the page cache and is not counted
        for name, command in commands.items():
            out.unlink(missing_ok=True)
            wall, peak, cpu = timed(command)
            if run:
                walls[name].append(wall)
                cpus[name].append(cpu)
                rss[name] = max(rss[name], peak)
            outputs[name] = probe(out)
    base = statistics.median(walls["ffmpeg"])
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    policy = ", SCHED_FIFO" if PRIORITY else ""
    print(f"\n## {title}  (runs={runs}, {os.cpu_count()} cores, load {load}{policy})")
    print(
        f"{'tool':<8} {'wall_s median (min-max)':>25} {'cpu_s':>6} {'rss_MiB':>8} {'vs ffmpeg':>10}  output"
    )
    medians = {}
    for name, values in walls.items():
        median = medians[name] = statistics.median(values)
        spread = f"{median:.2f} ({min(values):.2f}-{max(values):.2f})"
        cpu = statistics.median(cpus[name])
        print(f"{name:<8} {spread:>25} {cpu:>6.2f} {rss[name]:>8.0f} {median / base:>9.2f}x  {outputs[name]}")
    return medians


def ensure_hour(data: Path) -> Path:
    hour = data / "music-60min.flac"
    if not hour.exists():
        print(f"making {hour} (60 min, from music.wav)", file=sys.stderr)
        subprocess.run(
            [*FF, "-stream_loop", "5", "-i", str(data / "music.wav"), "-c:a", "flac", str(hour)], check=True
        )
    return hour


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("BENCH_DATA", "bench/data")))
    parser.add_argument("-n", "--runs", type=int, default=5)
    parser.add_argument("--jobs", default="audio,video,rss", help="comma-separated: audio, video, rss")
    parser.add_argument("--inputs", default=",".join(AUDIO_INPUTS), help="audio inputs (names in --data)")
    parser.add_argument("--floor", action="store_true", help="also time decode-only processes (see above)")
    parser.add_argument("--realtime", action="store_true", help="time under SCHED_FIFO (see above)")
    args = parser.parse_args()
    if args.realtime:
        PRIORITY[:] = ["chrt", "-f", "10"]
    jobs = args.jobs.split(",")
    ratios = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.wav"
        if "audio" in jobs:
            for name in args.inputs.split(","):
                medians = compare(
                    f"audio job: {name}", audio_commands(args.data / name, out, args.floor), out, args.runs
                )
                ratios[name] = medians["lkplug"] / medians["ffmpeg"]
        if "video" in jobs:
            video_out = Path(tmp) / "out.mp4"
            medians = compare(
                "video job: video.mp4 720p -> 360p",
                video_commands(args.data / "video.mp4", video_out),
                video_out,
                args.runs,
            )
            ratios["video.mp4"] = medians["lkplug"] / medians["ffmpeg"]
        if "rss" in jobs:
            print("\n## peak RSS of the audio job (lkplug)")
            for path in (args.data / "music.flac", ensure_hour(args.data)):
                command = audio_commands(path, out)["lkplug"]
                wall, peak, _cpu = timed(command)
                seconds = probe(path).split()[-1]
                print(f"{path.name:<20} {seconds:>10} s  wall {wall:6.2f} s  peak RSS {peak:6.0f} MiB")
    if ratios:
        print("\n## lkplug / ffmpeg (median wall time)")
        print("  ".join(f"{name} {ratio:.2f}x" for name, ratio in ratios.items()))


if __name__ == "__main__":
    main()
