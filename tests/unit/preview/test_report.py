"""ops/preview: masking of secret files, reasons, diffs, migrations, the report (pure)."""

from __future__ import annotations

import pytest

from ops.catalog import load_environment
from ops.catalog.model import SecretRef
from ops.host.state import HostState
from ops.preview.masking import (
    MARKER_PREFIXES,
    MarkerSecrets,
    SecretStatus,
    masked_text,
    secret_layout,
    secret_statuses,
    value_changed,
)
from ops.preview.report import (
    HostPreview,
    compose_differences,
    format_host,
    format_summary,
    plain_file_diff,
    plan_migrations,
    secret_file_diff,
    service_reasons,
    short_image,
    unified,
)
from ops.render import MappingSecrets, render_host
from ops.render.files import RenderedFile
from ops.rollout.ledger import last_release
from ops.rollout.plan import plan_host, sha256

ENV = load_environment("local")
# every character a file format could mangle, and a recognisable canary
CANARY = "CANARY-v4lue:/@ 'q' \"dq\" $X #h"


def canary_secrets(tag: str = "") -> MappingSecrets:
    refs = ENV.all_secret_refs()
    return MappingSecrets({str(r): f"{CANARY}{tag}{i}" for i, r in enumerate(refs)})


def layouts(host: str, source: MappingSecrets) -> dict:
    a, b = MarkerSecrets(source), MarkerSecrets(source, MARKER_PREFIXES[1])
    ra = {f.path: f for f in render_host(ENV, host, a)}
    rb = {f.path: f for f in render_host(ENV, host, b)}
    return {p: secret_layout(ra[p].content, rb[p].content, a, b) for p, f in ra.items()
            if f.secret}


def all_statuses(old: int = 3, new: int = 3, changed=lambda ref: True) -> dict:
    refs = ENV.all_secret_refs()
    paths = {r.path for r in refs}
    return secret_statuses(refs, dict.fromkeys(paths, old), dict.fromkeys(paths, new), changed)


@pytest.mark.parametrize("host", ["host1", "host2", "host3"])
def test_no_secret_value_survives_masking(host):
    source = canary_secrets()
    for path, layout in layouts(host, source).items():
        for side in ("old", "new"):
            text = masked_text(layout, all_statuses(3, 4), side)
            assert "CANARY" not in text, path
            assert "zzvaultmarker" not in text, path


def test_env_file_line_names_path_versions_and_change():
    layout = layouts("host1", canary_secrets())["/etc/superapp/env/payments.env"]
    statuses = all_statuses(3, 4, changed=lambda ref: ref.key == "JWT_SECRET")
    new = masked_text(layout, statuses, "new")
    old = masked_text(layout, statuses, "old")
    assert "JWT_SECRET=<vault superapp/local/payments v3 -> v4: changed>" in new.splitlines()
    assert "JWT_SECRET=<vault superapp/local/payments v3>" in old.splitlines()
    # a key of the same path whose value did not change is context, not a change
    lines = [line for line in new.splitlines() if "DATABASE_URL" in line]
    assert lines == [line for line in old.splitlines() if "DATABASE_URL" in line]
    assert "#DB_PASSWORD v3 -> v4: unchanged>" in lines[0]


def test_hashed_secret_is_masked_and_attributed():
    layout = layouts("host1", canary_secrets())["/etc/superapp/env/taxi.env"]
    text = masked_text(layout, all_statuses(), "new")
    line = next(x for x in text.splitlines() if x.startswith("ADMIN_TOKEN_SHA256="))
    assert line == "ADMIN_TOKEN_SHA256=<sha256 of vault superapp/local/taxi v3: unchanged>"


def test_unknown_transformation_is_masked_whole():
    ref = SecretRef("superapp/local/x", "K", "string")
    source = MappingSecrets({str(ref): "value"})
    a, b = MarkerSecrets(source), MarkerSecrets(source, MARKER_PREFIXES[1])
    # the renderer reverses the value: no marker is recognisable, the line still differs
    content_a = f"plain\nkey = {a.get(ref)[::-1]};\n"
    content_b = f"plain\nkey = {b.get(ref)[::-1]};\n"
    layout = secret_layout(content_a, content_b, a, b)
    assert masked_text(layout, {}, "new") == "plain\nkey = <derived from a secret: masked>;\n"


