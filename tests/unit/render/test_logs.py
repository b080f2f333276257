"""ops.render.logs: a shipper on every host, the store on the monitoring host, every container's
log lines labelled for them, configs that rsyslog itself accepts."""

from __future__ import annotations

import json
import shutil
import subprocess

import yaml

from ops.render import PlaceholderSecrets, render_host
from ops.render.files import render_template
from ops.render.logs import (
    HEARTBEAT_CRON,
    HEARTBEAT_MARKER,
    HEARTBEAT_METRICS_CRON,
    HEARTBEAT_METRICS_SCRIPT,
    HEARTBEAT_SCRIPT,
    HEARTBEAT_SERVICE,
    LOG_LABELS,
    RETENTION_CRON,
    SHIPPER_CONF,
    SHIPPER_CONTAINER,
    STORE_CONF,
    STORE_CONTAINER,
)
from ops.validate import RSYSLOGD_PATHS, find_tool


def compose_files(environment, host):
    return {f.path: yaml.safe_load(f.content)
            for f in render_host(environment, host, PlaceholderSecrets())
            if f.path.startswith("/opt/superapp/compose/")}


def test_every_host_ships_and_only_the_monitoring_host_stores(environments):
    for env in environments.values():
        for h in env.hosts:
            files = {f.path: f for f in render_host(env, h.name, PlaceholderSecrets())}
            edge = yaml.safe_load(files["/opt/superapp/compose/edge.yml"].content)
            assert SHIPPER_CONTAINER in edge["services"], (env.name, h.name)
            assert files[SHIPPER_CONF].unit == "edge"
            conf = files[SHIPPER_CONF].content
            assert f'target="{env.monitoring_host.address}" port="{env.settings["logs"]["port"]}"' \
                in conf
            assert f'$!out!host = "{h.name}"' in conf
            stores = STORE_CONF in files
            assert stores == h.has_role("monitoring") == (RETENTION_CRON in files)


def test_every_container_labels_its_lines_for_the_shipper(environments):
    for env in environments.values():
        for h in env.hosts:
            for path, doc in compose_files(env, h.name).items():
                for key, c in doc["services"].items():
                    opts = c["logging"]["options"]
                    assert c["logging"]["driver"] == "json-file"  # `docker logs` keeps working
                    assert opts["labels"].split(",") == list(LOG_LABELS), (path, key)
                    assert c["labels"]["superapp.service"] and c["labels"]["superapp.container"]
                    assert c["labels"]["superapp.container"] == c["container_name"], (path, key)


def test_a_changed_shipper_config_recreates_the_shipper(environments):
    env = environments["local"]
    before = compose_files(env, "host1")["/opt/superapp/compose/edge.yml"]
    changed = env.__class__(**{**env.__dict__, "settings": {
        **env.settings, "logs": {**env.settings["logs"], "queue_max_disk": "2g"}}})
    after = compose_files(changed, "host1")["/opt/superapp/compose/edge.yml"]
    label = "superapp.logs-conf-sha256"
    assert (before["services"][SHIPPER_CONTAINER]["labels"][label]
            != after["services"][SHIPPER_CONTAINER]["labels"][label])


def test_the_store_runs_unprivileged_and_the_shipper_without_capabilities(environments):
    env = environments["prod"]
    mon = env.monitoring_host.name
    store = compose_files(env, mon)["/opt/superapp/compose/monitoring.yml"]["services"][
        STORE_CONTAINER]
    assert store["user"].split(":")[0] != "0" and store["read_only"]
    shipper = compose_files(env, mon)["/opt/superapp/compose/edge.yml"]["services"][
        SHIPPER_CONTAINER]
    assert shipper["cap_drop"] == ["ALL"] and "cap_add" not in shipper
    assert all(v.endswith(":ro") for v in shipper["volumes"] if "/spool/" not in v)


