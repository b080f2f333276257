"""Central logs of one service (`make logs ENV=<env> SERVICE=<name>`). Reads only.

    pyinfra inventories/prod.py tasks/logs.py --data service=payments
    pyinfra inventories/prod.py tasks/logs.py --data service=payments --data since=15m \\
        --data grep=4f1c2a --data release=20261203T150102Z-ab12cd --data follow=1

Every host's lines in time order, from the log store on the monitoring host
(ops/render/logs.py). `service` may also be traefik, postgres, redis, backup, pitr...
"""

from ops.fleet.stages import show_logs

show_logs()
