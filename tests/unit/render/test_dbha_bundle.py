"""ops/render/dbha.py: the database cluster's files on each host, by its part (etcd member,
Patroni member, router); checked by `docker compose config`, Patroni's own validator and
OpenSSL, and for where each secret goes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from ops.catalog import load_environment
from ops.render import PlaceholderSecrets, host_directories, pitr, render_host
from ops.render.dbha import HAPROXY_FILE, PATRONI_FILE, TLS_DIR, directories, render_files
from ops.render.files import DATA_DIR
from ops.secrets.tls import split_bundle
from ops.validate import check_compose
from tests.unit.dbha.cluster_data import ClusterSecrets, add_cluster
from tests.unit.secrets.test_cluster_ca import verify

COMPOSE = "/opt/superapp/compose/dbha.yml"
PATRONI_UID = 102  # group_data/all.py data_uids.patroni
ETCD_UID = 100  # data_uids.etcd


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    from tests.unit.conftest import RepoCopy

    repo = RepoCopy(tmp_path_factory.mktemp("repo") / "repo")
    add_cluster(repo)
    environment = repo.load()
    return environment, ClusterSecrets(environment)


def files_of(clustered, host: str) -> dict[str, object]:
    environment, secrets = clustered
    return {f.path: f for f in render_files(environment, environment.host(host), secrets)}


def test_each_host_gets_the_files_of_its_parts_only(clustered) -> None:
    tls = {f"{TLS_DIR}/etcd/{n}" for n in ("ca.crt", "member.crt", "member.key")}
    client = {f"{TLS_DIR}/patroni/{n}" for n in ("ca.crt", "etcd-client.crt", "etcd-client.key")}
    assert set(files_of(clustered, "db-1")) == {COMPOSE, PATRONI_FILE, *tls, *client}
    assert set(files_of(clustered, "mon-1")) == {COMPOSE, *tls}
    assert set(files_of(clustered, "app-1")) == {COMPOSE, HAPROXY_FILE}
    assert files_of(clustered, "backup-1") == {}
    environment, _ = clustered
    assert directories(environment, environment.host("db-2")) == [
        (f"{DATA_DIR}/etcd", 0o700, ETCD_UID), (f"{DATA_DIR}/patroni", 0o700, PATRONI_UID)]


def test_secrets_are_0600_for_their_reader_and_nowhere_else(clustered) -> None:
    environment, secrets = clustered
    files = files_of(clustered, "db-1")
    for path, owner in ((PATRONI_FILE, PATRONI_UID), (f"{TLS_DIR}/etcd/member.key", ETCD_UID),
                        (f"{TLS_DIR}/patroni/etcd-client.key", PATRONI_UID)):
        assert (files[path].mode, files[path].secret, files[path].owner) == (0o600, True, owner)
    refs = environment.dbha_refs()
    passwords = [secrets.get(refs[n]) for n in ("superuser", "replication", "rewind",
                                                "rest_api")]
    ca_key = split_bundle(secrets.get(refs["ca"]))[0]
    for host in ("db-1", "mon-1", "app-1"):
        for f in files_of(clustered, host).values():
            assert ca_key not in f.content, f"the CA's key is in {host}:{f.path}"
            if not f.secret:
                assert not [p for p in passwords if p in f.content], f"{host}:{f.path}"
                assert "PRIVATE KEY" not in f.content, f"{host}:{f.path}"
    assert all(p in files[PATRONI_FILE].content for p in passwords)


def test_the_hosts_certificate_is_its_own_and_verifies_against_the_cluster_ca(
        clustered, tmp_path: Path) -> None:
    environment, secrets = clustered
    files = files_of(clustered, "db-2")
    ca = files[f"{TLS_DIR}/etcd/ca.crt"].content
    assert files[f"{TLS_DIR}/patroni/ca.crt"].content == ca
    leaf = files[f"{TLS_DIR}/patroni/etcd-client.key"].content + \
        files[f"{TLS_DIR}/patroni/etcd-client.crt"].content
    ca_bundle = secrets.get(environment.dbha_refs()["ca"])
    for purpose in ("sslserver", "sslclient"):
        assert verify(tmp_path, ca_bundle, leaf, purpose).returncode == 0
    cert = x509.load_pem_x509_certificate(files[f"{TLS_DIR}/etcd/member.crt"].content.encode())
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in alt.get_values_for_type(x509.IPAddress)] == ["10.10.1.12"]


def write_tree(tmp_path: Path, files: dict) -> Path:
    for path, f in files.items():
        target = tmp_path / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f.content)
    return tmp_path


@pytest.mark.parametrize("host", ["db-1", "mon-1", "app-1"])
def test_docker_compose_accepts_each_hosts_project(clustered, tmp_path: Path, host) -> None:
    root = write_tree(tmp_path, files_of(clustered, host))
    result = check_compose(root / COMPOSE.lstrip("/"))
    assert result.error is None, result.error


def test_the_member_publishes_postgres_and_patroni_on_its_address_only(clustered) -> None:
    text = files_of(clustered, "db-2")[COMPOSE].content
    assert '"10.10.1.12:5432:5432"' in text and '"10.10.1.12:8008:8008"' in text
    assert '"10.10.1.12:2379:2379"' in text and '"10.10.1.12:2380:2380"' in text
    assert 'container_name: "patroni"' in text and "5433" not in text
    router = files_of(clustered, "app-2")[COMPOSE].content
    assert '"10.10.0.12:8404:8404"' in router and ":5432:" not in router


def test_the_members_patroni_yml_passes_patronis_validator(clustered, tmp_path: Path) -> None:
    conf = tmp_path / "patroni.yml"
    conf.write_text(files_of(clustered, "db-1")[PATRONI_FILE].content)
    res = subprocess.run(["patroni", "--validate-config", str(conf)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and not (res.stdout + res.stderr).strip(), \
        res.stdout + res.stderr


def test_pgbackrest_conf_is_for_patronis_postgres_on_the_members(clustered) -> None:
    """The `pitr` unit's config: 0600 for the uid that reads it, Patroni's on the members
    (which mount it), the single PostgreSQL's for the restore drill on the backup host."""
    environment, secrets = clustered

    def conf_owner(env, host: str) -> int:
        files = render_host(env, host, secrets if env is environment else PlaceholderSecrets())
        [conf] = [f for f in files if f.path == pitr.PGBR_CONF]
        assert conf.mode == 0o600
        return conf.owner

    assert conf_owner(environment, "db-2") == PATRONI_UID
    assert conf_owner(environment, "backup-1") == 101
    single = load_environment("prod")
    assert conf_owner(single, "db-1") == conf_owner(single, "backup-1") == 101


