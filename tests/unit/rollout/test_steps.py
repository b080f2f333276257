"""ops.rollout.steps.upload against a scripted Remote: secrets staged in root-only 0700
directories on their own filesystem, their parents made private to their reader, nothing left
behind when an upload fails. (The testbed test stops a real deploy mid-upload and looks.)"""

from __future__ import annotations

import subprocess

import pytest

from ops.render.files import RenderedFile
from ops.rollout.steps import RolloutError, private_parents, staging_path, upload

ENV_FILE = RenderedFile("/etc/superapp/env/food.env", "JWT_SECRET=CANARY\n", mode=0o600,
                        secret=True)
REDIS = RenderedFile("/opt/superapp/redis/redis.conf", "requirepass CANARY\n", mode=0o600,
                     secret=True, owner=999)
COMPOSE = RenderedFile("/opt/superapp/compose/food.yml", "services: {}\n")
CRON = RenderedFile("/etc/cron.d/superapp-backup-food", "0 2 * * * root true\n")


class Remote:
    name = "host2"

    def __init__(self, fail_put_at: int | None = None):
        self.fail_put_at, self.puts, self.ran = fail_put_at, [], []

    def run(self, command: str, timeout: int | None = None) -> tuple[bool, str, str]:
        self.ran.append(command)
        return True, "", ""

    def put(self, content: bytes, path: str) -> bool:
        self.puts.append(path)
        return len(self.puts) != self.fail_put_at


def test_files_are_staged_in_a_private_directory_of_their_own_filesystem() -> None:
    assert staging_path(ENV_FILE.path, "ab12").startswith("/etc/superapp/.staging/env%food.env")
    assert staging_path(REDIS.path, "ab12").startswith("/opt/superapp/.staging/redis%")
    assert staging_path(CRON.path, "ab12") == "/etc/cron.d/superapp-backup-food.tmp-ab12"


def test_secret_parents_are_private_to_their_reader() -> None:
    assert private_parents([ENV_FILE, REDIS, COMPOSE]) == {"/etc/superapp/env": 0,
                                                           "/opt/superapp/redis": 999}
    other = RenderedFile("/opt/superapp/redis/other.conf", "x", secret=True, owner=1)
    with pytest.raises(RolloutError, match="two owners"):
        private_parents([REDIS, other])


def test_an_upload_makes_directories_private_then_moves_each_file_into_place() -> None:
    remote = Remote()
    upload(remote, [ENV_FILE, REDIS, COMPOSE])
    dirs, install = remote.ran
    assert "install -d -m 700 -o 999 -g 999 /opt/superapp/redis && chmod 700" in dirs
    assert "chown 0:0 /etc/superapp/env" in dirs
    assert "install -d -m 700 -o 0 -g 0 /opt/superapp/.staging" in dirs
    assert "mkdir -p /opt/superapp/compose" in dirs
    assert all(p.startswith(("/etc/superapp/.staging/", "/opt/superapp/.staging/"))
               for p in remote.puts)
    assert install.count("mv -f") == 3 and "chmod 600" in install
    assert "CANARY" not in dirs + install


def test_a_failed_upload_removes_what_it_staged() -> None:
    remote = Remote(fail_put_at=2)
    with pytest.raises(RolloutError, match="upload of /opt/superapp/redis/redis.conf failed"):
        upload(remote, [ENV_FILE, REDIS, COMPOSE])
    cleanup = remote.ran[-1]
    assert cleanup.startswith("rm -f") and all(p in cleanup for p in remote.puts)
    assert not any("mv -f" in c for c in remote.ran)  # nothing half-installed


def test_only_secret_files_need_no_plain_directory(tmp_path) -> None:
    remote = Remote()
    upload(remote, [ENV_FILE])
    assert "mkdir" not in remote.ran[0]  # `mkdir -p` with nothing to make is an error
    script = remote.ran[0].replace("/etc/superapp", str(tmp_path / "etc"))
    assert subprocess.run(["sh", "-c", script], capture_output=True).returncode == 0
    assert oct((tmp_path / "etc" / "env").stat().st_mode & 0o777) == "0o700"
