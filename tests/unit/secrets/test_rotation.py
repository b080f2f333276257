"""ops.secrets.rotation: selection, the internal HMAC phases (what each role holds and accepts
at every point of a failure), the plan of new versions, the dry-run lines, and that no value
leaks."""

from __future__ import annotations

import itertools
import json
import pickle

import pytest

from ops.catalog.model import HMAC_ROTATION_KEY, REDIS_PREVIOUS_KEY, SecretRef
from ops.render import MappingSecrets, render_host
from ops.render.compose import service_secret_values
from ops.render.files import RenderedFile
from ops.rollout.plan import HostPlan, ServiceChange
from ops.secrets.rotation import (
    CURRENT_KEY,
    PREVIOUS_KEY,
    HmacRotation,
    RotatedSecrets,
    RotationError,
    Selection,
    advance_hmac_data,
    drop_previous_password,
    ledger_entry,
    parse_selection,
    plan_lines,
    plan_rotation,
    resumed_services,
    rotatable_refs,
    services_swapped_in_phase,
    services_using,
    start_hmac_data,
    unrelated_changes,
)
from ops.secrets.vault import KvRead

CANARY = "CANARY-rot-"
CALLERS = ["taxi", "commerce", "food", "doctors", "stays", "bus", "flights", "utilities",
           "carrental"]


@pytest.fixture(scope="module")
def local(environments):
    return environments["local"]


# --- selection ----------------------------------------------------------------------------------

def keys(selection: Selection) -> list[str]:
    return [str(r) for r in selection.refs]


def test_one_key_of_one_service(local):
    assert keys(parse_selection(local, "food/JWT_SECRET")) == ["superapp/local/food#JWT_SECRET"]
    both = parse_selection(local, "food/JWT_SECRET, taxi/ADMIN_TOKEN")
    assert keys(both) == ["superapp/local/food#JWT_SECRET", "superapp/local/taxi#ADMIN_TOKEN"]
    assert not both.internal_hmac


def test_by_kind(local):
    jwt = parse_selection(local, "jwt")
    assert {r.kind for r in jwt.refs} == {"jwt"}
    # taxi validates through JWKS: no JWT secret of its own
    assert "superapp/local/taxi#JWT_SECRET" not in keys(jwt) and len(jwt.refs) == 16
    assert keys(parse_selection(local, "admin-tokens")) == ["superapp/local/taxi#ADMIN_TOKEN"]


def test_all_is_every_generated_secret_plus_internal_hmac(local):
    selection = parse_selection(local, "all")
    assert selection.internal_hmac
    assert {r.kind for r in selection.refs} == {"jwt", "admin-token", "redis-password",
                                                   "db-password"}
    assert selection.refs == tuple(rotatable_refs(local))


@pytest.mark.parametrize("text", ["internal-hmac", "payments/INTERNAL_HMAC_SECRET",
                                  "taxi/INTERNAL_HMAC_SECRET"])
def test_internal_hmac(local, text):
    assert parse_selection(local, text) == Selection((), True)


@pytest.mark.parametrize(("text", "message"), [
    (None, "say what to rotate"),
    ("", "say what to rotate"),
    ("jwts", "unknown selector (did you mean 'jwt'?)"),
    ("fod/JWT_SECRET", "no service 'fod' in ops/catalog/services.yml (did you mean 'food'?)"),
    ("taxi/ADMIN_TOKEN_SHA256", "rotate ADMIN_TOKEN"),
    ("taxi/JWT_SECRET", "taxi has no secret 'JWT_SECRET'"),
    ("taxi/TOMTOM_API_KEY", "issued by a third party"),
    ("food/DB_PASSWORD_PREVIOUS", "rotate DB_PASSWORD"),
    ("food/DB_LOGIN", "rotate DB_PASSWORD"),
    ("payments/INTERNAL_HMAC_SECRET_PREVIOUS", "use rotate=internal-hmac"),
    ("food/REDIS_PASSWORD_PREVIOUS", "rotate REDIS_PASSWORD"),
    (f"payments/{HMAC_ROTATION_KEY}", "use rotate=internal-hmac"),
])
def test_bad_selectors_name_the_item(local, text, message):
    with pytest.raises(RotationError) as info:
        parse_selection(local, text)
    assert message in str(info.value)


