"""Output files get their final name only when complete, in a single run as in a batch: a killed run
leaves its work in a hidden ``.NAME.PID.part`` (never under the final name, so ``--skip-existing``
does not take it as done), and the next run writing that name removes it."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest
import soundfile
from conftest import dead_pid, run_lkplug

from lkplug.outputs import bytes_written, stale
from lkplug.testing import sine


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lkplug", "run", *args],
        cwd=cwd,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own group: a batch's workers are killed with it
    )


def kill_when_written(process: subprocess.Popen, paths: list[Path], enough: int) -> None:
    """SIGKILL (nothing can catch it) once one of ``paths`` has ``enough`` bytes being written."""
    deadline = time.monotonic() + 60
    while max(bytes_written(path) for path in paths) < enough:
        assert process.poll() is None and time.monotonic() < deadline, "nothing was being written"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def media_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        return sum(frame.samples for frame in container.decode(audio=0)) / 48000


# the mp4 at 128k: libavformat's mov muxer writes its mdat in 256 KiB pieces (the first at 17 s of
# media), and at aac's own default for mono (69k) nothing before the end of a 20 s input; the FLAC's
# first 20 kB come near 17 s too. Paced at 4x, the kill comes some 4 s into a 10 s run
@pytest.mark.parametrize("sink", ["wav:out.wav", "file:out.flac", "file:out.mp4,bitrate=128000"])
def test_a_killed_single_run_leaves_nothing_under_its_final_name(tmp_path, sink):
    soundfile.write(tmp_path / "in.wav", sine(440, 40.0, 48000), 48000, "PCM_16")
    out = tmp_path / sink.split(":")[1].split(",")[0]
    args = ["--source", "file:in.wav", "--sink", sink]
    process = start(["--pace", "4x", *args], tmp_path)
    kill_when_written(process, [out], 20_000)
    # before: the single run wrote the final name itself, and --skip-existing took the killed run's
    # first seconds of the input as done (exit 0, nothing run)
    assert not out.exists()
    (part,) = tmp_path.glob(f".{out.name}.*.part")
    if sink.startswith("wav"):  # libsndfile keeps a WAV's header current: what was written is readable
        assert soundfile.info(part).frames > 0
    rerun = run_lkplug("run", *args, "--skip-existing", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "skipped" not in rerun.stderr
    assert media_seconds(out) == pytest.approx(40.0, abs=0.05)  # mp4: AAC's frames of 1024, give or take
    assert list(tmp_path.glob(".*.part")) == []  # the killed run's temporary was removed


def test_a_killed_batch_is_resumed_and_its_temporaries_removed(tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    for index in range(4):
        soundfile.write(rec / f"{index}.wav", sine(300 + 100 * index, 6.0, 48000), 48000, "PCM_16")
    args = ["--source", "file:rec/*.wav", "--sink", "wav:out/{stem}.wav", "-j", "2"]
    process = start(["--pace", "2x", *args], tmp_path)
    kill_when_written(process, [tmp_path / "out" / f"{index}.wav" for index in range(4)], 48000)
    left = list((tmp_path / "out").glob(".*.part"))
    assert left
    finals = {part.with_name(part.name[1:].rsplit(".", 2)[0]) for part in left}  # .0.wav.PID.part
    deadline = time.monotonic() + 20  # the workers end with their parent, a moment after it
    while sum(len(stale(path)) for path in finals) < len(left) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sorted(part for path in finals for part in stale(path)) == sorted(left)
    for path in (tmp_path / "out").glob("*.wav"):  # only complete files have final names
        assert soundfile.info(path).frames == 6 * 48000
    rerun = run_lkplug("run", *args, "--skip-existing", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{i}.wav" for i in range(4)]
    for index in range(4):
        assert soundfile.info(tmp_path / "out" / f"{index}.wav").frames == 6 * 48000


def test_a_device_is_written_in_place(tmp_path):
    # /dev/null is no file to rename over: written as it is (a temporary beside it would be in /dev)
    result = run_lkplug("run", "--source", "tone:duration=1", "--sink", "wav:/dev/null")
    assert result.returncode == 0, result.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert not [name for name in os.listdir("/dev") if name.startswith(".null.")]


def test_a_link_to_a_file_is_written_through(tmp_path):
    # as `ffmpeg -y -i in.wav latest.wav` does where latest.wav is a link: the file it names is
    # replaced and the link stays (a rename over the link would have replaced the link itself)
    (tmp_path / "takes").mkdir()
    (tmp_path / "takes" / "1.wav").write_bytes(b"old")
    os.chmod(tmp_path / "takes" / "1.wav", 0o640)  # and its mode is kept (umask would give 0o644)
    (tmp_path / "latest.wav").symlink_to("takes/1.wav")
    result = run_lkplug("run", "--source", "tone:duration=1", "--sink", "wav:latest.wav", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "latest.wav").is_symlink()
    assert soundfile.info(tmp_path / "takes" / "1.wav").frames == 48000
    assert stat.S_IMODE(os.stat(tmp_path / "takes" / "1.wav").st_mode) == 0o640
    assert [p.name for p in tmp_path.rglob(".*")] == []


# Run inside a private mount namespace (unshare --mount, as root): a tmpfs of ``size`` at ``disk``,
# optionally filled up first, then each lkplug run in turn; prints, per run, its exit code, its
# stderr and the files on the disk with their sizes (the tmpfs goes with the namespace)
ON_SMALL_DISK = """
import json, os, subprocess, sys
disk, size, fill, runs = sys.argv[1], sys.argv[2], sys.argv[3] == "full", json.loads(sys.argv[4])
subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", disk], check=True)
if fill:
    try:
        with open(os.path.join(disk, "filler"), "wb") as filler:
            while True:
                filler.write(bytes(4096))
                filler.flush()
    except OSError:
        pass
