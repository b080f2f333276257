"""Shared fixtures for the catalog/render/validate unit tests."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from ops.catalog import REPO_ROOT, load_environment
from ops.catalog.loader import CATALOG_FILE, GROUP_DATA_DIR


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


@pytest.fixture(scope="session")
def environments():
    return {env: load_environment(env) for env in ("prod", "staging", "local")}
