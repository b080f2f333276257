"""ops.validate and `python -m ops.render`: the real tools accept what we render and reject
broken files with their own message; a failed render leaves the output directory untouched."""

from __future__ import annotations

import contextlib
import io
import subprocess
from pathlib import Path

import pytest

import ops.render.__main__ as render_cli
from ops.validate import (
    ValidationError,
    check_alertmanager,
    check_compose,
    check_traefik,
    compose_binary,
    find_tool,
)


@pytest.fixture(scope="module")
def rendered_with_output(tmp_path_factory) -> tuple[dict[str, Path], dict[str, str]]:
    """`make render` for every environment (render + every validator), once per test run: the
    output trees and what each run printed."""
    base = tmp_path_factory.mktemp("render")
    outs, printed = {}, {}
    for env in ("prod", "staging", "local"):
        outs[env] = base / env
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert render_cli.main(["--env", env, "--out", str(outs[env])]) == 0
        printed[env] = out.getvalue()
    return outs, printed


@pytest.fixture(scope="module")
def rendered(rendered_with_output) -> dict[str, Path]:
    return rendered_with_output[0]


def test_make_render_succeeds_for_every_environment(rendered, environments):
    for env, out in rendered.items():
        assert sorted(p.name for p in out.iterdir()) == sorted(
            h.name for h in environments[env].hosts)
    assert (rendered["prod"] / "app-1/opt/superapp/compose/payments.yml").is_file()
    env_file = rendered["prod"] / "app-1/etc/superapp/env/payments.env"
    assert env_file.stat().st_mode & 0o777 == 0o600


def test_rendered_files_pass_their_tools_when_run_independently(rendered, tmp_path):
    out = rendered["prod"]
    compose = subprocess.run(
        [compose_binary(), "-f", str(out / "app-3/opt/superapp/compose/taxi.yml"), "config", "-q"],
        cwd=tmp_path, capture_output=True, text=True)
    assert compose.returncode == 0, compose.stderr
    prom = subprocess.run(
        [find_tool("promtool"), "check", "config",
         str(out / "mon-1/opt/superapp/prometheus/prometheus.yml")],
        cwd=tmp_path, capture_output=True, text=True)
    assert prom.returncode == 0, prom.stdout + prom.stderr
    am = subprocess.run([find_tool("amtool"), "check-config",
                         str(out / "mon-1/opt/superapp/alertmanager/alertmanager.yml")],
                        capture_output=True, text=True)
    assert am.returncode == 0, am.stdout + am.stderr


def test_render_prints_hosts_and_validator_timings(rendered_with_output):
    lines = rendered_with_output[1]["staging"].splitlines()
    assert lines[0].startswith("stg-app-1: ")
    assert any(line.strip().startswith("traefik (static + dynamic): ") for line in lines)
    assert any(line.strip().startswith("docker compose config: ") for line in lines)


