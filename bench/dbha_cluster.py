"""A Patroni cluster on one testbed host's Docker engine, from ops.dbha's rendered files: what
tests/integration/test_db_ha.py injects faults into and bench/dbha.py measures.

Three etcd members, two Patroni members and an HAProxy router, each its own container on a
private Docker network of the host (`sa-dbha`) at a fixed address, like a host. Faults
are real: a member's container SIGKILLed (the process tree of a db host dies), or cut off the
network (`docker network disconnect`: the host's link is gone, its processes keep running).

pgBackRest archives from whichever member leads into a repository on a Docker volume both
members mount (`sa-dbha-repo`: a posix repository standing in for the environment's S3 bucket;
the archiving and restoring are the same, only pgbackrest.conf's `repo1-*` lines differ); the
stanza and a first full backup are made once the cluster is healthy.

etcd speaks mutual TLS only (ops.dbha.render `ETCD_TLS`): a CA made for this cluster signs each
etcd member's certificate and each Patroni's client certificate.

Secret files (patroni.yml, the writer's password, the TLS keys) reach the host on SSH's stdin
into 0600 files; no password or key is on any command line.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from ops import yamlio
from ops.catalog import load_environment
from ops.dbha import commands
from ops.dbha.model import Cluster, cluster_from_settings
from ops.dbha.render import (
    ETCD_TLS,
    PATRONI_ETCD_TLS,
    PATRONI_PORT,
    ROUTER_METRICS_PORT,
    Archive,
    Passwords,
    TlsFiles,
    etcd_environment,
    haproxy_cfg,
    patroni_yaml,
    pgbackrest_conf,
)
from ops.dbha.status import ClusterState, parse_cluster
from ops.render.compose import hardened
from ops.secrets.tls import certificate_authority, issue, split_bundle

NETWORK = "sa-dbha"
# Fixed addresses, like real hosts: a name would go through Docker's DNS, which forwards the
# name of a killed container to resolvers this testbed cannot reach (seconds of timeouts that
# no production host has).
SUBNET = "172.31.231.0/24"
DIR = "/var/lib/superapp-dbha-test"
MEMBERS = ("pg1", "pg2")
ETCD = ("etcd1", "etcd2", "etcd3")
ROUTER = "router"
WRITER = "writer"
REPO_VOLUME = "sa-dbha-repo"
REPO_PATH = "/var/lib/pgbackrest"
ARCHIVE = Archive(stanza="superapp", timeout_seconds=60)

# How the writer counts: one INSERT per 20 ms in autocommit, through the router; an id is
# "acknowledged" only when COMMIT returned. It prints every acknowledged id and the time of
# every failed attempt. psycopg2 is in the base image.
WRITER_SCRIPT = r"""
import json, os, sys, time
import psycopg2
duration = float(sys.argv[1])
dsn = "host=" + os.environ["ROUTER"] + " port=5432 dbname=postgres user=postgres connect_timeout=2"
acked, failed = [], []
conn = None
i = 0
t0 = time.time()
while time.time() - t0 < duration:
    i += 1
    now = time.time()
    try:
        if conn is None:
            conn = psycopg2.connect(dsn)
            conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = '3s'")
            cur.execute("INSERT INTO ha_probe (id) VALUES (%s)", (i,))
        acked.append([i, now])
    except Exception:
        failed.append(now)
        try:
            conn.close()
        except Exception:
            pass
        conn = None
        time.sleep(0.1)
    time.sleep(0.02)
