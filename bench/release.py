"""A "release" of the local environment: a copy of what a deploy reads, with group_data edits.

The benchmark and the integration tests deploy releases the way an operator would (the repo
with an image tag or a setting changed) without touching the working tree.
"""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COPIED = ("deploy.py", "inventories", "group_data", "ops", "templates", "tasks",
          "audit-waivers.yml", ".secrets.baseline")


def release_copy(dest: Path, group_data_local: dict[str, str] | None = None) -> Path:
    """Copy what a deploy reads into `dest`; append `key = value` lines to group_data/local.py
    (a later assignment wins, exactly like editing the line)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    if group_data_local:
        with open(dest / "group_data" / "local.py", "a") as f:
            f.write("\n# release edits\n")
            for key, value in group_data_local.items():
                f.write(f"{key} = {value}\n")
    return dest
