"""Redis ACL users on the testbed: every service talks to the db host's Redis as its own user,
limited to its key prefix and the allowed commands; the `default` user is off; one service's
password opens nothing of another's; no password is in clear on the host.

Each request below goes from the controller to the db host's Redis port, or through Traefik
to the stand-in's `/api/rate-limited` (a rate limiter's INCR/EXPIRE under REDIS_KEY_PREFIX, on
a new connection, as the service's ACL user).
"""

from __future__ import annotations

import json
import secrets
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import hvac
import pytest

from bench.load import Load, Target
from ops.catalog import load_environment
from ops.catalog.model import REDIS_PREVIOUS_KEY
from ops.render.compose import REDIS_PORT
from ops.render.redis_acl import ACL_FILE, ADMIN_USER, LOAD_SCRIPT
from tests.unit.testbed.test_standin import load_module

from .conftest import REPO, Testbed
from .release import deploy, output

pytestmark = pytest.mark.integration

ENV = load_environment("local")
DOMAIN = ENV.settings["api_domains"][0]
MOUNT = ENV.settings["vault"]["mount"]
RESP = load_module()  # the stand-in's own RESP client: the same bytes the services send


def redis_address(testbed: Testbed) -> tuple[str, int]:
    """The db host's Redis as an app host reaches it (the firewall: app hosts only)."""
    db = next(h for h in testbed.hosts if "db" in h.roles)
    app = next(h for h in testbed.hosts if "app" in h.roles and h != db)
    return testbed.forward(app, db.address, REDIS_PORT)


def redis_url(testbed: Testbed, user: str, password: str) -> str:
    address, port = redis_address(testbed)
    return (f"redis://{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}"
            f"@{address}:{port}/0")


def as_user(testbed: Testbed, user: str, password: str, *command: str) -> Any:
    """One command as `user` on a new connection: its reply, or the Redis error's code word."""
    try:
        return RESP.redis_call(redis_url(testbed, user, password), [list(command)])[0]
    except RESP.RedisError as e:
        return f"error {e}"


def unauthenticated(testbed: Testbed, *command: str) -> Any:
    with socket.create_connection(redis_address(testbed), 5) as sock:
        sock.sendall(RESP.resp_command(command))
        try:
            return RESP.resp_reply(sock.makefile("rb"))
        except RESP.RedisError as e:
            return f"error {e}"


@pytest.fixture(scope="module")
def passwords(testbed: Testbed, deployed) -> dict[str, str]:  # noqa: ARG001 - needs the deploy
    """user -> its password, as Vault holds them (the services' and the admin's)."""
    client = hvac.Client(testbed.vault_addr, token=testbed.vault_token)

    def read(ref) -> str:
        r = client.secrets.kv.v2.read_secret_version(path=ref.path, mount_point=MOUNT,
                                                     raise_on_deleted_version=False)
        return r["data"]["data"][ref.key]

    out = {name: read(ENV.service_redis_refs(s)["current"]) for name, s in ENV.services.items()}
    out[ADMIN_USER] = read(ENV.redis_admin_password_ref())
    return out


def service_get(address: str, service: str, path: str) -> tuple[int, dict]:
    """GET one of the service's paths through the host's Traefik: (status, JSON reply)."""
    route = ENV.services[service].routes[0]
    req = urllib.request.Request(f"http://{address}{route}{path}", headers={"Host": DOMAIN})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_every_service_on_every_host_counts_in_redis_as_its_own_user(testbed):
    app_hosts = [h for h in testbed.hosts if "app" in h.roles]
    replies = {(h.name, s): service_get(h.address, s, "/api/rate-limited")
               for h in app_hosts for s in ENV.services}
    failed = {k: v for k, v in replies.items() if v[0] != 200}
    assert not failed, failed
    assert all(body["service"] == s for (_, s), (_, body) in replies.items())


