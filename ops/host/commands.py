"""Pure builders of the shell commands the deploy runs on hosts (Kamal's `commands/` idea).

Each function returns one command string built from argument lists with `shlex.join`, so quoting
lives here and nowhere else, and tests can assert the exact command. Nothing here runs anything.
A command never contains a secret value: secrets travel only inside uploaded files.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Sequence


def sh(*argv: str) -> str:
    return shlex.join(argv)


def chain(*commands: str) -> str:
    """Run commands in order; stop at the first failure."""
    return " && ".join(c for c in commands if c)


def each(*commands: str) -> str:
    """Run every command in order whatever fails; the exit status is the last one's."""
    return " ; ".join(c for c in commands if c)


def in_parallel(*commands: str) -> str:
    """Start every command at once and wait for all of them. The exit status is `wait`'s (0):
    what did not stop shows in the next run's host snapshot, not here."""
    commands = tuple(c for c in commands if c)
    return " & ".join(commands) + " ; wait" if commands else ""


def read_file(path: str) -> str:
    """A small non-secret file's text; nothing (and success) when it is absent."""
    return f"cat {shlex.quote(path)} 2>/dev/null; true"


def make_dirs(dirs: Iterable[tuple[str, int, int]]) -> str:
    """Create missing directories with their mode and owner, in one command.

    An existing directory is left as it is: a data directory belongs to the process that owns
    it by then (PostgreSQL re-owns its own), and re-owning it under a running server breaks it.
    """
    parts = [f"[ -d {shlex.quote(path)} ] || "
             + sh("install", "-d", "-m", f"{mode:o}", "-o", str(uid), "-g", str(uid), path)
             for path, mode, uid in dirs]
    return "; ".join(parts) + "; true" if parts else ""


def private_dir(path: str, uid: int) -> str:
    """A directory only `uid` (and root) may enter: created 0700, or set back to 0700 and that
    owner if it exists (the parent of a secret file must never be 0755)."""
    owner = f"{uid}:{uid}"
    return chain(sh("install", "-d", "-m", "700", "-o", str(uid), "-g", str(uid), path),
                 sh("chmod", "700", path), sh("chown", owner, path))


def install_uploaded(tmp: str, path: str, mode: int, uid: int) -> str:
    """Give an uploaded temp file its mode and owner, then move it into place atomically."""
    return chain(sh("chmod", f"{mode:o}", tmp), sh("chown", f"{uid}:{uid}", tmp),
                 sh("mv", "-f", tmp, path))


def remove_files(paths: Iterable[str]) -> str:
    paths = list(paths)
    return sh("rm", "-f", *paths) if paths else ""


def pull_images(images: Iterable[str]) -> str:
    """Pull every image in parallel; fail if any pull fails."""
    images = sorted(set(images))
    if not images:
        return ""
    pulls = " ".join(f"{sh('docker', 'pull', '-q', i)} >/dev/null & p{n}=$!;"
                     for n, i in enumerate(images))
    waits = " ".join(f"wait $p{n} || rc=1;" for n in range(len(images)))
    return f"rc=0; {pulls} {waits} exit $rc"


def docker_free_mb() -> str:
    """Free megabytes on the filesystem of Docker's data root (where pulled images go)."""
    return ("root=$(docker info --format '{{.DockerRootDir}}' 2>/dev/null) && [ -n \"$root\" ] "
            "&& df -Pm \"$root\" | awk 'NR==2 {print $4}'")


def image_digests(images: Iterable[str]) -> str:
    """`ref repo@sha256:...` per image (the registry digest recorded in the ledger)."""
    images = sorted(set(images))
    return sh("docker", "image", "inspect", "--format",
              "{{index .RepoTags 0}} {{index .RepoDigests 0}}", *images) if images else ""


def compose_up(compose_file: str, services: Sequence[str] = (), profiles: Sequence[str] = (),
               force_recreate: bool = False) -> str:
    argv = ["docker", "compose", "-f", compose_file]
    for p in profiles:
        argv += ["--profile", p]
    argv += ["up", "-d", "--remove-orphans"]
    if force_recreate:
        argv.append("--force-recreate")
    return sh(*argv, *services)


