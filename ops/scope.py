"""What one `pyinfra` invocation shares between hosts: "once for the whole run" and "when every
active host has reported".

pyinfra executes a deploy file once per host while preparing (hosts in parallel greenlets), so
work that belongs to the whole run (load and audit the environment, read Vault, print one
report) needs a place that outlives a single host's pass and is not a module global: a
`RunScope`, one per pyinfra `State`, found with `current_scope()`. Stages get what they need
from it once and pass it on explicitly; nothing else keeps run state.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

from gevent.lock import RLock
from pyinfra.context import ctx_state

T = TypeVar("T")


class RunScope:
    """Values made once per run, and barriers that fire once every expected member reported.

    Its lock is gevent's: pyinfra prepares hosts in greenlets of one thread, where a
    `threading.RLock` that pyinfra's monkey-patching did not reach would let every greenlet in.
    """

    def __init__(self) -> None:
        self._lock = RLock()
        self._values: dict[Hashable, Any] = {}
        self._reports: dict[Hashable, dict[str, Any]] = {}
        self._fired: set[Hashable] = set()

    def once(self, key: Hashable, make: Callable[[], T]) -> T:
        """`make()`'s value for `key`, made by the first caller; later callers get the same.

        A `make()` that raises stores nothing: the next caller tries again (and so refuses
        with the same message on every host).
        """
        with self._lock:
            if key not in self._values:
                self._values[key] = make()
            return self._values[key]

    def get(self, key: Hashable) -> Any:
        """A value made by `once`; KeyError when its stage has not run."""
        with self._lock:
            return self._values[key]

    def gather(self, key: Hashable, member: str, value: Any,
               expected: Iterable[str]) -> dict[str, Any] | None:
        """Record `member`'s `value`; the caller whose report completes `expected` gets every
        report (member -> value), exactly once; every other caller gets None."""
        with self._lock:
            reports = self._reports.setdefault(key, {})
            reports[member] = value
            if key in self._fired or not set(expected) <= set(reports):
                return None
            self._fired.add(key)
            return dict(reports)


_scopes: weakref.WeakKeyDictionary[Any, RunScope] = weakref.WeakKeyDictionary()
_scopes_lock = RLock()


def scope_of(state: Any) -> RunScope:
    """The scope of one pyinfra `State` (made on first use, gone with the state)."""
    with _scopes_lock:
        scope = _scopes.get(state)
        if scope is None:
            scope = _scopes[state] = RunScope()
        return scope


def current_scope() -> RunScope:
    """The scope of the pyinfra run being prepared or executed now."""
    return scope_of(ctx_state.get())
