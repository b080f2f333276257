"""ops/host/reads.py: command builders and parsers against recorded output (pure)."""

from __future__ import annotations

import base64

import pytest

from ops.host.reads import (
    container_details_command,
    container_logs_command,
    file_contents_command,
    parse_container_details,
    parse_container_logs,
    parse_file_contents,
)


def test_file_contents_command():
    assert file_contents_command(["/opt/superapp/compose/a b.yml"]) == (
        "if [ -f '/opt/superapp/compose/a b.yml' ]; then echo '@@file /opt/superapp/compose/a "
        "b.yml'; base64 -w0 '/opt/superapp/compose/a b.yml'; echo; else echo '@@missing "
        "/opt/superapp/compose/a b.yml'; fi; true")


@pytest.mark.parametrize("path", ["/etc/superapp/env/payments.env"])
def test_file_contents_refuses_secret_files(path):
    with pytest.raises(ValueError, match="holds secrets"):
        file_contents_command([path])
    with pytest.raises(ValueError, match="holds secrets"):
        file_contents_command(["/opt/superapp/redis/redis.conf"],
                              secret_paths=["/opt/superapp/redis/redis.conf"])


def test_parse_file_contents():
    text = "name: x\n  ünï\n@@file fake\n"
    out = parse_file_contents(["@@file /a", base64.b64encode(text.encode()).decode(),
                               "@@missing /b", "@@file /c", "", "@@file /d", "!!notb64"])
    assert out == {"/a": text, "/b": None, "/c": "", "/d": None}


def test_container_details_never_asks_for_the_environment():
    command = container_details_command()
    assert ".Config.Env" not in command and "docker inspect --format" in command


def test_parse_container_details():
    line = ('{"name":"/food-a","state":"exited","exit":137,"started":"2026-01-01T10:00:00Z",'
            '"finished":"2026-01-01T11:00:00Z","health":"unhealthy","image":"r/s:v1",'
            '"image_id":"sha256:1","labels":{"superapp.service":"food"}}')
    (d,) = parse_container_details([line, "garbage"]).values()
    assert (d.name, d.state, d.exit_code, d.health) == ("food-a", "exited", 137, "unhealthy")


def test_logs_command_and_parse():
    assert container_logs_command(["food-a"], 5) == (
        "echo '@@logs food-a'; docker logs --tail 5 food-a 2>&1; true")
    assert parse_container_logs(["@@logs a", "x", "y", "@@logs b"]) == {"a": ["x", "y"],
                                                                         "b": []}
