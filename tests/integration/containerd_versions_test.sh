#!/usr/bin/env bash
# Acceptance 6: zsnap works as a proxy snapshotter for newer containerd releases too.
#
# Fetches containerd 1.7 from Debian trixie and 2.1 from Debian sid with a private apt setup
# pointed at this machine's own Debian mirror (lib/debian.sh: apt-get download + dpkg -x into
# $ZSNAP_BUILD_DIR/containerd-versions, reused by later runs; the system containerd is never
# touched), then runs every containerd_test.sh check against each: 1.7 with config version 2,
# 2.1 with config version 3. Check names are prefixed with the containerd version.
#
# Debian 12's runc (1.1.5) drives both releases' shims; trixie/sid's runc packages need glibc
# 2.38 and cannot run here. Set CONTAINERD_RUNC_DIR to try another runc.
# ZSNAP_CONTAINERD_VERSIONS overrides the matrix: space-separated SUITE:VERSION_PREFIX:CONFIG
# entries (default "trixie:1.7.24:2 sid:2.1.9:3"; a prefix such as 1.7. takes any 1.7.x).
# shellcheck disable=SC2034  # ITEST_CURRENT names the phase for itest_die and the exit trap
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib/all.sh"

itest_init containerd_versions
: "${ZSNAP_BIN:?ZSNAP_BIN must point at the zsnap binary}"
itest_require_cmd apt-get apt-cache dpkg flock

# Exact upstream versions first; fall back to the same minor if the suite has moved on.
matrix=${ZSNAP_CONTAINERD_VERSIONS:-trixie:1.7.24:2 sid:2.1.9:3}

run_one() {
  local suite=$1 prefix=$2 config=$3 bindir version
  ITEST_CURRENT="fetch-$suite-$prefix"
  if ! bindir=$(debian_fetch_containerd "$suite" "$prefix"); then
    local minor
    minor=$(cut -d. -f1-2 <<<"$prefix").
    itest_log "containerd $prefix not in $suite; trying any $minor*"
    bindir=$(debian_fetch_containerd "$suite" "$minor") || {
      itest_fail "fetch-containerd-$prefix-from-$suite" "see $DEBIAN_CACHE_DIR/apt/*.log"
      return
    }
  fi
  version=$(containerd_version "$bindir")
  itest_check_match "fetch-containerd-$prefix-from-$suite" "^$(cut -d. -f1-2 <<<"$prefix" | sed 's/\./\\./g')\." "$version" ||
    return
  itest_log "running containerd_test against containerd $version ($bindir), config v$config"

  # Run the acceptance script as a child (its own scratch dir, daemons and cleanup), relay its
  # PASS/FAIL lines and count them here.
  local line rc=0 seen_fail=0 out=$ITEST_DIR/containerd-$version.out
  CONTAINERD_BIN_DIR=$bindir CONTAINERD_CONFIG_VERSION=$config ITEST_PREFIX=containerd-$version \
    bash "$here/containerd_test.sh" >"$out" || rc=$?
  while IFS= read -r line; do
    case $line in
      "PASS "*) itest_pass "${line#PASS }" ;;
      "FAIL "*) itest_fail "${line#FAIL }"; seen_fail=1 ;;
      *" passed, "*" failed"*) ;;
      *) echo "$line" ;;
    esac
  done <"$out"
  if ((rc != 0 && seen_fail == 0)); then
    itest_fail "containerd-$version/exit-status" "containerd_test.sh exited $rc"
  fi
}

for entry in $matrix; do
  IFS=: read -r suite prefix config <<<"$entry"
  run_one "$suite" "$prefix" "$config"
done

itest_report
