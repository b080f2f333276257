"""Pre-staging: before the first host changes, every host of the run pulls the images it lacks
and shows enough free disk for them, all hosts at once.

A host that cannot pull a tag (its registry mirror, its network, a full disk) is found while the
whole fleet still runs the old release, not after the rollout changed the hosts before it. The
hosts work in parallel (one greenlet per host on pyinfra's open connections), so the time is the
slowest host's, not the sum. The per-host rollout then pulls nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import gevent

from ops.host import commands as cmd
from ops.host.remote import Remote
from ops.rollout.plan import HostPlan
from ops.rollout.steps import RolloutError, say


def prestage_host(remote: Remote, plan: HostPlan, min_free_mb: int) -> str | None:
    """Check the disk, pull what is missing; a problem (one line, naming the host) or None."""
    ok, out, err = remote.run(cmd.docker_free_mb(), timeout=60)
    try:
        free = int(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return f"{remote.name}: cannot read the free disk of Docker's data root: " \
               f"{(err or out).strip()[-200:]}"
    if free < min_free_mb:
        return (f"{remote.name}: {free} MB free for Docker's images, fewer than the "
                f"{min_free_mb} MB rollout.min_free_disk_mb asks for")
    if plan.missing_images:
        ok, out, err = remote.run(cmd.pull_images(plan.missing_images), timeout=1800)
        if not ok:
            return f"{remote.name}: pulling {', '.join(sorted(plan.missing_images))} failed: " \
                   + " ".join((err or out).split())[-400:]
    return None


def prestage(plans: Sequence[HostPlan], remotes: Mapping[str, Remote], min_free_mb: int) -> None:
    """Every changed host at once; RolloutError listing every host that failed (nothing was
    changed then: pulling an image changes nothing that runs). Hosts that pulled are marked so
    (`plan.prestaged`): their rollout pulls nothing again."""
    work = [p for p in plans if p.changed]
    if not work:
        return
    pulls = sum(len(p.missing_images) for p in work)
    print(f"--> pre-staging {len(work)} host(s) in parallel: disk, {pulls} image pull(s)",
          flush=True)
    jobs = [(p, gevent.spawn(prestage_host, remotes[p.host], p, min_free_mb)) for p in work]
    gevent.joinall([g for _, g in jobs])
    problems = []
    for plan, job in jobs:
        if job.exception is not None:
            problems.append(f"{plan.host}: {type(job.exception).__name__}: {job.exception}")
        elif job.value:
            problems.append(job.value)
        else:
            if plan.missing_images:
                say(plan.host, f"pulled {len(plan.missing_images)} image(s)")
            plan.prestaged = True
    if problems:
        raise RolloutError("pre-staging failed, no host was changed:\n  "
                           + "\n  ".join(problems))
