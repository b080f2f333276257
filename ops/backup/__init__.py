"""Database backups on the db host, apart from rendering them (ops/render/backup.py renders
pg_backup.sh, pg_tools.sh and the cron files).

- `manifest`: what a backup recorded beside its dump; retention; row counts. Pure.
- `commands`: the shell commands the drill and the rollout send to the db host. Pure.
- `freshness`: the gate that refuses a migration when the last backup is too old.
- `drill`: the restore drill, driven through a `Remote` (tasks/restore_drill.py).

The layout the backup job writes:

    /var/backups/superapp/<db>/<db>-<YYYYmmddTHHMMSSZ>.dump[.cms]   pg_dump -Fc (.cms: encrypted)
    /var/backups/superapp/<db>/<db>-<stamp>.sha256                   sha256sum format
    /var/backups/superapp/<db>/<db>-<stamp>.manifest                 key<TAB>value lines, last
    /var/lib/node_exporter/textfile/superapp_backup_<db>.prom        metrics of the last success

Never puts a secret on a command line: pg_tools.sh reads the password from the 0600 pgpass that
the deploy wrote; a drill of encrypted backups uploads the private key into a 0700 directory
under /run for the duration of the drill and removes it afterwards.
"""
