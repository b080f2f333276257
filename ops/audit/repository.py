"""Rules over this repository: committed `.env` files, literal secrets in inventories/group_data,
and real-looking secrets (detect-secrets) in the working tree and in every blob of git history.

The tree and history scans compare detect-secrets' results with the reviewed baseline
`.secrets.baseline` (same plugins and filters as recorded in it):
- a secret in the tree that is not in the baseline for that file: `repo.secret` (high);
- a baseline entry marked `is_secret: true` (a real secret that was committed): high;
- a baseline entry never reviewed (no `is_secret`): `repo.baseline-unreviewed` (medium);
- a secret in a history blob whose hash was never reviewed anywhere in the baseline:
  `repo.secret-in-history` (high): rotate it; waive it once rotated.
Private keys are reported as `repo.private-key`. Messages name file, line and secret type, never
the value. The same scans run over another checkout (the Super-App monorepo, ops/audit/apps.py)
with its own rule names and a stricter reading of its baseline (`SecretRules`).
Reads files and runs `git`; never writes into the repository except `write_baseline`, which the
CLI calls only on `--update-baseline`.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ops.audit.findings import Finding

BASELINE = ".secrets.baseline"
SECRET_WORDS = ("secret", "token", "password", "passwd", "pwd", "key", "apikey", "credential",
                "credentials")
SCANNED_DATA_DIRS = ("group_data", "inventories")
PRIVATE_KEY_TYPE = "Private Key"


def is_env_file(path: str) -> bool:
    """`.env` and `.env.<anything>` except `.env.example` (the only one allowed)."""
    name = PurePosixPath(path).name
    return name != ".env.example" and (name == ".env" or name.startswith(".env."))


def git(root: Path, *args: str, text: bool = True) -> Any:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=text).stdout


def repo_files(root: Path) -> list[str]:
    """Files git tracks or would commit (untracked, not ignored), relative to root."""
    try:
        out = git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                      and ".git" not in p.parts)
    return sorted({p for p in out.split("\0") if p and (root / p).is_file()})


def check_env_files(root: Path, files: Iterable[str]) -> list[Finding]:
    return [Finding("repo.env-file", "high", path, f"{path} is committed (or would be)",
                    "delete it, keep only .env.example, rotate every value it held",
                    key=path)
            for path in files if is_env_file(path)]


REFERENCE_WORDS = ("file", "path", "dir", "filename", "ttl", "method", "mount", "checking")
FILE_PATH = re.compile(r"~?/[\w./-]+")


def secret_name(name: str) -> bool:
    """A name that says secret/token/password/key, unless it names where one lives
    (`token_file`, `ca_path`) or how it is used (`auth_method`, pyinfra's
    `ssh_strict_host_key_checking`)."""
    words = [w for w in re.split(r"[^a-z0-9]+", str(name).lower()) if w]
    if words and words[-1] in REFERENCE_WORDS:
        return False
    return any(w in SECRET_WORDS for w in words) or "password" in str(name).lower()


def literal_secrets(node: ast.AST, path: str) -> Iterator[tuple[str, int]]:
    """(key path, line) of string literals assigned to secret-looking names in a data file."""
    def walk(value: ast.AST, key: str) -> Iterator[tuple[str, int]]:
        if isinstance(value, ast.Dict):
            for k, v in zip(value.keys, value.values, strict=True):
                name = k.value if isinstance(k, ast.Constant) else None
                sub = f"{key}.{name}" if name is not None else key
                if isinstance(name, str) and secret_name(name) and is_literal_string(v):
                    yield sub, v.lineno
                yield from walk(v, sub)
        elif isinstance(value, ast.List | ast.Tuple):
            for i, item in enumerate(value.elts):
                yield from walk(item, f"{key}.{i}")
        elif isinstance(value, ast.Call):
            for kw in value.keywords:
                if kw.arg and secret_name(kw.arg) and is_literal_string(kw.value):
                    yield f"{key}({kw.arg}=)", kw.value.lineno
                yield from walk(kw.value, key)

    for stmt in getattr(node, "body", []):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else (
            [stmt.target] if isinstance(stmt, ast.AnnAssign) else [])
        value = getattr(stmt, "value", None)
        for target in targets:
            if isinstance(target, ast.Name) and value is not None:
                if secret_name(target.id) and is_literal_string(value):
                    yield target.id, value.lineno
                yield from walk(value, target.id)


def is_literal_string(node: ast.AST) -> bool:
    """A non-empty string literal that is not a file path (`ssh_key = "/var/lib/.../id"`)."""
    return (isinstance(node, ast.Constant) and isinstance(node.value, str) and bool(node.value)
            and not FILE_PATH.fullmatch(node.value))


def check_data_secrets(root: Path) -> list[Finding]:
    """Tokens/passwords written as literal strings in inventories/ or group_data/."""
    out = []
    for directory in SCANNED_DATA_DIRS:
        for file in sorted((root / directory).glob("**/*.py")):
            rel = file.relative_to(root).as_posix()
            try:
                tree = ast.parse(file.read_text(encoding="utf-8"), filename=rel)
            except SyntaxError as exc:
                out.append(Finding("repo.data-secret", "medium", f"{rel}:{exc.lineno}",
                                   "cannot parse the file to look for literal secrets",
                                   "fix the syntax error", key=f"{rel}:syntax"))
                continue
            for key, line in literal_secrets(tree, rel):
                out.append(Finding("repo.data-secret", "high", f"{rel}:{line}",
                                   f"{key} holds a literal string: secrets come from Vault, "
                                   "never from the repo, the inventory or group_data",
                                   "remove the value, put it in Vault (catalog `secrets`), "
                                   "rotate it", key=f"{rel}:{key}"))
    return out


# ---------------------------------------------------------------- detect-secrets


def load_baseline(root: Path) -> dict[str, Any] | None:
    path = root / BASELINE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def scan_paths(root: Path, files: Iterable[str], baseline: dict[str, Any] | None,
               ) -> dict[str, list[tuple[str, str, int]]]:
    """detect-secrets over files under root -> {relative path: [(type, sha1 hash, line)]}.

    Uses the plugins and filters recorded in the baseline (defaults without one).
    """
    from detect_secrets.core.scan import scan_file
    from detect_secrets.settings import default_settings, transient_settings

    config = {k: v for k, v in (baseline or {}).items() if k in ("plugins_used", "filters_used")}
    results: dict[str, list[tuple[str, str, int]]] = {}
    context = transient_settings(config) if config else default_settings()
    with context:
        for rel in files:
            if rel == BASELINE:
                continue
            found = [(s.type, s.secret_hash, s.line_number) for s in scan_file(str(root / rel))]
            if found:
                results[rel] = sorted(set(found))
    return results


def baseline_entries(baseline: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return baseline.get("results", {}) if baseline else {}


@dataclass(frozen=True)
class SecretRules:
    """Rule names and review policy of one checkout's tree and history scans.

    `pem_rule` names detect-secrets' "Private Key" findings (PEM blocks). Set to None,
    `pem_rule`, `baseline_missing_rule`, `unreviewed_rule` mean: a private key is reported
    under `tree_rule`/`history_rule`, a missing baseline is no finding, and an unreviewed
    baseline entry is a `tree_rule` finding (high) like an unknown one: only
    `is_secret: false` silences.
    """

    tree_rule: str
    history_rule: str
    env_file_rule: str
    pem_rule: str | None
    baseline_missing_rule: str | None
    unreviewed_rule: str | None
    false_positive_fix: str  # how to record a false positive in that checkout's baseline
    remove_fix: str = "remove it from the repository and rotate it"


REPO_RULES = SecretRules(
    tree_rule="repo.secret", history_rule="repo.secret-in-history",
    env_file_rule="repo.env-file", pem_rule="repo.private-key",
    baseline_missing_rule="repo.baseline-missing",
    unreviewed_rule="repo.baseline-unreviewed",
    false_positive_fix="python -m ops.audit --update-baseline, then mark it in "
                       "`detect-secrets audit .secrets.baseline`")


def secret_finding(rule: str, where: str, kind: str, message: str, fix: str, key: str,
                   severity: str = "high", rules: SecretRules = REPO_RULES) -> Finding:
    if kind == PRIVATE_KEY_TYPE:
        rule = rules.pem_rule or rule
        fix = "remove the key from the repository and its history, revoke and replace it"
    return Finding(rule, severity, where, message, fix, key=key)


def check_tree_secrets(root: Path, files: list[str],
                       rules: SecretRules = REPO_RULES) -> list[Finding]:
    """detect-secrets over `files` of the checkout at `root` vs its `.secrets.baseline`."""
    baseline = load_baseline(root)
    out = []
    if baseline is None and rules.baseline_missing_rule:
        out.append(Finding(rules.baseline_missing_rule, "high", BASELINE,
                           "no reviewed detect-secrets baseline: every finding is unreviewed",
                           "python -m ops.audit --update-baseline, then "
                           "`detect-secrets audit .secrets.baseline`", key=BASELINE))
    entries = baseline_entries(baseline)
    for rel, found in sorted(scan_paths(root, files, baseline).items()):
        known = {(e["type"], e["hashed_secret"]): e for e in entries.get(rel, [])}
        for kind, digest, line in found:
            entry = known.get((kind, digest))
            where = f"{rel}:{line}"
            review = None if entry is None else entry.get("is_secret")
            if entry is None or (review is None and not rules.unreviewed_rule):
                message = (f"{kind} not in the reviewed baseline" if entry is None
                           else f"{kind} is in the baseline but was never reviewed")
                out.append(secret_finding(
                    rules.tree_rule, where, kind, message,
                    "remove it and rotate it; if it is not a secret: " + rules.false_positive_fix,
                    key=f"{rel}:{kind}:{digest}", rules=rules))
            elif review is True:
                out.append(secret_finding(
                    rules.tree_rule, where, kind, f"{kind} reviewed as a REAL secret",
                    rules.remove_fix, key=f"{rel}:{kind}:{digest}", rules=rules))
            elif review is None:
                out.append(secret_finding(
                    rules.unreviewed_rule, where, kind,
                    f"{kind} is in the baseline but was never reviewed",
                    "review it: `detect-secrets audit .secrets.baseline`",
                    key=f"{rel}:{kind}:{digest}", severity="medium", rules=rules))
    return out


def history_blobs(root: Path) -> dict[str, str]:
    """blob id -> one path it had, for every blob reachable from any ref (`git log --all`)."""
    try:
        out = git(root, "rev-list", "--all", "--objects")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return {}
    blobs: dict[str, str] = {}
    candidates = {}
    for line in out.splitlines():
        sha, _, path = line.partition(" ")
        # the baseline itself is made of hashes of reviewed findings: nothing to scan there
        if path and path != BASELINE:
            candidates.setdefault(sha, path)
    if not candidates:
        return {}
    checked = subprocess.run(["git", "-C", str(root), "cat-file",
                              "--batch-check=%(objectname) %(objecttype)"],
                             input="\n".join(candidates) + "\n", capture_output=True, text=True,
                             check=True).stdout
    for line in checked.splitlines():
        sha, _, kind = line.partition(" ")
        if kind == "blob":
            blobs[sha] = candidates[sha]
    return blobs


def blob_commits(root: Path) -> dict[str, str]:
    """blob id -> the first (oldest) commit that added or changed a path to it."""
    try:
        out = git(root, "log", "--all", "--reverse", "--raw", "--no-abbrev", "--no-renames",
                  "--format=commit %H")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return {}
    first: dict[str, str] = {}
    commit = ""
    for line in out.splitlines():
        if line.startswith("commit "):
            commit = line.split()[1]
        elif line.startswith(":"):
            fields = line.split()
            if len(fields) >= 4:
                first.setdefault(fields[3], commit)
    return first


def read_blobs(root: Path, shas: list[str]) -> dict[str, bytes]:
    """Contents of many blobs with one `git cat-file --batch`."""
    data = subprocess.run(["git", "-C", str(root), "cat-file", "--batch"],
                          input=("\n".join(shas) + "\n").encode(), capture_output=True,
                          check=True).stdout
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        sha, kind, size = data[pos:end].decode().split()
        start = end + 1
        out[sha] = data[start:start + int(size)]
        pos = start + int(size) + 1
    return out


def check_history(root: Path, rules: SecretRules = REPO_RULES) -> list[Finding]:
    """Every unique blob of `git log --all`, scanned once; plus `.env` paths ever committed.

    A secret whose hash the baseline marks `is_secret: false` (in any file) is not reported.
    """
    blobs = history_blobs(root)
    if not blobs:
        return []
    baseline = load_baseline(root)
    reviewed = {e["hashed_secret"] for entries in baseline_entries(baseline).values()
                for e in entries if e.get("is_secret") is False}
    commits = blob_commits(root)
    out = []
    seen_env: set[str] = set()
    for sha, path in sorted(blobs.items(), key=lambda kv: kv[1]):
        if is_env_file(path) and path not in seen_env:
            seen_env.add(path)
            commit = commits.get(sha, "")[:12] or "unknown commit"
            out.append(Finding(rules.env_file_rule, "high", f"git {commit}:{path}",
                               f"{path} was committed in history",
                               "rotate every value it held; waive this finding once rotated",
                               key=f"history:{path}"))
    contents = read_blobs(root, sorted(blobs))
    with tempfile.TemporaryDirectory(prefix="audit-history-") as tmp:
        names: list[str] = []
        for sha, path in blobs.items():
            # keep the file name: detect-secrets' filters and transformers look at it
            target = Path(tmp) / sha / PurePosixPath(path).name
            target.parent.mkdir()
            target.write_bytes(contents.get(sha, b""))
            names.append(f"{sha}/{target.name}")
        found = scan_paths(Path(tmp), names, baseline)
    reported: set[tuple[str, str]] = set()
    for rel, secrets in sorted(found.items()):
        sha = rel.split("/", 1)[0]
        path = blobs[sha]
        for kind, digest, line in secrets:
            if digest in reviewed or (path, digest) in reported:
                continue
            reported.add((path, digest))
            commit = commits.get(sha, "")[:12] or "unknown commit"
            out.append(secret_finding(
                rules.history_rule, f"git {commit}:{path}:{line}", kind,
                f"{kind} in git history (blob {sha[:12]}), not reviewed in the baseline",
                "treat it as leaked: rotate it; then waive this finding (audit-waivers.yml) "
                "with the rotation date, or purge the history",
                key=f"history:{path}:{kind}:{digest}", rules=rules))
    return out


def write_baseline(root: Path, files: list[str]) -> int:
    """Rescan the tree into `.secrets.baseline`, keeping earlier review labels (is_secret).

    Returns the number of entries that still need a review (`detect-secrets audit`).
    """
    from detect_secrets.core import baseline as ds_baseline
    from detect_secrets.core.secrets_collection import SecretsCollection
    from detect_secrets.settings import default_settings

    old = load_baseline(root)
    with default_settings():
        collection = SecretsCollection(root=str(root))
        for rel in files:
            if rel != BASELINE:
                collection.scan_file(rel)
        if old:
            collection.merge(SecretsCollection.load_from_baseline(old))
        data = ds_baseline.format_for_output(collection)
    data["results"] = dict(sorted(data["results"].items()))
    (root / BASELINE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return sum(e.get("is_secret") is None for v in data["results"].values() for e in v)
