"""Drift: how each host differs from its last release (`make drift ENV=<env>`). Reads only.

    pyinfra inventories/prod.py tasks/drift.py

One row per drift: a file or env file edited on the host, a missing cron job, a container
stopped, edited or started by hand, an image that differs. Exits 1 when there is any.
"""

from ops.fleet.stages import detect_drift

detect_drift()