print(json.dumps({"acked": acked, "failed": failed}))
"""


# A GET to etcd trusting only the cluster CA (argv: url, CA file[, certificate, key]).
ETCD_GET = ("import ssl, sys, urllib.request as u; "
            "c = ssl.create_default_context(cafile=sys.argv[2]); "
            "len(sys.argv) > 3 and c.load_cert_chain(sys.argv[3], sys.argv[4]); "
            "sys.stdout.write(u.urlopen(sys.argv[1], context=c, timeout=3).read().decode())")


# One payment per transaction, like the payments service's ledger insert.
PAYMENTS_SCRIPT = """\\set amount random(1, 1000000)
INSERT INTO bench_payments (account, amount, note) VALUES (:client_id, :amount, 'payment');
"""


@dataclass
class Writes:
    acked: list[tuple[int, float]]
    failed: list[float]

    @property
    def outage_seconds(self) -> float:
        """From the first failed write to the first acknowledged one after the last failure."""
        if not self.failed:
            return 0.0
        last = max(self.failed)
        after = [t for _, t in self.acked if t > last]
        return (min(after) if after else last) - min(self.failed)


class ContainerMembers:
    """ops.dbha.maintenance's way into this cluster: each member is its container."""

    def __init__(self, db: DbCluster):
        self.db = db

    def run(self, member: str, argv: list[str], stdin: str = "") -> tuple[int, str]:
        res = self.db.sh(shlex.join(commands.in_container(member, argv, stdin=bool(stdin))),
                         check=False, timeout=180, stdin=stdin)
        return res.returncode, res.stdout + res.stderr

    def state(self) -> ClusterState:
        try:
            return self.db.state()
        except AssertionError as exc:  # no member answers /cluster: maintenance waits on
            raise OSError(str(exc)) from None


class HostRemote:
    """ops.host.remote's `Remote` over the testbed host's SSH (what ops.dbha.hosts drives in
    an environment through pyinfra's connections); uploads go through stdin into 0600 files."""

    def __init__(self, db: DbCluster, name: str = "host2"):
        self.db, self.name = db, name

    def run(self, command: str, timeout: int | None = None) -> tuple[bool, str, str]:
        res = self.db.sh(command, check=False, timeout=timeout or 180)
        return res.returncode == 0, res.stdout, res.stderr

    def put(self, content: bytes, path: str) -> bool:
        self.db.put(path, content.decode())
        return True

    def run_fresh(self, command: str, timeout: int) -> tuple[bool, str, str]:
        return self.run(command, timeout)


def hardened_flags(uid: int) -> str:
    """`docker run`'s form of the compose settings `hardened()` gives a container."""
    h = hardened(f"{uid}:{uid}")
    return " ".join([f"-u {h['user']}", *(["--read-only"] if h["read_only"] else []),
                     *(f"--tmpfs {t}" for t in h["tmpfs"]),
                     *(f"--cap-drop {c}" for c in h["cap_drop"]),
                     *(f"--security-opt {o}" for o in h["security_opt"])])


