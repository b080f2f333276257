"""ops.rollout.plan: what a host must do, from rendered desired state and a host snapshot (pure)."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from ops.catalog import load_environment
from ops.catalog.model import SecretRef
from ops.host.state import Container, HostState, parse_host_state
from ops.render import MappingSecrets, render_host, service_content_hash, slot_metrics
from ops.rollout.plan import (
    HostPlan,
    Reason,
    describe_reasons,
    live_slots,
    other_slot,
    plan_host,
    plan_lines,
    sha256,
)
from ops.secrets.bootstrap import fake_value
from ops.secrets.vault import VaultError

ENV = load_environment("local")

# host2 of the testbed right after a real deploy with SECRETS in Vault (the output of
# ops.host.state.STATE_SCRIPT). Re-record with the script beside it whenever group_data/local.py,
# the catalog or the templates change what host2 renders:
#     .venv/bin/python tests/fixtures/hoststate/record_known_secrets.py
RECORDING = Path(__file__).parents[2] / "fixtures" / "hoststate" / "host2-known-secrets.txt"
RECORD_COMMAND = ".venv/bin/python tests/fixtures/hoststate/record_known_secrets.py"


def known_certificate(domain: str) -> str:
    """A key + certificate bundle for `domain` that is the same on every call: an Ed25519 key
    from a seed (its signatures are deterministic too) and fixed dates, so a deploy accepts it
    (tls.certificate_problems) and the recording's file hashes stay reproducible. Test-only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.x509.oid import NameOID

    key = ed25519.Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(f"superapp-test-plan {domain}".encode()).digest())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
            .not_valid_after(dt.datetime(2126, 1, 1, tzinfo=dt.UTC))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
            .sign(key, None))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode()
            + cert.public_bytes(serialization.Encoding.PEM).decode())


def known_value(ref: SecretRef) -> str:
    """A deterministic test value for `ref`. Settings issued elsewhere (URL, e-mail, SMTP
    host:port, plain strings) get the bootstrap's well-formed fakes, since Alertmanager refuses a
    smarthost without a port; an edge certificate a usable fixed bundle; every generated kind
    (jwt, password, hmac...) a marked string."""
    if ref.kind == "tls-certificate":  # the key is the domain
        return known_certificate(ref.key)
    try:
        return fake_value(ref, ENV.name)
    except VaultError:  # no fake for a kind the bootstrap generates at random
        return f"value-{ref.key.lower()}-0123456789"


# The one set of secret values of these tests (and of test_engine.py), also the values the
# recording was deployed with (record_known_secrets.py writes exactly these to Vault).
KNOWN_VALUES = {str(r): known_value(r) for r in ENV.all_secret_refs() if not r.optional}
SECRETS = MappingSecrets(KNOWN_VALUES)


def recorded_host2() -> HostState:
    return parse_host_state(RECORDING.read_text().splitlines())


def recorded_env(state: HostState):
    """ENV as the recorded deploy ran it: each service pinned to the digest its record holds
    (a deploy resolves tags through the registry; unit tests cannot)."""
    return ENV.with_digests({name: record["digest"] for name, record in state.services.items()
                             if record.get("digest")})


