"""`env_file_line`: values reach the container environment byte for byte (ops/render/secrets.py).

The round trip uses the real docker compose binary of the venv: `config --format json` resolves
each service's `env_file` exactly as `up` does, without a daemon. Its output escapes every `$` as
`$$` (so the output is itself valid compose), which `read_back` undoes.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from ops.catalog.loader import REPO_ROOT
from ops.render.secrets import env_file_content, env_file_line

COMPOSE = REPO_ROOT / ".venv/lib/python3.11/site-packages/compose/docker-compose"

NASTY = [
    *"$'\"\\#= \n\t\r{}`!;&|*?~%<>()[]^", *"abcXYZ019_-", "é", "ü", "日本", "😀", "\u00a0",
    "\u2028", "\x85", "\x01", "\x1b", "\x7f", "${X}", "$X", "$$", "\\n", "\\$", '\\"', "\\0042",
    "' #", " #", "\\'", "export ", "\r\n",
]

EDGES = [
    "", " ", "  lead", "trail  ", "\t", '"', '""', '"a"', "'", "''", "'a'", "\\", "\\\\", 'a\\',
    '\\"', "\\'", "#", "#c", " #c", "a #b", "a#b", "=", "==", "a=b=c", "$", "$$", "$$$", "${X}",
    "$X", "${X:-d}", "\\$X", "$(id)", "`id`", "\n", "\r\n", "\nx", "x\n", "a\n\nb", "\\n", "\\t",
    "\\0042", "\\x41", "\\u0041", "export X=1", "😀 é 日本", "\u2028\u2029\x85", "\x1b[31m",
    "\x7f\x01", "K=V\nOTHER=1", "a'b\"c$d\\e#f g=h\ni",
]


def read_back(values: list[str], tmp_path: Path) -> list[str | None]:
    """Write `values` as K0..Kn with env_file_content, resolve with compose, return what it read."""
    env_file = tmp_path / "secrets.env"
    env_file.write_text(env_file_content("test", {f"K{i}": v for i, v in enumerate(values)}),
                        encoding="utf-8")
    compose_file = tmp_path / "compose.yml"
    compose_file.write_text("services:\n  s:\n    image: x\n    env_file: [./secrets.env]\n")
    # X is set for compose: an unescaped ${X} in the file would come back as INJECTED
    res = subprocess.run([str(COMPOSE), "-f", str(compose_file), "config", "--format", "json"],
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "X": "INJECTED", "HOME": str(tmp_path)})
    assert res.returncode == 0, res.stderr[-2000:]
    environment = json.loads(res.stdout)["services"]["s"].get("environment", {})
    return [None if environment.get(f"K{i}") is None
            else environment[f"K{i}"].replace("$$", "$") for i in range(len(values))]


def test_compose_binary_present():
    assert COMPOSE.is_file(), f"{COMPOSE} missing: install requirements-dev.txt"


@pytest.mark.parametrize(("value", "line"), [
    ("plain", "K='plain'"),
    ("a$b #c d=e", "K='a$b #c d=e'"),
    ('say "hi" ${X}', "K='say \"hi\" ${X}'"),
    ("it's", "K=\"it's\""),
    ("a\\b", 'K="a\\\\b"'),
    ("l1\nl2\r", 'K="l1\\nl2\\r"'),
    ("'$X\"", 'K="\'\\$X\\""'),
    ("tab\there", 'K="tab\there"'),
    ("", "K=''"),
])
def test_line_format(value, line):
    assert env_file_line("K", value) == line


def test_edge_values_round_trip(tmp_path):
    assert read_back(EDGES, tmp_path) == EDGES


def test_random_values_round_trip(tmp_path):
    rnd = random.Random(20251126)
    for batch in range(6):
        values = ["".join(rnd.choice(NASTY) for _ in range(rnd.randint(0, 16)))
                  for _ in range(250)]
        got = read_back(values, tmp_path)
        bad = [(v, g) for v, g in zip(values, got, strict=True) if v != g]
        assert not bad, f"batch {batch}: {len(bad)} values changed, first: {bad[0]!r}"


def test_generated_secret_shapes_round_trip(tmp_path):
    """The alphabets bootstrap generates (url-safe, hex, alnum) stay in the plain form."""
    from ops.secrets.bootstrap import GENERATORS

    values = [gen() for gen in GENERATORS.values() for _ in range(20)]
    assert all(env_file_line("K", v).startswith("K='") for v in values)
    assert read_back(values, tmp_path) == values


def test_nul_refused_naming_the_key_only():
    with pytest.raises(ValueError, match="JWT_SECRET") as info:
        env_file_line("JWT_SECRET", "canary-NUL-\x00-value")
    assert "canary-NUL" not in str(info.value)


@pytest.mark.parametrize("key", ["", "1ABC", "A-B", "A B", "A=B", "A\nB"])
def test_bad_key_refused(key):
    with pytest.raises(ValueError, match="not a variable name"):
        env_file_line(key, "value")