class DbCluster:
    """`ssh_argv(command)`: the argv that runs a shell command on the testbed host."""

    def __init__(self, ssh_argv: Callable[[str], list[str]], image_prefix: str,
                 replication: str = "synchronous"):
        self.ssh_argv = ssh_argv
        # the environments' own images of the parts (group_data infra_images)
        settings_of_local = load_environment("local").settings
        infra = settings_of_local["infra_images"]
        # etcd and HAProxy run as ops/render/dbha.py runs them: their image's own user, a
        # read-only root filesystem, no capability
        self.uids = {n: settings_of_local["data_uids"][n] for n in ("etcd", "haproxy")}
        self.images = {name: f"{image_prefix}/{infra[name]}"
                       for name in ("patroni", "etcd", "haproxy")}
        self.passwords = Passwords(superuser=secrets.token_urlsafe(24),
                                   replication=secrets.token_urlsafe(24),
                                   rewind=secrets.token_urlsafe(24),
                                   rest_api=secrets.token_urlsafe(24))
        settings = {"scope": "superapp", "members": list(MEMBERS), "etcd": list(ETCD),
                    "replication": replication, "ttl_seconds": 10, "loop_wait_seconds": 2,
                    "retry_timeout_seconds": 4}
        self.addresses = {name: f"172.31.231.{10 + i}"
                          for i, name in enumerate((*ETCD, *MEMBERS, ROUTER, WRITER))}
        self.cluster: Cluster = cluster_from_settings(
            settings, self.addresses, routers=(ROUTER,), source="tests/integration")
        # etcd's own CA: it signs each etcd member's certificate and each Patroni's client one
        self.ca = certificate_authority(f"{self.cluster.scope} etcd CA")

    # -- plumbing ---------------------------------------------------------------------------
    def sh(self, command: str, check: bool = True, timeout: float = 120, stdin: str = ""):
        res = subprocess.run(self.ssh_argv(command), input=stdin, capture_output=True,
                             text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"`{command}` exited {res.returncode}:\n"
                                 f"{res.stdout}\n{res.stderr}")
        return res

    def put(self, path: str, text: str, owner: str = "0") -> None:
        """A 0600 file written from stdin: the content never reaches a command line."""
        self.sh(f"umask 077 && mkdir -p {shlex.quote(path.rsplit('/', 1)[0])} && "
                f"cat > {shlex.quote(path)} && chown {owner} {shlex.quote(path)}", stdin=text)

    def put_tls(self, name: str, files: TlsFiles, owner: str) -> str:
        """The CA certificate, `name`'s certificate and its key (0600, `owner`) on the host;
        returns the `-v` options that mount them where `files` says."""
        key, cert = split_bundle(issue(self.ca, name, [self.addresses[name]]))
        mounts = []
        for text, inside in ((split_bundle(self.ca)[1], files.ca), (cert, files.cert),
                             (key, files.key)):
            path = f"{DIR}/tls/{name}-{inside.rsplit('/', 1)[1]}"
            self.put(path, text, owner=owner)
            mounts.append(f"-v {path}:{inside}:ro")
        return " ".join(mounts)

    def net(self, name: str) -> str:
        return f"--network {NETWORK} --ip {self.addresses[name]}"

    def image(self, name: str) -> str:
        return self.images[name]

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self.remove()
        self.sh(f"docker network create --subnet {SUBNET} {NETWORK} >/dev/null && "
                f"mkdir -p {DIR} && chmod 700 {DIR}")
        pg_uid = self.sh(f"docker run --rm {self.image('patroni')} id -u postgres").stdout.strip()
        for node in self.cluster.etcd:
            env = " ".join(f"-e {k}={shlex.quote(v)}"
                           for k, v in etcd_environment(self.cluster, node).items())
            tls = self.put_tls(node.name, ETCD_TLS, owner=str(self.uids["etcd"]))
            # its data in a volume of its own, which starts as the image's directory (owned
            # by etcd, 0700) and outlives a stopped member
            self.sh(f"docker run -d --name {node.name} {self.net(node.name)} {env} {tls} "
                    f"-v {node.name}-data:/var/lib/etcd {hardened_flags(self.uids['etcd'])} "
                    f"{self.image('etcd')} >/dev/null")
        self.sh(f"docker volume create {REPO_VOLUME} >/dev/null && docker run --rm -u 0 "
                f"-v {REPO_VOLUME}:{REPO_PATH} {self.image('patroni')} "
                f"sh -c 'chown postgres: {REPO_PATH} && chmod 700 {REPO_PATH}'")
        self.put(f"{DIR}/pgbackrest.conf", pgbackrest_conf(ARCHIVE, {"repo1-path": REPO_PATH,
                                                                     "repo1-retention-full": "2"}),
                 owner=pg_uid)
        for node in self.cluster.members:
            conf = f"{DIR}/{node.name}.yml"
            self.put(conf, patroni_yaml(self.cluster, node, self.passwords, ARCHIVE),
                     owner=pg_uid)
            tls = self.put_tls(node.name, PATRONI_ETCD_TLS, owner=pg_uid)
            self.sh(f"docker run -d --name {node.name} {self.net(node.name)} {tls} "
                    f"-v {conf}:{commands.PATRONI_CONFIG}:ro "
                    f"-v {DIR}/pgbackrest.conf:/etc/pgbackrest/pgbackrest.conf:ro "
                    f"-v {REPO_VOLUME}:{REPO_PATH} {self.image('patroni')} >/dev/null")
        self.put(f"{DIR}/haproxy.cfg", haproxy_cfg(self.cluster))
        self.sh(f"chmod 644 {DIR}/haproxy.cfg && docker run -d --name {ROUTER} "
                f"{self.net(ROUTER)} -v {DIR}/haproxy.cfg:/etc/haproxy/haproxy.cfg:ro "
                f"{hardened_flags(self.uids['haproxy'])} {self.image('haproxy')} >/dev/null")
        self.put(f"{DIR}/writer.env", f"PGPASSWORD={self.passwords.superuser}\n")
        self.put(f"{DIR}/writer.py", WRITER_SCRIPT)
        self.sh(f"chmod 644 {DIR}/writer.py")
        leader = self.wait_healthy(timeout=120).leader
        assert leader is not None
        self.pgbackrest(leader.name, "stanza-create")
        self.pgbackrest(leader.name, "--type=full", "backup", timeout=300)
        self.psql("CREATE TABLE IF NOT EXISTS ha_probe (id bigint PRIMARY KEY, "
                  "at timestamptz DEFAULT now())")

    def remove(self) -> None:
        names = " ".join((WRITER, ROUTER, *MEMBERS, *ETCD))
        self.sh(f"docker rm -f {names} >/dev/null 2>&1; docker network rm {NETWORK} "
                f">/dev/null 2>&1; docker volume rm {REPO_VOLUME} "
                f"{' '.join(f'{n}-data' for n in ETCD)} >/dev/null 2>&1; "
                f"rm -rf {DIR}", check=False)

    # -- reading the cluster ----------------------------------------------------------------
    def state(self, via: str | None = None) -> ClusterState:
        """`/cluster` from a member's REST API (the first that answers)."""
        for name in ([via] if via else MEMBERS):
            res = self.sh(shlex.join(commands.in_container(
                name, commands.cluster_status("127.0.0.1"))), check=False, timeout=30)
            if res.returncode == 0 and res.stdout.strip():
                return parse_cluster(res.stdout)
        raise AssertionError("no Patroni member answers /cluster")

    def refusal(self, via: str | None = None) -> str | None:
        return self.state(via).deploy_refusal(self.cluster.scope, MEMBERS)

    def wait_healthy(self, timeout: float, expect_members: int = 2) -> ClusterState:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                st = self.state()
                last = st
                # synchronous replication: healthy once a standby is the synchronous one
                synced = (not self.cluster.synchronous
                          or any(m.role == "sync_standby" for m in st.members))
                if (st.deploy_refusal("superapp", MEMBERS) is None
                        and len(st.members) == expect_members and synced):
                    return st
            except AssertionError as exc:
                last = exc
            time.sleep(1)
        raise AssertionError(f"the cluster is not healthy after {timeout} s: {last}\n"
                             + self.logs())

    def logs(self) -> str:
        out = []
        for name in (*MEMBERS, ROUTER):
            res = self.sh(f"docker logs --tail 15 {name} 2>&1", check=False)
            out.append(f"--- {name}\n{res.stdout}")
        return "\n".join(out)

    def psql(self, sql: str) -> str:
        """One statement as the superuser through the router (password from the env file)."""
        res = self.sh(f"docker run --rm --network {NETWORK} --env-file {DIR}/writer.env "
                      f"{self.image('patroni')} psql -h {self.addresses[ROUTER]} -U postgres "
                      f"-d postgres -Atc {shlex.quote(sql)}", timeout=60)
        return res.stdout.strip()

    def metrics(self, name: str) -> str:
        """The Prometheus metrics `name` serves (a member's Patroni, or the router's HAProxy),
        fetched from inside the first member (the network is the host's private one)."""
        port = ROUTER_METRICS_PORT if name == ROUTER else PATRONI_PORT
        return self.sh(shlex.join(commands.in_container(MEMBERS[0], commands.http_get(
            f"http://{self.addresses[name]}:{port}/metrics")))).stdout

    def etcd_get(self, path: str, scheme: str = "https", client_cert: bool = True):
        """GET `path` from the first etcd member, from inside the first Patroni member, with
        that member's client certificate or without one (trusting the cluster CA either way)."""
        files = PATRONI_ETCD_TLS
        argv = ["python3", "-c", ETCD_GET, f"{scheme}://{self.addresses[ETCD[0]]}:2379{path}",
                files.ca, *((files.cert, files.key) if client_cert else ())]
        return self.sh(shlex.join(commands.in_container(MEMBERS[0], argv)), check=False,
                       timeout=30)

    def psql_elsewhere(self, member: str, sql: str):
        """The same statement and password, straight to `member` from an address of the
        network that is neither a member nor the router (Docker picks it)."""
        return self.sh(f"docker run --rm --network {NETWORK} --env-file {DIR}/writer.env "
                       f"{self.image('patroni')} psql -h {self.addresses[member]} -U postgres "
                       f"-d postgres -Atc {shlex.quote(sql)}", check=False, timeout=60)

    # -- load -------------------------------------------------------------------------------
    def start_writer(self, seconds: float) -> None:
        self.sh(f"docker rm -f {WRITER} >/dev/null 2>&1; docker run -d --name {WRITER} "
                f"{self.net(WRITER)} --env-file {DIR}/writer.env -v {DIR}/writer.py:/w.py:ro "
                f"-e ROUTER={self.addresses[ROUTER]} {self.image('patroni')} "
                f"python3 /w.py {seconds} >/dev/null")

    def writer_result(self) -> Writes:
        self.sh(f"docker wait {WRITER} >/dev/null", timeout=300)
        out = self.sh(f"docker logs {WRITER} 2>/dev/null").stdout
        doc = json.loads(out.strip().splitlines()[-1])
        self.psql("SELECT 1")  # the router answers again
        return Writes(acked=[(i, t) for i, t in doc["acked"]], failed=doc["failed"])

    def insert_tps(self, seconds: int, clients: int) -> float:
        """pgbench through the router: payments-like single-row INSERTs, one per transaction."""
        self.psql("CREATE TABLE IF NOT EXISTS bench_payments (id bigserial PRIMARY KEY, "
                  "account int, amount bigint, note text, at timestamptz DEFAULT now())")
        self.put(f"{DIR}/payments.sql", PAYMENTS_SCRIPT)
        self.sh(f"chmod 644 {DIR}/payments.sql")
        out = self.sh(f"docker run --rm --network {NETWORK} --env-file {DIR}/writer.env "
                      f"-v {DIR}/payments.sql:/payments.sql:ro {self.image('patroni')} "
                      f"pgbench -h {self.addresses[ROUTER]} -U postgres -n -c {clients} -j 2 "
                      f"-T {seconds} -f /payments.sql postgres", timeout=seconds + 120).stdout
        match = re.search(r"tps = ([0-9.]+)", out)
        if not match:
            raise AssertionError(f"pgbench printed no tps:\n{out}")
        self.psql("DROP TABLE bench_payments")
        return float(match.group(1))

    def lost_rows(self, writes: Writes) -> int:
        """Acknowledged ids the current leader does not have (RPO, in rows)."""
        ids = {int(x) for x in self.psql("SELECT id FROM ha_probe").split()}
        return sum(1 for i, _ in writes.acked if i not in ids)

    def truncate(self) -> None:
        self.psql("TRUNCATE ha_probe")

    def cut(self, name: str) -> None:
        self.sh(f"docker network disconnect {NETWORK} {name}")

    def reconnect(self, name: str) -> None:
        self.sh(f"docker network connect --ip {self.addresses[name]} {NETWORK} {name}")

    def pgbackrest(self, member: str, *args: str, check: bool = True, timeout: float = 120):
        """pgBackRest as postgres inside `member` (`check`: archiving works from there)."""
        return self.sh(shlex.join(["docker", "exec", "-u", "postgres", member,
                                   *ARCHIVE.argv(*args)]),
                       check=check, timeout=timeout)

    def reinit(self, member: str):
        return self.sh(shlex.join(commands.in_container(
            member, commands.reinit(self.cluster.scope, member))), timeout=300)

    def member_sql(self, member: str, sql: str) -> str:
        """One statement on `member` itself (its local socket), leader or replica."""
        return self.sh(shlex.join(["docker", "exec", "-u", "postgres", member, "psql", "-X",
                                   "-Atc", sql]), timeout=60).stdout.strip()

    def switchover(self, leader: str, candidate: str, check: bool = True):
        return self.sh(shlex.join(commands.in_container(
            leader, commands.switchover(leader, candidate))), check=check, timeout=90)

    def primary_is(self, name: str) -> bool:
        """Asked of the member itself (REST `/primary`): works without etcd."""
        res = self.sh(shlex.join(commands.in_container(
            name, commands.rest_get("127.0.0.1", "/primary"))), check=False)
        return res.returncode == 0

    def dcs_config(self) -> dict:
        return yamlio.load(self.sh(shlex.join(commands.in_container(
            MEMBERS[0], ["patronictl", "-c", commands.PATRONI_CONFIG, "show-config"]))).stdout)
