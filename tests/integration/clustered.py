"""The testbed's own environment with the database cluster (`db_ha`: host2 and host3 the db
hosts, etcd on host1-3, a pgBackRest stanza of its own), and ops.host.remote's `Remote` over
the testbed's SSH: what the tests of the cluster's deploy pieces run them with."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from ops.catalog import load_environment
from ops.catalog.model import Environment
from tests.integration.conftest import Testbed
from tests.integration.release import release_copy

LOCAL = load_environment("local")


class SshRemote:
    """ops.host.remote's `Remote` over the testbed's SSH (as pyinfra's connection would be)."""

    def __init__(self, testbed: Testbed, name: str):
        self.testbed, self.name, self.host = testbed, name, testbed.host(name)

    def run(self, command: str, timeout: int | None = None) -> tuple[bool, str, str]:
        res = subprocess.run(self.testbed.ssh_argv(self.host, command), capture_output=True,
                             text=True, timeout=timeout or 300)
        return res.returncode == 0, res.stdout, res.stderr

    def put(self, content: bytes, path: str) -> bool:
        res = subprocess.run(self.testbed.ssh_argv(
            self.host, f"umask 077 && cat > {shlex.quote(path)}"), input=content,
            capture_output=True, timeout=60)
        return res.returncode == 0

    def run_fresh(self, command: str, timeout: int) -> tuple[bool, str, str]:
        return self.run(command, timeout)


def clustered(tmp_path: Path, stanza: str = "itstage", settings: dict | None = None,
              **changes) -> Environment:
    """The copy, written under `tmp_path` (a release a deploy can run from); `changes` go into
    its `db_ha` block, `settings` are other group_data keys (`image_tags`...)."""
    hosts = [{**h, "roles": [r for r in h["roles"] if r != "db"]
              + (["db"] if h["name"] in ("host2", "host3") else [])}
             for h in LOCAL.settings["hosts"][:3]]
    # a stanza of its own: whatever this cluster archives never mixes with the single
    # PostgreSQL's, nor with another cluster's (pgBackRest refuses a stanza whose database
    # system it does not know)
    pitr = {**LOCAL.settings["pitr"], "stanza": stanza}
    cluster = {"scope": "itstage", "members": ["host2", "host3"],
               "etcd": ["host1", "host2", "host3"], "replication": "synchronous",
               "ttl_seconds": 20, "loop_wait_seconds": 2, "retry_timeout_seconds": 4, **changes}
    tree = release_copy(tmp_path, {"hosts": repr(hosts), "db_ha": repr(cluster),
                                   "pitr": repr(pitr),
                                   **{k: repr(v) for k, v in (settings or {}).items()}})
    return load_environment("local", root=tree)
