"""Planned switchover of the database cluster (group_data `db_ha`: Patroni on etcd).

    pyinfra inventories/prod.py tasks/failover.py                        # the cluster, as is
    pyinfra inventories/prod.py tasks/failover.py --data to=db-2 --dry   # what it would do
    pyinfra -y inventories/prod.py tasks/failover.py --data to=db-2      # db-2 becomes leader

Refuses, before anything changes, a target that is not a member, is behind, or (synchronous
replication) is not the synchronous standby, and a cluster that is not healthy now. Holds the
deploy lock while Patroni hands over. Automatic failover needs no task: Patroni does it
(ops/runbooks/db-failover.md).
"""

from ops.dbha.stages import fail_over

fail_over()