def deployed_state(host: str, slot: str = "a", image: str | None = None) -> HostState:
    """A synthetic approximation of a host after a successful deploy of ENV, built with the
    same render functions the plan uses: good for what the rollout does with a plan
    (test_engine.py), blind to any disagreement between a real deploy and the plan. The no-op
    contract is checked against a real host's recording instead (RECORDING)."""
    slots = {s.name: slot for s in ENV.services_on(host)}
    state = HostState()
    for f in render_host(ENV, host, SECRETS, slots):
        state.files[f.path] = sha256(f.content)
    for s in ENV.services_on(host):
        for sidecar in (None, *(sc.name for sc in ENV.sidecars_on(s, host))):
            name = s.container_name(slot, sidecar)
            state.containers[name] = Container(
                name, ENV.image(s), "running", "Up (healthy)",
                {"superapp.service": s.name, "superapp.slot": slot,
                 "com.docker.compose.project": f"sa-{s.dns_name}-{slot}"})
        state.services[s.name] = {"service": s.name, "slot": slot,
                                  "image": image or ENV.image(s),
                                  "hash": service_content_hash(ENV, s.name, host, SECRETS)}
    info = slot_metrics.render(slots, {s.name: image or ENV.image(s)
                                       for s in ENV.services_on(host)})
    state.files[info.path] = sha256(info.content)
    state.images = {ENV.image(s) for s in ENV.services_on(host)}
    for f in render_host(ENV, host, SECRETS, slots):
        if "/compose/" in f.path:
            state.images |= {line.split('"')[1] for line in f.content.splitlines()
                             if line.strip().startswith("image:")}
    return state


def test_a_fresh_host_deploys_everything_in_slot_a() -> None:
    plan = plan_host(ENV, "host2", SECRETS, HostState())
    assert [c.service for c in plan.services] == [s.name for s in ENV.services_on("host2")]
    assert {c.new_slot for c in plan.services} == {"a"}
    assert all(c.reasons == ["not deployed yet"] and c.old_project is None
               for c in plan.services)
    assert "edge" in plan.infra_units and plan.missing_images


def differences(plan: HostPlan, state: HostState) -> str:
    """Why a plan against the recording is not a no-op, as a reader needs it."""
    host, env = plan.host, recorded_env(state)
    files = [f"  {f.path} ({f.unit}): recorded {state.files.get(f.path, 'absent')[:12]}, "
             f"rendered {sha256(f.content)[:12]}"
             for f in render_host(env, host, SECRETS, live_slots(env, host, state))
             if state.files.get(f.path) != sha256(f.content)]
    records = []
    for s in env.services_on(host):
        record = state.services.get(s.name) or {}
        expected = {"image": env.image(s),
                    "hash": service_content_hash(env, s.name, host, SECRETS)}
        records += [f"  {s.name} {key}: recorded {record.get(key)}, expected {want}"
                    for key, want in expected.items() if record.get(key) != want]
    return "\n".join([
        f"{host} as a real deploy left it (recorded) differs from what the plan expects:",
        *[f"  plan: {line}" for line in plan_lines(plan)],
        "files rendered for the live slots that differ from the recording:",
        *(files or ["  none"]),
        "service records that differ:",
        *(records or ["  none"]),
        "If group_data/local.py, the catalog or the templates changed on purpose, re-record "
        f"(testbed up, no integration run): {RECORD_COMMAND}",
    ])


def test_nothing_to_change_on_a_host_a_real_deploy_left() -> None:
    state = recorded_host2()
    assert set(state.services) == {s.name for s in ENV.services_on("host2")}
    plan = plan_host(recorded_env(state), "host2", SECRETS, state)
    assert not plan.changed, differences(plan, state)
    assert plan.unchanged == [s.name for s in ENV.services_on("host2")]


def test_a_new_image_on_the_recorded_host_swaps_exactly_that_service() -> None:
    state = recorded_host2()
    payments = ENV.services["payments"]
    bumped = ENV.image(payments).rpartition(":")[0] + ":v99"
    plan = plan_host(recorded_env(state).with_images({"payments": bumped}), "host2", SECRETS,
                     state)
    assert [c.service for c in plan.services] == ["payments"]
    change = plan.services[0]
    live = state.services["payments"]["slot"]
    assert change.reasons == [Reason.IMAGE]
    assert (change.old_slot, change.new_slot) == (live, other_slot(live))
    assert change.old_image == ENV.image(payments) and change.image == bumped
    assert change.migrate
    assert plan.missing_images == {bumped}
    assert not plan.infra_files and not plan.leftover_containers and not plan.leftover_files