def compose_run(compose_file: str, service: str, argv: Sequence[str],
                env: dict[str, str] | None = None,
                labels: dict[str, str] | None = None) -> str:
    """A one-off container of `service` (same image, env files, network), removed after.
    `labels` override the service's (the central logs name the one-off container by them)."""
    cmd = ["docker", "compose", "-f", compose_file, "run", "--rm", "-T", "--no-deps"]
    for k, v in (env or {}).items():
        cmd += ["-e", f"{k}={v}"]
    for k, v in (labels or {}).items():
        cmd += ["--label", f"{k}={v}"]
    return sh(*cmd, service, *argv) + " 2>&1"


def backup_files(paths: Iterable[str]) -> str:
    """Copy each existing file to `<path>.prev` (mode and owner kept)."""
    return "; ".join(f"if [ -e {shlex.quote(p)} ]; then cp -p {shlex.quote(p)} "
                     f"{shlex.quote(p + '.prev')}; fi" for p in paths) + "; true"


def restore_files(paths: Iterable[str]) -> str:
    """Undo `backup_files`: put `.prev` back, or remove a file that did not exist before."""
    return "; ".join(f"if [ -e {shlex.quote(p + '.prev')} ]; then mv -f "
                     f"{shlex.quote(p + '.prev')} {shlex.quote(p)}; else rm -f {shlex.quote(p)}; fi"
                     for p in paths) + "; true"


def compose_down(project: str, timeout: int | None = None) -> str:
    """Stop and remove a compose project by name (works without its file)."""
    argv = ["docker", "compose", "-p", project, "down", "--remove-orphans"]
    if timeout is not None:
        argv += ["--timeout", str(timeout)]
    return sh(*argv)


def signal_container(container: str, signal: str = "HUP") -> str:
    return sh("docker", "kill", "--signal", signal, container)


def wait_healthy(via: str, urls: dict[str, str], timeout: int, interval: float = 0.5) -> str:
    """Poll each container's health URL from inside the `via` container (the host's Traefik,
    reaching them as its routes will) until all answer or `timeout` passes.

    `urls` maps container name -> URL from `via` (`http://food-b:8000/health`). Prints
    `ok NAME` or `fail NAME` per container and exits 1 if any failed. One SSH command and one
    `docker exec` whatever the count: an exec per container and per round cost a host's swap of
    17 services a second or more of CPU-bound time (`make bench`). Only busybox is assumed in
    `via` (Traefik's image has no other shell), each applet called through it.
    """
    pending = " ".join(f"{n}={u}" for n, u in urls.items())
    script = (
        f"end=$(( $(busybox date +%s) + {int(timeout)} )); pending={shlex.quote(pending)}; "
        "rc=0; while [ -n \"$pending\" ]; do next=''; "
        "for p in $pending; do n=${p%%=*}; "
        # (no wget -T: Debian busybox 1.35 crashes with it; `timeout` bounds the probe instead)
        "if busybox timeout 5 busybox wget -q -O /dev/null \"${p#*=}\" 2>/dev/null; "
        "then echo \"ok $n\"; else next=\"$next $p\"; fi; done; pending=$next; "
        "[ -z \"$pending\" ] && break; "
        "if [ $(busybox date +%s) -ge $end ]; then for p in $pending; do echo \"fail ${p%%=*}\"; "
        f"done; rc=1; break; fi; busybox sleep {interval}; done; exit $rc"
    )
    return sh("docker", "exec", via, "busybox", "sh", "-c", script)


def wait_exec_ok(checks: dict[str, Sequence[str]], timeout: int, interval: float = 1) -> str:
    """Run each container's check command inside it until all succeed or `timeout` passes.

    For servers whose readiness is not an HTTP URL (PostgreSQL, Redis). Prints `ok NAME` or
    `fail NAME` per container and exits 1 if any failed. One SSH command whatever the count.
    """
    names = " ".join(shlex.quote(n) for n in checks)
    probe = "; ".join(
        f"[ \"$c\" = {shlex.quote(n)} ] && ok=$(timeout 10 docker exec {shlex.quote(n)} "
        f"{' '.join(shlex.quote(a) for a in argv)} >/dev/null 2>&1 && echo 1)"
        for n, argv in checks.items())
    return (
        f"end=$(( $(date +%s) + {int(timeout)} )); pending={shlex.quote(names)}; rc=0; "
        "while [ -n \"$pending\" ]; do next=''; "
        "for c in $pending; do ok=''; " + probe + "; "
        "if [ -n \"$ok\" ]; then echo \"ok $c\"; else next=\"$next $c\"; fi; done; "
        "pending=$next; [ -z \"$pending\" ] && break; "
        "if [ $(date +%s) -ge $end ]; then for c in $pending; do echo \"fail $c\"; done; "
        f"rc=1; break; fi; sleep {interval}; done; exit $rc"
    )


