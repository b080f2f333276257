"""Images by digest: what a tag pointed to when a release was planned, and the registry read
that says so.

- `refs`: pure parsing and formatting of image references (`repo:tag@sha256:...`).
- `registry`: the registry HTTP API v2 read, from the controller, that resolves a tag to its
  manifest digest (the one effect of this package).
"""
