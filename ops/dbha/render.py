"""The text each part of the cluster runs from. Pure: a `Cluster` (and passwords) in, text out.

- etcd: its `ETCD_*` environment (etcd reads its whole configuration from it), mutual TLS
  between the members and with Patroni (`ETCD_TLS`, `PATRONI_ETCD_TLS`);
- Patroni: `patroni.yml` for one member; it carries the database passwords, so it is written
  0600 for the postgres user only, like every secret file;
- pgBackRest (`Archive`): whichever member leads archives its WAL to the repository
  (`archive_mode: on` archives on the primary only, so a promoted standby takes over by
  itself), and a new or rebuilt member is restored from the repository's last backup plus
  WAL before streaming the rest from the leader (`create_replica_methods`), instead of a full
  copy from the leader over the network; `basebackup` stays as the fallback;
- HAProxy: `haproxy.cfg` for an app host: one TCP listener per role, routed to the member
  whose Patroni answers 200 on `/primary` (writes) or `/replica` (reads). A member that stops
  answering is marked down after two 1 s checks and its sessions are cut, so a client never
  keeps writing to a demoted primary.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_network

from ops import yamlio
from ops.dbha.model import Cluster, Node

ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
POSTGRES_PORT = 5432
PATRONI_PORT = 8008
ROUTER_PRIMARY_PORT = 5432
ROUTER_REPLICA_PORT = 5433
ROUTER_METRICS_PORT = 8404
DATA_DIR = "/var/lib/postgresql/data/pgdata"
SOCKET_DIR = "/var/run/postgresql"
BIN_DIR = "/usr/lib/postgresql/15/bin"
SUPERUSER = "postgres"
REPLICATION_USER = "replicator"
REST_USER = "patroni"
REWIND_USER = "rewinder"  # pg_rewind's own login: reads WAL and files, no superuser


@dataclass(frozen=True)
class Passwords:
    """Read from Vault by the caller; never logged, never on a command line."""

    superuser: str
    replication: str
    rewind: str
    rest_api: str

    def __repr__(self) -> str:
        return "Passwords(<hidden>)"


@dataclass(frozen=True)
class Archive:
    """The cluster's pgBackRest stanza; the repository itself is pgbackrest.conf's business
    (`pgbackrest_conf`: the S3 bucket on the backup host in an environment, a shared
    directory in the tests)."""

    stanza: str
    timeout_seconds: int = 60  # archive_timeout: a quiet primary still ships a segment

    def argv(self, *args: str) -> list[str]:
        """A pgBackRest command on this stanza."""
        return ["pgbackrest", f"--stanza={self.stanza}", *args]

    def pgbackrest(self, *args: str) -> str:
        """The same as one line of Patroni's and PostgreSQL's settings."""
        return " ".join(self.argv(*args))


def pgbackrest_conf(archive: Archive, repository: dict[str, str]) -> str:
    """pgbackrest.conf for a member: `repository` holds the `repo1-*` options. Holds the
    repository's keys when it is S3: written 0600 for the postgres user, like patroni.yml."""
    lines = ["[global]", *(f"{k}={v}" for k, v in repository.items()),
             "log-level-console=warn", "log-level-file=off", "start-fast=y", "",
             f"[{archive.stanza}]", f"pg1-path={DATA_DIR}", f"pg1-socket-path={SOCKET_DIR}", ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class TlsFiles:
    """Where a container finds the cluster's CA certificate, its own certificate and its key
    (each mounted read-only; the key 0600 for the process's user)."""

    ca: str
    cert: str
    key: str


# etcd speaks mutual TLS only, to its peers and to its clients, with the cluster's own CA
# (ops.secrets.tls.certificate_authority): whoever can write etcd can name the leader, so an
# address on the network is not enough, a certificate the CA signed is needed.
ETCD_TLS = TlsFiles("/etc/etcd/tls/ca.crt", "/etc/etcd/tls/member.crt", "/etc/etcd/tls/member.key")
PATRONI_ETCD_TLS = TlsFiles("/etc/patroni/tls/ca.crt", "/etc/patroni/tls/etcd-client.crt",
                            "/etc/patroni/tls/etcd-client.key")


def etcd_environment(cluster: Cluster, node: Node) -> dict[str, str]:
    """etcd's configuration for one member, as the variables etcd reads at start."""
    peers = ",".join(f"{n.name}=https://{n.address}:{ETCD_PEER_PORT}" for n in cluster.etcd)
    return {
        "ETCD_NAME": node.name,
        "ETCD_DATA_DIR": "/var/lib/etcd/data",
        "ETCD_LISTEN_PEER_URLS": f"https://0.0.0.0:{ETCD_PEER_PORT}",
        "ETCD_LISTEN_CLIENT_URLS": f"https://0.0.0.0:{ETCD_CLIENT_PORT}",
        "ETCD_ADVERTISE_CLIENT_URLS": f"https://{node.address}:{ETCD_CLIENT_PORT}",
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": f"https://{node.address}:{ETCD_PEER_PORT}",
        "ETCD_INITIAL_CLUSTER": peers,
        "ETCD_TRUSTED_CA_FILE": ETCD_TLS.ca,
        "ETCD_CERT_FILE": ETCD_TLS.cert,
        "ETCD_KEY_FILE": ETCD_TLS.key,
        "ETCD_CLIENT_CERT_AUTH": "true",
        "ETCD_PEER_TRUSTED_CA_FILE": ETCD_TLS.ca,
        "ETCD_PEER_CERT_FILE": ETCD_TLS.cert,
        "ETCD_PEER_KEY_FILE": ETCD_TLS.key,
        "ETCD_PEER_CLIENT_CERT_AUTH": "true",
        "ETCD_INITIAL_CLUSTER_STATE": "new",
        "ETCD_INITIAL_CLUSTER_TOKEN": cluster.scope,
        # one lease renewal of Patroni's must never wait out an election: keep elections short
        "ETCD_HEARTBEAT_INTERVAL": "100",
        "ETCD_ELECTION_TIMEOUT": "1000",
    }


def pg_hba(cluster: Cluster) -> list[str]:
    """Who may connect, and as whom: no rule matches any other address, so PostgreSQL refuses
    it before asking for a password (a leaked password is useless from anywhere else).

    - the members, to each other: streaming replication and pg_basebackup as the replication
      user, pg_rewind as its own login (a rejoining old leader reads the new one);
    - the routers' hosts (a router in a container on a bridge network connects from its
      host's address): every database, every login but replication, password checked;
    - the containers on the member's own host network (`Cluster.local_network`): its
      metrics exporter, and the router where a member is also an app host; every database,
      every login but replication, password checked;
    - the member itself: its socket (pgBackRest, psql in the member's container) and its
      loopback (Patroni's own connections go to `localhost` over TCP, replication included).
    """
    def cidr(node: Node) -> str:
        return str(ip_network(node.address))  # /32, or /128 for an IPv6 address

    loopback = ("127.0.0.1/32", "::1/128")
    return [
        "local all all trust",
        *(f"host all all {net} scram-sha-256" for net in loopback),
        *(f"host replication {REPLICATION_USER} {net} scram-sha-256" for net in loopback),
        *(f"host replication {REPLICATION_USER} {cidr(n)} scram-sha-256" for n in cluster.members),
        *(f"host postgres {REWIND_USER} {cidr(n)} scram-sha-256" for n in cluster.members),
        *(f"host all all {cidr(n)} scram-sha-256" for n in cluster.routers),
        *([f"host all all {ip_network(cluster.local_network)} scram-sha-256"]
          if cluster.local_network else []),
    ]


def archive_parameters(archive: Archive) -> dict[str, str | int]:
    return {"archive_mode": "on", "archive_command": archive.pgbackrest("archive-push", "%p"),
            "archive_timeout": archive.timeout_seconds}


def replica_methods(archive: Archive) -> dict:
    """Patroni's `postgresql` keys that create a replica from the repository first. `--delta`
    reuses what a rebuilt member's data directory still holds; `restore_command` lets a
    replica that fell behind the leader's WAL catch up from the archive.

    `--type=standby`: pgBackRest writes `standby.signal`, the file Patroni writes for a
    replica too. Its default writes `recovery.signal`, and PostgreSQL, finding both, reads
    only the standby one and at promotion removes only that one: the member later led with a
    stale `recovery.signal`, and its next restart ran archive recovery to a new timeline
    (seen in the rolling-restart test after a rebuild and a failover)."""
    return {
        "create_replica_methods": ["pgbackrest", "basebackup"],
        "pgbackrest": {"command": archive.pgbackrest("--delta", "--type=standby", "restore"),
                       "keep_data": True, "no_params": True},
        "recovery_conf": {"restore_command": archive.pgbackrest("archive-get", "%f", '"%p"')},
    }


def dcs_config(cluster: Cluster, archive: Archive | None = None,
               parameters: dict[str, str | int] | None = None) -> dict:
    """The cluster-wide settings Patroni keeps in etcd (what `patronictl show-config` shows).
    `parameters`: PostgreSQL settings over the defaults below (group_data's, once deployed)."""
    return {
        "ttl": cluster.ttl,
        "loop_wait": cluster.loop_wait,
        "retry_timeout": cluster.retry_timeout,
        "maximum_lag_on_failover": cluster.maximum_lag_on_failover,
        "synchronous_mode": cluster.synchronous,
        "synchronous_mode_strict": cluster.synchronous and cluster.synchronous_strict,
        "failsafe_mode": cluster.failsafe,
        "postgresql": {
            "use_pg_rewind": True,
            "use_slots": True,
            "parameters": {
                "wal_level": "replica", "hot_standby": "on", "wal_log_hints": "on",
                # the nightly dumps may read a replica: its queries hold the leader's vacuum
                # back instead of being cancelled by it (ops/render/backup.py)
                "hot_standby_feedback": "on",
                "max_wal_senders": 10, "max_replication_slots": 10,
                "max_connections": 200, "wal_keep_size": "256MB",
                **(archive_parameters(archive) if archive else {}),
                **(parameters or {}),
            },
        },
    }


def patroni_config(cluster: Cluster, node: Node, passwords: Passwords,
                   archive: Archive | None = None) -> dict:
    """patroni.yml for one member, as data (see `patroni_yaml`). `archive`: pgBackRest
    archives from the leader and seeds new replicas (see the module docstring)."""
    return {
        "scope": cluster.scope,
        "name": node.name,
        "restapi": {
            "listen": f"0.0.0.0:{PATRONI_PORT}",
            "connect_address": f"{node.address}:{PATRONI_PORT}",
            # reads (/primary, /replica, /cluster) stay open for the routers' checks; changes
            # (switchover, restart, config) need these credentials
            "authentication": {"username": REST_USER, "password": passwords.rest_api},
        },
        "etcd3": {"hosts": [f"{n.address}:{ETCD_CLIENT_PORT}" for n in cluster.etcd],
                  "protocol": "https", "cacert": PATRONI_ETCD_TLS.ca,
                  "cert": PATRONI_ETCD_TLS.cert, "key": PATRONI_ETCD_TLS.key},
        "bootstrap": {
            # written to etcd once, by the member that initialises the cluster; later changes
            # go through `patronictl edit-config` (ops.dbha.maintenance), never this file
            "dcs": dcs_config(cluster, archive),
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
            "pg_hba": pg_hba(cluster),
        },
        "postgresql": {
            "listen": f"0.0.0.0:{POSTGRES_PORT}",
            "connect_address": f"{node.address}:{POSTGRES_PORT}",
            "data_dir": DATA_DIR,
            "bin_dir": BIN_DIR,
            "pgpass": "/tmp/pgpass",
            "authentication": {
                "superuser": {"username": SUPERUSER, "password": passwords.superuser},
                "replication": {"username": REPLICATION_USER,
                                "password": passwords.replication},
                "rewind": {"username": REWIND_USER, "password": passwords.rewind},
            },
            "pg_hba": pg_hba(cluster),
            **(replica_methods(archive) if archive else {}),
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False,
                 "nosync": False},
    }


def patroni_yaml(cluster: Cluster, node: Node, passwords: Passwords,
                 archive: Archive | None = None) -> str:
    head = f"# Patroni member {node.name} of cluster {cluster.scope}. Rendered by ops.dbha.\n"
    return head + yamlio.dump(patroni_config(cluster, node, passwords, archive))


def haproxy_cfg(cluster: Cluster) -> str:
    """The leader-following router for an app host (no secret in it)."""
    def servers() -> list[str]:
        return [f"    server {n.name} {n.address}:{POSTGRES_PORT} check port {PATRONI_PORT}"
                for n in cluster.members]

    def listener(name: str, port: int, path: str) -> list[str]:
        return [
            f"listen {name}",
            f"    bind *:{port}",
            # OPTIONS: Patroni answers with the status and no body (a GET's body meets a
            # closed socket: a traceback in Patroni's log per check)
            f"    option httpchk OPTIONS {path}",
            "    http-check expect status 200",
            # 1 s checks, down after 2 misses, back after 1 success; a server marked down
            # has its connections cut (a demoted primary keeps no writer)
            "    default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions",
            *servers(),
            "",
        ]

    return "\n".join([
        f"# PostgreSQL router for the Patroni cluster {cluster.scope}. Rendered by ops.dbha.",
        "global",
        "    maxconn 2000",
        "defaults",
        "    mode tcp",
        "    timeout connect 2s",
        "    timeout client 30m",
        "    timeout server 30m",
        "    timeout check 2s",
        "",
        *listener("primary", ROUTER_PRIMARY_PORT, "/primary"),
        *listener("replicas", ROUTER_REPLICA_PORT, "/replica"),
        # HAProxy's own exporter: which members each listener can route to (ops.dbha.monitoring)
        "frontend metrics",
        "    mode http",
        f"    bind *:{ROUTER_METRICS_PORT}",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "",
    ])
