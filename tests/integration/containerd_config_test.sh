#!/usr/bin/env bash
# Issue 6, acceptance 3: what `zsnap config containerd --merge` writes is accepted by containerd.
#
# For Debian's containerd 1.6.20 (/usr/bin), 1.7.24 (trixie) and 2.1.9 (sid; both fetched by
# lib/debian.sh into a cache, the system's containerd untouched): a node-like base config
# (private root/state/sockets, CRI on, no zsnap) is merged with
#   zsnap config containerd --merge FILE --containerd-version V --address SOCK --root DIR
# which must back the file up, keep its settings, refuse the wrong version and do nothing the
# second time; then containerd is started with the merged file against a running zsnap and
# must list the zsnap proxy snapshotter and CRI as "ok", and `containerd config dump` must show
# CRI using zsnap with disable_snapshot_annotations = false (and for 2.1 the transfer
# unpack_config entry and the exports).
# ZSNAP_CONFIG_TEST_VERSIONS overrides the matrix (default "system:1.6 trixie:1.7.24 sid:2.1.9").
# shellcheck disable=SC2034  # ITEST_CURRENT names the phase for itest_die and the exit trap
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib/all.sh"

itest_init containerd_config
: "${ZSNAP_BIN:?ZSNAP_BIN must point at the zsnap binary}"
itest_require_cmd python3 flock
matrix=${ZSNAP_CONFIG_TEST_VERSIONS:-system:1.6 trixie:1.7.24 sid:2.1.9}

ITEST_CURRENT=zsnap
zsnap_start || itest_die "zsnap did not start"

# toml_get FILE EXPR: evaluate a python expression over the parsed TOML `t` (tomllib).
toml_get() {
  python3 -c 'import sys, tomllib; t = tomllib.load(open(sys.argv[1], "rb")); print(eval(sys.argv[2]))' "$1" "$2" 2>&1
}

# The CONTAINERD_CONFIG_WRITER: base config, then the merge under test, with its checks.
write_merged() {
  local file=$1 version=$2 p=$PREFIX out wrong
  containerd_write_base_config "$file" "$version"
  cp "$file" "$ITEST_DIR/base-$p.toml"
  local -a merge=("$ZSNAP_BIN" config containerd --merge "$file" --containerd-version "$SERIES"
    --address "$ZSNAP_SOCKET" --root "$ZSNAP_ROOT")
  if [[ $version == 2 ]]; then wrong=2.x; else wrong=1.7; fi
  itest_check_fails "$p: --containerd-version $wrong refused on a v$version file" \
    "$ZSNAP_BIN" config containerd --merge "$file" --containerd-version "$wrong"
  itest_check_eq "$p: refused merge left the file alone" "" "$(cmp "$file" "$ITEST_DIR/base-$p.toml")"
  out=$("${merge[@]}" 2>&1) || { itest_fail "$p: merge" "$out"; return 1; }
  itest_pass "$p: merge"
  local backup
  backup=$(grep -o 'backup in [^ ]*' <<<"$out" | cut -d' ' -f3)
  itest_check "$p: backup written and equal to the original" cmp "$backup" "$ITEST_DIR/base-$p.toml"
  itest_check_eq "$p: other settings kept (root)" "$CONTAINERD_ROOT" "$(toml_get "$file" 't["root"]')"
  itest_check_eq "$p: other settings kept (grpc address)" "$CONTAINERD_ADDRESS" \
    "$(toml_get "$file" 't["grpc"]["address"]')"
  cp "$file" "$ITEST_DIR/merged-$p.toml"
  out=$("${merge[@]}" 2>&1)
  itest_check_match "$p: second merge is a no-op" 'already configured' "$out"
  itest_check_eq "$p: second merge left the bytes alone" "" "$(cmp "$file" "$ITEST_DIR/merged-$p.toml")"
  itest_check_eq "$p: no second backup" 1 "$(ls "$file".bak-* | wc -l)"
  rm -f "$file".bak-*
}

