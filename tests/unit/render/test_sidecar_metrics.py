"""The sidecar metrics job, run for real by bash against a `docker` that prints what
`docker ps -a --format ...` prints; and where the catalog expects sidecars."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ops.render import render_host
from ops.render.files import render_template
from ops.render.secrets import PlaceholderSecrets
from ops.render.sidecar_metrics import CRON_FILE, SCRIPT, expected

PS = """\
payments serve a running Up 2 hours (healthy)
payments worker a running Up 2 hours (healthy)
payments beat a exited Exited (137) 3 minutes ago
taxi reaper b running Up 5 minutes
taxi reaper a running Up 1 second (health: starting)
food worker a running Up 2 hours (unhealthy)
"""


def run_job(tmp_path: Path, ps_output: str) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(f"#!/bin/sh\ncat <<'OUT'\n{ps_output}OUT\n")
    docker.chmod(0o755)
    script = tmp_path / "sidecar_metrics.sh"
    script.write_text(render_template("monitoring/sidecar_metrics.sh.j2", textfile_dir=tmp_path))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run(["bash", str(script)], check=True, env=env, timeout=30)
    assert [p.name for p in tmp_path.glob("superapp_sidecars.prom.*")] == []  # no temp left
    return (tmp_path / "superapp_sidecars.prom").read_text()


def test_each_sidecar_is_up_only_when_running_and_not_unhealthy_or_starting(tmp_path: Path):
    lines = [ln for ln in run_job(tmp_path, PS).splitlines() if not ln.startswith("#")]
    assert lines == [
        'superapp_sidecar_up{service="payments",sidecar="worker",slot="a"} 1',
        'superapp_sidecar_up{service="payments",sidecar="beat",slot="a"} 0',
        'superapp_sidecar_up{service="taxi",sidecar="reaper",slot="b"} 1',
        'superapp_sidecar_up{service="taxi",sidecar="reaper",slot="a"} 0',
        'superapp_sidecar_up{service="food",sidecar="worker",slot="a"} 0',
    ]


def test_no_sidecar_container_writes_an_empty_family(tmp_path: Path):
    text = run_job(tmp_path, "")
    assert "# TYPE superapp_sidecar_up gauge" in text
    assert "superapp_sidecar_up{" not in text


def test_expected_sidecars_follow_the_catalog_and_the_singleton(environments):
    prod = environments["prod"]
    triples = {(x["service"], x["sidecar"], x["host"]) for x in expected(prod)}
    beats = [t for t in triples if t[1] == "beat"]
    assert beats == [("payments", "beat", prod.singleton_hosts["payments.beat"])]
    workers = {t[2] for t in triples if t[1] == "worker"}
    assert workers == {h.name for h in prod.hosts_running("payments")}


def test_only_hosts_with_sidecars_get_the_job(environments):
    local = environments["local"]
    for host in local.hosts:
        paths = {f.path for f in render_host(local, host.name, PlaceholderSecrets())}
        assert ({SCRIPT, CRON_FILE} <= paths) == bool(expected(local, host.name)), host.name