def test_services_using_a_secret(local):
    assert services_using(local, SecretRef("superapp/local/taxi", "ADMIN_TOKEN",
                                           "admin-token")) == ["taxi"]
    assert services_using(local, SecretRef("superapp/local/food", "JWT_SECRET", "jwt")) == ["food"]
    hmac = local.internal_hmac_refs()["current"]
    assert services_using(local, hmac) == ["payments", *CALLERS]
    assert services_swapped_in_phase(local, 1) == ["payments"]
    assert services_swapped_in_phase(local, 2) == CALLERS
    assert services_swapped_in_phase(local, 3) == ["payments"]


# --- internal HMAC phases -----------------------------------------------------------------------

OLD, NEW = f"{CANARY}old-hmac", f"{CANARY}new-hmac"
RECORD = HmacRotation("rot-1", 1, 7, "2026-01-01T00:00:00+00:00", "ops@box")


def phase_datas() -> list[dict]:
    """Vault's KV data of the shared path: idle, phase 1, 2, 3, idle again."""
    idle = {CURRENT_KEY: OLD}
    datas = [idle, start_hmac_data(idle, NEW, RECORD)]
    record = RECORD
    while record is not None:
        data, record = advance_hmac_data(datas[-1], record)
        datas.append(data)
    return datas


def hmac_env(local, service: str, data: dict) -> dict[str, str]:
    path = local.internal_hmac_refs()["current"].path
    values = {f"{path}#{k}": v for k, v in data.items()}

    class Secrets(MappingSecrets):
        def get(self, ref):
            if ref.path == path:
                return values.get(str(ref))
            return f"{CANARY}{ref.key}"

    env = service_secret_values(local, local.services[service], Secrets({}))
    return {k: v for k, v in env.items() if k.startswith("INTERNAL_HMAC")}


def test_phase_transitions(local):
    idle, one, two, three, done = phase_datas()
    assert one == {CURRENT_KEY: NEW, PREVIOUS_KEY: OLD, HMAC_ROTATION_KEY: RECORD.to_json()}
    assert json.loads(two[HMAC_ROTATION_KEY])["phase"] == 2
    assert {k: v for k, v in two.items() if k != HMAC_ROTATION_KEY} == \
           {CURRENT_KEY: NEW, PREVIOUS_KEY: OLD}
    assert PREVIOUS_KEY not in three and json.loads(three[HMAC_ROTATION_KEY])["phase"] == 3
    assert done == {CURRENT_KEY: NEW}


def test_what_each_role_holds_in_each_phase(local):
    holds = [(hmac_env(local, "payments", d), hmac_env(local, "taxi", d)) for d in phase_datas()]
    assert holds == [
        ({CURRENT_KEY: OLD}, {CURRENT_KEY: OLD}),                      # idle
        ({CURRENT_KEY: NEW, PREVIOUS_KEY: OLD}, {CURRENT_KEY: OLD}),   # 1: callers keep old
        ({CURRENT_KEY: NEW, PREVIOUS_KEY: OLD}, {CURRENT_KEY: NEW}),   # 2: callers switch
        ({CURRENT_KEY: NEW}, {CURRENT_KEY: NEW}),                      # 3: old removed
        ({CURRENT_KEY: NEW}, {CURRENT_KEY: NEW}),                      # idle: nothing to roll
    ]


def test_each_phase_swaps_only_its_role(local):
    datas = phase_datas()
    path = local.internal_hmac_refs()["current"].path

    def envs(data):
        secrets = MappingSecrets({**{str(r): f"{CANARY}{r.key}" for r in local.all_secret_refs()
                                     if not r.optional and r.path != path},
                                  **{f"{path}#{k}": v for k, v in data.items()}})
        return {f.path: f.content for f in render_host(local, "host2", secrets)
                if f.path.startswith("/etc/superapp/env/")}

    rendered = [envs(d) for d in datas]
    changed = [sorted(p.rsplit("/", 1)[1][:-4] for p in a if a[p] != b[p])
               for a, b in itertools.pairwise(rendered)]
    assert changed == [["payments"], sorted(CALLERS), ["payments"], []]


