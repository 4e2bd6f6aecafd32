"""The command line end to end, in child processes, as users run it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import assert_one_line_error, run_lkplug, wait_for_bytes
from signals import write_flac

from lkplug.testing import dominant_frequency, level_dbfs, sine, to_s16


@pytest.fixture(scope="module")
def flac_48k_stereo(tmp_path_factory):
    path = tmp_path_factory.mktemp("media") / "in.flac"
    data = to_s16(sine(997, 3.0, 48000, channels=2, dbfs=-10))
    write_flac(path, data, 48000)
    return path, data


def test_file_gain_resample_remix_to_wav(flac_48k_stereo, tmp_path):
    path, original = flac_48k_stereo
    out = tmp_path / "out.wav"
    args = [
        "--source",
        f"file:{path}",
        "--proc",
        "gain:db=-6",
        "--proc",
        "resample:rate=16000",
        "--proc",
        "remix:channels=1",
        "--sink",
        f"wav:{out}",
    ]
    result = run_lkplug("run", *args)
    assert result.returncode == 0, result.stderr
    data, rate = soundfile.read(out, dtype="int16")
    info = soundfile.info(out)
    assert (rate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert abs(len(data) / rate - len(original) / 48000) <= 0.010
    assert abs(level_dbfs(data) - level_dbfs(original) + 6.0) <= 0.1
    assert abs(dominant_frequency(data, rate) - 997) < 2


def test_explain_prints_the_plan_without_running(flac_48k_stereo, tmp_path):
    path, _ = flac_48k_stereo
    out = tmp_path / "never.wav"
    result = run_lkplug(
        "run",
        "--source",
        f"file:{path}",
        "--proc",
        "resample:rate=16000",
        "--sink",
        f"wav:{out},subtype=float",
        "--explain",
    )
    assert result.returncode == 0, result.stderr
    assert "audio 48000 Hz, 2 ch, s16" in result.stdout
    assert "resample:rate=16000" in result.stdout and "audio 16000 Hz, 2 ch, s16" in result.stdout
    assert "format:flt  [inserted]" in result.stdout  # the float WAV sink wants float samples
    assert not out.exists()


def test_sigint_leaves_a_valid_wav_with_every_processed_frame(tmp_path):
    out = tmp_path / "long.wav"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lkplug",
            "run",
            "--pace",
            "1x",
            "--source",
            "tone:duration=3600",
            "--proc",
            "gain:db=-6",
            "--sink",
            f"wav:{out}",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_bytes(out, 48000, seconds=30)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    summary = [line for line in stderr.splitlines() if "s of media" in line][0]
    processed = float(summary.split()[1])
    info = soundfile.info(out)  # libsndfile checks the header against the data
    assert info.frames > 0 and abs(info.frames / 48000 - processed) <= 0.01
    data, _ = soundfile.read(out, dtype="int16")
    assert abs(level_dbfs(data) - (-6 - 6.02 - 3.01)) < 0.1  # gain applied to every frame written


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell does for a job it starts with `&`


@pytest.mark.parametrize(
    "command", [["lkplug"], [sys.executable, "-m", "lkplug"]], ids=["lkplug", "python-m"]
)
@pytest.mark.parametrize(
    "stop, background",
    [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["INT", "INT-background", "TERM"],
)
def test_a_signal_at_any_moment_of_start_up_is_an_interruption(command, stop, background):
    """A SIGINT or SIGTERM while lkplug starts: importing the CLI (click's decorators, the plugin
    manager), loading the plugins, the run's imports, before the run's own handler. Before: SIGINT
    gave Python's traceback and exit 1 (or -2) in the first ~0.1 s, and click's blank line alone
    later; a job a shell started in the background (SIGINT ignored) ran on to its end, exit 0; SIGTERM
    killed it silently (-15, 143 in a shell) in its first ~0.35 s. Timed from the moment click is imported
    (Python's -X importtime line says when), so that a slow start under load moves the moments with
    it; before that, Python's own start-up (its site module) is no code of ours."""
    if command[0] == "lkplug":
        command = [str(Path(sys.executable).with_name("lkplug"))]  # the console script of this venv
    run = [*command, "run", "--pace", "1x", "--source", "tone:duration=5", "--sink", "null"]
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    for delay in (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4):
        process = subprocess.Popen(
            run, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_ignore_sigint if background else None
        )
        said = []
        for line in process.stderr:
            said.append(line)
            if line.startswith("import time:") and line.rsplit("|", 1)[-1].strip() == "click":
                break
        time.sleep(delay)
        process.send_signal(stop)
        killer = threading.Timer(30, process.kill)  # a run that took no signal fails, not hangs
        killer.start()
        rest = process.stderr.read()  # after what the loop above read ahead (communicate() would lose it)
        process.wait()
        killer.cancel()
        lines = [line for line in [*said, *rest.splitlines(True)] if not line.startswith("import time:")]
        assert process.returncode == 130, (delay, process.returncode, "".join(lines))
        assert lines and all(line.startswith("lkplug: ") for line in lines), (delay, "".join(lines))


INTERRUPTED_WHILE_DEFINING = """
class Interrupting:  # a Ctrl-C landing while Python names a descriptor, as a dataclass field() is named
    def __set_name__(self, owner, name):
        raise KeyboardInterrupt

class Step:
    is_async = Interrupting()
"""


def test_a_ctrl_c_that_python_wraps_while_a_plugin_loads_is_an_interruption(tmp_path):
    """Python 3.11 turns a KeyboardInterrupt raised while a class body's descriptors are named into
    RuntimeError("Error calling __set_name__ ..."): seen in CI when SIGINT landed as lkplug.chain
    defined its dataclass Step (exit 1, "unexpected RuntimeError"). In a plugin's module, the plugin was
    listed as broken and the run went on without it. Both are the interruption they are."""
    plugin = tmp_path / "slow_plugin.py"
    plugin.write_text(INTERRUPTED_WHILE_DEFINING)
    result = run_lkplug("run", "-p", str(plugin), "--source", "tone:duration=0.1", "--sink", "null")
    assert (result.returncode, result.stderr) == (130, "lkplug: interrupted\n")


def test_a_ctrl_c_that_python_wraps_while_lkplug_starts_is_an_interruption(monkeypatch, capsys):
    from lkplug import cli

    def start():  # the import of one of lkplug's own modules, interrupted as in CI
        exec(INTERRUPTED_WHILE_DEFINING, {})

    monkeypatch.setattr(cli, "make_cli", start)
    with pytest.raises(SystemExit) as exit:
        cli.main(["list"])
    assert (exit.value.code, capsys.readouterr().err) == (130, "lkplug: interrupted\n")


@pytest.mark.parametrize(
    "args, expected, code",
    [
        (["--source", "file:/no/such/file.flac", "--sink", "null"], "no such file: /no/such/file.flac", 1),
        (["--source", "file:{here}", "--sink", "null"], "not a media file FFmpeg can open", 1),
        (["--source", "tone", "--proc", "gian", "--sink", "null"], "did you mean 'gain'?", 2),
        (
            ["--source", "tone", "--proc", "gain:db=loud", "--sink", "null"],
            "gain:db='loud': expected a number",
            2,
        ),
        (
            ["--source", "tone", "--proc", "gain:db=-500", "--sink", "null"],
            "expected a value in [-150, 60]",
            2,
        ),
        (["--source", "tone", "--proc", "resample", "--sink", "null"], "resample needs rate=", 2),
        (["--source", "tone", "--proc", "gain:dbb=3", "--sink", "null"], "did you mean 'db'?", 2),
        (["--source", "tone", "--sink", "wav:/no/such/dir/x.wav"], "folder /no/such/dir does not exist", 1),
        (["--source", "tone"], "give at least one --sink", 2),
        (["--source", "tone:wave=square", "--sink", "null"], "expected one of sine, noise, silence", 2),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(args, expected, code):
    args = [a.replace("{here}", __file__) for a in args]
    result = run_lkplug("run", *args)
    assert expected in assert_one_line_error(result)
    assert result.returncode == code


@pytest.mark.parametrize(
    "path, where", [("/proc/out.wav", "folder /proc"), ("/proc/version", "/proc/version")]
)
def test_an_unwritable_output_gives_no_second_made_up_reason(path, where):
    """/proc takes no new file and writes to no existing one; its answers ("No such file or directory"
    for a folder that exists, "Invalid argument") read as a second fault (before: "folder /proc is not
    writable (No such file or directory)"). A reason that says why (permission denied) stays."""
    line = assert_one_line_error(run_lkplug("run", "--source", "tone", "--sink", f"wav:{path}"))
    assert f"{where} is not writable" in line, line
    assert "No such file" not in line and "Invalid argument" not in line, line


def test_debug_shows_the_traceback():
    result = run_lkplug("run", "--source", "file:/no/such.flac", "--sink", "null", "--debug")
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_list_and_inspect(lkplug_cli):
    listing = lkplug_cli("list")
    assert listing.returncode == 0
    for name in ("tone", "file", "gain", "resample", "remix", "wav", "null"):
        # PLUGIN NAME ROLE PROVIDER SUMMARY
        assert any(line.split()[1] == name and "lkplug" in line for line in listing.stdout.splitlines()[1:])
    text = lkplug_cli("inspect", "gain").stdout
    assert "Parameters:" in text and "db" in text and "[-150, 60]" in text and "Accepts:" in text
    described = json.loads(lkplug_cli("inspect", "resample", "--json").stdout)[0]
    quality = next(p for p in described["params"] if p["name"] == "quality")
    assert quality["default"] == "hq" and "vhq" in quality["range"]
    assert described["converts"] == ["rate"] and described["distribution"] == "lkplug"


def test_help_teaches_with_examples(lkplug_cli):
    text = lkplug_cli("run", "--help").stdout
    assert "--source" in text and "wav:out.wav" in text and "--explain" in text
    # a batch too: a new user found no word of globs, @LIST or the output fields in --help
    assert "file:rec/**/*.m4a" in text and "@LIST" in text and "{relpath}" in text


def test_silence_is_written_as_digital_silence(tmp_path):
    out = tmp_path / "s.wav"
    assert (
        run_lkplug("run", "--source", "tone:wave=silence,duration=0.5", "--sink", f"wav:{out}").returncode
        == 0
    )
    assert not np.any(soundfile.read(out, dtype="int16")[0])


def test_progress_shows_on_a_terminal_only(flac_48k_stereo, tmp_path):
    import os
    import pty

    path, _ = flac_48k_stereo
    args = [sys.executable, "-m", "lkplug", "run", "--source", f"file:{path}", "--sink", "null"]
    master, slave = pty.openpty()
    process = subprocess.Popen(args, stderr=slave, stdout=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=30)
    os.close(master)
    shown = b"".join(chunks).decode()
    assert "100%" in shown and "00:03.0 / ~00:03.0" in shown and "x real time" in shown
    piped = run_lkplug("run", "--source", f"file:{path}", "--sink", "null")
    assert "%" not in piped.stderr  # no bar when stderr is not a terminal


def test_sigterm_stops_cleanly_too(tmp_path):
    out = tmp_path / "term.wav"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lkplug",
            "run",
            "-q",
            "--pace",
            "1x",
            "--source",
            "tone:duration=60",
            "--sink",
            f"wav:{out}",
        ],
    )
    wait_for_bytes(out, 4800, seconds=30)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 130
    assert soundfile.info(out).frames > 0


def test_fan_out_from_the_command_line(tmp_path):
    hooks = str(Path(__file__).with_name("engine_hooks.py"))
    template = f"wav:{tmp_path}/rec-{{identity}}.wav"
    explained = run_lkplug("run", "-p", hooks, "--source", "tones:440+660", "--sink", template, "--explain")
    assert explained.returncode == 0, explained.stderr
    assert "one pipeline per matching stream" in explained.stdout
    result = run_lkplug("run", "-p", hooks, "--source", "tones:440+660", "--sink", template)
    assert result.returncode == 0, result.stderr
    assert "t440 -> wav:" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec-t440.wav", "rec-t660.wav"]


def test_duration_cuts_an_endless_source_exactly(tmp_path):
    out = tmp_path / "five.wav"
    result = run_lkplug("run", "--source", "tone:duration=0", "--sink", f"wav:{out}", "--duration", "1.5")
    assert result.returncode == 0, result.stderr
    assert soundfile.info(out).frames == 72000


@pytest.mark.parametrize(
    "sink", ["wav:{out}/{stem}.wav", "wav:{out}/{identity}.wav", "wav:{out}/{stem:>9}.wav"]
)
def test_a_single_run_refuses_a_field_that_nothing_fills(tmp_path, sink):
    # before: tone into wav:out/{stem}.wav wrote a file literally named "{stem}.wav", exit 0; one input
    # that is not a file (nor a room's tracks) has no fields to fill
    result = run_lkplug(
        "run", "--source", "tone:duration=0.1", "--sink", sink.replace("{out}", str(tmp_path))
    )
    line = assert_one_line_error(result)
    assert result.returncode == 2
    assert "nothing fills {" in line
    assert list(tmp_path.iterdir()) == []
