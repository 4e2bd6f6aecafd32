"""Fresh virtual environments beside lkplug, for installing plugin distributions the way users do.

A new venv (without pip, fast) gets a .pth file that adds this environment's site-packages *after* its
own: lkplug and its dependencies are found there instead of being downloaded and built again, while
what the test installs lands in the new environment and is seen first.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path


def make_env_beside_lkplug(where: Path) -> Path:
    """A new virtual environment whose own site-packages comes first and which also sees ours."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(site_packages, "beside_lkplug.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return python


def run(python: Path, *args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LKPLUG_PLUGINS")}
    return subprocess.run([str(python), *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)
