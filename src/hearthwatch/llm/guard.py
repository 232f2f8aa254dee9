"""A small process between the server and an engine, so that no engine outlives the server,
however the server ends (``kill -9`` included): the guard runs the engine command in its own
process group and stops that group when its stdin (a pipe only the server holds) reaches EOF
or when the guard's parent changes (the server died and the guard was re-parented). The
engine gets ``PR_SET_PDEATHSIG`` (SIGKILL) from the guard's main thread, so it also dies if
the guard itself is killed. SIGTERM stops the engine gracefully; the guard exits with the
engine's exit status. Single-threaded; Linux gives the strongest guarantees (elsewhere only
the stdin and parent watch apply)."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
from collections.abc import Sequence

from hearthwatch.processes import die_with_parent

GRACE_S = 8.0  # under the supervisor's own grace, so a clean stop stays clean
POLL_S = 0.2


def guarded(command: Sequence[str]) -> list[str]:
    """``command`` run under a guard."""
    return [sys.executable, "-m", "hearthwatch.llm.guard", *command]


def _signal_group(engine: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(engine.pid, sig)


def _stop(engine: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the engine's process group, SIGKILL after the grace period; what is left
    of the group once the engine has exited is killed."""
    if engine.poll() is None:
        _signal_group(engine, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            engine.wait(GRACE_S)
    _signal_group(engine, signal.SIGKILL)


def _exit_status(code: int) -> int:
    return code if code >= 0 else 128 - code


def run(command: Sequence[str]) -> int:
    parent = os.getppid()
    engine = subprocess.Popen(
        list(command),
        stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent(signal.SIGKILL),
        start_new_session=True,
    )
    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when the engine stops
    watch = selectors.DefaultSelector()
    stdin = sys.stdin.fileno()
    watch.register(stdin, selectors.EVENT_READ)
    while engine.poll() is None and not stopping and os.getppid() == parent:
        if watch.select(POLL_S) and not os.read(stdin, 4096):
            break  # EOF: the server closed its end or is gone
    _stop(engine)
    return _exit_status(engine.wait())


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m hearthwatch.llm.guard COMMAND [ARG...]")
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
