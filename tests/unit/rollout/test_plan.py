"""ops.plan: what a host must do, from rendered desired state and a host snapshot (pure)."""

from __future__ import annotations

from ops.catalog import load_environment
from ops.host.state import Container, HostState
from ops.render import MappingSecrets, render_host, service_content_hash
from ops.rollout.plan import Reason, describe_reasons, plan_host, sha256

ENV = load_environment("local")
SECRETS = MappingSecrets({str(r): f"value-{r.key.lower()}-0123456789"
                          for r in ENV.all_secret_refs() if not r.optional})


def deployed_state(host: str, slot: str = "a", image: str | None = None) -> HostState:
    """A host exactly as a successful deploy of ENV leaves it."""
    slots = {s.name: slot for s in ENV.services_on(host)}
    state = HostState()
    for f in render_host(ENV, host, SECRETS, slots):
        state.files[f.path] = sha256(f.content)
    for s in ENV.services_on(host):
        name = s.container_name(slot)
        state.containers[name] = Container(name, ENV.image(s), "running", "Up (healthy)",
                                           {"superapp.service": s.name, "superapp.slot": slot})
        state.services[s.name] = {"service": s.name, "slot": slot,
                                  "image": image or ENV.image(s),
                                  "hash": service_content_hash(ENV, s.name, host, SECRETS)}
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


def test_nothing_to_change_when_the_host_matches() -> None:
    plan = plan_host(ENV, "host2", SECRETS, deployed_state("host2"))
    assert not plan.changed, (plan.services, plan.infra_files, plan.missing_images)


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
    changed = MappingSecrets({**{str(r): f"value-{r.key.lower()}-0123456789"
                                 for r in ENV.all_secret_refs() if not r.optional},
                              str(ref): "a-brand-new-jwt-secret-0123456789"})
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
