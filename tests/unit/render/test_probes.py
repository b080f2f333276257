"""External probes: one per (service, public route, app host), the prober's module, and the
Prometheus job that sends them through blackbox_exporter."""

from __future__ import annotations

import subprocess

import yaml

from ops.render import PlaceholderSecrets, render_host
from ops.render.probes import BLACKBOX_ADDRESS, MODULE, render_config, targets
from ops.validate import find_tool


def test_every_public_route_of_every_host_running_it_is_probed(environments):
    prod = environments["prod"]
    probes = targets(prod)
    want = {(s.name, r, h.name) for s in prod.services.values() for r in s.routes
            for h in prod.hosts_running(s.name)}
    assert {(p["service"], p["route"], p["host"]) for p in probes} == want
    payments = next(p for p in probes if p["service"] == "payments")
    host = prod.host(payments["host"])
    # over HTTPS: prod's API domain has a certificate (and `web` only redirects)
    assert payments["url"] == f"https://{host.address}:443/payments/health"
    local = environments["local"]  # api.superapp.test is kept plain (tls_plain_http_domains)
    assert targets(local)[0]["url"].startswith("http://10.231.0.11:80/")


def test_the_prometheus_job_sends_each_target_through_the_prober(environments):
    prod = environments["prod"]
    mon = prod.monitoring_host.name
    files = {f.path: f.content for f in render_host(prod, mon, PlaceholderSecrets())}
    config = yaml.safe_load(files["/opt/superapp/prometheus/prometheus.yml"])
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "probe")
    assert job["metrics_path"] == "/probe" and job["params"] == {"module": [MODULE]}
    assert len(job["static_configs"]) == len(targets(prod))
    assert job["relabel_configs"][-1] == {"target_label": "__address__",
                                          "replacement": BLACKBOX_ADDRESS}
    infra = next(j for j in config["scrape_configs"] if j["job_name"] == "blackbox")
    assert infra["static_configs"][0]["labels"]["tier"] == "infra"  # TargetDown covers it


def test_the_prober_config_passes_blackbox_exporters_own_check(environments, tmp_path):
    config = render_config(environments["prod"])
    module = yaml.safe_load(config.content)["modules"][MODULE]
    assert module["http"]["headers"] == {"Host": environments["prod"].settings["api_domains"][0]}
    path = tmp_path / "blackbox.yml"
    path.write_text(config.content)
    check = subprocess.run([find_tool("prometheus-blackbox-exporter"), f"--config.file={path}",
                            "--config.check"], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    path.write_text(config.content.replace("timeout: 5s", "timeot: 5s"))  # unknown key
    bad = subprocess.run([find_tool("prometheus-blackbox-exporter"), f"--config.file={path}",
                          "--config.check"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
