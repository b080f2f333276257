"""ops.host.commands builds exact command strings; quoting lives there and nowhere else."""

from __future__ import annotations

import hashlib
import shlex
import subprocess
import time

import pytest

from ops.host import commands as cmd


def test_compose_up_and_down_are_exact() -> None:
    assert cmd.compose_up("/opt/superapp/compose/payments-b.yml") == (
        "docker compose -f /opt/superapp/compose/payments-b.yml up -d --remove-orphans")
    assert cmd.compose_up("/x.yml", force_recreate=True).endswith("--force-recreate")
    assert cmd.compose_down("sa-payments-a", timeout=10) == (
        "docker compose -p sa-payments-a down --remove-orphans --timeout 10")


def test_paths_with_spaces_and_quotes_are_quoted() -> None:
    assert cmd.remove_files(["/tmp/a b", "/tmp/it's"]) == "rm -f '/tmp/a b' '/tmp/it'\"'\"'s'"
    assert cmd.remove_files([]) == ""


def test_install_uploaded_sets_mode_owner_then_moves() -> None:
    assert cmd.install_uploaded("/etc/superapp/env/x.env.tmp-1", "/etc/superapp/env/x.env",
                                0o600, 0) == (
        "chmod 600 /etc/superapp/env/x.env.tmp-1 && chown 0:0 /etc/superapp/env/x.env.tmp-1 && "
        "mv -f /etc/superapp/env/x.env.tmp-1 /etc/superapp/env/x.env")


def test_make_dirs_creates_missing_and_leaves_existing_alone(tmp_path) -> None:
    existing = tmp_path / "pg"
    existing.mkdir(mode=0o755)
    new = tmp_path / "env"
    script = cmd.make_dirs([(str(existing), 0o700, 0), (str(new), 0o700, 0)])
    assert script.startswith(f"[ -d {existing} ] || install -d -m 700 -o 0 -g 0 {existing}; ")
    subprocess.run(["sh", "-c", script], check=True)
    assert (existing.stat().st_mode & 0o777) == 0o755  # not re-moded / re-owned
    assert (new.stat().st_mode & 0o777) == 0o700


def test_json_records_write_and_append(tmp_path) -> None:
    path = str(tmp_path / "ledger.jsonl")
    for n in (1, 2):
        subprocess.run(["sh", "-c", cmd.append_json_line(path, {"n": n, "s": "it's $HOME"})],
                       check=True)
    lines = (tmp_path / "ledger.jsonl").read_text().splitlines()
    assert lines == ['{"n":1,"s":"it\'s $HOME"}', '{"n":2,"s":"it\'s $HOME"}']
    record = str(tmp_path / "record.json")
    subprocess.run(["sh", "-c", cmd.write_json_file(record, {"slot": "a"})], check=True)
    assert (tmp_path / "record.json").read_text() == '{"slot":"a"}\n'
    assert not (tmp_path / "record.json.tmp").exists()


def test_an_append_that_cannot_be_written_fails(tmp_path) -> None:
    (tmp_path / "ledger.jsonl").mkdir()  # what the integration test does to one host's ledger
    res = subprocess.run(["sh", "-c", cmd.append_json_line(str(tmp_path / "ledger.jsonl"),
                                                           {"n": 1})], capture_output=True)
    assert res.returncode != 0


def test_wait_healthy_probes_every_url_from_one_container_in_one_exec(tmp_path) -> None:
    # a fake `docker` that runs what `exec traefik` asks, and a fake busybox whose wget
    # answers for "good" only, on its second try (so the loop must go round)
    fake = tmp_path / "docker"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/docker-calls\n'
                    '[ "$1" = exec ] && [ "$2" = traefik ] || exit 2\nshift 2\nexec "$@"\n')
    fake.chmod(0o755)
    box = tmp_path / "busybox"
    box.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        '  sh) shift; exec sh "$@" ;;\n'
        '  timeout) shift 2; exec "$@" ;;\n'
        f'  wget) for a; do u=$a; done; echo "$u" >> {tmp_path}/probes; '
        f'[ $(grep -c good {tmp_path}/probes) -ge 2 ] && [ "$u" = http://good-b:8000/health ] ;;\n'
        '  *) a=$1; shift; exec "$a" "$@" ;;\n'
        "esac\n")
    box.chmod(0o755)
    script = cmd.wait_healthy("traefik", {"good-b": "http://good-b:8000/health",
                                          "bad-b": "http://bad-b:8000/health?x=1"},
                              timeout=2, interval=0.2)  # (whole seconds: at least 1 s of rounds)
    res = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                         env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert res.returncode == 1, res.stderr
    assert "ok good-b" in res.stdout.splitlines() and "fail bad-b" in res.stdout.splitlines()
    assert len((tmp_path / "docker-calls").read_text().splitlines()) == 1
    probes = (tmp_path / "probes").read_text().splitlines()
    assert probes.count("http://good-b:8000/health") == 2  # not probed again once it answered
    assert probes.count("http://bad-b:8000/health?x=1") >= 3


