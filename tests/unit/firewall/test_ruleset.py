"""ops/firewall/ruleset.py: every host of every environment renders a file `nft -c` accepts."""

from __future__ import annotations

import pytest

from ops.catalog import load_environment
from ops.firewall import FirewallError, check_ruleset, render_ruleset

ADMIN = ["10.231.0.1"]
HOSTS = [(env, h.name) for env in ("prod", "staging", "local")
         for h in load_environment(env).hosts]


@pytest.mark.parametrize(("env_name", "host"), HOSTS)
def test_every_host_renders_a_ruleset_nft_accepts(env_name: str, host: str) -> None:
    env = load_environment(env_name)
    text = render_ruleset(env, env.host(host), ADMIN)
    check_ruleset(text, f"{env_name}/{host}")
    assert text.count("policy drop;") == 1  # input only; forward is Docker's, minus ours


def test_the_table_is_replaced_atomically_in_one_file() -> None:
    env = load_environment("prod")
    lines = render_ruleset(env, env.host("db-1"), ADMIN).splitlines()
    statements = [line for line in lines if line and not line.startswith("#")]
    assert statements[:3] == ["table inet superapp {}", "delete table inet superapp",
                              "table inet superapp {"]


def test_db_host_rules() -> None:
    env = load_environment("prod")
    text = render_ruleset(env, env.host("db-1"), ADMIN)
    apps = "ip saddr { 10.10.0.11, 10.10.0.12, 10.10.0.13, 10.10.0.14 }"
    assert f"\t\t{apps} tcp dport 5432 accept" in text
    assert f"\t\t{apps} meta l4proto tcp ct original proto-dst 5432 accept" in text
    assert "tcp dport 80 " not in text
    assert text.rstrip().endswith('drop comment "published, but not for this source"\n\t}\n}')


def test_check_ruleset_names_the_file_and_nft_message() -> None:
    env = load_environment("local")
    text = render_ruleset(env, env.host("host1"), ADMIN)
    broken = text.replace("tcp dport 22", "tcp dport 99999")
    with pytest.raises(FirewallError, match=r"(?s)local/host1: nft -c failed: .*99999"):
        check_ruleset(broken, "local/host1")
