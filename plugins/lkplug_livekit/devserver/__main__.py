"""``python -m lkplug_livekit.devserver``: the same as ``lkplug devserver``."""

from .cli import devserver_command

devserver_command(prog_name="lkplug devserver")