def test_the_rendered_configs_pass_rsyslogs_own_check(environments, tmp_path):
    env = environments["prod"]
    files = {f.path: f.content for f in render_host(env, env.monitoring_host.name,
                                                     PlaceholderSecrets())}
    for path in (SHIPPER_CONF, STORE_CONF):
        conf = tmp_path / path.rsplit("/", 1)[1]
        conf.write_text(files[path])
        res = subprocess.run([find_tool("rsyslogd", RSYSLOGD_PATHS), "-N1", "-f", str(conf)],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
    broken = tmp_path / "broken.conf"
    broken.write_text(files[SHIPPER_CONF].replace("ruleset(name=\"ship\")", "ruleset(name="))
    res = subprocess.run([find_tool("rsyslogd", RSYSLOGD_PATHS), "-N1", "-f", str(broken)],
                         capture_output=True, text=True)
    assert res.returncode != 0  # the check can fail


def test_retention_follows_group_data(environments):
    env = environments["prod"]
    files = {f.path: f.content for f in render_host(env, env.monitoring_host.name,
                                                     PlaceholderSecrets())}
    assert f"-mtime +{env.settings['logs']['retention_days']} -delete" in files[RETENTION_CRON]


def test_every_host_sends_a_heartbeat_and_the_monitoring_host_measures_them(environments):
    env = environments["prod"]
    for h in env.hosts:
        files = {f.path: f for f in render_host(env, h.name, PlaceholderSecrets())}
        assert files[HEARTBEAT_SCRIPT].mode == 0o755
        assert f"* * * * * root {HEARTBEAT_SCRIPT}" in files[HEARTBEAT_CRON].content
        assert f'file="/var/log/superapp-jobs/heartbeat.log" tag="{HEARTBEAT_SERVICE}"' \
            in files[SHIPPER_CONF].content
        measured = HEARTBEAT_METRICS_SCRIPT in files
        assert measured == (h.name == env.monitoring_host.name)
        if measured:
            assert HEARTBEAT_METRICS_SCRIPT in files[HEARTBEAT_METRICS_CRON].content


def test_the_heartbeat_scripts_pass_shellcheck(environments, tmp_path):
    env = environments["prod"]
    files = {f.path: f.content for f in render_host(env, env.monitoring_host.name,
                                                     PlaceholderSecrets())}
    for path in (HEARTBEAT_SCRIPT, HEARTBEAT_METRICS_SCRIPT):
        script = tmp_path / path.rsplit("/", 1)[1]
        script.write_text(files[path])
        check = subprocess.run([shutil.which("shellcheck") or "/usr/bin/shellcheck", str(script)],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout


def test_heartbeats_through_a_store_become_each_hosts_newest_time(tmp_path):
    """The two scripts run for real (the templates rendered with scratch paths); the store's
    day files are what rsyslog writes: one JSON record per heartbeat line."""
    store, textfile = tmp_path / "store", tmp_path / "textfile"
    store.mkdir()
    textfile.mkdir()

    def beat(host: str, max_lines: int = 1440) -> list[str]:
        log = tmp_path / f"{host}.log"
        script = tmp_path / f"beat-{host}.sh"
        script.write_text(render_template("logs/heartbeat.sh.j2", host=host, env="t", log=log,
                                          marker=HEARTBEAT_MARKER, max_lines=max_lines))
        subprocess.run(["sh", str(script)], check=True, timeout=30)
        return log.read_text().splitlines()

    beat("app-1")
    lines = beat("app-1") + beat("db-1")
    assert [ln.split()[:2] for ln in lines] == [[HEARTBEAT_MARKER, "app-1"]] * 2 + [
        [HEARTBEAT_MARKER, "db-1"]]
    assert all(ln.split()[2].isdigit() for ln in lines)

    def record(host: str, ts: int) -> str:
        return json.dumps({"ts": "2026-12-03T10:00:00Z", "host": host,
                           "service": HEARTBEAT_SERVICE, "msg": f"{HEARTBEAT_MARKER} {host} {ts}"})

    # three day files: only the two newest (yesterday and today) are read
    (store / "2026-12-01.jsonl").write_text(record("app-2", 999) + "\n")
    (store / "2026-12-02.jsonl").write_text(record("app-1", 1000) + "\n" + record("db-1", 990)
                                            + "\n")
    (store / "2026-12-03.jsonl").write_text(record("app-1", 1060) + "\n" + record("app-1", 1050)
                                            + "\n")
    metrics = tmp_path / "metrics.sh"
    metrics.write_text(render_template("logs/heartbeat_metrics.sh.j2", host="mon-1", env="t",
                                       textfile_dir=textfile, store_dir=store,
                                       marker=HEARTBEAT_MARKER))
    subprocess.run(["sh", str(metrics)], check=True, timeout=30)
    series = [ln for ln in (textfile / "superapp_logs.prom").read_text().splitlines()
              if not ln.startswith("#")]
    assert series == ['superapp_logs_heartbeat_timestamp_seconds{shipper="app-1"} 1060',
                      'superapp_logs_heartbeat_timestamp_seconds{shipper="db-1"} 990']
    assert sorted(p.name for p in textfile.iterdir()) == ["superapp_logs.prom"]  # no .tmp left
    # an empty store: the file holds only its header, no series
    for day in store.iterdir():
        day.unlink()
    subprocess.run(["sh", str(metrics)], check=True, timeout=30)
    assert "superapp_logs_heartbeat_timestamp_seconds{" not in (
        textfile / "superapp_logs.prom").read_text()
    # the heartbeat file is emptied once it holds max_lines lines
    assert [len(beat("app-3", max_lines=2)) for _ in range(4)] == [1, 2, 1, 2]


def test_heartbeat_metrics_runs_at_once_never_fail_and_leave_one_readable_file(tmp_path):
    """Cron's run and an operator's (or a test's) may overlap: each writes a file of its own and
    renames it into place, so none finds its temporary file taken by the other."""
    store, textfile = tmp_path / "store", tmp_path / "textfile"
    store.mkdir()
    textfile.mkdir()
    (store / "2026-12-03.jsonl").write_text(json.dumps({
        "ts": "2026-12-03T10:00:00Z", "host": "app-1", "service": HEARTBEAT_SERVICE,
        "msg": f"{HEARTBEAT_MARKER} app-1 1060"}) + "\n")
    metrics = tmp_path / "metrics.sh"
    metrics.write_text(render_template("logs/heartbeat_metrics.sh.j2", host="mon-1", env="t",
                                       textfile_dir=textfile, store_dir=store,
                                       marker=HEARTBEAT_MARKER))
    for _ in range(5):
        runs = [subprocess.Popen(["sh", str(metrics)], stderr=subprocess.PIPE, text=True)
                for _ in range(8)]
        errors = [(p.wait(timeout=30), p.stderr.read()) for p in runs]
        assert errors == [(0, "")] * 8
    assert [p.name for p in textfile.iterdir()] == ["superapp_logs.prom"]
    prom = textfile / "superapp_logs.prom"
    assert prom.stat().st_mode & 0o777 == 0o644
    assert 'superapp_logs_heartbeat_timestamp_seconds{shipper="app-1"} 1060' in prom.read_text()
