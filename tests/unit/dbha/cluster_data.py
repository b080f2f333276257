"""The hosts and the db_ha block the ops.dbha unit tests describe a cluster with."""

ADDRESSES = {"db-1": "10.0.0.11", "db-2": "10.0.0.12", "db-3": "10.0.0.13",
             "app-1": "10.0.0.21", "app-2": "10.0.0.22"}
SETTINGS = {"scope": "superapp", "members": ["db-1", "db-2"],
            "etcd": ["db-1", "db-2", "db-3"], "replication": "synchronous"}