def test_absent_optional_secret_keeps_absent():
    ref = SecretRef("superapp/local/x", "PREVIOUS", "hmac", optional=True)
    assert MarkerSecrets(MappingSecrets({})).get(ref) is None


def test_marker_source_never_holds_values():
    markers = MarkerSecrets(canary_secrets())
    for ref in ENV.all_secret_refs():
        assert "CANARY" not in markers.get(ref)
    assert "CANARY" not in repr(vars(markers).get("refs"))


def test_secret_status_labels():
    ref = SecretRef("superapp/staging/payments", "JWT_SECRET", "jwt")
    assert SecretStatus(ref, 3, 4, True).label("new") == \
        "<vault superapp/staging/payments v3 -> v4: changed>"
    assert SecretStatus(ref, 3, 4, True).label("old") == "<vault superapp/staging/payments v3>"
    assert SecretStatus(ref, 3, 4, False).label("old") == \
        "<vault superapp/staging/payments v3 -> v4: unchanged>"
    assert SecretStatus(ref, 3, 4, None).label("new") == \
        "<vault superapp/staging/payments v3 -> v4: path changed>"
    assert SecretStatus(ref, 4, 4, False).label("new", with_key=True) == \
        "<vault superapp/staging/payments#JWT_SECRET v4: unchanged>"
    assert SecretStatus(ref, None, 4, None).label("new") == "<vault superapp/staging/payments v4>"


def test_secret_statuses_ask_only_where_the_version_moved():
    a = SecretRef("p/a", "K", "string")
    b = SecretRef("p/b", "K", "string")
    asked = []
    out = secret_statuses([a, b], {"p/a": 1, "p/b": 2}, {"p/a": 1, "p/b": 3},
                          lambda ref: asked.append(ref) or True)
    assert asked == [b]
    assert not out[str(a)].is_changed and out[str(b)].is_changed


def test_value_changed_compares_without_returning_values():
    ref = SecretRef("p", "K", "string")
    old, new = MappingSecrets({str(ref): "x"}), MappingSecrets({str(ref): "y"})
    assert value_changed(old, new, ref) is True
    assert value_changed(new, new, ref) is False
    assert value_changed(None, new, ref) is None


def test_compose_differences_names_env_vars_and_settings():
    old = ("name: p\nservices:\n  food:\n    image: a\n    mem_limit: 256m\n"
           "    environment: {A: '1', B: '2'}\n")
    new = ("name: p\nservices:\n  food:\n    image: b\n    mem_limit: 512m\n"
           "    environment: {A: '1', B: '3', C: '4'}\n")
    assert compose_differences(old, new) == ["env B changed", "env C added", "mem_limit"]
    assert compose_differences(old, old) == []


def test_short_image():
    assert short_image("r:5000/superapp/standin:v1", "r:5000/superapp/standin:v2") == \
        "image r:5000/superapp/standin v1 -> v2"
    assert short_image("a:1", "b:2") == "image a:1 -> b:2"


def fresh_plan(host: str = "host1"):
    return plan_host(ENV, host, canary_secrets(), HostState())


def test_service_reasons_spell_out_config_and_secrets():
    change = fresh_plan().services[0]
    change.reasons = ["configuration or secrets changed"]
    status = SecretStatus(SecretRef("superapp/local/payments", "JWT_SECRET", "jwt"), 3, 4, True)
    assert service_reasons(change, ["env ALLOWED_ORIGINS changed"], [status], True) == [
        "config changed: env ALLOWED_ORIGINS changed",
        "secret JWT_SECRET changed (vault superapp/local/payments v3 -> v4)"]
    assert service_reasons(change, [], [], True) == ["env file changed"]