def test_wait_healthy_passes_when_every_container_answers(tmp_path) -> None:
    (tmp_path / "docker").write_text('#!/bin/sh\nshift 2\nexec "$@"\n')
    (tmp_path / "busybox").write_text(
        '#!/bin/sh\ncase "$1" in sh) shift; exec sh "$@" ;; timeout) shift 2; exec "$@" ;; '
        'wget) exit 0 ;; *) a=$1; shift; exec "$a" "$@" ;; esac\n')
    for f in ("docker", "busybox"):
        (tmp_path / f).chmod(0o755)
    script = cmd.wait_healthy("traefik", {f"s{i}-a": f"http://s{i}-a:8000/health"
                                          for i in range(17)}, timeout=5)
    res = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                         env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    assert sorted(res.stdout.split()) == sorted(
        ["ok"] * 17 + [f"s{i}-a" for i in range(17)])


def test_wait_exec_ok_retries_until_the_check_passes_inside_the_container(tmp_path) -> None:
    # a fake `docker`: "db" fails its first two checks, "cache" never passes; argv must arrive
    # intact (the quoted `sh -c` script is one argument)
    fake = tmp_path / "docker"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {tmp_path}/calls\n'
        '[ "$2" = db ] || exit 1\n'
        f'n=$(grep -c . {tmp_path}/calls)\n'
        '[ "$n" -ge 3 ]\n')
    fake.chmod(0o755)
    script = cmd.wait_exec_ok({"db": ["pg_isready", "-h", "127.0.0.1"],
                               "cache": ["sh", "-c", "ping | grep -q PONG"]},
                              timeout=2, interval=0.2)
    res = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                         env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert res.returncode == 1
    assert "ok db" in res.stdout.splitlines() and "fail cache" in res.stdout.splitlines()
    calls = (tmp_path / "calls").read_text().splitlines()
    assert "exec db pg_isready -h 127.0.0.1" in calls
    assert "exec cache sh -c ping | grep -q PONG" in calls


def fake_traefik(tmp_path, metrics: str) -> dict[str, str]:
    """A `docker` on PATH whose `docker exec traefik busybox wget ...` prints `metrics`."""
    (tmp_path / "metrics.txt").write_text(metrics)
    fake = tmp_path / "docker"
    fake.write_text(f"#!/bin/sh\ncat {tmp_path / 'metrics.txt'}\n")
    fake.chmod(0o755)
    return {"PATH": f"{tmp_path}:/usr/bin:/bin"}


METRICS = "\n".join([
    "# HELP traefik_service_server_up service server is up, described by gauge value of 0 or 1.",
    "# TYPE traefik_service_server_up gauge",
    'traefik_service_server_up{service="chat@file",url="http://chat-b:8000"} 1',
    'traefik_service_server_up{service="food@file",url="http://food-b:8000"} 0',
    'traefik_service_server_up{service="taxi@file",url="http://taxi-a:8000"} 1',
    "traefik_config_reloads_total 12",
]) + "\n"


def test_wait_traefik_serving_needs_every_new_server_up(tmp_path) -> None:
    env = fake_traefik(tmp_path, METRICS)
    url = "http://127.0.0.1:8082/metrics"
    up = cmd.wait_traefik_serving("traefik", url, {"chat": "http://chat-b:8000",
                                                    "taxi": "http://taxi-a:8000"}, timeout=2)
    assert subprocess.run(["sh", "-c", up], env=env).returncode == 0
    # food's new server is down, chat's old one (a) is not the one named: not served yet
    waiting = cmd.wait_traefik_serving("traefik", url, {"food": "http://food-b:8000",
                                                         "chat": "http://chat-a:8000",
                                                         "taxi": "http://taxi-a:8000"}, timeout=1)
    res = subprocess.run(["sh", "-c", waiting], env=env, capture_output=True, text=True)
    assert (res.returncode, res.stdout.strip()) == (
        1, "Traefik does not serve the new server of: chat food")


