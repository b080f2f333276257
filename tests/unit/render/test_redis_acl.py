"""Redis ACL users rendered from the catalog (ops/render/redis_acl.py) and what the services'
env files say about them. The real server's answers are in tests/integration/test_redis_acl.py.
"""

from __future__ import annotations

import hashlib

import pytest

from ops.render import redis_acl
from ops.render.compose import service_environment, service_secret_values
from ops.render.host import render_host
from ops.render.secrets import MappingSecrets

PASSWORDS = {"food": 'f00d-"pw"\\x', "payments": "pay pw", "old": "the-old-one"}


@pytest.fixture
def local(environments):
    return environments["local"]


def secrets_for(env, previous: dict[str, str] | None = None) -> MappingSecrets:
    values = {str(r): f"value-of-{r.path}-{r.key}" for r in env.all_secret_refs()
              if not r.optional}
    for name, password in PASSWORDS.items():
        if name in env.services:
            values[str(env.service_redis_refs(env.services[name])["current"])] = password
    for name, password in (previous or {}).items():
        values[str(env.service_redis_refs(env.services[name])["previous"])] = password
    values[str(env.redis_admin_password_ref())] = "admin-pw"
    return MappingSecrets(values)


def files_by_path(env, secrets) -> dict:
    return {f.path: f for f in redis_acl.render_files(env, secrets)}


def sha(text: str) -> str:
    return "#" + hashlib.sha256(text.encode()).hexdigest()


def test_one_user_per_service_on_its_prefix_with_only_the_listed_commands(local):
    acl = files_by_path(local, secrets_for(local))[redis_acl.ACL_FILE].content
    lines = {line.split()[1]: line for line in acl.splitlines()}
    assert set(lines) == {"default", redis_acl.ADMIN_USER, redis_acl.MONITOR_USER,
                          *local.services}
    assert lines["default"] == "user default off resetpass resetkeys resetchannels -@all"
    commands = " ".join(f"+{c}" for c in local.settings["redis_acl"]["commands"])
    assert lines["food"] == (f"user food on {sha(PASSWORDS['food'])} ~food:* resetchannels "
                             f"&food:* -@all {commands}")
    for name in local.services:
        assert f" ~{name}:* " in lines[name] and " ~* " not in lines[name]
        assert "+@all" not in lines[name] and "nopass" not in lines[name]
    assert lines[redis_acl.ADMIN_USER] == \
        f"user {redis_acl.ADMIN_USER} on {sha('admin-pw')} ~* &* +@all"
    # the exporter's user: no key, no channel, no command that reads or writes data
    monitor = lines[redis_acl.MONITOR_USER].split()
    assert "resetkeys" in monitor and "resetchannels" in monitor
    assert not [w for w in monitor if w.startswith(("~", "&", "%"))]
    assert not {"+@all", "+@read", "+@write", "+get", "+eval", "+keys", "nopass"} & set(monitor)


def test_during_a_rotation_a_user_accepts_the_old_password_too(local):
    acl = files_by_path(local, secrets_for(local, {"food": "the-old-one"}))[redis_acl.ACL_FILE]
    food = next(line for line in acl.content.splitlines() if line.startswith("user food "))
    assert food.split()[3:5] == [sha(PASSWORDS["food"]), sha("the-old-one")]
    payments = next(line for line in acl.content.splitlines()
                    if line.startswith("user payments "))
    assert payments.count("#") == 1


def test_no_password_in_clear_and_the_files_are_private(local):
    files = files_by_path(local, secrets_for(local, {"food": "the-old-one"}))
    acl, load = files[redis_acl.ACL_FILE], files[redis_acl.LOAD_SCRIPT]
    for name, password in PASSWORDS.items():
        assert password not in acl.content, name
    assert "admin-pw" not in acl.content
    assert (acl.mode, acl.owner, acl.secret) == (0o600, local.settings["data_uids"]["redis"],
                                                True)
    assert (load.mode, load.owner, load.secret) == (0o600, 0, True)
    assert files[redis_acl.LOADED_MARKER].after_apply


def test_the_load_script_authenticates_then_sets_every_user_in_place(local):
    env_secrets = secrets_for(local)
    files = files_by_path(local, env_secrets)
    lines = files[redis_acl.LOAD_SCRIPT].content.splitlines()
    assert lines[0] == f'AUTH {redis_acl.ADMIN_USER} "admin-pw"'
    acl = files[redis_acl.ACL_FILE].content.splitlines()
    assert lines[1:] == [line.replace("user ", "ACL SETUSER ", 1).replace(
        f" {line.split()[1]} ", f" {line.split()[1]} reset ", 1) for line in acl]


def test_while_the_admin_password_changes_the_admin_has_both_and_both_auth_lines(local):
    values = {str(r): f"value-of-{r.path}-{r.key}" for r in local.all_secret_refs()
              if not r.optional}
    values[str(local.redis_admin_password_ref())] = "admin-pw"
    values[str(local.redis_admin_previous_ref())] = "old-admin-pw"
    files = files_by_path(local, MappingSecrets(values))
    admin = next(line for line in files[redis_acl.ACL_FILE].content.splitlines()
                 if line.startswith(f"user {redis_acl.ADMIN_USER} "))
    assert admin.split()[3:5] == [sha("admin-pw"), sha("old-admin-pw")]  # the new one first
    lines = files[redis_acl.LOAD_SCRIPT].content.splitlines()
    assert lines[:2] == [f'AUTH {redis_acl.ADMIN_USER} "admin-pw"',
                         f'AUTH {redis_acl.ADMIN_USER} "old-admin-pw"']
    assert not lines[2].startswith("AUTH") and "old-admin-pw" not in admin
    # once the previous key is gone: the new one only
    assert files_by_path(local, secrets_for(local))[redis_acl.LOAD_SCRIPT].content.count(
        "AUTH ") == 1


def test_a_quote_or_backslash_in_the_admin_password_stays_one_argument():
    assert redis_acl.quoted('a"b\\c d') == '"a\\"b\\\\c d"'


def test_the_marker_changes_exactly_when_the_users_do(local):
    one = files_by_path(local, secrets_for(local))[redis_acl.LOADED_MARKER].content
    same = files_by_path(local, secrets_for(local))[redis_acl.LOADED_MARKER].content
    rotated = files_by_path(local, secrets_for(local, {"food": "x"}))[
        redis_acl.LOADED_MARKER].content
    assert one == same != rotated


def test_a_service_gets_its_own_user_and_prefix_never_the_previous_password(local):
    food = local.services["food"]
    values = service_secret_values(local, food, secrets_for(local, {"food": "the-old-one"}))
    assert values["REDIS_URL"] == "redis://food:f00d-%22pw%22%5Cx@10.231.0.11:6379/0"
    assert "REDIS_PASSWORD_PREVIOUS" not in values
    assert "the-old-one" not in " ".join(values.values())
    assert service_environment(local, food)["REDIS_KEY_PREFIX"] == "food:"


def test_redis_conf_holds_no_password_and_a_change_recreates_the_container(local):
    files = {f.path: f for f in render_host(local, "host1", secrets_for(local))}
    conf = files["/opt/superapp/redis/redis.conf"].content
    assert "requirepass" not in conf and "aclfile /etc/redis/users.acl" in conf
    assert "superapp.redis-conf-sha256: \"" + hashlib.sha256(conf.encode()).hexdigest() \
        in files["/opt/superapp/compose/data.yml"].content
    assert files[redis_acl.ACL_FILE].unit == files[redis_acl.LOAD_SCRIPT].unit == "redis-acl"
