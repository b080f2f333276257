"""`python -m ops.render --env ENV --out DIR` (what `make render` runs).

Loads and validates the environment, renders every host with placeholder secrets (no Vault)
into a temporary directory beside DIR, validates the tree with the real tools, and only then
moves it into place as `DIR/<host>/<path on host>`. On any failure DIR is left untouched and
the command exits 1 with one message.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ops.catalog import REPO_ROOT, ConfigError, load_environment
from ops.render.files import write_tree
from ops.render.host import render_environment
from ops.render.secrets import PlaceholderSecrets
from ops.validate import ValidationError, validate_tree


def looks_rendered(out: Path) -> bool:
    """True if `out` is absent, empty, or a previous render (only host dirs of our layout)."""
    if not out.exists():
        return True
    if not out.is_dir():
        return False
    return all(child.is_dir() and ((child / "opt/superapp").is_dir()
                                   or (child / "etc/superapp").is_dir())
               for child in out.iterdir())


def replace_dir(new: Path, out: Path) -> None:
    """Swap `new` into `out` with renames in the same parent directory."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rmdir(old)
        os.rename(out, old)
    os.rename(new, out)
    if old is not None:
        shutil.rmtree(old)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.render",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--env", required=True, help="environment: a group_data/<env>.py")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = args.out.resolve()
    try:
        if not looks_rendered(out):
            raise ValidationError(f"{out} exists and is not a previous render output: "
                                  "refusing to replace it")
        environment = load_environment(args.env, args.root)
        start = time.perf_counter()
        rendered = render_environment(environment, PlaceholderSecrets())
        render_seconds = time.perf_counter() - start
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
        os.chmod(tmp, 0o755)  # noqa: S103 - a review tree; the secret files inside are 0600
        try:
            write_tree(tmp, rendered)
            start = time.perf_counter()
            timings = validate_tree(tmp, environment)
            validate_seconds = time.perf_counter() - start
            replace_dir(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    except (ConfigError, ValidationError) as exc:
        print(f"render failed: {exc}", file=sys.stderr)
        return 1
    for host, files in rendered.items():
        services = sum(f.path.startswith("/opt/superapp/traefik/dynamic/") for f in files)
        secret = sum(f.secret for f in files)
        print(f"{host}: {len(files)} files ({services} services, {secret} secret) "
              f"-> {out / host}")
    print(f"rendered {environment.name} in {render_seconds:.3f}s; "
          f"validated in {validate_seconds:.2f}s wall:")
    for tool, seconds in sorted(timings.items()):
        print(f"  {tool}: {seconds:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