def test_after_an_undo_the_metrics_are_read_only_once_traefik_could_reload(tmp_path) -> None:
    # the metrics say "up" from the start (a stale line): still, nothing is read before
    # `settle` seconds, the time Traefik needs to load the route file that was put back
    env = fake_traefik(tmp_path, METRICS)
    script = cmd.wait_traefik_serving("traefik", "http://127.0.0.1:8082/metrics",
                                      {"chat": "http://chat-b:8000"}, timeout=2, settle=1)
    started = time.monotonic()
    assert subprocess.run(["sh", "-c", script], env=env).returncode == 0
    assert time.monotonic() - started >= 1


@pytest.mark.parametrize("unreadable", ["", "<html>502 Bad Gateway</html>\n"])
def test_an_empty_or_unparsable_metrics_read_is_never_success(tmp_path, unreadable) -> None:
    env = fake_traefik(tmp_path, unreadable)
    script = cmd.wait_traefik_serving("traefik", "http://127.0.0.1:8082/metrics",
                                      {"chat": "http://chat-b:8000"}, timeout=1)
    res = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)
    assert res.returncode == 1
    assert "could not read Traefik metrics at http://127.0.0.1:8082/metrics" in res.stdout


def run_sh(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)


def test_each_runs_everything_whatever_fails(tmp_path) -> None:
    marks = [tmp_path / "one", tmp_path / "two"]
    script = cmd.each(cmd.sh("touch", str(marks[0])), "false", "",
                      cmd.sh("touch", str(marks[1])))
    assert script == f"touch {marks[0]} ; false ; touch {marks[1]}"
    assert run_sh(script).returncode == 0  # the last command's status
    assert all(m.exists() for m in marks)
    assert run_sh(cmd.each("true", "false")).returncode == 1


def test_chain_stops_at_the_first_failure(tmp_path) -> None:
    mark = tmp_path / "after"
    assert run_sh(cmd.chain("true", "false", cmd.sh("touch", str(mark)))).returncode == 1
    assert not mark.exists()


def test_in_parallel_runs_all_at_once_and_waits_for_every_one(tmp_path) -> None:
    """Each job marks that it started, then waits (10 s at most) until every job has: only
    jobs running at the same time all get past that, whatever the machine's load (a bound on
    the elapsed time flaked under the testbed's start, 1.73 s for 3 x 0.5 s). Each then
    finishes a moment later; every one must have finished when the script returns."""
    started = [tmp_path / f"started{i}" for i in range(3)]
    done = [tmp_path / f"done{i}" for i in range(3)]
    all_started = " && ".join(f"[ -e {shlex.quote(str(m))} ]" for m in started)

    def job(i: int) -> str:
        return cmd.sh("sh", "-c", f"touch {shlex.quote(str(started[i]))}; n=0; "
                                  f"until {all_started}; do n=$((n+1)); "
                                  f"[ $n -gt 100 ] && exit 1; sleep 0.1; done; "
                                  f"sleep 0.5 && touch {shlex.quote(str(done[i]))}")

    script = cmd.in_parallel(*(job(i) for i in range(3)))
    assert script.endswith(" ; wait") and script.count(" & ") == 2
    assert run_sh(script).returncode == 0
    assert all(m.exists() for m in done)  # together, and every one finished before it returned
    assert cmd.in_parallel("", "") == ""


def test_read_file_prints_a_file_or_nothing(tmp_path) -> None:
    there = tmp_path / "it's here"
    there.write_text('{"owner": "a@b"}\n')
    assert run_sh(cmd.read_file(str(there))).stdout == '{"owner": "a@b"}\n'
    missing = run_sh(cmd.read_file(str(tmp_path / "absent")))
    assert (missing.returncode, missing.stdout, missing.stderr) == (0, "", "")


