"""Point-in-time recovery, the pure half: target times, `pgbackrest info`, the TLS bundle, the
rendered files and the catalog rule that keeps the repository off the db host. The drill's
commands run for real on the testbed (tests/integration/test_pitr.py)."""

from __future__ import annotations

import datetime as dt
import json
import ssl

import pytest

from ops.backup import pitr as P
from ops.backup.manifest import BackupError
from ops.catalog import load_environment
from ops.catalog.rules import check_backup_host
from ops.render import pitr
from ops.render.host import render_host
from ops.render.secrets import MappingSecrets, PlaceholderSecrets
from ops.secrets.tls import NO_CERTIFICATE, self_signed_bundle, split_bundle

ENV = load_environment("local")
NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


def info_json(*backups: tuple[str, str, int, int], code: int = 0) -> str:
    return json.dumps([{"name": "superapp", "status": {"code": code, "message": "boom"},
                        "backup": [{"label": label, "type": kind,
                                    "timestamp": {"start": start, "stop": stop},
                                    "info": {"repository": {"delta": 1000}}}
                                   for label, kind, start, stop in backups]}])


def test_a_target_needs_a_zone_and_must_be_in_the_past():
    assert P.parse_target(None, NOW) is None
    assert P.parse_target("2026-12-03T14:30:00+03:00", NOW) == NOW.replace(hour=11, minute=30)
    assert P.parse_target("2026-12-03T11:00:00Z", NOW) == NOW.replace(hour=11)
    with pytest.raises(BackupError, match="no time zone"):
        P.parse_target("2026-12-03T11:00:00", NOW)
    with pytest.raises(BackupError, match="not an ISO 8601"):
        P.parse_target("yesterday", NOW)
    with pytest.raises(BackupError, match="in the future"):
        P.parse_target("2026-12-03T13:00:00Z", NOW)


def test_a_target_before_the_oldest_backup_is_refused_with_the_oldest_restorable_time():
    first = int(NOW.timestamp()) - 7200
    backups = P.parse_info(info_json(("F1", "full", first - 60, first),
                                     ("D1", "diff", first + 600, first + 660)), "superapp")
    assert [b.kind for b in backups] == ["full", "diff"]
    P.check_target(backups, NOW - dt.timedelta(minutes=30), "repo")  # after: fine
    with pytest.raises(BackupError) as e:
        P.check_target(backups, NOW - dt.timedelta(hours=3), "repo")
    assert "oldest restorable time 2026-12-03 10:00:00+00 (end of backup F1)" in str(e.value)
    with pytest.raises(BackupError, match="holds no backup"):
        P.check_target([], None, "repo")


def test_info_of_an_unreadable_repository_is_an_error_not_an_empty_list():
    with pytest.raises(BackupError, match="boom"):
        P.parse_info(info_json(code=99), "superapp")
    with pytest.raises(BackupError, match="no stanza"):
        P.parse_info("not json", "superapp")
    assert P.parse_info(info_json(code=2), "superapp") == []  # reachable, no backup yet


def test_the_tls_bundle_is_a_key_and_a_certificate_for_the_backup_host(tmp_path):
    bundle = self_signed_bundle("test", ["10.231.0.13"], ["host3"])
    key, cert = split_bundle(bundle)
    assert key.startswith("-----BEGIN PRIVATE KEY-----") and "CERTIFICATE" not in key
    assert cert.startswith("-----BEGIN CERTIFICATE-----") and "PRIVATE" not in cert
    (tmp_path / "k.pem").write_text(key)
    (tmp_path / "c.pem").write_text(cert)
    ssl.create_default_context().load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    assert split_bundle("<vault:x#Y>") == ("<vault:x#Y>", NO_CERTIFICATE)


def secrets_with_bundle() -> MappingSecrets:
    refs = ENV.pitr_refs()
    values = {str(r): f"CANARY-{r.key}" for r in refs.values()}
    values[str(refs["tls"])] = self_signed_bundle("t", ["10.231.0.13"], [])
    placeholder = PlaceholderSecrets()

    class Secrets(MappingSecrets):
        def get(self, ref):
            return values.get(str(ref)) or placeholder.get(ref)

    return Secrets(values)


def test_postgres_archives_through_pgbackrest_and_its_secrets_stay_in_0600_files():
    secrets = secrets_with_bundle()
    host1 = {f.path: f for f in render_host(ENV, "host1", secrets)}
    data = host1["/opt/superapp/compose/data.yml"].content
    assert '"archive_command=pgbackrest --stanza=superapp archive-push %p"' in data
    assert '"/etc/superapp/pgbackrest:/etc/pgbackrest:ro"' in data
    conf = host1[pitr.PGBR_CONF]
    assert conf.secret and conf.mode == 0o600 and conf.owner == 101
    assert "repo1-cipher-pass=CANARY-REPO_CIPHER_PASS" in conf.content
    assert "repo1-s3-endpoint=10.231.0.13" in conf.content
    assert host1[pitr.REPO_CA].content.startswith("-----BEGIN CERTIFICATE-----")
    assert host1[pitr.READY_MARKER].after_apply
    for path, f in host1.items():
        if not f.secret:
            assert "CANARY-" not in f.content and "PRIVATE KEY" not in f.content, path
    host3 = {f.path: f for f in render_host(ENV, "host3", secrets)}
    assert host3[pitr.PGBR_CONF].content == conf.content  # the drill's copy
    assert host3[f"{pitr.S3_DIR}/tls.key"].secret and host3[f"{pitr.S3_DIR}/tls.key"].owner == 65534
    identities = json.loads(host3[f"{pitr.S3_DIR}/s3.json"].content)["identities"]
    assert identities[0]["actions"] == ["Read:superapp-pitr", "Write:superapp-pitr",
                                        "List:superapp-pitr", "Tagging:superapp-pitr"]
    assert '"10.231.0.13:8333:8333"' in host3["/opt/superapp/compose/backup.yml"].content
    assert pitr.PGBR_CONF not in {f.path for f in render_host(ENV, "host2", secrets)}


def hosts(*roles: list[str]) -> dict:
    return {"pitr": {"x": 1}, "hosts": [{"name": f"h{i}", "roles": r}
                                       for i, r in enumerate(roles)]}


def test_the_repository_is_never_on_the_db_host_in_prod_or_staging():
    assert check_backup_host("prod", hosts(["app"], ["db"], ["backup"])) == []
    [(where, why)] = check_backup_host("prod", hosts(["app"], ["db", "backup"]))
    assert where == "hosts.1.roles" and "losing it would lose the data" in why
    assert check_backup_host("local", hosts(["app"], ["db", "backup"])) == []
    assert "exactly one host" in check_backup_host("prod", hosts(["app"], ["db"]))[0][1]
    no_pitr = {"pitr": None, "hosts": [{"name": "h", "roles": ["backup"]}]}
    assert "`pitr` is not" in check_backup_host("prod", no_pitr)[0][1]


def test_the_bench_measures_each_sample_until_its_segment_is_archived():
    from bench.pitr import archive_delays

    seg = "00000001000000000000000"
    lines = [f"10.0|{seg}5|{seg}4", f"11.0|{seg}5|{seg}4", f"12.5|{seg}6|{seg}5",
             f"14.0|{seg}6|{seg}6", f"15.0|{seg}7|{seg}6", "garbage"]
    # the last sample's segment is never seen archived: left out, not counted as 0
    assert archive_delays(lines) == [2.5, 1.5, 1.5, 0.0]
