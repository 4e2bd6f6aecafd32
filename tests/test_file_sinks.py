"""The file plugins' sinks say what they do: `lkplug inspect` shows the contracts the engine
negotiates with, and a path a sink cannot honour is refused in one line before anything runs."""

from __future__ import annotations

import json

import pytest
from conftest import run_lkplug

from lkplug import Registry, build
from lkplug_av import CONTAINERS


def inspect(name: str, role: str) -> dict:
    result = run_lkplug("inspect", name, "--json")
    assert result.returncode == 0, result.stderr
    return next(entry for entry in json.loads(result.stdout) if entry["role"] == role)


def listed(text: str, what: str) -> set[str]:
    """The values a contract's description lists for ``what`` ("format s16/flt" -> {"s16", "flt"})."""
    part = next(piece.strip() for piece in text.split(",") if piece.strip().startswith(what + " "))
    return set(part[len(what) + 1 :].split("/"))


@pytest.mark.parametrize("subtype", ["pcm16", "pcm24", "float"])
def test_inspect_wav_shows_what_each_subtype_is_negotiated_with(subtype, tmp_path):
    # the wav sink said "format s16" only, while subtype=pcm24 and float take flt
    info = inspect("wav", "sink")
    sink = build(Registry.load(), "sink", f"wav:{tmp_path / 'x.wav'},subtype={subtype}").obj
    (taken,) = sink.accepts["audio"].sample_formats
    assert taken in listed(info["accepts"]["audio"], "format")
    help_text = next(p["help"] for p in info["params"] if p["name"] == "subtype")
    # "pcm16 takes s16; pcm24, float take flt": the clause that names the subtype names its format
    clause = next(part for part in help_text.split(";") if subtype in part)
    assert clause.rstrip(")").endswith(" " + taken), help_text
    plan = run_lkplug(
        "run", "--source", "tone:440", "--sink", f"wav:{tmp_path / 'x.wav'},subtype={subtype}", "--explain"
    )
    assert (f"format:{taken}  [inserted]" in plan.stdout) == (taken != "s16"), plan.stdout  # tone is s16


@pytest.mark.parametrize("container", [name for name, (*_, video) in CONTAINERS.items() if video])
def test_inspect_file_lists_every_pixel_format_a_container_takes(container, tmp_path):
    # it said yuv420p only, while libx264 (mp4, mov, mkv) takes nv12 and gray too
    shown = listed(inspect("file", "sink")["accepts"]["video"], "pixel format")
    sink = build(Registry.load(), "sink", f"file:{tmp_path / ('x.' + container)}").obj
    assert set(sink.accepts["video"].pixel_formats) <= shown
