"""The metric-gated canary: on the first host a rollout changes, each changed service's new slot
takes a growing share of that host's traffic through Traefik weights, and the environment's own
Prometheus judges it against the old slot at every step before the rest of the fleet gets it.

`policy` is pure (the settings, the verdict, the quantile), `prometheus` reads the numbers over
Prometheus's HTTP API, `steps` drives a host through the steps (uploads, waits, the verdicts).
"""
