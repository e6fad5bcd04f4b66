"""Run a command that the kernel kills when its supervisor dies (Linux).

    python -I -S _die_with_parent.py SUPERVISOR_PID COMMAND [ARGS...]

Sets PR_SET_PDEATHSIG = SIGKILL, checks that the supervisor has not died
already (then the signal would never come), and execs COMMAND: the same
process, so the supervisor's handle, the pid and the signals it sends are
the command's own, and the setting holds for any program (Node, C++, a shell
script) until it forks children of its own.

Why a program and not a ``preexec_fn``: a preexec_fn makes Python fork with
fork(2) instead of vfork(2), which runs every pthread_atfork handler in the
supervisor, and grpc's own handler waits for its threads while the forking
thread holds the GIL they need: the supervisor hangs (seen in the test
suite, in ``revive``). This file is run by path with ``-I -S`` so it imports
nothing but the standard library (not this package, which imports grpc):
it costs one bare interpreter start per child, about 15 ms.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
EXIT_CANNOT_RUN = 127  # the shell's code for a command that cannot be run


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not argv[0].isdigit():
        print("usage: _die_with_parent.py SUPERVISOR_PID COMMAND [ARGS...]", file=sys.stderr)
        return 2
    supervisor, command = int(argv[0]), argv[1:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        print(f"scatter: prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    if os.getppid() != supervisor:
        return 1  # the supervisor died before the prctl: nobody wants this child any more
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"scatter: cannot run {command[0]!r}: {exc.strerror}", file=sys.stderr)
    return EXIT_CANNOT_RUN


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
