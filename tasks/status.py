"""Fleet status: one table of host, service, running version and image digest, health, since
when, and each host's last release. Reads only (two commands per host).

    pyinfra inventories/prod.py tasks/status.py
    pyinfra inventories/prod.py tasks/status.py --data service=payments   # one service
    pyinfra inventories/prod.py tasks/status.py --data logs=payments      # + its last log lines
"""

from ops.fleet.stages import show_status

show_status()
