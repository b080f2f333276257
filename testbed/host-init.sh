#!/usr/bin/env bash
# The "init" of one testbed host. testbed.py starts it inside the host's network namespace and a
# fresh mount + UTS namespace; it gives the host private copies of the directories a deploy writes,
# then runs the host's dockerd and sshd and waits. Everything it starts lives in that namespace, so
# killing the namespace's processes (testbed.py down) removes the host entirely.
set -euo pipefail
name=$1 root=$2 registry=$3

hostname "$name"
# Private copies of every directory the deploy writes, plus the host's own /run (docker.sock,
# sshd privsep dir, pid files), /tmp and Docker data root. Mounts stay inside this namespace.
# (var/lib/node_exporter: each host's textfile metrics; shared, one host's file was every host's.)
for dir in etc/superapp opt/superapp var/lib/superapp var/backups/superapp etc/cron.d etc/docker \
           var/lib/node_exporter \
           var/lib/docker run tmp; do
  mkdir -p "$root/fs/$dir" "/$dir"
  mount --bind "$root/fs/$dir" "/$dir"
done
chmod 1777 /tmp
mkdir -p /run/sshd /run/lock
chmod 0755 /run/sshd

dockerd --data-root /var/lib/docker --exec-root /run/docker --pidfile /run/docker.pid \
  -H unix:///run/docker.sock --insecure-registry "$registry" --cgroup-parent "/sa-$name" \
  --log-level warn --storage-driver overlay2 --log-driver json-file \
  >>"$root/dockerd.log" 2>&1 &
echo $! >"$root/dockerd.pid"

/usr/sbin/sshd -D -f "$root/sshd_config" -E "$root/sshd.log" &
echo $! >"$root/sshd.pid"

# cron reads this host's private /etc/cron.d (backup jobs).
cron -f >>"$root/cron.log" 2>&1 &
echo $! >"$root/cron.pid"

echo "ready" >"$root/init.ready"
wait