ADMIN_HASH = "#" + hashlib.sha256(b"admin-pw").hexdigest()
WEAK_HASH = "#" + hashlib.sha256(b"weak-pw").hexdigest()  # a user that may not run ACL
# a service user as ops/render/redis_acl.py writes it: more than 10 arguments
FOOD_USER = ("ACL SETUSER food reset on #" + hashlib.sha256(b"food-pw").hexdigest()
             + " ~food:* resetchannels &food:* -@all +get +set +incr +expire +del +eval +publish")


@pytest.fixture
def redis_server(tmp_path):
    """Debian's redis-server (the testbed image's), on a unix socket, its users from an aclfile
    as ops/render/redis_acl.py writes it: `default` off, the admin's password `admin-pw`.
    Yields a `docker` stand-in's PATH: `docker exec -i redis redis-cli` runs the real redis-cli
    against it and, like `docker exec`, hands over its stderr and stdout apart, stderr first
    (the order that made the restart depend on a race); any other call is logged to `calls`."""
    sock = tmp_path / "redis.sock"
    (tmp_path / "users.acl").write_text(f"user default off resetkeys -@all\n"
                                        f"user superapp-admin on {ADMIN_HASH} ~* &* +@all\n"
                                        f"user weak on {WEAK_HASH} ~* &* +@all -acl\n")
    server = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", str(sock),
                               "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                               "--aclfile", str(tmp_path / "users.acl")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not sock.exists():
        assert time.monotonic() < deadline and server.poll() is None, "redis-server did not start"
        time.sleep(0.05)
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\n"
                    f'if [ "$1" = exec ]; then tee -a {tmp_path}/stdin | '
                    f"redis-cli -s {sock} >{tmp_path}/o 2>{tmp_path}/e; "
                    f"rc=$?; cat {tmp_path}/e >&2; cat {tmp_path}/o; exit $rc; "
                    f'else echo "$*" >> {tmp_path}/calls; fi\n')
    fake.chmod(0o755)
    yield {"PATH": f"{tmp_path}:/usr/bin:/bin", "sock": str(sock)}
    server.terminate()
    server.wait(timeout=10)


def run_acl_load(tmp_path, env: dict, script: str) -> tuple[subprocess.CompletedProcess, str]:
    """cmd.redis_acl_load run by sh against the redis_server fixture; (result, its text)."""
    script_file = tmp_path / "load.redis"
    script_file.write_text(script)
    command = cmd.redis_acl_load("redis", str(script_file))
    return subprocess.run(["sh", "-c", command], env={"PATH": env["PATH"]},
                          capture_output=True, text=True), command


def acl_users(env: dict) -> list[str]:
    return subprocess.run(["redis-cli", "-s", env["sock"], "--user", "superapp-admin", "--pass",
                           "admin-pw", "--no-auth-warning", "ACL", "USERS"],
                          capture_output=True, text=True, check=True).stdout.split()


def test_redis_acl_load_sets_every_user_in_place_and_needs_every_reply_ok(
        tmp_path, redis_server) -> None:
    script = f'AUTH superapp-admin "admin-pw"\n{FOOD_USER}\n'
    res, command = run_acl_load(tmp_path, redis_server, script)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "redis users loaded: 2 command(s), all OK"
    assert "admin-pw" not in command
    # the passwords only ever on redis-cli's stdin: the AUTH alone, then the whole file
    assert (tmp_path / "stdin").read_text() == script.splitlines(keepends=True)[0] + script
    assert "food" in acl_users(redis_server)
    assert not (tmp_path / "calls").exists()  # no restart


@pytest.mark.parametrize("script, refusal", [
    (f'AUTH superapp-admin "admin-pw"\n{FOOD_USER} +nope\n', "+nope"),
    (f'AUTH weak "weak-pw"\n{FOOD_USER}\n', "NOPERM")])
def test_redis_acl_load_fails_on_any_refusal_and_prints_it(tmp_path, redis_server, script,
                                                           refusal) -> None:
    res, _ = run_acl_load(tmp_path, redis_server, script)
    assert res.returncode == 1
    assert refusal in res.stdout and "OK" not in res.stdout.split()
    assert not (tmp_path / "calls").exists()


