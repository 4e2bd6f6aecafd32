"""The docs cannot rot: every code block of CONTRIBUTING.md runs here, in order, as a new user would
follow it; the hook table matches the hook specifications; README's `-p` example works as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import run_lkplug
from freshenv import make_env_beside_lkplug

from lkplug import hookspecs

ROOT = Path(__file__).resolve().parent.parent
CONTRIBUTING = ROOT / "CONTRIBUTING.md"
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\s*$")
CHECK = re.compile(r"^<!-- check: ([\w-]+) -->$")
FILE = re.compile(r"^# file: (\S+)\n")


@dataclass
class Block:
    lang: str
    text: str
    line: int  # where it starts in the file, for failure messages
    check: str | None = None  # from a "<!-- check: NAME -->" line right before the fence

    @property
    def file(self) -> str | None:
        match = FILE.match(self.text)
        return match.group(1) if match else None


def code_blocks(path: Path) -> list[Block]:
    blocks, lines = [], path.read_text().splitlines()
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        start, body = index, []
        index += 1
        while not lines[index].startswith("```"):
            body.append(lines[index])
            index += 1
        previous = lines[start - 1] if start else ""
        check = CHECK.match(previous)
        blocks.append(Block(match.group(1), "\n".join(body) + "\n", start + 1, check and check.group(1)))
        index += 1
    return blocks


def normalized(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def shell_env(python: Path) -> dict:
    """A shell where pip, lkplug and pytest are those of the fresh environment of ``python``."""
    bin_dir = python.parent
    for tool, module in (("pip", "pip"), ("lkplug", "lkplug"), ("pytest", "pytest")):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\nexec "{bin_dir}/python" -m {module} "$@"\n')
        script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LKPLUG_PLUGINS")}
    return {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}", "VIRTUAL_ENV": str(bin_dir.parent)}


def readme_test_command() -> str:
    text = README.read_text()
    after = text[text.index("<!-- test-command -->") :]
    return next(b for b in code_blocks_of(after) if b.lang == "sh").text


def code_blocks_of(text: str) -> list[Block]:
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"lkplug-doc-{os.getpid()}.md"
    scratch.write_text(text)
    try:
        return code_blocks(scratch)
    finally:
        scratch.unlink()


def check_dev_commands(block: Block) -> None:
    """The development commands are checked, not run (they would run this suite inside itself):
    pytest selections must collect tests, tox environments must exist."""
    tox_envs = set(re.findall(r"^\[testenv:([\w-]+)\]", (ROOT / "tox.ini").read_text(), re.M))
    for line in block.text.splitlines():
        command = line.split("  #")[0].strip()
        if command.startswith("pytest"):
            args = [a.strip('"') for a in re.findall(r'"[^"]*"|\S+', command)[1:]]
            result = subprocess.run(
                [sys.executable, "-m", "pytest", *args, "--collect-only", "-q", "-p", "no:cacheprovider"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert result.returncode == 0 and " collected" in result.stdout.splitlines()[-1], (line, result)
        elif command.startswith("tox -e "):
            assert command.removeprefix("tox -e ") in tox_envs, line
        else:
            pytest.fail(f"CONTRIBUTING.md:{block.line}: no check for {line!r}")


@pytest.mark.live  # the guide's own live test starts the local LiveKit server
# not in the live tests' xdist group (conftest): a pip install, mostly; its live test checks a frequency
@pytest.mark.xdist_group("guide")
def test_every_block_of_the_guide_runs_in_order(tmp_path, monkeypatch):
    workspace = tmp_path / "work"
    workspace.mkdir()
    env = shell_env(make_env_beside_lkplug(tmp_path / "venv"))
    monkeypatch.chdir(workspace)
    last_output, handled, written, promised = None, 0, set(), set()
    blocks = code_blocks(CONTRIBUTING)
    for block in blocks:
        where = f"CONTRIBUTING.md:{block.line}"
        if block.check == "files-written":  # the tutorial's file list: checked at the end
            promised = set(block.text.split())
        elif block.check == "readme-test-command":
            assert block.text == readme_test_command(), where
        elif block.check == "dev-commands":
            check_dev_commands(block)
        elif block.file:
            path = workspace / block.file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.text)
            written.add(block.file)
        elif block.lang == "python":
            exec(compile(block.text, where, "exec"), {"__name__": "contributing_md"})
        elif block.lang == "sh":
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block.text],
                cwd=workspace,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert result.returncode == 0, f"{where}\n{result.stdout}\n{result.stderr}"
            last_output = normalized(result.stdout + result.stderr)
        elif block.lang == "text":
            assert last_output is not None, f"{where}: a text block must follow a shell block"
            for line in normalized(block.text):
                found = any(line in out for out in last_output)
                assert found, f"{where}: {line!r} not in the output:\n" + "\n".join(last_output)
        else:
            pytest.fail(f"{where}: no way to test a {block.lang!r} block")
        handled += 1
    assert handled == len(blocks) > 10
    assert promised == {name for name in written if name.startswith("lkplug-delay/")}
    # following the guide from nothing gave a plugin that lkplug lists, and a wheel to publish
    assert (workspace / "delayed.wav").is_file()
    assert list((workspace / "dist").glob("lkplug_delay-0.1.0-*.whl"))


def test_the_hook_table_matches_the_hook_specifications():
    text = CONTRIBUTING.read_text()
    table = text[text.index("| hook | when it is called | returns |") :].split("\n\n")[0]
    documented = re.findall(r"^\| `(lkplug_\w+)\(", table, re.M)
    specified = [name for name in vars(hookspecs) if name.startswith("lkplug_")]
    assert sorted(documented) == sorted(specified)


def test_the_readme_dash_p_example_runs_as_written(tmp_path):
    text = README.read_text()
    block = next(b for b in code_blocks_of(text) if b.lang == "python" and b.text.startswith("# myhooks.py"))
    (tmp_path / "myhooks.py").write_text(block.text)
    command = re.match(r"# myhooks\.py\s+\S+\s+lkplug (.+)\n", block.text).group(1).split()
    assert command[:2] == ["run", "-p"]
    listing = run_lkplug("list", "-p", "./myhooks.py", cwd=tmp_path)
    assert "invert" in listing.stdout and "myhooks (-p)" in listing.stdout
    result = run_lkplug(*command, "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o.wav").is_file()
