"""A local LiveKit-protocol server for tests and demos. Not a production SFU."""