def test_every_signature_in_use_is_accepted_wherever_a_phase_stops(local):
    """Mid-phase, any host may be before or after its swap: every caller's signing secret is
    accepted by every payments, in every combination."""
    datas = phase_datas()
    for before, after in itertools.pairwise(datas):
        payments = [hmac_env(local, "payments", d) for d in (before, after)]
        callers = [hmac_env(local, "taxi", d)[CURRENT_KEY] for d in (before, after)]
        # phase 2 starts only once phase 1 is everywhere, phase 3 once phase 2 is
        for verifier, signing in itertools.product(payments, callers):
            assert signing in verifier.values(), (before, after)


def test_a_broken_record_refuses():
    with pytest.raises(RotationError, match="unreadable rotation record"):
        HmacRotation.parse('{"phase": 9}', "superapp/local/shared/internal-hmac")
    assert HmacRotation.parse(None) is None
    assert HmacRotation.parse(RECORD.to_json()) == RECORD


# --- the plan -----------------------------------------------------------------------------------

class FakeVault:
    def __init__(self, data: dict[str, dict], version: int = 3):
        self.data, self.version, self.reads = data, version, []

    def read(self, path, version):
        self.reads.append((path, version))
        return KvRead(dict(self.data[path]), version or self.version)


def counter_values():
    n = itertools.count(1)
    return lambda kind: f"{CANARY}{kind}-{next(n)}"


def test_plan_of_one_key_keeps_the_others_and_reads_the_version_the_deploy_read(local):
    vault = FakeVault({"superapp/local/food": {"JWT_SECRET": f"{CANARY}x", "DB_PASSWORD": "p"}})
    plan = plan_rotation(local, parse_selection(local, "food/JWT_SECRET"),
                         {"superapp/local/food": 5}, vault.read, rotation_id="rot-1",
                         user="ops@box", now="t", generate=counter_values())
    assert vault.reads == [("superapp/local/food", 5)]
    (write,) = plan.writes
    assert (write.path, write.keys, write.old_version) == ("superapp/local/food",
                                                           ("JWT_SECRET",), 5)
    assert write.data == {"JWT_SECRET": f"{CANARY}jwt-1", "DB_PASSWORD": "p"}
    assert plan.overrides == {"superapp/local/food#JWT_SECRET": f"{CANARY}jwt-1"}
    assert plan.hmac is None and plan.keys == ["superapp/local/food#JWT_SECRET"]


def test_plan_starts_an_hmac_rotation(local):
    path = "superapp/local/shared/internal-hmac"
    vault = FakeVault({path: {CURRENT_KEY: OLD}})
    plan = plan_rotation(local, Selection((), True), {path: 7}, vault.read, rotation_id="rot-1",
                         user="ops@box", now="2026-01-01T00:00:00+00:00",
                         generate=lambda kind: NEW)
    assert plan.hmac == RECORD and not plan.hmac_resumed
    assert plan.writes[0].data == {CURRENT_KEY: NEW, PREVIOUS_KEY: OLD,
                                   HMAC_ROTATION_KEY: RECORD.to_json()}
    assert plan.overrides == {f"{path}#{CURRENT_KEY}": NEW, f"{path}#{PREVIOUS_KEY}": OLD,
                              f"{path}#{HMAC_ROTATION_KEY}": RECORD.to_json()}


def test_plan_resumes_the_recorded_phase_without_writing(local):
    path = "superapp/local/shared/internal-hmac"
    two = phase_datas()[2]
    plan = plan_rotation(local, Selection((), True), {path: 9}, FakeVault({path: two}).read,
                         rotation_id="rot-2", user="x", now="t")
    assert plan.writes == [] and plan.overrides == {}
    assert plan.hmac_resumed and plan.hmac.phase == 2 and plan.hmac.rotation == "rot-1"
    assert plan.hmac_version == 9
    assert plan.keys == [f"{path}#{CURRENT_KEY}"]