results = []
for args in runs:
    run = subprocess.run([sys.executable, "-m", "lkplug", *args], capture_output=True, text=True)
    sizes = {name: os.path.getsize(os.path.join(disk, name)) for name in os.listdir(disk) if name != "filler"}
    results.append([run.returncode, run.stderr, sizes])
print(json.dumps(results))
"""


def on_small_disk(tmp_path: Path, fill: str, runs: list[list[str]]) -> list:
    """[exit code, stderr, {name: bytes}] of each run, writing to a 200 kB tmpfs at tmp_path/disk."""
    import json
    import shutil

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root with unshare: the full-disk tests must run there")
        pytest.skip("needs root and unshare (a tmpfs in a private mount namespace)")
    (tmp_path / "disk").mkdir()
    inside = [sys.executable, "-c", ON_SMALL_DISK, "disk", "200k", fill, json.dumps(runs)]
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", *inside],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# ENOSPC's text, as ffmpeg prints it for the same runs (ffmpeg 5.1.9, `ffmpeg -i in.wav disk/out.wav`
# on a 200 kB tmpfs: "Error writing trailer of disk/out.wav: No space left on device", exit 1; it
# leaves 204800 bytes, or on a full disk 0, under the final name, which lkplug does not)
NO_SPACE = os.strerror(28)


@pytest.mark.parametrize("fill", ["full", "filling"])
@pytest.mark.parametrize("sink", ["wav:disk/out.wav", "file:disk/out.flac", "file:disk/out.mp4"])
def test_a_full_disk_is_one_line_naming_the_output_and_nothing_under_its_final_name(tmp_path, sink, fill):
    # 20 s of stereo s16 (3.8 MB of WAV, 0.3 MB of FLAC or AAC) onto 200 kB: full at once, or midway
    soundfile.write(tmp_path / "in.wav", sine(440, 20.0, 48000, channels=2), 48000, "PCM_16")
    out = sink.split(":")[1]
    args = ["run", "--source", "file:in.wav", "--sink", sink]
    (first, again) = on_small_disk(tmp_path, fill, [args, [*args, "--skip-existing"]])
    code, stderr, files = first
    # before: "cannot write disk/out.wav: Error opening b'./disk/.out.wav.PID.part': System error."
    # (wav), "file:disk/out.flac (from lkplug 0.1.0) failed: OSError: [Errno 28] No space left on
    # device: 'disk/.out.flac.PID.part'"; a 0-byte .part left; filling midway, the WAV's 204800
    # bytes renamed to disk/out.wav, which --skip-existing then skipped (exit 0)
    assert code == 1, stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith(f"lkplug: error: cannot write {out}: {NO_SPACE}"), stderr
    assert Path(out).name not in files
    assert 0 not in files.values(), files  # no empty temporary
    if files:  # what was written is kept aside, and the line says where
        (part,) = files
        assert part.startswith(f".{Path(out).name}.") and part.endswith(".part")
        assert stderr.rstrip().endswith(f"; what was written is kept in disk/{part}"), stderr
    code, stderr, files = again
    assert code == 1 and "skipped" not in stderr, stderr
    assert Path(out).name not in files


def test_a_batch_on_a_full_disk_fails_each_input_in_one_line_and_leaves_nothing(tmp_path):
    (tmp_path / "rec").mkdir()
    for index in range(3):
        soundfile.write(tmp_path / "rec" / f"{index}.wav", sine(440, 5.0, 48000), 48000, "PCM_16")
    args = ["run", "--source", "file:rec/*.wav", "--sink", "wav:disk/{stem}.wav", "-j", "2"]
    ((code, stderr, files),) = on_small_disk(tmp_path, "full", [args])
    assert code == 1, stderr
    # before: "failed rec/0.wav: cannot write disk/0.wav: Error opening b'./disk/.0.wav.PID.part':
    # System error."
    for index in range(3):
        assert f"lkplug: failed rec/{index}.wav: cannot write disk/{index}.wav: {NO_SPACE}\n" in stderr
    assert files == {}


# 254 bytes (127 two-byte characters), under NAME_MAX (255): ffmpeg 5.1 writes it
# (`ffmpeg -i in.wav out/NAME.wav` exits 0), the temporary's ".NAME.PID.part" would be 255 + 7 + 5 bytes
LONG_STEM = "é" * 125


def test_a_final_name_of_up_to_255_bytes_is_written_single_and_batch(tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    name = f"{LONG_STEM}.wav"
    assert len(name.encode()) == 254
    soundfile.write(rec / name, sine(440, 1.0, 48000), 48000, "PCM_16")
    # before: "unexpected OSError: [Errno 36] File name too long: 'out/.ééé...wav.PID.part'", exit 1
    batch = run_lkplug("run", "--source", "file:rec/*.wav", "--sink", "wav:out/{name}", cwd=tmp_path)
    assert batch.returncode == 0, batch.stderr
    assert soundfile.info(tmp_path / "out" / name).frames == 48000
    # a killed run's temporary of a name that long (the shortened one) is found stale and removed
    from lkplug.outputs import temporary_name

    left = temporary_name(tmp_path / name)
    left = left.with_name(left.name.replace(f".{os.getpid()}.", f".{dead_pid()}."))
    left.write_bytes(b"RIFF")
    assert len(left.name.encode()) <= 255
    assert stale(tmp_path / name) == [left]
    # before: "cannot write ééé...wav: File name too long" (the final name blamed), exit 1
    single = run_lkplug("run", "--source", f"file:rec/{name}", "--sink", f"wav:{name}", cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    assert soundfile.info(tmp_path / name).frames == 48000
    assert not left.exists()
    assert list(tmp_path.rglob("*.part")) == []
    # a name over NAME_MAX is still refused, in one line
    too_long = run_lkplug("run", "--source", f"file:{name}", "--sink", f"wav:xx{name}", cwd=tmp_path)
    assert too_long.returncode != 0 and len(too_long.stderr.strip().splitlines()) == 1, too_long.stderr