def test_the_default_user_is_off(testbed, passwords):
    assert unauthenticated(testbed, "PING") == "error NOAUTH"
    assert unauthenticated(testbed, "GET", "payments:x") == "error NOAUTH"
    # not even with a real password: `default` has none and is disabled
    assert as_user(testbed, "default", passwords[ADMIN_USER], "PING") == "error WRONGPASS"
    assert as_user(testbed, "default", passwords["payments"], "PING") == "error WRONGPASS"


def test_a_service_reaches_only_its_own_prefix_and_commands(testbed, passwords):
    food = passwords["food"]
    assert as_user(testbed, "food", food, "SET", "food:acl-test", "1") == "OK"
    assert as_user(testbed, "food", food, "GET", "food:acl-test") == "1"
    assert as_user(testbed, "food", food, "INCR", "food:acl-test") == 2
    assert as_user(testbed, "food", food, "PUBLISH", "food:events", "x") == 0
    # another service's keys and channels, and every command outside the list
    for command in (["GET", "payments:acl-test"], ["SET", "acl-test", "1"],
                    ["PUBLISH", "payments:events", "x"], ["KEYS", "*"], ["SCAN", "0"],
                    ["FLUSHALL"], ["CONFIG", "GET", "requirepass"], ["ACL", "LIST"],
                    ["SELECT", "1"], ["SHUTDOWN"], ["MONITOR"]):
        assert as_user(testbed, "food", food, *command) == "error NOPERM", command
    # Lua runs with the caller's permissions: no way around the prefix
    assert as_user(testbed, "food", food, "EVAL", "return redis.call('GET', KEYS[1])", "1",
                   "payments:acl-test") == "error NOPERM"
    assert as_user(testbed, "food", food, "DEL", "food:acl-test") == 1


def test_one_service_password_opens_no_other_user(testbed, passwords):
    food = passwords["food"]
    for user in ("payments", "taxi", ADMIN_USER, "default"):
        assert as_user(testbed, user, food, "PING") == "error WRONGPASS", user
    assert as_user(testbed, "food", passwords["payments"], "PING") == "error WRONGPASS"
    # the admin (the deploy's user) may ask Redis what each service's user may do: its own
    # prefix, nobody else's, for all 17
    admin = passwords[ADMIN_USER]
    assert as_user(testbed, ADMIN_USER, admin, "ACL", "WHOAMI") == ADMIN_USER
    names = list(ENV.services)
    for name, other in zip(names, names[1:] + names[:1], strict=True):
        assert as_user(testbed, ADMIN_USER, admin, "ACL", "DRYRUN", name, "INCR",
                       f"{name}:ratelimit:x") == "OK", name
        assert as_user(testbed, ADMIN_USER, admin, "ACL", "DRYRUN", name, "GET",
                       f"{other}:x") != "OK", (name, other)


def test_no_password_in_clear_on_the_db_host_and_the_files_are_private(testbed, passwords):
    db = next(h for h in testbed.hosts if "db" in h.roles)
    conf = "/opt/superapp/redis/redis.conf"
    listing = testbed.ssh(db, f"stat -c '%n %a %u' {ACL_FILE} {LOAD_SCRIPT} {conf}").stdout
    modes = {line.split()[0]: line.split()[1:] for line in listing.strip().splitlines()}
    redis_uid = str(ENV.settings["data_uids"]["redis"])
    assert modes == {ACL_FILE: ["600", redis_uid], LOAD_SCRIPT: ["600", "0"],
                     conf: ["600", redis_uid]}
    text = testbed.ssh(db, f"cat {ACL_FILE} {conf}").stdout
    assert "user default off" in text and "user food on #" in text
    for user, password in passwords.items():
        assert password not in text, f"{user}'s password in clear on the db host"
    env = testbed.ssh(db, "docker inspect redis --format '{{json .Config.Env}} "
                          "{{json .Config.Cmd}}'").stdout
    for user, password in passwords.items():
        assert password not in env, f"{user}'s password in the redis container's config"


