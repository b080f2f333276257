"""The slot/version info file (ops/render/slot_metrics.py), read by Prometheus's own parser
(`promtool check metrics`), and the dashboard's version join evaluated by Prometheus's engine
(`promtool test rules`) on series shaped like the testbed's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from ops.catalog import load_environment
from ops.render import slot_metrics
from ops.render.grafana import dashboards, version_panel
from tests.unit.render.test_alert_rules import PROMTOOL


def series(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("#")]


def test_one_series_per_service_that_prometheus_parses_quotes_included():
    f = slot_metrics.render(
        {"chat": "b", "odd": "a"},
        {"chat": "10.231.0.1:5000/superapp/standin:v2", "odd": 'r/x:v"1\\'})
    assert f.path == "/var/lib/node_exporter/textfile/superapp_services.prom"
    assert f.mode == 0o644 and not f.secret
    assert series(f.content) == [
        'superapp_service_slot_info{service="chat",slot="b",version="v2",'
        'image="10.231.0.1:5000/superapp/standin:v2"} 1',
        'superapp_service_slot_info{service="odd",slot="a",version="v\\"1\\\\",'
        'image="r/x:v\\"1\\\\"} 1']
    check = subprocess.run([PROMTOOL, "check", "metrics"], input=f.content, text=True,
                           capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_broken_file_is_what_promtool_refuses():
    """The check above could fail: the same parser refuses an unescaped quote."""
    bad = 'superapp_service_slot_info{service="a"b",slot="a"} 1\n'
    check = subprocess.run([PROMTOOL, "check", "metrics"], input=bad, text=True,
                           capture_output=True, timeout=30)
    assert check.returncode != 0


def test_the_version_panel_splits_requests_by_the_version_each_host_runs(tmp_path: Path):
    """host1 runs chat v2 in slot b, host2 v1 in slot a: 2 req/s each, split by version."""
    expr = version_panel('service="chat"')[1]["{{version}} ({{slot}})"]
    boards = dashboards(load_environment("local"))
    assert any(t["expr"] == expr for p in boards["chat"]["panels"] for t in p["targets"])
    info = {"host1": slot_metrics.render({"chat": "b"}, {"chat": "r/standin:v2"}),
            "host2": slot_metrics.render({"chat": "a"}, {"chat": "r/standin:v1"})}
    inputs = [{"series": f'http_requests_total{{job="superapp-chat",service="chat",'
                         f'host="{h}",status="200"}}', "values": "0+120x10"}
              for h in info]
    for host, f in info.items():
        line = series(f.content)[0].removesuffix(" 1")
        inputs.append({"series": line[:-1] + f',job="node",host="{host}"}}',
                       "values": "1x10"})
    (tmp_path / "empty.yml").write_text("groups: []\n")
    (tmp_path / "test.yml").write_text(yaml.safe_dump({
        "rule_files": ["empty.yml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": inputs, "promql_expr_test": [{
            "expr": expr, "eval_time": "8m", "exp_samples": [
                {"labels": '{version="v1",slot="a"}', "value": 2},
                {"labels": '{version="v2",slot="b"}', "value": 2}]}]}]}))
    test = subprocess.run([PROMTOOL, "test", "rules", "test.yml"], cwd=tmp_path, text=True,
                          capture_output=True, timeout=60)
    assert test.returncode == 0, test.stdout + test.stderr