def test_redis_selector_is_every_service_redis_password(local):
    assert keys(parse_selection(local, "redis")) == \
        [f"superapp/local/{name}#REDIS_PASSWORD" for name in local.services]


def test_plan_of_a_redis_password_keeps_the_old_one_beside_the_new(local):
    path = "superapp/local/food"
    vault = FakeVault({path: {"REDIS_PASSWORD": f"{CANARY}old", "JWT_SECRET": "j"}})
    plan = plan_rotation(local, parse_selection(local, "food/REDIS_PASSWORD"), {path: 4},
                         vault.read, rotation_id="rot-1", user="ops", now="t",
                         generate=counter_values())
    (write,) = plan.writes
    assert (write.keys, write.old_version) == (("REDIS_PASSWORD",), 4)
    new = f"{CANARY}redis-password-1"
    assert write.data == {"REDIS_PASSWORD": new, REDIS_PREVIOUS_KEY: f"{CANARY}old",
                          "JWT_SECRET": "j"}
    assert plan.overrides == {f"{path}#REDIS_PASSWORD": new,
                              f"{path}#{REDIS_PREVIOUS_KEY}": f"{CANARY}old"}
    assert plan.two_step_paths == {path: 4} and plan.two_step_resumed == []
    # the last step: only the new password is left
    assert drop_previous_password(write.data) == {"REDIS_PASSWORD": new, "JWT_SECRET": "j"}
    lines = "\n".join(plan_lines(local, plan, dry=True))
    assert "Redis accepts the old password and the new until then" in lines
    assert f"then: the old password removed from {path}" in lines
    assert CANARY not in lines


@pytest.mark.parametrize(("login", "switched"), [(None, "food_alt"), ("food_alt", "food"),
                                                 ("food", "food_alt")])
def test_plan_of_a_database_password_moves_the_login_to_the_other_role(local, login, switched):
    path = "superapp/local/food"
    data = {"DB_PASSWORD": f"{CANARY}old", **({"DB_LOGIN": login} if login else {})}
    plan = plan_rotation(local, parse_selection(local, "food/DB_PASSWORD"), {path: 2},
                         FakeVault({path: data}).read, rotation_id="rot-1", user="ops",
                         now="t", generate=counter_values())
    (write,) = plan.writes
    new = f"{CANARY}db-password-1"
    assert write.data == {"DB_PASSWORD": new, "DB_PASSWORD_PREVIOUS": f"{CANARY}old",
                          "DB_LOGIN": switched}
    assert plan.overrides[f"{path}#DB_LOGIN"] == switched
    assert plan.two_step_paths == {path: 2}
    assert drop_previous_password(write.data) == {"DB_PASSWORD": new, "DB_LOGIN": switched}
    assert "PostgreSQL accepts the old password and the new until then" in \
        "\n".join(plan_lines(local, plan, dry=True))
    food = local.services["food"]
    vault = MappingSecrets({str(r): "v" for r in local.secret_refs(food) if not r.optional})
    rendered = service_secret_values(local, food, RotatedSecrets(vault, plan.overrides))
    assert rendered["DATABASE_URL"].startswith(f"postgresql://{switched}:")


def test_an_unfinished_redis_rotation_is_resumed_not_given_a_third_password(local):
    path = "superapp/local/food"
    data = {"REDIS_PASSWORD": f"{CANARY}b", REDIS_PREVIOUS_KEY: f"{CANARY}a", "JWT_SECRET": "j"}
    plan = plan_rotation(local, parse_selection(local, "food/REDIS_PASSWORD,food/JWT_SECRET"),
                         {path: 6}, FakeVault({path: data}).read, rotation_id="rot-2",
                         user="ops", now="t", generate=counter_values())
    (write,) = plan.writes  # the JWT secret only: the Redis passwords stay as they are
    assert write.keys == ("JWT_SECRET",)
    assert write.data == {**data, "JWT_SECRET": f"{CANARY}jwt-1"}
    assert plan.two_step_resumed == [f"{path}#REDIS_PASSWORD"] and plan.two_step_paths == {path: 6}
    assert resumed_services(local, plan) == {"food"}
    assert f"resume {path}#REDIS_PASSWORD" in "\n".join(plan_lines(local, plan, dry=False))


