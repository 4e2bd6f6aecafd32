"""``lkplug new-plugin NAME``: a ready plugin distribution, with one processor and a passing test.

lkplug new-plugin demo-filter         # writes ./lkplug-demo-filter/
cd lkplug-demo-filter && pip install -e '.[test]' && pytest && lkplug list
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import UsageError

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "{summary}"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["lkplug", "numpy"]

[project.optional-dependencies]
test = ["pytest"]

# lkplug finds the plugin through this entry point once the distribution is installed.
[project.entry-points.lkplug]
{name} = "{package}"

[tool.setuptools]
packages = ["{package}"]
"""

README = """\
# {dist}

An [lkplug](https://pypi.org/project/lkplug/) plugin with one processor, `{name}`.

```sh
pip install -e '.[test]'
pytest
lkplug list
lkplug inspect {name}
lkplug run --source tone:440 --proc {name}:db=-6 --sink wav:out.wav
```

Change `{package}/processor.py`, then the test beside it. Publish with `python -m build` and
`twine upload dist/*`; anyone who installs the distribution gets `{name}` in `lkplug list`.
"""

INIT = '''\
"""lkplug plugin {dist}: the ``{name}`` processor."""

from lkplug import Component, Param, hookimpl

from .processor import {cls}


@hookimpl
def lkplug_processors():
    return [
        Component(
            "{name}",
            {cls},
            "{summary}",
            params=(Param("db", float, 0.0, "gain in dB", min=-60.0, max=20.0),),
            positional="db",
        )
    ]
'''

PROCESSOR = '''\
"""The processor itself: frames in, frames out. Keep state on ``self``; it lives for a whole run."""

from __future__ import annotations

import numpy as np
from lkplug import AudioContract, Processor


class {cls}(Processor):
    # What it takes; the engine converts anything else (rate, channels, s16 to float, frame size).
    accepts = {{"audio": AudioContract(sample_formats=("flt",))}}
    emits = "float audio at the rate and channels it takes"

    def __init__(self, db: float = 0.0):
        self.factor = np.float32(10 ** (db / 20))

    def process(self, frame) -> list:
        return [frame.replace(data=frame.data * self.factor)]

    def flush(self) -> list:
        return []  # a processor that holds samples returns them here at the end of the stream
'''

TEST = """\
import pytest
from lkplug.testing import level_dbfs, run_chain, sine


def test_{ident}_changes_the_level():
    signal = sine(440, seconds=1.0, rate=48000)
    out = run_chain(signal, 48000, "{name}:db=-6")
    assert out.shape == signal.shape
    assert level_dbfs(out) - level_dbfs(signal) == pytest.approx(-6.0, abs=0.01)
"""


def plugin_names(name: str) -> dict[str, str]:
    """``demo-filter`` -> distribution lkplug-demo-filter, package lkplug_demo_filter, class DemoFilter."""
    base = re.sub(r"^lkplug[-_]", "", name.strip().lower())
    if not re.fullmatch(r"[a-z][a-z0-9]*([-_][a-z0-9]+)*", base):
        raise UsageError(f"plugin name {name!r}: use letters, digits and dashes, starting with a letter")
    ident = base.replace("-", "_")
    return {
        "name": base,
        "dist": f"lkplug-{base.replace('_', '-')}",
        "package": f"lkplug_{ident}",
        "ident": ident,
        "cls": "".join(part.capitalize() for part in ident.split("_")),
        "summary": f"{base}: change the level by db (a starting point)",
    }


def check_name_is_free(name: str, registry) -> None:
    """UsageError if a loaded plugin already provides a component or plugin called like the new one:
    the new package's component would clash with it (and its test would fail)."""
    names = plugin_names(name)
    taken = [
        f"{e.role} {e.name!r} ({e.plugin.provider})" for e in registry.entries() if e.name == names["name"]
    ]
    taken += [f"plugin {i.name!r} ({i.provider})" for i in registry.plugins if i.name == names["name"]]
    if taken:
        raise UsageError(f"{names['name']!r} is already provided: {taken[0]}; choose another name")


def write_plugin(name: str, directory: Path | None = None, registry=None) -> Path:
    """Write the skeleton into ``directory`` (default ``./lkplug-NAME``); return the directory.
    With ``registry``, refuse a name that a loaded plugin already provides."""
    names = plugin_names(name)
    if registry is not None:
        check_name_is_free(name, registry)
    root = Path(directory) if directory else Path(names["dist"])
    if root.exists() and any(root.iterdir()):
        raise UsageError(f"{root} exists and is not empty; choose another --dir")
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"{names['package']}/__init__.py": INIT,
        f"{names['package']}/processor.py": PROCESSOR,
        f"tests/test_{names['ident']}.py": TEST,
    }
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**names))
    return root
