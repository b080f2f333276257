"""An environment's AppRoles: their names, their secret-id limits, and the command minting one.

Pure: names, numbers and argument lists, no Vault call. `ops/secrets/bootstrap.py` writes the
roles with these limits and prints `mint_command`; `ops/secrets/vault.py` repeats it when a
login is refused (an expired, used-up or wrong secret-id). A printed command never holds a
secret: the secret-id appears only on the terminal of the operator who runs it.

    mint_command(settings, "superapp-prod-deploy")
    -> 'env BAO_ADDR=https://vault...:8200 BAO_CACERT=/etc/superapp/vault-ca.pem bao write -f
        -field=secret_id auth/approle/role/superapp-prod-deploy/secret-id ttl=24h num_uses=1000'
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

APPROLE_MOUNT = "approle"


def role_names(env: str) -> dict[str, str]:
    """The environment's two AppRoles (and policies): `deploy` reads, `rotate` also writes."""
    return {"deploy": f"superapp-{env}-deploy", "rotate": f"superapp-{env}-rotate"}


def duration_seconds(text: str) -> int:
    """`15m` -> 900 (the group_data DURATION forms: s, m, h, d)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return int(text[:-1]) * units[text[-1]]


@dataclass(frozen=True)
class SecretIdLimits:
    """The role settings bounding a secret-id (group_data `vault`): what a leaked one can do.

    ttl: a secret-id is refused this long after it was minted; num_uses: after this many
    logins; bound_cidrs: a login from elsewhere is refused; token_bound_cidrs: the token a
    login returns works from those addresses only. Empty lists: not bound.
    """

    ttl: str
    num_uses: int
    bound_cidrs: tuple[str, ...] = ()
    token_bound_cidrs: tuple[str, ...] = ()

    @classmethod
    def from_vault_settings(cls, vault: Mapping[str, Any]) -> SecretIdLimits:
        return cls(ttl=vault["secret_id_ttl"], num_uses=int(vault["secret_id_num_uses"]),
                   bound_cidrs=tuple(vault.get("secret_id_bound_cidrs") or ()),
                   token_bound_cidrs=tuple(vault.get("token_bound_cidrs") or ()))

    def role_fields(self) -> dict[str, Any]:
        """The AppRole role fields, as written (and as Vault reads them back, normalised)."""
        return {"secret_id_ttl": duration_seconds(self.ttl), "secret_id_num_uses": self.num_uses,
                "secret_id_bound_cidrs": sorted(self.bound_cidrs),
                "token_bound_cidrs": sorted(self.token_bound_cidrs)}

    def describe(self) -> str:
        text = f"secret-id ttl {self.ttl}, {self.num_uses} login(s)"
        if self.bound_cidrs:
            text += f", from {', '.join(self.bound_cidrs)}"
        return text


class Reachable(Protocol):
    """What a mint command needs of `VaultSettings` (addr, CA and the limits)."""

    addr: str
    ca_path: str | None
    secret_id_ttl: str | None
    secret_id_num_uses: int | None


def mint_argv(settings: Reachable, role: str) -> list[str]:
    """`bao write` minting a secret-id of `role` with the configured TTL and use count.

    Needs an operator's token (BAO_TOKEN or `bao login`); prints only the new secret-id.
    """
    argv = ["env", f"BAO_ADDR={settings.addr}"]
    if settings.ca_path:
        argv.append(f"BAO_CACERT={settings.ca_path}")
    argv += ["bao", "write", "-f", "-field=secret_id",
             f"auth/{APPROLE_MOUNT}/role/{role}/secret-id"]
    if settings.secret_id_ttl:
        argv.append(f"ttl={settings.secret_id_ttl}")
    if settings.secret_id_num_uses:
        argv.append(f"num_uses={settings.secret_id_num_uses}")
    return argv


def mint_command(settings: Reachable, role: str) -> str:
    return shlex.join(mint_argv(settings, role))
