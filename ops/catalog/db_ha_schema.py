"""Schema of group_data's `db_ha` block (ops/dbha: Patroni on etcd). Here rather than in
ops.dbha.model so the group_data schema can include it without importing ops.dbha, which
imports the catalog."""

from __future__ import annotations

from ops.catalog.schema import Bool, Field, Int, ListOf, Record, Str

NAME = Str(pattern=r"[a-z][a-z0-9_-]*", hint="a lowercase name")
MODES = ("asynchronous", "synchronous")

DB_HA = Record({
    "scope": Field(NAME, doc="the Patroni cluster's name (its etcd prefix)"),
    "members": Field(ListOf(NAME, min_len=2),
                     doc="hosts running a Patroni member (PostgreSQL); two or more"),
    "etcd": Field(ListOf(NAME, min_len=3),
                  doc="hosts running an etcd member; an odd number, three or more (may be the "
                      "db hosts themselves plus one more)"),
    "replication": Field(Str(choices=MODES),
                         doc="synchronous: a commit returns once a standby has it (RPO 0 on a "
                             "failover), at the price of a network round trip per commit"),
    "synchronous_strict": Field(Bool(), required=False, default=False,
                                doc="with synchronous replication and the only standby down: "
                                    "true blocks every write, false (default) lets the "
                                    "primary commit alone until a standby is back"),
    "ttl_seconds": Field(Int(min=5, max=300), required=False, default=30,
                         doc="the leader lease: a leader that cannot renew it for this long is "
                             "replaced (and demotes itself)"),
    "loop_wait_seconds": Field(Int(min=1, max=60), required=False, default=10),
    "retry_timeout_seconds": Field(Int(min=1, max=120), required=False, default=10),
    "maximum_lag_on_failover_bytes": Field(Int(min=0), required=False, default=1048576,
                                           doc="a standby further behind is never promoted"),
    "failsafe": Field(Bool(), required=False, default=True,
                      doc="etcd lost quorum: the primary stays primary while it reaches every "
                          "member's REST API (Patroni's failsafe_mode); false demotes it"),
})
