"""HTTPS vs plain HTTP through Traefik on one testbed host, measured in one run (`make bench`, or
`python -m bench.tls` alone, which writes bench/results/tls-<time>.json).

Closed loop: WORKERS threads, each on its own kept-alive connection (one TLS handshake per
worker: handshake reuse on, as a balancer's pooled connections would be), send GETs to every
service's ping route as fast as answers come, for ROUND_SECONDS; plain and TLS alternate for
ROUNDS rounds on the same host, so both see the same machine load. Each worker is its own
client (X-Forwarded-For from the testbed balancer's address, a TEST-NET address per worker), so
the per-client edge limits do not throttle the measurement. Only 2xx answers count as served.
A benchmark, not a test: nothing asserts.
"""

from __future__ import annotations

import http.client
import ssl
import statistics
import sys
import threading
import time
import urllib.request

from bench.load import Target, connect
from bench.pitr import progress
from ops.catalog import load_environment

WORKERS = 8
ROUND_SECONDS = 10.0
ROUNDS = 2


def pebble_root(status: dict) -> str:
    api = ssl.create_default_context(cafile=status["acme_api_ca_file"])
    with urllib.request.urlopen(f"{status['acme_management']}/roots/0", context=api,
                                timeout=10) as r:
        return r.read().decode()


def hammer(target: Target, seconds: float) -> tuple[list[float], int]:
    """(latencies in seconds of 2xx answers, other outcomes) of WORKERS closed-loop clients."""
    latencies: list[float] = []
    other = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker(n: int) -> None:
        conn: http.client.HTTPConnection | None = None
        headers = {"Host": target.host_header, "X-Forwarded-For": f"198.51.100.{n + 1}"}
        i, mine, bad = n, [], 0
        while time.monotonic() < stop_at:
            path = target.paths[i % len(target.paths)]
            i += 1
            t0 = time.perf_counter()
            try:
                if conn is None:
                    conn = connect(target, 10.0)
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                resp.read()
                if 200 <= resp.status < 300:
                    mine.append(time.perf_counter() - t0)
                else:
                    bad += 1
            except (OSError, http.client.HTTPException):
                bad += 1
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()
        with lock:
            latencies.extend(mine)
            other[0] += bad

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, other[0]


def summary(latencies: list[float], other: int, seconds: float) -> dict:
    ordered = sorted(latencies)
    p99 = ordered[int(0.99 * (len(ordered) - 1))] if ordered else 0.0
    return {"rps": round(len(ordered) / seconds, 1),
            "p50_ms": round(statistics.median(ordered) * 1000, 2) if ordered else 0.0,
            "p99_ms": round(p99 * 1000, 2), "served": len(ordered), "not_served": other}


def measure(status: dict) -> dict:
    environment = load_environment("local")
    host = next(h for h in status["hosts"] if "app" in h["roles"])
    paths = tuple(f"{s.routes[0]}/api/ping" for s in environment.services.values())
    name = f"{host['name']}.{status['acme_domain']}"
    ctx = ssl.create_default_context(cadata=pebble_root(status))
    plain = Target(host["address"], environment.settings["api_domains"][0], paths)
    secure = Target(host["address"], name, paths, tls=ctx)
    runs: dict[str, tuple[list[float], int]] = {"plain": ([], 0), "tls": ([], 0)}
    for n in range(ROUNDS):
        for kind, target in (("plain", plain), ("tls", secure)):
            progress(f"tls: round {n + 1}/{ROUNDS}, {kind}, {WORKERS} clients for "
                     f"{ROUND_SECONDS:.0f}s on {host['name']}")
            latencies, other = hammer(target, ROUND_SECONDS)
            runs[kind] = (runs[kind][0] + latencies, runs[kind][1] + other)
    seconds = ROUNDS * ROUND_SECONDS
    plain_s, tls_s = summary(*runs["plain"], seconds), summary(*runs["tls"], seconds)
    out = {f"tls_plain_{k}": v for k, v in plain_s.items()}
    out.update({f"tls_https_{k}": v for k, v in tls_s.items()})
    out.update(tls_host=host["name"], tls_workers=WORKERS,
               tls_rps_ratio=round(tls_s["rps"] / plain_s["rps"], 3) if plain_s["rps"] else None,
               tls_p99_ratio=round(tls_s["p99_ms"] / plain_s["p99_ms"], 3)
               if plain_s["p99_ms"] else None)
    return out


def rows(r: dict) -> list[tuple[str, str]]:
    return [
        ("edge: plain HTTP, req/s / p50 / p99",
         f"{r['tls_plain_rps']}/s / {r['tls_plain_p50_ms']} ms / {r['tls_plain_p99_ms']} ms "
         f"({r['tls_plain_not_served']} not served)"),
        ("edge: HTTPS (kept-alive), req/s / p50 / p99",
         f"{r['tls_https_rps']}/s / {r['tls_https_p50_ms']} ms / {r['tls_https_p99_ms']} ms "
         f"({r['tls_https_not_served']} not served)"),
        ("edge: HTTPS / plain", f"req/s x{r['tls_rps_ratio']}, p99 x{r['tls_p99_ratio']} "
                                f"({r['tls_workers']} clients on {r['tls_host']})"),
    ]


if __name__ == "__main__":
    from bench.run import standalone
    sys.exit(standalone("tls", measure, rows))
