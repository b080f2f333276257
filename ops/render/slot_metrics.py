"""Which slot and version each service runs on a host, for Prometheus: one info series per
service, `superapp_service_slot_info{service, slot, version, image} 1`, in a file of
node-exporter's textfile collector.

Prometheus scrapes a service through Traefik's route to its live slot, with static target
labels (`service`, `host`): the slot and the version change at every swap, so they cannot be
target labels without rewriting Prometheus's configuration on every deploy. The rollout knows
them: it writes this file once traffic moved to a host's new slots, and whenever the host's
copy differs from what its records say (the plan hashes it like a managed file, so an
interrupted run or a host deployed before this file existed is put right by the next run).
Every query joins on it:

    sum by (version) (rate(http_requests_total{service="chat"}[5m])
      * on (service, host) group_left (version, slot) superapp_service_slot_info)

(the usual info-metric join, like kube-state-metrics' `kube_pod_info`). During a canary the
old and new slots are told apart by Traefik's per-slot services (ops/render/traefik.py); this
file names the live slot only, as the scrape does.
"""

from __future__ import annotations

from collections.abc import Mapping

from ops.host.state import SLOT_INFO_PATH
from ops.images.refs import parse_ref
from ops.render.files import RenderedFile

PATH = SLOT_INFO_PATH  # in node-exporter's textfile directory (TEXTFILE_DIR)
METRIC = "superapp_service_slot_info"


def label_value(value: str) -> str:
    """The exposition format's escaping of a label value: backslash, quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(slots: Mapping[str, str], images: Mapping[str, str]) -> RenderedFile:
    """The file for a host whose services run in `slots` (service -> live slot) the
    `images` (service -> image reference as the records name it: the tag, no digest). The
    records and the ledger keep the digest; the plan must render this file byte for byte from
    the catalog alone, also where no digest was resolved (the unit tests have no registry)."""
    lines = [f"# HELP {METRIC} The slot and version each service's live containers run on "
             "this host (written by the rollout).",
             f"# TYPE {METRIC} gauge"]
    for service in sorted(slots):
        image = images.get(service, "")
        labels = {"service": service, "slot": slots[service],
                  "version": parse_ref(image).tag or "" if image else "",
                  "image": image}
        text = ",".join(f'{k}="{label_value(v)}"' for k, v in labels.items())
        lines.append(f"{METRIC}{{{text}}} 1")
    return RenderedFile(PATH, "\n".join(lines) + "\n", mode=0o644, unit="slot-metrics")
