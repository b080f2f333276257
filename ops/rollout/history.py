"""The release history of an environment, read from every host's ledger, and the rollback
target it implies (pure).

A release is *complete* when it succeeded on every host of the environment: a failed, an
interrupted or a `--limit` release never counts as "current", because part of the fleet never
ran it. The complete releases form a stack: a deploy pushes, a rollback pops back to the
release it restored. A rollback then goes back to:

- the top of that stack when the fleet does not run it everywhere (a rollout that stopped
  half-way, or a `--limit` deploy): every host returns to the last release all of them ran;
- otherwise the release below the top (the one before the current one); so two rollbacks in a
  row go back two releases, never forward again to the release the first one undid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ops.catalog.model import Environment
from ops.host.state import HostState, held_percent

RELEASE_KINDS = ("deploy", "rollback")
HOST_OK = ("changed", "unchanged")


def merged_releases(entries: Iterable[dict]) -> list[dict]:
    """Every release line of the given ledgers (several hosts repeat the same line), once,
    oldest first. Lock breaks and other non-release lines are left out."""
    releases: dict[str, dict] = {}
    for e in entries:
        if e.get("release") and e.get("result") and e.get("kind", "deploy") in (
                *RELEASE_KINDS, "rotate"):
            releases.setdefault(e["release"], e)
    return sorted(releases.values(), key=lambda e: (e.get("finished", ""), e["release"]))


def is_complete(entry: dict, hosts: Iterable[str]) -> bool:
    """Whether `entry` is a release every one of `hosts` ran to the end."""
    ran = entry.get("hosts") or {}
    return (entry.get("kind", "deploy") in RELEASE_KINDS and entry.get("result") == "success"
            and bool(entry.get("images"))
            and all((ran.get(h) or {}).get("result") in HOST_OK for h in hosts))


def release_stack(releases: Sequence[dict], hosts: Iterable[str]) -> list[dict]:
    """The complete releases still "in force", oldest first (a rollback pops what it undid)."""
    hosts = list(hosts)
    stack: list[dict] = []
    for e in releases:
        if not is_complete(e, hosts):
            continue
        back_to = e.get("rolled_back_to")
        ids = [s["release"] for s in stack]
        if e.get("kind") == "rollback" and back_to in ids:
            del stack[ids.index(back_to) + 1:]
            continue
        if stack and same_bits(stack[-1], e):
            continue  # nothing changed (a no-op or a re-run): the same release in force
        stack.append(e)
    return stack


def same_bits(a: dict, b: dict) -> bool:
    """Whether two releases deploy the same images (by digest where both recorded one)."""
    da, db = a.get("image_digests") or {}, b.get("image_digests") or {}
    return a["images"] == b["images"] and all(
        da[s] == db[s] for s in da.keys() & db.keys())


def runs(record: dict, entry: dict, service: str) -> bool:
    """Whether a host's live record of `service` is what release `entry` deployed."""
    if record.get("image") != entry["images"].get(service):
        return False
    want = (entry.get("image_digests") or {}).get(service)
    return not want or not record.get("digest") or record["digest"] == want


def fleet_images(environment: Environment, states: Mapping[str, HostState]) -> dict[
        tuple[str, str], str]:
    """(host, service) -> the image its live slot runs, for every placed service ("" when the
    host has no record of it)."""
    return {(h.name, s.name): (states[h.name].services.get(s.name) or {}).get("image", "")
            for h in environment.hosts if h.name in states
            for s in environment.services_on(h.name)}


@dataclass(frozen=True)
class RollbackTarget:
    release: dict
    reason: str  # one line: why this release


