"""Hosts rolled at once (`rollout.parallel_hosts`), never two of one placement group.

A rollout is serial until its first changed host (the canary) is done: a release that breaks
there must have touched one host only. After it, up to `width` hosts swap at once, each on its
own SSH connection (one greenlet per host, as pre-staging does), started in rollout order,
skipping a host whose `placement_group` (a rack, a zone: hosts that fail together) already has
one in progress, so a group never loses two hosts' capacity at once.

A host that fails stops the pool from starting another; the hosts in progress finish their own
swap (each one's state machine completes or undoes itself), and the caller reports them all.
Ctrl-C interrupts every host in progress (each undoes its swap) and starts none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import gevent

from ops.rollout.interrupt import Interrupted, interruptible

T = TypeVar("T")
R = TypeVar("R")


def next_startable(queue: Sequence[T], busy: set[str], group_of: Callable[[T], str]) -> T | None:
    """The first item in rollout order whose group has nothing in progress (pure)."""
    return next((item for item in queue if group_of(item) not in busy), None)


@dataclass
class PoolRun(Generic[T, R]):
    """What a pool did: outcomes in the order the hosts finished, what never started, and
    whether Ctrl-C stopped it."""

    outcomes: list[R] = field(default_factory=list)
    not_started: list[T] = field(default_factory=list)
    interrupted: bool = False


def run_pool(items: Sequence[T], width: int, group_of: Callable[[T], str],
             work: Callable[[T], R], go_on: Callable[[R], bool]) -> PoolRun[T, R]:
    """`work(item)` for each item, at most `width` at once and one per group; `work` must not
    raise (it returns its outcome, failures included). After an outcome for which `go_on`
    says False, or Ctrl-C, nothing more starts."""
    queue = list(items)
    running: dict[gevent.Greenlet, T] = {}
    run: PoolRun[T, R] = PoolRun()
    stop = False

    def on_ctrl_c() -> None:
        nonlocal stop
        run.interrupted = stop = True
        for g in list(running):
            g.kill(Interrupted, block=False)

    with interruptible(on_ctrl_c):
        while queue or running:
            while queue and not stop and len(running) < width:
                item = next_startable(queue, {group_of(i) for i in running.values()}, group_of)
                if item is None:
                    break
                queue.remove(item)
                running[gevent.spawn(work, item)] = item
            if not running:
                break
            for g in gevent.wait(list(running), count=1):
                running.pop(g)
                if g.exception is not None:  # `work` broke its promise: a bug, say it whole
                    gevent.killall(list(running))
                    raise g.exception
                run.outcomes.append(g.value)
                if not go_on(g.value):  # called for every outcome: it records them
                    stop = True
    run.not_started = queue
    return run
