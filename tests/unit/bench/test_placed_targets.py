"""The bench and test load follows the placement: no request for a route a host does not have."""

from __future__ import annotations

from bench.load import placed_targets


def test_every_host_gets_the_routes_of_the_services_placed_on_it(testbed_started):
    environment = testbed_started(5)
    apps = [(h.name, h.address) for h in environment.hosts if "app" in h.roles]
    targets = placed_targets(apps, environment)
    assert [t.address for t in targets] == [a for _, a in apps]
    by_host = dict(zip([n for n, _ in apps], targets, strict=True))
    assert len(by_host["host1"].paths) == len(environment.services) == 17
    assert by_host["host4"].paths == by_host["host5"].paths == (
        "/payments/api/ping", "/chat/api/ping")
    assert {t.host_header for t in targets} == {environment.settings["api_domains"][0]}
    health = placed_targets(apps[3:4], environment, "/health")
    assert health[0].paths == ("/payments/health", "/chat/health")
