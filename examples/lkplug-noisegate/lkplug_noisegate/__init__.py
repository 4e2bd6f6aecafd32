"""lkplug plugin: the ``noisegate`` processor."""

from lkplug import Component, Param, hookimpl

from .gate import NoiseGate


@hookimpl
def lkplug_processors():
    return [
        Component(
            "noisegate",
            NoiseGate,
            "Silence what stays below a threshold (attack, hold and release in ms)",
            params=(
                Param(
                    "threshold", float, -40.0, "open at or above this peak level, dBFS", min=-120.0, max=0.0
                ),
                Param("attack", float, 1.0, "ms to open fully", min=0.0, max=1000.0),
                Param("release", float, 50.0, "ms to close fully", min=0.0, max=5000.0),
                Param("hold", float, 20.0, "ms to stay open after the level drops", min=0.0, max=5000.0),
            ),
            positional="threshold",
        )
    ]