def test_without_a_cluster_no_host_gets_anything() -> None:
    environment = load_environment("prod")
    for host in environment.hosts:
        assert render_files(environment, host, PlaceholderSecrets()) == []
        assert directories(environment, host) == []


def host_files(clustered, host: str) -> dict[str, object]:
    environment, secrets = clustered
    return {f.path: f for f in render_host(environment, host, secrets)}


def test_every_host_of_the_environment_gets_the_cluster_in_its_own_unit(clustered) -> None:
    environment, _ = clustered
    for host in environment.hosts:
        assert {p for p, f in host_files(clustered, host.name).items() if f.unit == "dbha"} == \
            set(files_of(clustered, host.name))
        wanted = directories(environment, host)
        assert [d for d in host_directories(environment, host.name) if d in wanted] == wanted


def test_no_single_postgresql_and_redis_on_the_first_db_host_only(clustered, tmp_path) -> None:
    """Patroni runs every PostgreSQL: the data project keeps Redis (db-1 only) and each
    member's postgres_exporter, which watches its own member."""
    environment, _ = clustered
    first, second = host_files(clustered, "db-1"), host_files(clustered, "db-2")
    data = "/opt/superapp/compose/data.yml"
    assert 'container_name: "postgres"' not in first[data].content
    assert 'container_name: "redis"' in first[data].content
    assert 'container_name: "redis"' not in second[data].content
    for name, files in (("db-1", first), ("db-2", second)):
        assert not [p for p in files if p.endswith("/postgres.env")]
        assert "DATA_SOURCE_URI: \"patroni:5432/postgres?sslmode=disable\"" in files[data].content
        root = write_tree(tmp_path / name, files)
        assert check_compose(root / data.lstrip("/")).error is None
    assert not [p for p, f in second.items() if f.unit == "redis-acl" or "redis.conf" in p]
    dirs = {d[0] for d in host_directories(environment, "db-2")}
    assert f"{DATA_DIR}/patroni" in dirs
    assert not {f"{DATA_DIR}/postgres", f"{DATA_DIR}/redis"} & dirs


def test_the_services_reach_postgresql_through_their_hosts_router(clustered) -> None:
    environment, _ = clustered
    urls = [line for f in host_files(clustered, "app-1").values() if f.path.endswith(".env")
            for line in f.content.splitlines() if line.startswith("DATABASE_URL=")]
    assert urls and all("@db-router:5432/" in u for u in urls)
    single = load_environment("prod")
    assert all(f"@{single.db_host.address}:5432/" in line
               for f in render_host(single, "app-1", PlaceholderSecrets())
               if f.path.endswith(".env")
               for line in f.content.splitlines() if line.startswith("DATABASE_URL="))


def test_the_host_rollout_leaves_the_clusters_files_to_the_clusters_own_stage(clustered):
    """etcd's quorum spans hosts: one host's rollout must never start (or restart) its part."""
    from ops.host.state import HostState
    from ops.rollout.plan import plan_host

    environment, secrets = clustered
    plan = plan_host(environment, "db-1", secrets, HostState())
    assert "data" in plan.infra_units and "dbha" not in plan.infra_units
    assert not [f for f in plan.infra_files if f.unit == "dbha"]
    # its images are still pre-staged with the rest
    assert environment.infra_image("patroni") in plan.images
