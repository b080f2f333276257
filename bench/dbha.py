"""Postgres high availability on the testbed, measured (`make bench`, or `python -m bench.dbha`).

For each replication mode (synchronous, asynchronous), on a fresh Patroni cluster (3 etcd, 2
members, a router: bench/dbha_cluster.py) on host2:
  - write throughput: pgbench's payments-like single-row INSERTs through the router, 4 clients;
  - the leader SIGKILLed under a writer that INSERTs every 20 ms through the router: RTO
    (seconds from the first failed write to the first acknowledged one after the last failure)
    and RPO (acknowledged rows the new leader does not have).
The cost of synchronous replication is the ratio of the two throughputs. A benchmark, not a
test: nothing asserts (tests/integration/test_db_ha.py does). Leaves nothing behind.
"""

from __future__ import annotations

import sys
import time

from bench.dbha_cluster import DbCluster
from bench.hosts import ssh_argv

MODES = {"sync": "synchronous", "async": "asynchronous"}
TPS_SECONDS = 20
TPS_CLIENTS = 4


def progress(msg: str) -> None:
    print(f"bench: {msg}", flush=True)


def measure(status: dict) -> dict:
    host = next(h for h in status["hosts"] if h["name"] == "host2")
    out: dict = {}
    for key, mode in MODES.items():
        db = DbCluster(lambda command: ssh_argv(status, host, command), status["registry"],
                       replication=mode)
        try:
            progress(f"DB HA ({mode}): starting the cluster")
            db.start()
            progress(f"DB HA ({mode}): {TPS_SECONDS} s of payments-like inserts")
            out[f"dbha_{key}_insert_tps"] = round(db.insert_tps(TPS_SECONDS, TPS_CLIENTS), 1)
            db.wait_healthy(timeout=60)
            old = db.state().leader.name
            progress(f"DB HA ({mode}): killing the leader {old} under writes")
            db.truncate()
            db.start_writer(30)
            time.sleep(5)
            db.sh(f"docker kill {old} >/dev/null")
            writes = db.writer_result()
            out[f"dbha_{key}_rto_seconds"] = round(writes.outage_seconds, 1)
            out[f"dbha_{key}_rpo_rows"] = db.lost_rows(writes)
            out[f"dbha_{key}_acknowledged_writes"] = len(writes.acked)
        finally:
            db.remove()
    out["dbha_sync_cost_ratio"] = round(out["dbha_async_insert_tps"]
                                        / out["dbha_sync_insert_tps"], 2)
    out["dbha_ttl_seconds"] = db.cluster.ttl
    return out


def rows(r: dict) -> list[tuple[str, str]]:
    return [
        *((f"DB failover ({mode}), RTO / RPO",
           f"{r[f'dbha_{key}_rto_seconds']} s / {r[f'dbha_{key}_rpo_rows']} rows lost "
           f"(of {r[f'dbha_{key}_acknowledged_writes']} acknowledged; lease "
           f"{r['dbha_ttl_seconds']} s)") for key, mode in MODES.items()),
        ("DB inserts/s, synchronous / asynchronous",
         f"{r['dbha_sync_insert_tps']} / {r['dbha_async_insert_tps']} "
         f"(synchronous costs x{r['dbha_sync_cost_ratio']})"),
    ]


if __name__ == "__main__":
    from bench.run import standalone
    sys.exit(standalone("dbha", measure, rows))
