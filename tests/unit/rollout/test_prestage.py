"""Pre-staging against scripted hosts: every host pulls and shows its disk before the first host
changes, all at once; one host that cannot pull, or lacks disk, stops the run with nothing
changed anywhere."""

from __future__ import annotations

import time

import gevent
import pytest

from ops.rollout.engine import rollout
from ops.rollout.ledger import Release
from ops.rollout.steps import RolloutError
from tests.unit.rollout.test_engine import ENV, FakeRemote, changed_fleet, prestaging

MIN_FREE = ENV.settings["rollout"]["min_free_disk_mb"]
NEW_IMAGE = "10.231.0.1:5000/superapp/standin:v9"


def new_image_fleet():
    """Every host swaps, and lacks the new release's image."""
    plans, remotes = changed_fleet()
    for plan in plans:
        plan.missing_images = {NEW_IMAGE}
    return plans, remotes


class SlowPuller(FakeRemote):
    """A host whose pulls take a while, logging when they start and end (shared clock)."""

    def __init__(self, name: str, log: list):
        super().__init__(name)
        self.log = log

    def run(self, command: str, timeout: int | None = None) -> tuple[bool, str, str]:
        if "docker pull" in command:
            self.log.append(("start", self.name, time.monotonic()))
            gevent.sleep(0.3)
            self.log.append(("end", self.name, time.monotonic()))
        elif not prestaging(command):
            self.log.append(("change", self.name, time.monotonic()))
        return super().run(command, timeout)


def test_every_host_pulls_at_once_before_the_first_host_changes() -> None:
    plans, _ = new_image_fleet()
    log: list = []
    remotes = [SlowPuller(p.host, log) for p in plans]
    rollout(ENV, plans, remotes, Release(env="local", commit="abc"))
    starts = [t for kind, _, t in log if kind == "start"]
    ends = [t for kind, _, t in log if kind == "end"]
    first_change = min(t for kind, _, t in log if kind == "change")
    assert len(starts) == len(plans) == 3  # one pull per host, and only one
    assert max(starts) < min(ends)  # all three pulling at the same time
    assert max(ends) <= first_change  # all before any host changed


def test_a_host_that_cannot_pull_stops_the_run_before_any_host_changes() -> None:
    plans, remotes = new_image_fleet()
    remotes[2].unpullable = {NEW_IMAGE}
    with pytest.raises(RolloutError) as info:
        rollout(ENV, plans, remotes, Release(env="local", commit="abc"))
    assert str(info.value).startswith("pre-staging failed, no host was changed:\n  host3: "
                                      "pulling ")
    assert f"manifest for {NEW_IMAGE} not found" in str(info.value)
    for remote in remotes:
        assert all(prestaging(c) for c in remote.commands), remote.name


def test_a_host_short_of_disk_is_named_with_the_numbers() -> None:
    plans, remotes = changed_fleet()
    remotes[1].free_mb = 300
    with pytest.raises(RolloutError) as info:
        rollout(ENV, plans, remotes, Release(env="local", commit="abc"))
    assert (f"host2: 300 MB free for Docker's images, fewer than the {MIN_FREE} MB "
            "rollout.min_free_disk_mb asks for") in str(info.value)
    assert all(prestaging(c) for r in remotes for c in r.commands)
