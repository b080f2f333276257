"""Postgres high availability: Patroni members on an etcd cluster, HAProxy following the leader.

Why these parts: promotion logic is where home-made failover loses data (two primaries, or a
standby promoted while far behind). Patroni holds a leader lease in etcd (a consensus store: a
minority partition cannot grant it), promotes only a member within
`maximum_lag_on_failover`, demotes a primary that lost the lease, and rewinds an old leader so
it rejoins as a replica. HAProxy on each app host routes to whichever member answers 200 on
Patroni's REST `/primary`, so the services' database URLs never change.

- `model`: the `db_ha` block of group_data, checked, with the members' addresses;
- `render`: pure text for each part (etcd's environment with mutual TLS, patroni.yml with a
  pg_hba naming the members and the routers' hosts, haproxy.cfg);
- `monitoring`: Prometheus' scrape jobs (Patroni's and HAProxy's own exporters) and the
  alerts on what failover does not fix by itself;
- `commands`: the command lines run inside a member (patronictl, its REST API);
- `maintenance`: a settings change through `patronictl edit-config`, and the restarts it
  needs, one member at a time, leader last;
- `status`: what `patronictl list` says, read into leader / replicas / lag / timeline, and the
  verdict "is a deploy safe now".
"""
