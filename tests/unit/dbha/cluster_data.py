"""The hosts and the db_ha block the ops.dbha unit tests describe a cluster with."""

ADDRESSES = {"db-1": "10.0.0.11", "db-2": "10.0.0.12", "db-3": "10.0.0.13",
             "app-1": "10.0.0.21", "app-2": "10.0.0.22"}
SETTINGS = {"scope": "superapp", "members": ["db-1", "db-2"],
            "etcd": ["db-1", "db-2", "db-3"], "replication": "synchronous"}

# prod with a second db host and a cluster of the two, as group_data would say it (the loader
# wants the members to be exactly the hosts with role db)
PROD = "group_data/prod.py"
PROD_DB_HA = {"scope": "superapp", "members": ["db-1", "db-2"],
              "etcd": ["db-1", "db-2", "mon-1"], "replication": "synchronous"}


def add_db_2(repo_copy) -> None:
    """A RepoCopy's prod gets db-2 (10.10.1.12, role db) right after db-1."""
    repo_copy.replace(PROD, r'^(    \{"name": "db-1".*\n)',
                      r'\1    {"name": "db-2", "address": "10.10.1.12", "roles": ["db"]},\n')


def add_cluster(repo_copy, **changes) -> None:
    """db-2 and a `db_ha` block (PROD_DB_HA with `changes`) in a RepoCopy's prod."""
    add_db_2(repo_copy)
    repo_copy.append(PROD, "db_ha = " + repr({**PROD_DB_HA, **changes}))


class ClusterSecrets:
    """The cluster's secrets as the bootstrap makes them (in memory: never Vault's);
    placeholders for every other."""

    def __init__(self, environment):
        from ops.secrets.bootstrap import new_value
        from ops.secrets.vault import refs_by_path

        self.values: dict[str, str] = {}
        for refs in refs_by_path(list(environment.dbha_refs().values())).values():
            data: dict[str, str] = {}
            for ref in refs:
                data[ref.key] = new_value(environment, ref, data)
                self.values[str(ref)] = data[ref.key]

    def get(self, ref):
        from ops.render import PlaceholderSecrets

        return self.values.get(str(ref)) or PlaceholderSecrets().get(ref)