def test_a_re_pushed_tag_swaps_to_the_new_bits_pinned_by_digest_and_migrates() -> None:
    state = recorded_host2()
    moved = "sha256:" + "7" * 64
    assert state.services["payments"]["digest"] not in ("", moved)
    plan = plan_host(recorded_env(state).with_digests({"payments": moved}), "host2", SECRETS,
                     state)
    assert [c.service for c in plan.services] == ["payments"]
    change = plan.services[0]
    assert change.reasons == [Reason.DIGEST] and change.migrate
    pinned_ref = f"{ENV.image(ENV.services['payments'])}@{moved}"
    assert change.bits == pinned_ref and plan.missing_images == {pinned_ref}
    compose = next(f.content for f in change.files if f.path.endswith(".yml"))
    images = [line.split(":", 1)[1].strip().strip('"') for line in compose.splitlines()
              if line.strip().startswith("image:")]
    assert images and set(images) == {pinned_ref}  # the service and each of its sidecars
    assert describe_reasons(change) == [
        f"image {change.image} moved: {state.services['payments']['digest'][7:19]} -> "
        "777777777777"]
    assert plan.digests_after["payments"] == moved


def test_the_same_bits_with_or_without_the_pin_are_a_config_swap_never_a_migration() -> None:
    state = recorded_host2()  # every service pinned by the deploy that was recorded
    plan = plan_host(ENV, "host2", SECRETS, state)  # tags only: what a tool before pins renders
    assert [(c.service, c.reasons, c.migrate) for c in plan.services] == [
        (s.name, [Reason.CONFIG], False) for s in ENV.services_on("host2")]


def test_new_image_swaps_to_the_other_slot_and_migrates() -> None:
    plan = plan_host(ENV, "host2", SECRETS,
                     deployed_state("host2", slot="a", image="reg/superapp/standin:v0"))
    payments = next(c for c in plan.services if c.service == "payments")
    assert (payments.old_slot, payments.new_slot) == ("a", "b")
    assert payments.reasons[0] is Reason.IMAGE
    assert describe_reasons(payments)[0].startswith("image reg/superapp/standin:v0 -> ")
    assert payments.migrate and payments.old_project == "sa-payments-a"
    assert payments.new_project == "sa-payments-b"
    assert '"http://payments-b:8000"' in payments.route.content
    assert not plan.infra_files


def test_a_changed_secret_swaps_only_the_services_that_use_it() -> None:
    state = deployed_state("host2")
    ref = next(r for r in ENV.secret_refs(ENV.services["food"]) if r.key == "JWT_SECRET")
    changed = MappingSecrets({**KNOWN_VALUES, str(ref): "a-brand-new-jwt-secret-0123456789"})
    plan = plan_host(ENV, "host2", changed, state)
    assert [c.service for c in plan.services] == ["food"]
    assert plan.services[0].reasons == ["configuration or secrets changed"]
    assert not plan.services[0].migrate  # same image: no migration


def test_a_hand_edited_file_or_stopped_container_is_repaired() -> None:
    state = deployed_state("host2")
    state.files["/opt/superapp/compose/chat.yml"] = "0" * 64
    state.containers["bus-a"].state = "exited"
    plan = plan_host(ENV, "host2", SECRETS, state)
    reasons = {c.service: c.reasons for c in plan.services}
    assert reasons == {"chat": ["files on the host differ from the release"],
                       "bus": ["container not running"]}


def test_leftovers_of_an_interrupted_run_are_cleaned() -> None:
    state = deployed_state("host2")
    state.containers["chat-b"] = Container("chat-b", "x", "running", "Up",
                                           {"superapp.service": "chat", "superapp.slot": "b"})
    state.files["/opt/superapp/compose/chat.yml.prev"] = "1" * 64
    plan = plan_host(ENV, "host2", SECRETS, state)
    assert plan.changed and not plan.services
    assert plan.leftover_containers == ["chat-b"]
    assert plan.leftover_files == ["/opt/superapp/compose/chat.yml.prev"]
