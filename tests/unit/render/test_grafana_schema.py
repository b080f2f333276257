"""Every rendered dashboard against Grafana's own typed models (ops/grafana_schema.py), and
proof that the check catches what Grafana would reject or silently drop."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from ops.grafana_schema import dashboard_errors
from ops.render.grafana import DATASOURCE, dashboards, render_files
from ops.validate import check_grafana_dashboard


@pytest.mark.parametrize("env", ["prod", "staging", "local"])
def test_every_rendered_dashboard_fits_grafanas_models(environments, env):
    boards = dashboards(environments[env])
    assert len(boards) > len(environments[env].services)  # extra ones and the overview
    for name, board in boards.items():
        assert dashboard_errors(board, DATASOURCE) == [], name


@pytest.fixture
def payments(environments) -> dict:
    return copy.deepcopy(dashboards(environments["local"])["payments"])


def test_an_unknown_key_is_named(payments):
    payments["panels"][0]["datsource"] = payments["panels"][0].pop("datasource")
    payments["panels"][1]["targets"][0]["exprr"] = "up"
    errors = dashboard_errors(payments, DATASOURCE)
    assert "dashboard.panels[0].datsource: not a field of Grafana's dashboard model" in errors
    assert "dashboard.panels[1].targets[0].exprr: not a field of Grafana's dashboard model" \
        in errors


def test_a_value_of_the_wrong_type_is_named(payments):
    payments["refresh"] = 30
    payments["panels"][0]["gridPos"]["w"] = "wide"
    payments["panels"][1]["targets"][0]["expr"] = 5
    assert dashboard_errors(payments, DATASOURCE) == [
        "dashboard.refresh: str expected, got int 30",
        "dashboard.panels[0].grid_pos.w: int expected, got str 'wide'",
        "dashboard.panels[1].targets[0].expr: str expected, got int 5",
    ]


def test_a_datasource_grafana_does_not_provision_is_named(payments):
    payments["panels"][2]["targets"][1]["datasource"] = {"type": "prometheus", "uid": "prom-2"}
    assert dashboard_errors(payments, DATASOURCE) == [
        "panels[2].targets[1].datasource: {'type': 'prometheus', 'uid': 'prom-2'} is not the "
        f"provisioned datasource {DATASOURCE!r}"]


def test_the_validator_reports_the_file_and_every_problem(payments, tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(payments))
    assert check_grafana_dashboard(good).error is None
    payments["refresh"] = 30
    payments["panels"][0]["targets"][0]["expr"] = ""
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(payments))
    result = check_grafana_dashboard(bad)
    assert result.file == str(bad)
    assert "dashboard.refresh: str expected" in result.error
    assert "a panel target has no expr" in result.error


def test_the_dashboards_datasource_is_the_one_provisioning_creates(environments):
    files = {f.path: f.content for f in render_files(environments["prod"])}
    provisioned = yaml.safe_load(
        files["/opt/superapp/grafana/provisioning/datasources/prometheus.yml"])["datasources"]
    assert [{"type": d["type"], "uid": d["uid"]} for d in provisioned] == [DATASOURCE]
