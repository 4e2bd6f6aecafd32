"""lkplug: plugin-based processing of raw media from LiveKit rooms and files."""
