"""Ctrl-C during a rollout: turn SIGINT into an exception the host in progress can undo.

pyinfra's own handler exits 0 at once; a rollout interrupted mid-swap must instead put the host
back, release the lock and exit non-zero.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator

import gevent


class Interrupted(BaseException):  # noqa: N818 - not an error: the operator pressed Ctrl-C
    """Ctrl-C during the rollout: undo the host in progress, release the lock, stop."""


@contextlib.contextmanager
def interruptible(on_interrupt: Callable[[], None] | None = None) -> Iterator[None]:
    """Turn SIGINT into `Interrupted` inside the rollout's greenlet, or call `on_interrupt`
    (the pool of hosts rolled at once interrupts each of them: ops/rollout/pool.py)."""
    me = gevent.getcurrent()

    def handler(signum, frame) -> None:  # noqa: ARG001
        if on_interrupt is not None:
            on_interrupt()
        else:
            gevent.kill(me, Interrupted)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