def run_sql_file(container: str, path: str) -> str:
    """psql as the superuser inside `container` (local socket, trust), reading the script at
    `path` on the host from stdin: no statement or value on any command line."""
    return (sh("docker", "exec", "-i", container, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
               "-h", "/var/run/postgresql", "-U", "postgres", "-d", "postgres", "-f", "-")
            + f" < {shlex.quote(path)} 2>&1")


def redis_acl_load(container: str, path: str) -> str:
    """Load the Redis users: redis-cli inside `container` reads its commands from the
    root-only file at `path` on stdin, so no password is on any command line. redis-cli exits
    0 even when the server refuses a command: this fails unless every reply is OK, printing
    the refusals (a reply never echoes an AUTH argument).

    The file starts with one AUTH line per admin password (the new one, then, while a change
    rolls out, the one it replaces: ops/render/redis_acl.py). Each is tried alone, in order;
    the users are sent after the first the server accepts. When it accepts none, the admin
    password changed in Vault alone: the running server cannot be told, so the container
    restarts and loads its users from the new aclfile (connected clients reconnect; the data
    is kept). The users are never sent unauthenticated: Redis closes a connection that sends an
    unauthenticated command of more than 10 arguments, and `docker exec` hands redis-cli's
    "Server closed the connection" (stderr) and the WRONGPASS reply (stdout) over in either
    order, which once made the restart depend on a race."""
    cli = sh("docker", "exec", "-i", container, "redis-cli")
    file = shlex.quote(path)
    each_line = "printf '%s\\n' \"$out\""
    return (f"ok=; for n in $(grep -n '^AUTH ' {file} | cut -d: -f1); do "
            f'auth=$(sed -n "${{n}}p" {file} | {cli} 2>&1); '
            f'if [ "$auth" = OK ]; then ok=$n; break; fi; done; '
            f'if [ -n "$ok" ]; then out=$({{ sed -n "${{ok}}p" {file}; '
            f"grep -v '^AUTH ' {file}; }} | {cli} 2>&1); "
            f'if [ -n "$out" ] && ! {each_line} | grep -qvx OK; then '
            f'echo "redis users loaded: $({each_line} | wc -l) command(s), all OK"; '
            f"else {each_line} | grep -vx OK | head -5; exit 1; fi; "
            f"elif printf '%s\\n' \"$auth\" | grep -q '^WRONGPASS'; then "
            f"{sh('docker', 'restart', container)} >/dev/null && "
            'echo "redis: the admin password changed: restarted to load its users"; '
            f"else printf '%s\\n' \"$auth\" | head -5; exit 1; fi")


