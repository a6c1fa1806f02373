"""The reaper of `studyllm dev`: takes Dagster's process group down when `studyllm dev` dies.

`studyllm dev` runs `dagster dev` in a process group of its own (so stopping it stops the
webserver, daemon, code server and run workers). If `studyllm dev` is killed with SIGKILL, or its
terminal closes, nothing would stop that group, and its daemon could go on running schedules that
spend money. So `studyllm dev` also starts this small process, outside the group and deaf to the
terminal, with a pipe on its stdin: the kernel closes the pipe when `studyllm dev` exits for any
reason, and then the reaper stops whatever is left of the group (SIGINT, so Dagster shuts down
in order, then SIGTERM, then SIGKILL). After a clean stop the group is already gone and it just exits.

Run as `python -m studyllm_pipeline.reaper PGID [GRACE_S]`; it imports nothing but the stdlib.
"""

import os
import signal
import sys
import time

GRACE_S = 20.0  # how long Dagster gets to shut down after SIGINT
POLL_S = 0.2


def group_alive(pgid: int) -> bool:
    """Whether any process of the group remains."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(pgid: int, grace_s: float = GRACE_S) -> None:
    """SIGINT the group, then SIGTERM, then SIGKILL, each after the group failed to go within its wait."""
    for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if not group_alive(pgid):
            return
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and group_alive(pgid):
            time.sleep(POLL_S)


def main(argv: list[str]) -> int:
    pgid = int(argv[0])
    grace_s = float(argv[1]) if len(argv) > 1 else GRACE_S
    for sig in (signal.SIGINT, signal.SIGHUP):  # a Ctrl-C or a closed terminal must not take the reaper first
        signal.signal(sig, signal.SIG_IGN)
    stdin = sys.stdin.buffer
    try:
        while stdin.read(4096):  # b"" once `studyllm dev` has exited (or closed the pipe)
            pass
    except OSError:
        pass
    stop_group(pgid, grace_s)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
