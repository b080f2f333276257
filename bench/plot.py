"""`bench/results/rollout.png`: where a rollout's time went, per host and step, over the load's
requests and failures per second (matplotlib, pinned in bench/requirements.txt, installed by
`make bench`).

One column per measured rollout (e.g. parallel_hosts 1 and 2): on top, a bar per host from
when it began to when it was done, split at each step of its timeline; below, the requests and
failed requests per second, on the same time axis (seconds since the deploy command started).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TIMELINE_HEADER = "seconds since each host's rollout began, per step:"


@dataclass
class RolloutPicture:
    label: str
    offset: float  # seconds from the deploy command's start to the rollout's start
    hosts: dict[str, dict]  # host -> {"began": s, "timeline": {step: s}}
    load: Sequence[tuple[int, int, int]]  # (second since the deploy began, requests, failed)


def parse_timeline(text: str) -> dict[str, dict[str, float]]:
    """The rollout's printed timeline table -> host -> step -> seconds (pure)."""
    if TIMELINE_HEADER not in text:
        return {}
    lines = text.split(TIMELINE_HEADER, 1)[1].strip().splitlines()
    steps = lines[0].split()[1:]
    out: dict[str, dict[str, float]] = {}
    for line in lines[1:]:
        cells = line.split()
        if len(cells) != len(steps) + 1 or not re.fullmatch(r"[\w.-]+", cells[0]):
            break
        out[cells[0]] = {s: float(v) for s, v in zip(steps, cells[1:], strict=True) if v != "-"}
    return out


def parse_began(text: str) -> dict[str, float]:
    """host -> `+N.Ns` of the summary table's `began` column."""
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        r"^(\S+)\s+.*\s\d+\.\ds\s+\+(\d+\.\d)s$", text, re.M)}


def draw(pictures: Sequence[RolloutPicture], path: Path) -> Path | None:
    """Write the PNG; None (and nothing written) when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(2, len(pictures), figsize=(7 * len(pictures), 6), squeeze=False,
                             sharex="col", gridspec_kw={"height_ratios": [2, 1]})
    colours = plt.get_cmap("tab20").colors
    legend: dict[str, object] = {}
    for col, pic in enumerate(pictures):
        top, bottom = axes[0][col], axes[1][col]
        names = sorted(pic.hosts, reverse=True)
        for y, host in enumerate(names):
            began = pic.offset + pic.hosts[host]["began"]
            previous = 0.0
            for i, (step, t) in enumerate(pic.hosts[host]["timeline"].items()):
                bar = top.barh(y, t - previous, left=began + previous, height=0.6,
                               color=colours[i % len(colours)], edgecolor="white")
                legend.setdefault(step, bar)
                previous = t
        top.set_yticks(range(len(names)), names)
        top.set_title(pic.label)
        seconds = [s for s, _, _ in pic.load]
        bottom.plot(seconds, [n for _, n, _ in pic.load], label="requests/s")
        bottom.plot(seconds, [b for _, _, b in pic.load], label="failed/s", color="red")
        bottom.set_xlabel("seconds since the deploy command started")
        bottom.legend(loc="upper right", fontsize="small")
    fig.legend(list(legend.values()), list(legend), loc="upper center",
               ncol=min(len(legend), 8), fontsize="small", title="step reached (bar ends)")
    fig.tight_layout(rect=(0, 0, 1, 0.88))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