def test_compose_error_names_file_and_tool_message(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\nservices:\n  s:\n    image: busybox:1\n    restrat: always\n")
    result = check_compose(bad)
    assert result.error and "restrat" in result.error
    assert result.file == str(bad)


def test_traefik_rejects_a_broken_dynamic_file(tmp_path):
    dynamic = tmp_path / "dynamic"
    dynamic.mkdir()
    (dynamic / "x.yml").write_text(
        "http:\n  routers:\n    x:\n      rule: Path(`/x`)\n      service: nope\n"
        "      bogus: 1\n")
    static = tmp_path / "traefik.yml"
    static.write_text("entryPoints:\n  web:\n    address: ':80'\n"
                      "providers:\n  file:\n    directory: /etc/traefik/dynamic\n")
    result = check_traefik(static, dynamic)
    assert result.error and "field not found, node: bogus" in result.error


def test_traefik_rejects_a_router_to_a_missing_service(tmp_path):
    dynamic = tmp_path / "dynamic"
    dynamic.mkdir()
    (dynamic / "x.yml").write_text(
        "http:\n  routers:\n    x:\n      rule: Path(`/x`)\n      service: nope\n")
    static = tmp_path / "traefik.yml"
    static.write_text("entryPoints:\n  web:\n    address: ':80'\n"
                      "providers:\n  file:\n    directory: /etc/traefik/dynamic\n")
    result = check_traefik(static, dynamic)
    assert result.error and 'the service \\"nope@file\\" does not exist' in result.error.replace(
        '"', '\\"')


def test_amtool_rejects_a_broken_config(tmp_path):
    bad = tmp_path / "alertmanager.yml"
    bad.write_text("route:\n  receiver: nobody\nreceivers: []\n")
    assert "nobody" in (check_alertmanager(bad).error or "")


def test_failed_validation_leaves_the_output_untouched(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    (out / "app-1/opt/superapp").mkdir(parents=True)
    (out / "app-1/opt/superapp/marker").write_text("previous render")

    def fail(root, environment):
        raise ValidationError("docker compose config failed for app-1/opt/...: boom")

    monkeypatch.setattr(render_cli, "validate_tree", fail)
    assert render_cli.main(["--env", "prod", "--out", str(out)]) == 1
    assert "render failed: docker compose config failed" in capsys.readouterr().err
    assert (out / "app-1/opt/superapp/marker").read_text() == "previous render"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp dir left behind


def test_config_error_exits_1_with_the_message(tmp_path, capsys):
    assert render_cli.main(["--env", "nope", "--out", str(tmp_path / "out")]) == 1
    assert "group_data/nope.py: file not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_refuses_to_replace_a_directory_that_is_not_a_render(tmp_path, capsys):
    (tmp_path / "important.txt").write_text("keep me")
    assert render_cli.main(["--env", "prod", "--out", str(tmp_path)]) == 1
    assert (tmp_path / "important.txt").read_text() == "keep me"


def test_validate_tree_names_the_broken_file(rendered, environments, tmp_path):
    import shutil

    from ops.validate import validate_tree

    tree = tmp_path / "tree"  # host2's files only: every check of the others would pass
    shutil.copytree(rendered["local"] / "host2", tree / "host2")
    compose = tree / "host2/opt/superapp/compose/chat.yml"
    compose.write_text(compose.read_text().replace("    read_only: true", "    read_only: maybe"))
    with pytest.raises(ValidationError) as info:
        validate_tree(tree, environments["local"])
    message = str(info.value)
    assert "docker compose config failed for host2/opt/superapp/compose/chat.yml" in message
    assert "read_only" in message


def test_traefik_loads_a_vault_certificate_and_rejects_a_broken_one(tmp_path):
    """The check points the certificate paths at the rendered files: a real bundle loads, a
    file that is not PEM is Traefik's error; a dry run's placeholder is left out."""
    from ops.secrets.tls import NO_CERTIFICATE, self_signed_bundle, split_bundle

    key, cert = split_bundle(self_signed_bundle("a.example", [], ["a.example"]))
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "a.crt").write_text(cert)
    (tmp_path / "certs" / "a.key").write_text(key)
    (tmp_path / "certs" / "dry.crt").write_text(NO_CERTIFICATE)
    (tmp_path / "certs" / "b.crt").write_text("-----BEGIN CERTIFICATE-----\nnope\n"
                                               "-----END CERTIFICATE-----\n")
    (tmp_path / "certs" / "b.key").write_text(key)
    dynamic = tmp_path / "dynamic"
    dynamic.mkdir()
    static = tmp_path / "traefik.yml"
    static.write_text("entryPoints:\n  websecure:\n    address: ':443'\n"
                      "providers:\n  file:\n    directory: /etc/traefik/dynamic\n")

    def certificates(*names: str) -> str:
        return "tls:\n  certificates:\n" + "".join(
            f"    - certFile: /etc/traefik/certs/{n}.crt\n"
            f"      keyFile: /etc/traefik/certs/{n}.key\n" for n in names)

    (dynamic / "_tls.yml").write_text(certificates("a", "dry"))
    assert check_traefik(static, dynamic).error is None
    (dynamic / "_tls.yml").write_text(certificates("a", "b"))
    error = check_traefik(static, dynamic).error or ""
    assert "Unable to parse certificate" in error and "malformed certificate" in error


def test_traefik_loads_a_canary_route_and_rejects_a_weight_to_a_missing_slot(rendered, tmp_path):
    """The canary's weighted pair is a configuration Traefik itself accepts (next to every
    other file of the host); a pair naming a slot service that is not defined is refused."""
    import shutil

    from ops.catalog import load_environment
    from ops.render.traefik import render_dynamic

    env = load_environment("local")
    traefik = rendered["local"] / "host1/opt/superapp/traefik"
    dynamic = tmp_path / "dynamic"
    shutil.copytree(traefik / "dynamic", dynamic)
    shared = render_dynamic(env, env.services["payments"], env.host("host1"), "a", ("b", 25))
    (dynamic / "payments.yml").write_text(shared.content)
    assert check_traefik(traefik / "traefik.yml", dynamic).error is None
    (dynamic / "payments.yml").write_text(shared.content.replace('- name: "payments-b"',
                                                                 '- name: "payments-c"'))
    result = check_traefik(traefik / "traefik.yml", dynamic)
    assert result.error and "payments-c@file" in result.error
