"""What every child process of the service does first: die with its parent.

The bulk runner's processes and the live worker's calibration process are children that
must not outlive the process that started them (a SIGKILLed backfill or worker would
otherwise leave them running, holding partitions or CPU).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, exit_code: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux), and exit with
    `exit_code` at once if the parent `parent` is already gone (it died before the
    request, which the kernel then never acts on)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(exit_code)
