"""Shared fixtures for the catalog/render/validate unit tests."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ops.catalog import REPO_ROOT, load_environment
from ops.catalog.loader import CATALOG_FILE, GROUP_DATA_DIR
from ops.catalog.model import Environment
from ops.catalog.testbed_fleet import STATE_DIR_ENV, STATE_FILE

# Unit tests never see a running testbed: the local environment is the hosts group_data lists,
# whatever `testbed.py up --hosts N` started (`make test` brings the testbed up while the unit
# tests run). $SA_TESTBED_STATE names a directory that cannot exist while the unit test modules
# load (several load an environment at import) and while they run, and is put back in between:
# integration tests in the same session, and the testbed.py they run, see the real testbed.
# A test that wants more hosts writes its own state file (`testbed_started`).
NO_TESTBED = os.path.join(os.devnull, "no-testbed")
REAL_TESTBED = os.environ.get(STATE_DIR_ENV)
os.environ[STATE_DIR_ENV] = NO_TESTBED


def pytest_collection_finish(session: pytest.Session) -> None:
    if REAL_TESTBED is None:
        os.environ.pop(STATE_DIR_ENV, None)
    else:
        os.environ[STATE_DIR_ENV] = REAL_TESTBED


@pytest.fixture(scope="package", autouse=True)
def no_testbed() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(STATE_DIR_ENV, NO_TESTBED)
        yield


class RepoCopy:
    """A temporary copy of the catalog and group_data that a test may break on purpose."""

    def __init__(self, root: Path):
        self.root = root
        (root / "ops/catalog").mkdir(parents=True)
        shutil.copy(REPO_ROOT / CATALOG_FILE, root / CATALOG_FILE)
        shutil.copytree(REPO_ROOT / GROUP_DATA_DIR, root / GROUP_DATA_DIR,
                        ignore=shutil.ignore_patterns("__pycache__"))

    def path(self, relative: str) -> Path:
        return self.root / relative

    def append(self, relative: str, text: str) -> None:
        """Append lines (later assignments override earlier ones, like Python)."""
        with open(self.path(relative), "a", encoding="utf-8") as f:
            f.write("\n" + text.strip("\n") + "\n")

    def replace(self, relative: str, pattern: str, replacement: str) -> None:
        text = self.path(relative).read_text()
        new, count = re.subn(pattern, replacement, text, count=1, flags=re.M)
        assert count == 1, f"{pattern!r} not found in {relative}"
        self.path(relative).write_text(new)

    def load(self, env: str = "prod"):
        return load_environment(env, self.root)


@pytest.fixture
def repo_copy(tmp_path: Path) -> RepoCopy:
    return RepoCopy(tmp_path / "repo")


@pytest.fixture(scope="package")
def environments(no_testbed):
    return {env: load_environment(env) for env in ("prod", "staging", "local")}


@pytest.fixture
def testbed_started(tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> Callable[[int], Environment]:
    """The local environment as loaded while a testbed of `count` hosts runs (its state file,
    written where $SA_TESTBED_STATE points, as testbed.py writes it)."""
    def load(count: int) -> Environment:
        state = tmp_path / "testbed-state"
        state.mkdir(exist_ok=True)
        (state / STATE_FILE).write_text(json.dumps({"hosts_count": count, "procs": {}}))
        monkeypatch.setenv(STATE_DIR_ENV, str(state))
        return load_environment("local")
    return load
