#!/usr/bin/env bash
# Stand-in for the zsnap binary that runs containerd's reference overlayfs snapshotter
# (tools/refsnap) instead: `refsnap-as-zsnap.sh serve --config FILE` reads `root` and
# `address` from the zsnap TOML config and execs refsnap (same pid, so kill -9 hits it).
# With ZSNAP_BIN pointing here, any integration script runs against the reference; a check
# that fails there is a harness problem, not a zsnap bug. REFSNAP_BIN names the refsnap binary.
set -euo pipefail
[[ ${1:-} == serve && ${2:-} == --config && -n ${3:-} ]] || {
  echo "usage: $0 serve --config FILE" >&2
  exit 2
}
key() { sed -nE "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"([^\"]*)\".*/\\1/p" "$2" | head -n1; }
root=$(key root "$3")
address=$(key address "$3")
exec "${REFSNAP_BIN:?REFSNAP_BIN must name the refsnap binary}" -root "$root" -address "$address"