def count_tables(container: str, database: str) -> str:
    """The number of user tables in `database` (psql as the superuser inside `container`)."""
    query = ("SELECT count(*) FROM pg_tables "
             "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
    return sh("docker", "exec", container, "psql", "-X", "-Atq", "-v", "ON_ERROR_STOP=1",
              "-h", "/var/run/postgresql", "-U", "postgres", "-d", database,
              "-c", query) + " 2>&1"


def container_logs_tail(container: str, lines: int = 30) -> str:
    return f"{sh('docker', 'logs', '--tail', str(lines), container)} 2>&1"


def read_log_store(service_dir: str, offsets: dict[str, int], grep: str = "",
                   mark: str = "##superapp-log-file ") -> str:
    """Each day file of a service in the central log store (name -> byte offset to start
    from), after a `<mark><name> <size>` line; only the bytes up to that size are read, so the
    next read starts exactly there (follow). `grep`: fixed-string filter on the stored line.
    No such service directory: one `<mark with "missing"><what the store has>` line."""
    parent = shlex.quote(service_dir.rsplit("/", 1)[0])
    parts = [f"cd {shlex.quote(service_dir)} 2>/dev/null || "
             f"{{ printf '%s' {shlex.quote(mark.replace('file', 'missing'))}; "
             f"ls {parent} 2>/dev/null | tr '\\n' ' '; echo; exit 0; }}"]
    for name, offset in offsets.items():
        q = shlex.quote(name)
        filt = f" | grep -a -F -e {shlex.quote(grep)}" if grep else ""
        parts.append(
            f"if [ -f {q} ]; then size=$(stat -c %s {q}); "
            f"printf '%s\\n' {shlex.quote(mark + name)}\" $size\"; "
            f"tail -c +{int(offset) + 1} {q} | head -c $((size - {int(offset)})){filt}; fi")
    return "; ".join(parts) + "; true"


def traefik_metrics(traefik: str, metrics_url: str) -> str:
    """Traefik's Prometheus metrics, read from inside its container."""
    return f"docker exec {shlex.quote(traefik)} busybox wget -q -O - {shlex.quote(metrics_url)}"


def server_up_line(service: str, url: str) -> str:
    """The metrics line by which Traefik says it serves `url` for a file-provider service
    (`traefik_service_server_up`, reported once the service's health check saw it up)."""
    return f'traefik_service_server_up{{service="{service}@file",url="{url}"}} 1'


def wait_traefik_serving(traefik: str, metrics_url: str, servers: dict[str, str],
                         timeout: int = 30, settle: int = 0) -> str:
    """Wait until Traefik reports, for every service -> server URL, that it serves that server.

    Proof that traffic moved, where a reload counter only says some file was read: the file
    provider throttles reloads, and a server is up only once Traefik loaded the file naming it
    and its health check passed. A read that is empty or not Prometheus text never counts as
    "up": after `timeout` the command fails and says which services were not served, or that
    the metrics could not be read. `settle` seconds pass first, unread: after a route file is
    put back, Traefik may still serve the file it replaces and report a stale `up` line.
    """
    unreadable = shlex.quote(f"could not read Traefik metrics at {metrics_url} (empty or not "
                             "Prometheus text)")
    checks = " ".join(
        f"printf '%s\\n' \"$m\" | grep -qxF {shlex.quote(server_up_line(s, u))} || "
        f"pending=\"$pending {s}\";" for s, u in sorted(servers.items()))
    return (
        (f"sleep {int(settle)}; " if settle else "")
        + f"end=$(( $(date +%s) + {int(timeout)} )); while :; do "
        f"m=$({traefik_metrics(traefik, metrics_url)} 2>/dev/null); pending=''; "
        "if printf '%s\\n' \"$m\" | grep -q '^traefik_'; then readable=1; " + checks + " "
        "else readable=0; fi; "
        "if [ $readable = 1 ] && [ -z \"$pending\" ]; then exit 0; fi; "
        "if [ $(date +%s) -ge $end ]; then if [ $readable = 0 ]; then "
        f"echo {unreadable}; "
        "else echo \"Traefik does not serve the new server of:$pending\"; fi; exit 1; fi; "
        "sleep 0.3; done"
    )


def append_json_line(path: str, record: dict) -> str:
    """Append a non-secret record as one JSON line and flush it to disk before saying so.

    One `write` of the whole line (`printf` with a single argument) in append mode, so two
    writers never interleave within a line; `sync` on the file makes it survive a power loss.
    Fails (non-zero) when the file cannot be written, so the caller can say which host.
    """
    line = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return f"printf '%s\\n' {shlex.quote(line)} >> {shlex.quote(path)} && {sh('sync', '--', path)}"


def write_json_file(path: str, record: dict) -> str:
    """Write a non-secret record as a JSON file, atomically (a temp file renamed over it)."""
    line = json.dumps(record, sort_keys=True, separators=(",", ":"))
    tmp = f"{path}.tmp"
    return f"printf '%s\\n' {shlex.quote(line)} > {shlex.quote(tmp)} && {sh('mv', '-f', tmp, path)}"
