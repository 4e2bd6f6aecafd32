"""Child processes that must not outlive lkplug (batch workers, the dev server it started)."""

from __future__ import annotations

import signal
import sys


def end_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies, however it dies (SIGKILL
    included): Linux's PR_SET_PDEATHSIG. Elsewhere nothing happens; the caller watches
    ``os.getppid()`` if it must."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