def test_redis_acl_load_fails_when_redis_cli_answers_nothing(tmp_path) -> None:
    """A container that prints nothing (no reply at all) is a failure, never a restart."""
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\n"
                    f'[ "$1" = exec ] && cat >/dev/null || echo "$*" >> {tmp_path}/calls\n')
    fake.chmod(0o755)
    res, _ = run_acl_load(tmp_path, {"PATH": f"{tmp_path}:/usr/bin:/bin"},
                          'AUTH superapp-admin "admin-pw"\n')
    assert res.returncode == 1 and "OK" not in res.stdout.split()
    assert not (tmp_path / "calls").exists()


def test_redis_acl_load_takes_the_previous_admin_password_while_a_change_rolls_out(
        tmp_path, redis_server) -> None:
    """The server knows the old admin password only: the second AUTH line is accepted, the
    users are set in place (the admin now has both), nothing restarts; the next load, with the
    previous password gone, leaves the admin the new one only."""
    new = "#" + hashlib.sha256(b"new-admin-pw").hexdigest()
    both = (f'AUTH superapp-admin "new-admin-pw"\nAUTH superapp-admin "admin-pw"\n'
            f"ACL SETUSER superapp-admin reset on {new} {ADMIN_HASH} ~* &* +@all\n{FOOD_USER}\n")
    res, command = run_acl_load(tmp_path, redis_server, both)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "redis users loaded: 3 command(s), all OK"
    assert "admin-pw" not in command and not (tmp_path / "calls").exists()
    assert "food" in acl_users(redis_server)
    after = (f'AUTH superapp-admin "new-admin-pw"\n'
             f"ACL SETUSER superapp-admin reset on {new} ~* &* +@all\n{FOOD_USER}\n")
    res, _ = run_acl_load(tmp_path, redis_server, after)
    assert res.returncode == 0, res.stdout + res.stderr
    old_login = subprocess.run(["redis-cli", "-s", redis_server["sock"], "--user",
                                "superapp-admin", "--pass", "admin-pw", "--no-auth-warning",
                                "PING"], capture_output=True, text=True)
    assert "WRONGPASS" in old_login.stdout + old_login.stderr
    assert not (tmp_path / "calls").exists()


def test_redis_acl_load_restarts_redis_when_the_admin_password_changed(
        tmp_path, redis_server) -> None:
    """The server refuses the new admin password: Redis restarts (it reads the new aclfile),
    and the users' commands were never sent unauthenticated (Redis would have closed the
    connection, and the restart would have depended on which stream docker delivered first)."""
    for _ in range(3):  # it did not depend on a race: the same answer every time
        res, _ = run_acl_load(tmp_path, redis_server,
                              f'AUTH superapp-admin "new-admin-pw"\n{FOOD_USER}\n'
                              "ACL SETUSER bus reset on\n")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "restarted to load its users" in res.stdout
        assert "food" not in acl_users(redis_server)
    assert (tmp_path / "calls").read_text().splitlines() == ["restart redis"] * 3


def test_read_log_store_reads_from_offsets_up_to_the_size_it_printed(tmp_path) -> None:
    from ops.fleet.logs import FILE_MARK, parse_store_output
    day = tmp_path / "2026-12-03.jsonl"
    day.write_text('{"ts":"2026-12-03T10:00:00Z","msg":"a it\'s"}\n'
                   '{"ts":"2026-12-03T10:00:01Z","msg":"b"}\n')
    first_len = len(day.read_text().splitlines()[0]) + 1
    script = cmd.read_log_store(str(tmp_path), {"2026-12-03.jsonl": first_len,
                                                "2026-12-02.jsonl": 0}, mark=FILE_MARK)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    records, sizes = parse_store_output(out.splitlines())
    assert [r.msg for r in records] == ["b"]
    assert sizes == {"2026-12-03.jsonl": day.stat().st_size}  # the missing day is skipped
    grep = cmd.read_log_store(str(tmp_path), {"2026-12-03.jsonl": 0}, grep="it's",
                              mark=FILE_MARK)
    out = subprocess.run(["sh", "-c", grep], capture_output=True, text=True, check=True).stdout
    assert [r.msg for r in parse_store_output(out.splitlines())[0]] == ["a it's"]
    gone = cmd.read_log_store(str(tmp_path / "none"), {"x.jsonl": 0}, mark=FILE_MARK)
    assert subprocess.run(["sh", "-c", gone], capture_output=True, text=True).returncode == 0
