"""A steady HTTP load through Traefik, recording every request's outcome.

Used by `make bench` and by the zero-downtime tests. Sends traffic only to the addresses it is
given (the testbed's own hosts), bounded in time by its caller, and stops by itself.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from ops.catalog.model import Environment


@dataclass(frozen=True)
class Target:
    address: str  # a testbed host
    host_header: str  # the API domain Traefik routes on
    paths: tuple[str, ...]  # e.g. ("/payments/api/ping", "/taxi/api/ping")
    # HTTPS on Traefik's `websecure` (443) with this client context, SNI = host_header;
    # None: plain HTTP on `web` (80). A worker keeps its connection: one handshake each.
    tls: ssl.SSLContext | None = None


def placed_targets(hosts: Iterable[tuple[str, str]], environment: Environment,
                   path: str = "/api/ping") -> list[Target]:
    """One target per app host (name, address), with the routes of the services placed on it
    only: a testbed past three hosts runs two services on the extra ones, and a path a host has
    no route for is a 404, not a failed swap."""
    domain = environment.settings["api_domains"][0]
    return [Target(address, domain, tuple(f"{s.routes[0]}{path}"
                                          for s in environment.services_on(name)))
            for name, address in hosts]


class SNIConnection(http.client.HTTPSConnection):
    """HTTPS to an address, with another name for SNI and certificate checks (the testbed's
    names resolve nowhere but in the ACME server's test DNS)."""

    def __init__(self, address: str, sni: str, context: ssl.SSLContext, timeout: float):
        super().__init__(address, 443, context=context, timeout=timeout)
        self.sni = sni

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.sni)


def connect(target: Target, timeout: float) -> http.client.HTTPConnection:
    if target.tls is None:
        return http.client.HTTPConnection(target.address, 80, timeout=timeout)
    return SNIConnection(target.address, target.host_header, target.tls, timeout)


@dataclass
class Result:
    at: float
    target: str
    path: str
    status: int  # 0 = connection error / timeout
    error: str = ""


@dataclass
class LoadReport:
    results: list[Result] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if not 200 <= r.status < 400]

    def failures_by_kind(self) -> Counter:
        return Counter(r.error or str(r.status) for r in self.failed)

    def per_second(self) -> list[tuple[int, int, int]]:
        """(second since start, requests, failures) for a plot."""
        if not self.results:
            return []
        t0 = min(r.at for r in self.results)
        total: Counter = Counter()
        bad: Counter = Counter()
        for r in self.results:
            s = int(r.at - t0)
            total[s] += 1
            if not 200 <= r.status < 400:
                bad[s] += 1
        return [(s, total[s], bad[s]) for s in sorted(total)]


class Load:
    """`rate` requests/s per target, spread over `workers` threads per target."""

    def __init__(self, targets: list[Target], rate: float, workers: int = 4,
                 timeout: float = 5.0):
        self.targets = targets
        self.rate = rate
        self.workers = workers
        self.timeout = timeout
        self.report = LoadReport()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        for target in self.targets:
            for n in range(self.workers):
                t = threading.Thread(target=self._worker, args=(target, n), daemon=True)
                t.start()
                self._threads.append(t)

    def stop(self) -> LoadReport:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout + 2)
        return self.report

    def _worker(self, target: Target, offset: int) -> None:
        interval = self.workers / self.rate
        next_at = time.monotonic() + offset * interval / self.workers
        conn: http.client.HTTPConnection | None = None
        i = offset
        while not self._stop.is_set():
            path = target.paths[i % len(target.paths)]
            i += 1
            now = time.monotonic()
            if next_at > now:
                time.sleep(next_at - now)
            next_at += interval
            started = time.time()
            try:
                if conn is None:
                    conn = connect(target, self.timeout)
                conn.request("GET", path, headers={"Host": target.host_header})
                resp = conn.getresponse()
                resp.read()
                result = Result(started, target.address, path, resp.status)
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                result = Result(started, target.address, path, 0, type(e).__name__)
                if conn is not None:
                    conn.close()
                conn = None
            with self._lock:
                self.report.results.append(result)
