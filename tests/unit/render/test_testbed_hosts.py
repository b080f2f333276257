"""A testbed of more than three hosts (group_data/local.py `testbed_fleet`): host4 and later
render and plan their two services only, and what spans hosts (Prometheus targets, probes, the
firewall, per-host certificates) follows the placement, not "every app host runs everything"."""

from __future__ import annotations

import pytest
import yaml

from ops.firewall.policy import openings
from ops.host.state import HostState
from ops.render import PlaceholderSecrets, render_host
from ops.render import tls as edge_tls
from ops.render.prometheus import render_config
from ops.rollout.plan import plan_host

TWO = ["payments", "chat"]


@pytest.fixture
def local6(testbed_started):
    return testbed_started(6)


def under(files, directory: str) -> set[str]:
    return {f.path.removeprefix(directory).removesuffix(".yml").removesuffix(".env")
            for f in files if f.path.startswith(directory)}


def test_host4_renders_only_its_two_services_and_the_edge(local6):
    files = render_host(local6, "host4", PlaceholderSecrets())
    assert under(files, "/opt/superapp/compose/") == {"edge", *TWO}
    assert under(files, "/opt/superapp/traefik/dynamic/") == {"_tls", *TWO}
    assert under(files, "/etc/superapp/env/") == set(TWO)
    payments = yaml.safe_load(next(f.content for f in files
                                   if f.path == "/opt/superapp/compose/payments.yml"))
    assert list(payments["services"]) == ["payments", "worker"]  # beat: host1's, one per fleet


def test_host4_plans_its_two_services_on_a_fresh_host(local6):
    plan = plan_host(local6, "host4", PlaceholderSecrets(), HostState())
    assert [c.service for c in plan.services] == TWO
    assert {c.new_slot for c in plan.services} == {"a"}
    assert plan.missing_images


def test_monitoring_scrapes_each_service_where_it_runs(local6):
    doc = yaml.safe_load(render_config(local6, "host3").content)
    targets = {job["job_name"]: {t for sc in job.get("static_configs", []) for t in sc["targets"]}
               for job in doc["scrape_configs"]}
    listed = {f"10.231.0.1{i}:8081" for i in (1, 2, 3)}
    extra = {f"10.231.0.1{i}:8081" for i in (4, 5, 6)}
    assert targets["superapp-payments"] == targets["superapp-chat"] == listed | extra
    assert targets["superapp-taxi"] == listed
    assert "10.231.0.16:9100" in targets["node"] and "10.231.0.16:8082" in targets["traefik"]
    assert "http://10.231.0.14:80/chat/health" in targets["probe"]
    assert "http://10.231.0.14:80/taxi/health" not in targets["probe"]


def test_the_db_host_opens_its_data_ports_to_every_app_host(local6):
    opened = {o.name: o.sources for o in openings(local6, local6.host("host1"))}
    assert opened["postgres"] == opened["redis"] == tuple(f"10.231.0.{10 + i}"
                                                          for i in range(1, 7))


def test_each_extra_host_gets_its_own_acme_name(local6):
    assert edge_tls.acme_domains(local6, local6.host("host6")) == ["host6.superapp.test"]
