"""Redis ACL users: one per service, so a leaked service password exposes only that
service's keys.

Each service's user is named after it, may touch only keys and Pub/Sub channels under
`<service>:` (the app prefixes every key with REDIS_KEY_PREFIX: limits' `key_prefix`, kombu's
`global_keyprefix`) and may run only `redis_acl.commands` (group_data: what rate limiting and
Celery send). The `default` user is off: a client that does not authenticate can do nothing.
An admin user (`shared/redis#REDIS_PASSWORD`, held by no service) lets the deploy load the
users.

Passwords are stored as SHA-256 hashes (`#<hex>`), never in clear. During a rotation a user
has two, the new and the one it replaces (ops/secrets/rotation.py), so containers on either
work while the service is swapped.

Two files, one unit (`redis-acl`):
- `users.acl` (Redis's `aclfile`, read at start): the users for a server (re)started later;
- `load.redis`, the same users as `ACL SETUSER ... reset ...` commands after `AUTH` as the
  admin, fed to redis-cli on stdin (ops/host/commands.py: redis_acl_load). SETUSER changes a
  user in place, so connected clients stay connected (ACL LOAD would drop them all), and each
  user is replaced in one command: never a moment with neither password.
A changed admin password is rolled in two steps like a service's: while `shared/redis` also
holds the one it replaces (`REDIS_PASSWORD_PREVIOUS`), the admin user has both, and `load.redis`
offers both AUTH lines (new first): the deploy authenticates with whichever the running server
knows, and SETUSER gives the admin the new one in place, so nothing restarts. Once the previous
key is gone, the next deploy leaves the new one only. Only when the server knows neither
(changed in Vault alone) is Redis restarted to read `users.acl`: connected clients are cut
for about a second. A marker written after the load succeeded (like the
databases' provisioning) makes a run that died between upload and load load again next time.
Users of services removed from the catalog are left in the running server until it restarts
(nothing is dropped while it runs).

Pure: text in, text out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from ops.catalog.model import Environment
from ops.render.files import REDIS_DIR, RenderedFile
from ops.render.secrets import SecretValues

ADMIN_USER = "superapp-admin"
ACL_FILE_NAME = "users.acl"
ACL_FILE = f"{REDIS_DIR}/{ACL_FILE_NAME}"
LOAD_DIR = "/etc/superapp/redis-acl"
LOAD_SCRIPT = f"{LOAD_DIR}/load.redis"
LOADED_MARKER = f"{LOAD_DIR}/loaded"
DEFAULT_USER_RULES = "off resetpass resetkeys resetchannels -@all"
# redis_exporter's user: no key and no channel; the commands its scrape sends (its README's
# list, less those that read keys: it is not asked to export any key)
MONITOR_USER = "superapp-monitor"
MONITOR_COMMANDS = ("-@all", "+@connection", "-hello", "-echo", "-reset", "-quit", "+info",
                    "+config|get", "+client|list", "+client|setname", "+client|info",
                    "+slowlog", "+latency", "+memory|stats", "+memory|usage", "+cluster|info")


def key_prefix(service_name: str) -> str:
    """Every key and channel of a service's user starts with this (REDIS_KEY_PREFIX)."""
    return f"{service_name}:"


def password_hash(password: str) -> str:
    return "#" + hashlib.sha256(password.encode()).hexdigest()


def service_rules(service_name: str, passwords: Sequence[str], commands: Sequence[str]) -> str:
    prefix = key_prefix(service_name)
    return " ".join(["on", *(password_hash(p) for p in passwords), f"~{prefix}*",
                     "resetchannels", f"&{prefix}*", "-@all", *(f"+{c}" for c in commands)])


def acl_users(environment: Environment, secrets: SecretValues) -> dict[str, str]:
    """user name -> its ACL rules (without `reset`), admin and default first."""
    commands = environment.settings["redis_acl"]["commands"]
    users = {
        "default": DEFAULT_USER_RULES,
        ADMIN_USER: " ".join(["on", *(password_hash(p) for p in admin_passwords(
            environment, secrets)), "~*", "&*", "+@all"]),
    }
    monitor = secrets.get(environment.monitor_password_refs()["redis"])
    if monitor:
        users[MONITOR_USER] = " ".join(["on", password_hash(monitor), "resetkeys",
                                        "resetchannels", *MONITOR_COMMANDS])
    for service in environment.services.values():
        refs = environment.service_redis_refs(service)
        passwords = [v for v in (secrets.get(refs["current"]), secrets.get(refs["previous"]))
                     if v]
        users[service.name] = service_rules(service.name, passwords, commands)
    return users


def admin_passwords(environment: Environment, secrets: SecretValues) -> list[str]:
    """The admin's password, then the one it replaces while a change rolls out."""
    current = secrets.get(environment.redis_admin_password_ref()) or ""
    previous = secrets.get(environment.redis_admin_previous_ref())
    return [current, *([previous] if previous and previous != current else [])]


def acl_file(users: Mapping[str, str]) -> str:
    return "".join(f"user {name} {rules}\n" for name, rules in users.items())


def quoted(text: str) -> str:
    """A redis-cli argument in double quotes (its sdssplitargs escapes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def load_script(users: Mapping[str, str], admin_passwords: Sequence[str]) -> str:
    """redis-cli input: one AUTH line per admin password (the loader uses the first the
    server accepts: ops/host/commands.py redis_acl_load), then every user set in place."""
    lines = [f"AUTH {ADMIN_USER} {quoted(p)}" for p in admin_passwords]
    lines += [f"ACL SETUSER {name} reset {rules}" for name, rules in users.items()]
    return "\n".join(lines) + "\n"


def render_files(environment: Environment, secrets: SecretValues) -> list[RenderedFile]:
    users = acl_users(environment, secrets)
    content = acl_file(users)
    digest = hashlib.sha256(content.encode()).hexdigest()
    uid = environment.settings["data_uids"]["redis"]
    return [
        RenderedFile(ACL_FILE, content, mode=0o600, secret=True, owner=uid),
        RenderedFile(LOAD_SCRIPT, load_script(users, admin_passwords(environment, secrets)),
                     mode=0o600, secret=True),
        RenderedFile(LOADED_MARKER, f"{digest}  {ACL_FILE}\n", mode=0o600, after_apply=True),
    ]
