"""Alertmanager configuration: receivers ops-admin (webhook), slack (critical, warning, info)
and email (critical only). Receiver settings are secrets: the file is 0600 and `secret=True`.
"""

from __future__ import annotations

from ops.catalog.model import Environment
from ops.render.files import ALERTMANAGER_DIR, RenderedFile, render_template
from ops.render.secrets import SecretValues


def render_config(environment: Environment, secrets: SecretValues) -> RenderedFile:
    refs = environment.alertmanager_refs()
    values = {}
    for key, ref in refs.items():
        value = secrets.get(ref)
        if value is None:
            raise KeyError(f"missing secret {ref}")
        values[key] = value
    return RenderedFile(
        f"{ALERTMANAGER_DIR}/alertmanager.yml",
        render_template("alertmanager/alertmanager.yml.j2", env=environment.name, s=values,
                        vault_path=environment.vault_path("alertmanager")),
        mode=0o600, secret=True, owner=environment.settings["data_uids"]["alertmanager"])
