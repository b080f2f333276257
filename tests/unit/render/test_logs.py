"""ops.render.logs: a shipper on every host, the store on the monitoring host, every container's
log lines labelled for them, configs that rsyslog itself accepts."""

from __future__ import annotations

import subprocess

import yaml

from ops.render import PlaceholderSecrets, render_host
from ops.render.logs import (
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