def rollback_target(environment: Environment, states: Mapping[str, HostState],
                    wanted: str | None = None) -> RollbackTarget:
    """The release a rollback restores (LookupError saying why there is none).

    `states` must hold every host of the environment: the history is the merge of all their
    ledgers, and "does the fleet run the current release" needs every host.
    """
    missing = [h.name for h in environment.hosts if h.name not in states]
    if missing:
        raise LookupError(f"a rollback reads every host's ledger: {', '.join(missing)} not in "
                          "this run (do not use --limit with a rollback)")
    releases = merged_releases(e for s in states.values() for e in s.ledger)
    if wanted:
        match = [e for e in releases if e["release"] == wanted]
        if not match:
            raise LookupError(f"no release {wanted!r} in the ledgers")
        if not is_complete(match[0], [h.name for h in environment.hosts]):
            raise LookupError(f"release {wanted!r} did not succeed on every host "
                              f"(result {match[0].get('result')}); pick a complete one "
                              "(make releases)")
        return RollbackTarget(match[0], f"release {wanted} named by --data release")
    stack = release_stack(releases, [h.name for h in environment.hosts])
    if not stack:
        raise LookupError("the ledgers hold no release that succeeded on every host")
    top = stack[-1]
    running = fleet_images(environment, states)
    off = sorted({f"{h} runs {svc} {img.rpartition(':')[2] or 'nothing'}"
                  for (h, svc), img in running.items()
                  if not runs(states[h].services.get(svc) or {}, top, svc)})
    off += held_canaries(states)
    if off:
        return RollbackTarget(top, f"the fleet is not all on release {top['release']} ("
                              + "; ".join(off[:3]) + ("; ..." if len(off) > 3 else "")
                              + "): every host goes back to it")
    if len(stack) < 2:
        raise LookupError(f"release {top['release']} runs everywhere and is the oldest "
                          "complete release in the ledgers: there is nothing to go back to")
    return RollbackTarget(stack[-2], f"the fleet runs release {top['release']} everywhere: "
                          "back to the one before it")


def held_canaries(states: Mapping[str, HostState]) -> list[str]:
    """"<host> holds a canary of <service> <tag> at N%" for every held canary (`--data
    canary=hold`): a rollback from a hold goes back to the release the fleet still records,
    and puts that host's route back (the held change is not the current release)."""
    return sorted(f"{h} holds a canary of {svc} {(i.get('image') or '').rpartition(':')[2]} "
                  f"at {held_percent(i)}%" for h, st in states.items()
                  for svc, i in st.intents.items() if held_percent(i) is not None)


def rollback_lines(environment: Environment, states: Mapping[str, HostState],
                   target: dict) -> list[str]:
    """Per host and service that changes: `now -> target`, by tag and short digest."""
    lines = []
    running = fleet_images(environment, states)
    for (h, svc), now in running.items():  # hosts in rollout order, services in catalog order
        to = target["images"].get(svc, "")
        now_digest = (states[h].services.get(svc) or {}).get("digest") or \
            states[h].digests.get(now, "")
        to_digest = (target.get("image_digests") or {}).get(svc) or (
            (target.get("hosts") or {}).get(h) or {}).get("digests", {}).get(to, "")
        if to and (to != now or (to_digest and now_digest and to_digest != now_digest)):
            lines.append(f"{h} {svc}: {label(now, now_digest)} -> {label(to, to_digest)}")
    return lines


def schema_heads(releases: Sequence[dict], upto: str | None = None) -> dict[str, str]:
    """service -> the schema head its last migration reported, over `releases` (oldest first)
    up to and including release `upto` (all when None). Failed releases count: a migration
    that ran before its host failed changed the schema all the same."""
    heads: dict[str, str] = {}
    for e in releases:
        heads.update(e.get("migrations") or {})
        if e["release"] == upto:
            break
    return heads


def head_lines(releases: Sequence[dict], target: str) -> list[str]:
    """One line per service whose schema stays newer than the target release's (a rollback
    runs no migration: the old code must cope, see ops/runbooks/rollback.md)."""
    now, then = schema_heads(releases), schema_heads(releases, target)
    return [f"{svc}: schema stays at {head!r}; release {target} had "
            f"{then.get(svc, 'no recorded migration')!r} (no migration runs on rollback)"
            for svc, head in sorted(now.items()) if then.get(svc) != head]


def label(image: str, digest: str) -> str:
    tag = image.rpartition(":")[2] if image else "nothing"
    short = digest.removeprefix("sha256:")[:12]
    return f"{tag} ({short})" if short else tag


def release_rows(releases: Sequence[dict]) -> list[tuple[str, ...]]:
    """`make releases`: id, finished, who, commit, kind, result, hosts, services changed."""
    rows = []
    for e in releases:
        hosts = e.get("hosts") or {}
        changed = sorted({c for r in hosts.values() for c in (r.get("changed") or [])})
        kind = e.get("kind", "deploy") + (f" -> {e['rolled_back_to']}"
                                          if e.get("rolled_back_to") else "")
        rows.append((e["release"], (e.get("finished") or e.get("started") or "?")[:19],
                     e.get("user", "?"), e.get("commit", "?"), kind, e.get("result", "?"),
                     ", ".join(f"{h}:{(r or {}).get('result', '?')}"
                               for h, r in sorted(hosts.items())) or "-",
                     ", ".join(changed) or "-"))
    return rows
