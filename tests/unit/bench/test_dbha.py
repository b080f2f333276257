"""How the DB failover bench and test count an outage (bench/dbha_cluster.py `Writes`) and what
the bench prints (bench/dbha.py)."""

from __future__ import annotations

from bench.dbha import rows
from bench.dbha_cluster import Writes


def test_no_failed_write_is_no_outage() -> None:
    assert Writes(acked=[(1, 1.0), (2, 2.0)], failed=[]).outage_seconds == 0.0


def test_the_outage_runs_from_the_first_failure_to_the_first_write_after_the_last() -> None:
    writes = Writes(acked=[(1, 9.9), (2, 10.5), (3, 12.5), (4, 13.0)],
                    failed=[10.0, 11.0, 12.0])  # one write got through in the middle
    assert writes.outage_seconds == 2.5


def test_writes_that_never_resumed_count_up_to_the_last_failure() -> None:
    assert Writes(acked=[(1, 9.0)], failed=[10.0, 14.0]).outage_seconds == 4.0


def test_the_table_names_both_modes_and_the_cost_of_synchronous_replication() -> None:
    r = {"dbha_sync_rto_seconds": 12.6, "dbha_sync_rpo_rows": 0,
         "dbha_sync_acknowledged_writes": 766, "dbha_async_rto_seconds": 12.8,
         "dbha_async_rpo_rows": 3, "dbha_async_acknowledged_writes": 767,
         "dbha_ttl_seconds": 10, "dbha_sync_insert_tps": 1507.3,
         "dbha_async_insert_tps": 2097.5, "dbha_sync_cost_ratio": 1.39}
    table = dict(rows(r))
    assert table["DB failover (asynchronous), RTO / RPO"].startswith("12.8 s / 3 rows lost")
    assert "synchronous costs x1.39" in table["DB inserts/s, synchronous / asynchronous"]