def admin_secret(testbed: Testbed) -> tuple[Any, Any, dict[str, str]]:
    """(KV v2 client, the admin password's ref, the data at its Vault path now)."""
    kv = hvac.Client(testbed.vault_addr, token=testbed.vault_token).secrets.kv.v2
    ref = ENV.redis_admin_password_ref()
    data = kv.read_secret_version(path=ref.path, mount_point=MOUNT,
                                  raise_on_deleted_version=False)["data"]["data"]
    return kv, ref, data


def test_a_changed_admin_password_restarts_redis_once_and_every_user_works(
        testbed, passwords):
    """The admin's password changed in Vault: the running server cannot be told (its AUTH is
    refused), so the deploy restarts Redis to load the new aclfile, on every run the same way
    (it once depended on a race: ops/host/commands.py redis_acl_load). Afterwards the new
    password opens the admin, the old one nothing, every service still counts as its own user,
    and a second deploy has nothing to restart. Not zero-downtime: while Redis restarts,
    requests that need it fail (measured once: 9 rate-limited requests answered 503, at 10
    requests/s per app host), which is why only a changed admin password takes this path."""
    kv, ref, data = admin_secret(testbed)
    old, new = passwords[ADMIN_USER], "Adm1n-" + secrets.token_urlsafe(24)
    kv.create_or_update_secret(path=ref.path, mount_point=MOUNT, secret={**data, ref.key: new})
    res = deploy(REPO)
    text = output(res)
    assert res.returncode == 0, text[-4000:]
    assert text.count("redis: the admin password changed: restarted to load its users") == 1
    assert new not in text and old not in text
    assert as_user(testbed, ADMIN_USER, new, "ACL", "WHOAMI") == ADMIN_USER
    assert as_user(testbed, ADMIN_USER, old, "PING") == "error WRONGPASS"
    test_every_service_on_every_host_counts_in_redis_as_its_own_user(testbed)
    again = deploy(REPO)
    assert again.returncode == 0 and "restarted to load its users" not in output(again)


def test_the_admin_password_changed_in_two_steps_restarts_nothing_and_fails_no_request(
        testbed, passwords):
    """New password in REDIS_PASSWORD, the old one in REDIS_PASSWORD_PREVIOUS: the deploy
    authenticates with the old one and gives the admin both, with no restart, under requests
    that need Redis; without the previous key, the next deploy leaves the new one only."""
    kv, ref, data = admin_secret(testbed)
    old, new = data[ref.key], "Adm1n-" + secrets.token_urlsafe(24)
    kv.create_or_update_secret(path=ref.path, mount_point=MOUNT,
                               secret={**data, ref.key: new, REDIS_PREVIOUS_KEY: old})
    targets = [Target(h.address, DOMAIN, (f"{ENV.services['food'].routes[0]}/api/rate-limited",))
               for h in testbed.hosts if "app" in h.roles]
    with Load(targets, rate=10, workers=2) as load:
        first = deploy(REPO)
    text = output(first)
    assert first.returncode == 0, text[-4000:]
    assert "redis users loaded" in text and "restarted" not in text
    assert new not in text and old not in text
    assert load.report.total > 50 and not load.report.failed, load.report.failures_by_kind()
    assert as_user(testbed, ADMIN_USER, new, "ACL", "WHOAMI") == ADMIN_USER
    assert as_user(testbed, ADMIN_USER, old, "ACL", "WHOAMI") == ADMIN_USER  # both, for now
    kv.create_or_update_secret(path=ref.path, mount_point=MOUNT, secret={**data, ref.key: new})
    second = deploy(REPO)
    assert second.returncode == 0 and "restarted" not in output(second), output(second)[-3000:]
    assert as_user(testbed, ADMIN_USER, old, "PING") == "error WRONGPASS"
    assert as_user(testbed, ADMIN_USER, new, "ACL", "WHOAMI") == ADMIN_USER
    test_every_service_on_every_host_counts_in_redis_as_its_own_user(testbed)
