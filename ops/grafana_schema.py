"""A rendered Grafana dashboard checked against Grafana's own typed models.

No Grafana server runs here (TESTBED.md), so the dashboards are checked as data, against the
models of Grafana's foundation SDK (`grafana-foundation-sdk`, generated from Grafana's schema;
the pinned release follows Grafana 11.6) with the default panel and query plugins registered:

- every key we write must be one the model knows: the SDK's `from_json` keeps only those, so a
  key lost in a round trip (`datsource`, a misspelt `gridPos` field) is an error;
- every value must have the type the model declares (`refresh: 30` instead of `"30s"`, a
  string width), enumerations included;
- every panel and query uses the datasource Grafana provisioning creates (its uid and type):
  a dashboard that names another shows "datasource not found" on every panel.

Pure apart from reading nothing: dict in, list of error strings out.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from typing import Any

from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.models import dashboard as sdk

plugins.register_default_plugins()  # timeseries panels and Prometheus queries get their types
SDK_MODULE = "grafana_foundation_sdk.models"


def dashboard_errors(board: dict[str, Any], datasource: dict[str, str]) -> list[str]:
    """What is wrong with `board` for Grafana (empty: nothing)."""
    model = sdk.Dashboard.from_json(board)
    back = json.loads(json.dumps(model.to_json(), default=lambda o: o.to_json()))
    errors = [f"{path}: not a field of Grafana's dashboard model" for path in lost(board, back)]
    errors += model_errors(model, "dashboard")
    for i, panel in enumerate(board.get("panels", [])):
        for where, item in [(f"panels[{i}]", panel)] + [
                (f"panels[{i}].targets[{j}]", t) for j, t in enumerate(panel.get("targets", []))]:
            if item.get("datasource") != datasource:
                errors.append(f"{where}.datasource: {item.get('datasource')!r} is not the "
                              f"provisioned datasource {datasource!r}")
    return errors


def lost(ours: Any, back: Any, path: str = "dashboard") -> list[str]:
    """Paths of keys in `ours` that the model's round trip dropped."""
    if isinstance(ours, dict) and isinstance(back, dict):
        return [p for key, value in ours.items() for p in (
            lost(value, back[key], f"{path}.{key}") if key in back else [f"{path}.{key}"])]
    if isinstance(ours, list) and isinstance(back, list):
        return [p for i, (a, b) in enumerate(zip(ours, back, strict=False))
                for p in lost(a, b, f"{path}[{i}]")]
    return []


def model_errors(obj: Any, path: str) -> list[str]:
    """Each attribute of an SDK model instance checked against its declared type."""
    if not type(obj).__module__.startswith(SDK_MODULE):
        return []
    hints = typing.get_type_hints(type(obj))
    return [e for name, hint in hints.items()
            for e in type_errors(getattr(obj, name, None), hint, f"{path}.{name}")]


def type_errors(value: Any, hint: Any, path: str) -> list[str]:
    origin = typing.get_origin(hint)
    if hint in (typing.Any, object):
        return []
    if origin in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(hint) if o is not type(None)]
        if value is None and len(options) < len(typing.get_args(hint)):
            return []
        results = [type_errors(value, o, path) for o in options]
        return [] if any(not r for r in results) else min(results, key=len)
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: a list expected, got {type(value).__name__}"]
        (item,) = typing.get_args(hint) or (typing.Any,)
        return [e for i, v in enumerate(value) for e in type_errors(v, item, f"{path}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: a mapping expected, got {type(value).__name__}"]
        args = typing.get_args(hint)
        item = args[1] if len(args) == 2 else typing.Any
        return [e for k, v in value.items() for e in type_errors(v, item, f"{path}.{k}")]
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        return [] if value in allowed else [f"{path}: one of {allowed}, got {value!r}"]
    if not isinstance(hint, type):
        return []
    if issubclass(hint, enum.Enum):
        if isinstance(value, hint) or value in {m.value for m in hint}:
            return []
        return [f"{path}: one of {[m.value for m in hint]}, got {value!r}"]
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, hint)
    if not ok:
        return [f"{path}: {hint.__name__} expected, got {type(value).__name__} {value!r}"]
    return model_errors(value, path)