run_one() {
  local suite=$1 prefix=$2 bindir
  ITEST_CURRENT="fetch-$prefix"
  if [[ $suite == system ]]; then
    bindir=/usr/bin
  elif ! bindir=$(debian_fetch_containerd "$suite" "$prefix"); then
    itest_fail "fetch containerd $prefix from $suite" "see $DEBIAN_CACHE_DIR/apt/*.log"
    return
  fi
  local version
  version=$(containerd_version "$bindir")
  PREFIX=containerd-$version
  SERIES=$version
  ITEST_CURRENT=$PREFIX
  local config_version=2
  [[ $version == 1.* ]] || config_version=3
  itest_log "containerd $version ($bindir), config v$config_version"

  CONTAINERD_BIN_DIR=$bindir
  CONTAINERD_CONFIG_VERSION=$config_version
  CONTAINERD_CONFIG_WRITER=write_merged
  CTR_NAMESPACE=itest-$$-${version//./-}
  local rc=0
  containerd_start || rc=$?
  if ((rc != 0)); then
    itest_fail "$PREFIX: containerd starts with the merged config and lists zsnap" \
      "$(tail -n 20 "$CONTAINERD_LOG")"
  else
    itest_pass "$PREFIX: containerd starts with the merged config"
    local plugins
    plugins=$(itest_ctr plugins ls)
    itest_check_match "$PREFIX: ctr plugins ls: zsnap snapshotter ok" \
      'io\.containerd\.snapshotter\.v1[[:space:]]+zsnap[[:space:]].*ok' "$plugins"
    itest_check_match "$PREFIX: ctr plugins ls: CRI ok" \
      'io\.containerd\.grpc\.v1[[:space:]]+cri[[:space:]].*ok' "$plugins"
    # What containerd made of the file (its own parse, defaults filled in).
    "$bindir/containerd" --config "$CONTAINERD_CONFIG" config dump >"$ITEST_DIR/dump-$PREFIX.toml" 2>"$ITEST_DIR/dump-$PREFIX.err"
    local d=$ITEST_DIR/dump-$PREFIX.toml
    if [[ $config_version == 2 ]]; then
      itest_check_eq "$PREFIX: config dump: CRI snapshotter" zsnap \
        "$(toml_get "$d" 't["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["snapshotter"]')"
      itest_check_eq "$PREFIX: config dump: disable_snapshot_annotations" False \
        "$(toml_get "$d" 't["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["disable_snapshot_annotations"]')"
    else
      itest_check_eq "$PREFIX: config dump: CRI images snapshotter" zsnap \
        "$(toml_get "$d" 't["plugins"]["io.containerd.cri.v1.images"]["snapshotter"]')"
      itest_check_eq "$PREFIX: config dump: disable_snapshot_annotations" False \
        "$(toml_get "$d" 't["plugins"]["io.containerd.cri.v1.images"]["disable_snapshot_annotations"]')"
      itest_check_eq "$PREFIX: config dump: transfer unpack_config has zsnap and overlayfs" \
        "overlayfs,zsnap" \
        "$(toml_get "$d" '",".join(sorted(e["snapshotter"] for e in t["plugins"]["io.containerd.transfer.v1.local"]["unpack_config"]))')"
      itest_check_eq "$PREFIX: config dump: exports" "true $ZSNAP_ROOT" \
        "$(toml_get "$d" '" ".join([t["proxy_plugins"]["zsnap"]["exports"]["enable_remote_snapshot_annotations"], t["proxy_plugins"]["zsnap"]["exports"]["root"]])')"
    fi
    itest_check_eq "$PREFIX: config dump: proxy plugin address" "$ZSNAP_SOCKET" \
      "$(toml_get "$d" 't["proxy_plugins"]["zsnap"]["address"]')"
  fi
  containerd_stop
  itest_unmount_below "$ITEST_DIR/containerd-root"
  itest_unmount_below "$ITEST_DIR/containerd-state"
  rm -rf "$ITEST_DIR/containerd-root" "$ITEST_DIR/containerd-state"
}

for entry in $matrix; do
  IFS=: read -r suite prefix <<<"$entry"
  run_one "$suite" "$prefix"
done

itest_report
