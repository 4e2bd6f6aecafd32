"""A local LiveKit-protocol server for tests and demos. Not a production SFU."""


def server_errors(lines: list[str]) -> list[str]:
    """The tracebacks (with the log line before each) in a dev server's output: a server that lets an
    exception go by has dropped some work (a subscription change, a signalling request)."""
    return [
        "\n".join(lines[max(index - 1, 0) : index + 12])
        for index, line in enumerate(lines)
        if "Traceback (most recent call last)" in line
    ]
