"""ops/firewall/policy.py: every opening derived from roles, to the sources that need it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ops.catalog import load_environment
from ops.firewall.policy import FirewallError, openings

ADMIN = ["10.231.0.1"]


def by_name(env_name: str, host: str, admin=ADMIN) -> dict:
    env = load_environment(env_name)
    return {o.name: (o.port, o.sources) for o in openings(env, env.host(host), admin)}


def test_prod_db_host_opens_data_ports_to_app_hosts_and_exporters_to_monitoring() -> None:
    apps = ("10.10.0.11", "10.10.0.12", "10.10.0.13", "10.10.0.14")
    assert by_name("prod", "db-1") == {
        "ssh": (22, ("10.231.0.1",)),
        "node-exporter": (9100, ("10.10.2.11",)),
        "postgres": (5432, apps),
        "redis": (6379, apps),
        "postgres-exporter": (9187, ("10.10.2.11",)),
        "redis-exporter": (9121, ("10.10.2.11",)),
    }


def test_prod_app_host_public_port_only_from_proxies_and_the_prober() -> None:
    opened = by_name("prod", "app-2")
    assert opened["traefik-web"] == (80, ("10.10.9.10", "10.10.9.11", "10.10.2.11"))
    assert opened["traefik-internal"][1] == (
        "10.10.0.11", "10.10.0.12", "10.10.0.13", "10.10.0.14", "10.10.2.11")
    assert opened["traefik-metrics"] == (8082, ("10.10.2.11",))
    assert "postgres" not in opened and "prometheus" not in opened


def test_monitoring_and_backup_hosts() -> None:
    mon = by_name("prod", "mon-1")
    assert mon["prometheus"] == (9090, ("10.10.2.11", "10.231.0.1"))
    assert mon["alertmanager"] == (9093, ("10.10.2.11", "10.231.0.1"))
    assert mon["log-store"][0] == 2514 and len(mon["log-store"][1]) == 7
    assert by_name("prod", "backup-1")["pitr-repository"] == (8333, ("10.10.1.11", "10.10.3.11"))


def test_no_upstream_proxies_means_anywhere() -> None:
    env = load_environment("prod")
    env = replace(env, settings={**env.settings, "upstream_proxies": []})
    web = [o for o in openings(env, env.host("app-1"), ADMIN) if o.name == "traefik-web"]
    assert web[0].sources is None


def test_admin_sources_come_from_group_data_and_must_not_be_empty() -> None:
    env = load_environment("prod")
    assert openings(env, env.host("app-1"))[0].sources == ("10.10.8.10", "10.10.8.11")
    empty = replace(env, settings={**env.settings, "admin_sources": []})
    with pytest.raises(FirewallError, match="admin_sources"):
        openings(empty, env.host("app-1"))
    env = replace(env, settings={**env.settings, "admin_sources": ["10.10.8.0/24"]})
    assert openings(env, env.host("app-1"))[0].sources == ("10.10.8.0/24",)


def test_a_typo_in_a_source_is_refused() -> None:
    env = load_environment("prod")
    with pytest.raises(FirewallError, match="'10.0.0.300'"):
        openings(env, env.host("app-1"), ["10.0.0.300"])
