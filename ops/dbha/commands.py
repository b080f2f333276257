"""Command lines for the cluster's parts, as argv lists (never shell text with a secret in it).

patronictl reads the REST API's credentials from the member's own patroni.yml, so a switchover
needs no password on its command line. Run inside a member's container
(`docker exec <container> ...`: see `in_container`).
"""

from __future__ import annotations

import shlex

from ops.dbha.render import PATRONI_PORT

PATRONI_CONFIG = "/etc/patroni/patroni.yml"
# The Patroni container on a member host: where `on_host` runs patronictl and the REST reads.
MEMBER_CONTAINER = "patroni"
# HAProxy on each app host's superapp network: the services' PostgreSQL, whichever member leads
ROUTER_CONTAINER = "db-router"


def in_container(container: str, argv: list[str], stdin: bool = False) -> list[str]:
    """`stdin`: the command reads its input (a configuration patch) from the caller's."""
    return ["docker", "exec", *(["-i"] if stdin else []), container, *argv]


def on_host(container: str, argv: list[str], stdin_file: str | None = None) -> str:
    """Shell text for a member's host: `argv` inside `container`. `stdin_file`: a file the
    caller uploaded for the command to read (a settings patch), removed whatever the exit;
    the command's exit status is kept."""
    text = shlex.join(in_container(container, argv, stdin=stdin_file is not None))
    if stdin_file is None:
        return text
    path = shlex.quote(stdin_file)
    return f"{text} < {path}; rc=$?; rm -f {path}; exit $rc"


# Patroni is Python, so a member always has python3 (busybox's wget segfaults with -T here)
FETCH = ("import sys, urllib.request; "
         "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2]))"
         ".read().decode())")


def http_get(url: str, timeout_seconds: float = 3) -> list[str]:
    """GET `url` and print the body; exits non-zero on any answer but 200."""
    return ["python3", "-c", FETCH, url, str(timeout_seconds)]


def rest_get(address: str, path: str, timeout_seconds: float = 3) -> list[str]:
    """GET one of Patroni's REST endpoints; exits non-zero on any answer but 200."""
    return http_get(f"http://{address}:{PATRONI_PORT}{path}", timeout_seconds)


def cluster_status(address: str, timeout_seconds: float = 3) -> list[str]:
    """Patroni's `/cluster` document (members, roles, states, timelines, lag) from a member."""
    return rest_get(address, "/cluster", timeout_seconds)


def switchover(leader: str, candidate: str) -> list[str]:
    """A planned switchover: the leader checkpoints, demotes, and the candidate takes over."""
    return ["patronictl", "-c", PATRONI_CONFIG, "switchover", "--leader", leader,
            "--candidate", candidate, "--force"]


def reinit(scope: str, member: str) -> list[str]:
    """Rebuild `member` (a replica): Patroni empties its data directory and creates it again
    by `create_replica_methods` (from the backup repository first), then it streams."""
    return ["patronictl", "-c", PATRONI_CONFIG, "reinit", scope, member, "--force", "--wait"]


def show_config() -> list[str]:
    """The cluster-wide settings Patroni keeps in etcd, as YAML."""
    return ["patronictl", "-c", PATRONI_CONFIG, "show-config"]


def edit_config() -> list[str]:
    """Merge the YAML patch read from stdin into those settings: one write, refused by etcd if
    someone changed them since patronictl read them."""
    return ["patronictl", "-c", PATRONI_CONFIG, "edit-config", "--force", "--quiet",
            "--apply", "-"]


def restart(scope: str, member: str) -> list[str]:
    """Restart `member`'s PostgreSQL through Patroni, only if a setting asks for it; returns
    once it runs again."""
    return ["patronictl", "-c", PATRONI_CONFIG, "restart", scope, member, "--force", "--pending"]


# The cluster's compose project on every host (ops/render/dbha.py PROJECT)
PROJECT = "sa-dbha"
FILES_LABEL = "superapp.dbha-files-sha256"


def observe_parts() -> str:
    """Shell text: one line per container of the cluster's project on this host, `<compose
    service> <docker state> <files digest>` (ops.dbha.plan.parse_observed reads it)."""
    fmt = ('{{.Label "com.docker.compose.service"}} {{.State}} '
           f'{{{{.Label "{FILES_LABEL}"}}}}')
    return shlex.join(["docker", "ps", "-a", "--filter",
                       f"label=com.docker.compose.project={PROJECT}", "--format", fmt])


def etcd_health(address: str, ca: str, cert: str, key: str) -> list[str]:
    """Inside an etcd member: its own endpoint answers healthy (it has a leader, so a quorum),
    asked over mutual TLS with the member's own certificate (etcd's client port accepts no
    other)."""
    return ["etcdctl", f"--endpoints=https://{address}:2379", f"--cacert={ca}",
            f"--cert={cert}", f"--key={key}", "--command-timeout=3s", "endpoint", "health"]


def router_has_primary(metrics_port: int) -> list[str]:
    """Inside the router: HAProxy's own metrics say its `primary` listener has a member to send
    connections to (a router started before the leader's health check passed has none)."""
    return ["sh", "-c", f"busybox wget -q -O - http://127.0.0.1:{metrics_port}/metrics | "
                        "grep -Eq '^haproxy_backend_active_servers\\{proxy=\"primary\"\\} [1-9]'"]