def test_dry_run_lines_say_what_rotates_and_restarts_without_values(local):
    path = "superapp/local/shared/internal-hmac"
    vault = FakeVault({path: {CURRENT_KEY: OLD},
                       "superapp/local/taxi": {"ADMIN_TOKEN": f"{CANARY}t"}})
    plan = plan_rotation(local, parse_selection(local, "taxi/ADMIN_TOKEN,internal-hmac"),
                         {}, vault.read, rotation_id="rot-1", user="ops", now="t",
                         generate=counter_values())
    lines = plan_lines(local, plan, dry=True)
    assert lines == [
        "rotation rot-1 (superapp/local/taxi#ADMIN_TOKEN, internal-hmac); dry run: nothing is "
        "written",
        "  rotate superapp/local/taxi#ADMIN_TOKEN (admin-token): new version of "
        "superapp/local/taxi (now v3); swaps taxi",
        "  internal-hmac: rotate superapp/local/shared/internal-hmac#INTERNAL_HMAC_SECRET in 3 "
        "phases (now v3), each host by host",
        "    phase 1: verifiers accept the new secret and the old; callers keep signing with "
        "the old; swaps payments",
        "    phase 2: callers sign with the new secret; swaps " + ", ".join(CALLERS),
        "    phase 3 (after waiting 70 s: the replay window + margin): the old secret is "
        "removed everywhere; swaps payments",
    ]
    entry = ledger_entry(plan, env="local", user="ops", started="a", finished="b",
                         result="success", steps=[{"phase": 1}], old_versions={path: 3},
                         new_versions={path: 7})
    assert entry["kind"] == "rotate" and "images" not in entry
    assert entry["keys"] == ["superapp/local/taxi#ADMIN_TOKEN", f"{path}#{CURRENT_KEY}"]
    for text in (*lines, json.dumps(entry), repr(plan), repr(plan.writes)):
        assert CANARY not in text


def test_rotated_secrets_overlay_never_shows_or_copies_values(local):
    ref = SecretRef("superapp/local/food", "JWT_SECRET", "jwt")
    base = MappingSecrets({str(ref): f"{CANARY}old"})
    secrets = RotatedSecrets(base, {str(ref): f"{CANARY}new"})
    assert secrets.get(ref) == f"{CANARY}new"
    assert CANARY not in repr(secrets) and CANARY not in str(secrets)
    with pytest.raises(TypeError):
        pickle.dumps(secrets)
    removed = RotatedSecrets(base, {str(ref): None})
    with pytest.raises(KeyError, match="missing secret superapp/local/food#JWT_SECRET"):
        removed.get(ref)


def test_a_rotation_refuses_a_host_that_is_not_on_the_release():
    def change(service, reasons):
        route = RenderedFile(f"/r/{service}", "")
        return ServiceChange(service, "a", "b", reasons, "img", "img", "h", [], route,
                             f"sa-{service}-b", f"sa-{service}-a")

    plan = HostPlan("host1", "10.0.0.1", [], set(), {"img:v2"},
                    [RenderedFile("/opt/superapp/prometheus/prometheus.yml", "")], ["prometheus"],
                    [change("payments", ["configuration or secrets changed"]),
                     change("food", ["image img:v1 -> img:v2"])], [])
    assert unrelated_changes(plan, {"payments"}) == [
        "food: image img:v1 -> img:v2", "update /opt/superapp/prometheus/prometheus.yml",
        "pull img:v2"]
    assert unrelated_changes(plan, set())[0] == "payments: configuration or secrets changed"
