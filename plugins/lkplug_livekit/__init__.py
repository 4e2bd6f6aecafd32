"""LiveKit rooms: participant tracks as sources and sinks, and a local dev server."""