def test_plain_diff_and_refusal_of_secret_files():
    f = RenderedFile("/opt/superapp/x.yml", "a\nb\n")
    assert plain_file_diff(f, "host1", True, "a\nc\n").lines == [
        "--- host1:/opt/superapp/x.yml", "+++ /opt/superapp/x.yml (after the deploy)",
        "@@ -1,2 +1,2 @@", " a", "-c", "+b"]
    assert plain_file_diff(f, "host1", False, None).lines[0] == "--- /dev/null"
    with pytest.raises(ValueError):
        plain_file_diff(RenderedFile("/etc/superapp/env/a.env", "S=1", secret=True), "h",
                        True, None)


def test_secret_file_diff_without_version_change_says_so():
    layout = layouts("host1", canary_secrets())["/etc/superapp/env/food.env"]
    d = secret_file_diff("/etc/superapp/env/food.env", "host1", True, layout, all_statuses(),
                         "R1")
    assert "edited on the host" in d.lines[-1] and d.secret
    assert "rebuilt from release R1" in d.lines[0]


def test_migrations_run_once_per_release_in_rollout_order():
    plans = [fresh_plan("host1"), fresh_plan("host2")]
    out = plan_migrations(plans, set())
    migrating = [c for c in plans[0].services if c.migrate]
    assert migrating
    assert all(out["host1"][c.service] == "here" for c in migrating)
    assert all(out["host2"][c.service] == "host1" for c in migrating)
    done = {(c.service, c.image) for c in migrating}
    assert all(v == "an earlier release" for v in plan_migrations(plans, done)["host1"].values())


def test_report_order_and_summary():
    plans = [fresh_plan("host1"), plan_host(ENV, "host2", canary_secrets(), HostState())]
    previews = [HostPreview(plans[0], changed_files=[("/a", True, False), ("/b", False, True)]),
                HostPreview(plans[1])]
    host_lines = format_host(previews[0], 1, 2, {})
    assert host_lines[0].startswith("--> host1 (10.231.0.11), 1st of 2 in rollout order: ")
    assert "    create /a" in host_lines and "    change /b (holds secrets: masked)" in host_lines
    summary = format_summary("local", previews, 2)
    assert summary[0] == ("--> Dry-run summary (local): 2 of 2 host(s) would change, in this "
                          "order: host1 -> host2")
    assert summary[-1].endswith("no lock taken, no ledger entry")


def test_unchanged_host_says_so():
    state = HostState()
    plan = fresh_plan()
    for f in render_host(ENV, "host1", canary_secrets(), plan.slots):
        state.files[f.path] = sha256(f.content)
    plan.services, plan.infra_files, plan.missing_images = [], [], set()
    plan.slot_info_stale = False
    assert format_host(HostPreview(plan), 2, 3, {}) == [
        "--> host1 (10.231.0.11), 2nd of 3 in rollout order: nothing to change"]


def test_a_host_whose_slot_info_is_missing_says_it_will_write_it():
    """A host deployed before the slot info existed (ops/render/slot_metrics.py): the only
    change a dry run shows for it."""
    plan = fresh_plan()
    plan.services, plan.infra_files, plan.infra_units, plan.missing_images = [], [], [], set()
    assert plan.slot_info_stale
    assert format_host(HostPreview(plan), 2, 3, {}) == [
        "--> host1 (10.231.0.11), 2nd of 3 in rollout order: 0 service(s) to swap, 0 file(s) "
        "to change, 0 to create, 0 image(s) to pull",
        "    write /var/lib/node_exporter/textfile/superapp_services.prom (the slots and "
        "versions Prometheus joins on: missing or out of date)"]


def test_last_release_is_the_newest_success():
    entries = [{"release": "a", "result": "success", "finished": "2026-01-01"},
               {"release": "b", "result": "failed", "finished": "2026-01-03"},
               {"release": "c", "result": "success", "finished": "2026-01-02"},
               {"kind": "lock-broken"}]
    assert last_release(entries)["release"] == "c"
    assert last_release([]) is None


def test_unified_new_file():
    assert unified("/x", None, "a\n", "h") == ["--- /dev/null", "+++ /x (after the deploy)",
                                               "@@ -0,0 +1 @@", "+a"]
