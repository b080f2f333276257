"""The release history of an environment: every deploy, rollback and rotation, merged from
all hosts' ledgers (one read per host), with who, when, commit, result per host and the
services it changed. Reads only.

    pyinfra inventories/prod.py tasks/releases.py
    pyinfra inventories/prod.py tasks/releases.py --data last=20
"""

from ops.fleet.stages import show_releases

show_releases()
