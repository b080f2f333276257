"""Commit-confirmed firewall changes, as command builders (pure: argument lists out).

Why commit-confirmed: a ruleset that shuts out the controller cannot be fixed over SSH. So
`apply_command` (one SSH command) checks the new file (`nft -c`: a file that fails is never
loaded), saves what our table is now (or that it is absent) to `saved.nft`, arms a detached
timer (`setsid`, its own session: it outlives the SSH session) that loads `saved.nft` after
`timeout` seconds, and only then loads the new file with `nft -f` (atomic). The controller then
opens a NEW connection; if it gets through it runs `confirm_command`, which cancels the timer;
if it cannot, the timer restores the saved state by itself.

Who wins when confirm and timer race: each first renames the pid file (`pending` ->
`confirmed` / `reverting`); rename is atomic, so exactly one of them acts.

Scripts are constant text; every value (paths, seconds, table) travels as a positional
argument, and `ops.host.commands.sh` (shlex.join) is the one place that quotes. Saved
rulesets and the state directory are 0600/0700. Nothing here runs a command.
"""

from __future__ import annotations

from ops.firewall.ruleset import TABLE

STATE_DIR = "/var/lib/superapp/firewall"
DEFAULT_CONFIRM_SECONDS = 60

# Exit codes of apply_command.
EXIT_INVALID = 3  # nft -c refused the file: nothing changed
EXIT_PENDING = 4  # an earlier apply still awaits confirmation: nothing changed
EXIT_LOAD_FAILED = 5  # nft -f failed (nothing loaded); the timer was cancelled

# Needs $dir and $table. Writes saved.nft: what restores our table exactly as it is now, and
# checks that nft would load it (the timer must never fail to restore).
_SAVE = r'''
printf 'table inet %s {}\ndelete table inet %s\n' "$table" "$table" > "$dir/saved.tmp"
if nft list tables | grep -qx "table inet $table"; then
  nft list table inet "$table" >> "$dir/saved.tmp"
fi
nft -c -f "$dir/saved.tmp"
mv -f "$dir/saved.tmp" "$dir/saved.nft"
'''

# $1 state dir, $2 new ruleset file, $3 seconds, $4 table
_APPLY = r'''
set -eu
umask 077
dir=$1 new=$2 seconds=$3 table=$4
mkdir -p "$dir" && chmod 700 "$dir"
if ! nft -c -f "$new"; then echo "firewall: $new fails nft -c; nothing applied" >&2; exit 3; fi
if [ -e "$dir/pending" ]; then
  if kill -0 "$(cat "$dir/pending")" 2>/dev/null; then
    echo "firewall: an earlier apply awaits confirmation; nothing applied" >&2; exit 4
  fi
  rm -f "$dir/pending"
fi
rm -f "$dir/confirmed" "$dir/reverting" "$dir/reverted"
''' + _SAVE + r'''
setsid sh -c '
  echo $$ > "$1/pending.tmp" && mv "$1/pending.tmp" "$1/pending"
  sleep "$2"
  mv "$1/pending" "$1/reverting" 2>/dev/null || exit 0
  nft -f "$1/saved.nft" && date -u +%FT%TZ > "$1/reverted"
  rm -f "$1/reverting"' firewall-revert "$dir" "$seconds" </dev/null >"$dir/revert.log" 2>&1 &
i=0
while [ ! -e "$dir/pending" ]; do
  i=$((i+1)); [ "$i" -le 100 ] || { echo "firewall: revert timer did not start" >&2; exit 1; }
  sleep 0.05
done
if ! nft -f "$new"; then
  if mv "$dir/pending" "$dir/confirmed" 2>/dev/null; then
    kill -TERM "-$(cat "$dir/confirmed")"
  fi
  echo "firewall: nft -f $new failed; nothing applied" >&2; exit 5
fi
echo "firewall: applied; reverting in ${seconds}s unless confirmed"
'''

# $1 state dir
_CONFIRM = r'''
set -eu
dir=$1
if ! mv "$dir/pending" "$dir/confirmed" 2>/dev/null; then
  echo "firewall: nothing awaits confirmation (already reverted?)" >&2; exit 1
fi
kill -TERM "-$(cat "$dir/confirmed")" 2>/dev/null || true
echo "firewall: confirmed"
'''


def apply_command(ruleset_path: str, seconds: int = DEFAULT_CONFIRM_SECONDS,
                  state_dir: str = STATE_DIR, table: str = TABLE) -> list[str]:
    """argv that checks, saves, arms the revert timer and loads `ruleset_path`.

    ruleset_path: the rendered file, already on the host
    seconds: how long the new ruleset lives without `confirm_command`
    state_dir: where saved.nft and the timer's pid file live (0700)
    table: our nftables table

    Example: apply_command("/etc/superapp/firewall/ruleset.nft", seconds=60)
    """
    if seconds < 1:
        raise ValueError("seconds: at least 1")
    return ["sh", "-c", _APPLY, "firewall-apply", state_dir, ruleset_path, str(seconds), table]


def confirm_command(state_dir: str = STATE_DIR) -> list[str]:
    """argv that cancels the pending revert (run over a NEW connection); exit 1 if none."""
    return ["sh", "-c", _CONFIRM, "firewall-confirm", state_dir]


def save_command(state_dir: str = STATE_DIR, table: str = TABLE) -> list[str]:
    """argv that writes `<state_dir>/saved.nft` (also done by `apply_command`)."""
    return ["sh", "-c", 'set -eu; umask 077; dir=$1 table=$2; mkdir -p "$dir"; chmod 700 "$dir"'
            + _SAVE,
            "firewall-save", state_dir, table]


def check_command(ruleset_path: str) -> list[str]:
    """argv that checks a ruleset file without loading it."""
    return ["nft", "-c", "-f", ruleset_path]



# $1 state dir, $2 the rejected ruleset file. Succeeds only when the timer restored the saved
# ruleset; removes the rejected file either way.
_REVERTED = r'''
set -u
dir=$1 rejected=$2
rm -f "$rejected"
test -e "$dir/reverted" && ! test -e "$dir/pending"
'''


def reverted_command(ruleset_path: str, state_dir: str = STATE_DIR) -> list[str]:
    """argv run over the old connection after a failed confirm: exit 0 if the timer reverted;
    removes `ruleset_path` (the rejected candidate)."""
    return ["sh", "-c", _REVERTED, "firewall-reverted", state_dir, ruleset_path]
