"""Render one host's nftables ruleset (pure: environment and host in, `nft -f` text out).

The ruleset is one table of our own, `inet superapp`, so nothing else on the host (Docker's
iptables-nft tables, a distribution default) is touched, and it is loaded by `nft -f` as
`table inet superapp {}` + `delete table inet superapp` + its definition: one transaction, so
a re-apply replaces the table atomically and the host is never without it.

`input` drops by default; it accepts established/related traffic, loopback, ICMP/ICMPv6 (path
MTU, neighbour discovery), the ports of `policy.openings` from their sources, and the host's
own containers on the ports it publishes.

Why a `forward` chain too: Docker publishes a container port with a DNAT in prerouting, so the
connection is routed to the container through FORWARD, never INPUT, and the rules Docker adds
with iptables-nft (`ip filter FORWARD` / `DOCKER`) accept it. In nftables every base chain on a
hook sees the packet and a drop in ANY of them is final, whatever the others accept; so our
`forward` chain sends every new DNATed connection (`ct status dnat`) to `published`, which
accepts it only from the sources allowed for the port the client connected to
(`ct original proto-dst`, the port before DNAT; the source address is unchanged by DNAT) and
drops the rest, including a port something publishes that the catalog does not know. Other
forwarded traffic (containers going out, replies) is left to Docker: policy accept.

It must never render a rule by service name or by hand: every rule comes from `policy`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from ops.catalog.model import Environment, Host
from ops.firewall.policy import Opening, container_subnets, openings
from ops.render.files import render_template

TABLE = "superapp"
RULESET_PATH = "/etc/superapp/firewall/ruleset.nft"


@dataclass(frozen=True)
class _Rendered:
    name: str
    port: int
    why: str
    matches: tuple[str, ...]  # "" (anywhere) or "ip saddr { ... } " / "ip6 saddr { ... } "


def render_ruleset(environment: Environment, host: Host,
                   admin_sources: Sequence[str] | None = None, table: str = TABLE) -> str:
    """The whole `nft -f` file of `host`.

    environment: the loaded environment (hosts, roles, group_data)
    host: one of `environment.hosts`
    admin_sources: SSH/operator sources; None reads group_data `admin_sources`
    table: the nftables table (tests use their own name)

    Example: render_ruleset(load_environment("prod"), env.host("db-1"))
    """
    opened = openings(environment, host, admin_sources)
    return render_template(
        "firewall/ruleset.nft.j2", host=host.name, roles=", ".join(host.roles),
        env=environment.name, table=table,
        openings=[_rendered(o) for o in opened],
        container_rules=[m.strip() for m in _source_matches(container_subnets(environment))],
        published_ports=", ".join(str(p) for p in _published(opened)))


def _published(opened: list[Opening]) -> list[int]:
    """Ports containers of the host may reach on it: all but SSH (never a container's)."""
    return sorted({o.port for o in opened if o.name != "ssh"})


def _rendered(opening: Opening) -> _Rendered:
    matches = ("",) if opening.sources is None else _source_matches(opening.sources)
    return _Rendered(opening.name, opening.port, opening.why, matches)


def _source_matches(sources: Sequence[str]) -> tuple[str, ...]:
    """One match per address family (`ip saddr` cannot name an IPv6 address)."""
    by_family: dict[str, list[str]] = {"ip": [], "ip6": []}
    for source in sources:
        version = ipaddress.ip_network(source, strict=False).version
        by_family["ip" if version == 4 else "ip6"].append(source)
    return tuple(f"{family} saddr {{ {', '.join(values)} }} "
                 for family, values in by_family.items() if values)
