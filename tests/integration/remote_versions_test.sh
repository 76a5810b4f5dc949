#!/usr/bin/env bash
# Acceptance 4 of the remote path (issue 4): remote_test.sh against the newer containerd
# releases too - 1.7 with config version 2 and 2.1 with config version 3 (Debian trixie/sid
# packages, fetched by lib/debian.sh into $ZSNAP_BUILD_DIR/containerd-versions and reused).
#
# Every release runs the CRI local pull (disable_snapshot_annotations = false) with all layers
# provided by zsnap, no layer blob in containerd's content store, the container running and
# the rootfs identical to containerd's own overlayfs, plus the fallback, shared-base and kill
# phases. On 2.1 remote_test.sh adds its `transfer` phase (`ctr image pull` through the
# transfer service with the enable_remote_snapshot_annotations export and the unpack_config
# entry) and its `namespaces` phase (CRI into k8s.io and a transfer pull into a second
# namespace at once: one fetch per blob, nothing staged). Check names are prefixed with the
# containerd version.
#
# Debian 12's runc drives both releases' shims (containerd_versions_test.sh explains why).
# ZSNAP_CONTAINERD_VERSIONS overrides the matrix as there: SUITE:VERSION_PREFIX:CONFIG entries.
# shellcheck disable=SC2034  # ITEST_CURRENT names the phase for itest_die and the exit trap
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib/all.sh"

itest_init remote_versions
: "${ZSNAP_BIN:?ZSNAP_BIN must point at the zsnap binary}"
itest_require_cmd apt-get apt-cache dpkg flock

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
  ITEST_CURRENT="containerd-$version"
  itest_log "running remote_test against containerd $version ($bindir), config v$config"

  # remote_test.sh runs as a child (its own scratch dir, daemons and cleanup); its PASS/FAIL
  # lines are relayed with the version prefixed and counted here.
  local line rc=0 seen_fail=0 out=$ITEST_DIR/remote-$version.out
  CONTAINERD_BIN_DIR=$bindir CONTAINERD_CONFIG_VERSION=$config REMOTE_TEST_SUFFIX=.containerd-$version \
    bash "$here/remote_test.sh" >"$out" || rc=$?
  while IFS= read -r line; do
    case $line in
      "PASS "*) itest_pass "containerd-$version/${line#PASS }" ;;
      "FAIL "*) itest_fail "containerd-$version/${line#FAIL }"; seen_fail=1 ;;
      *" passed, "*" failed"*) itest_log "containerd $version: $line" ;;
      *) echo "$line" ;;
    esac
  done <"$out"
  if ((rc != 0 && seen_fail == 0)); then
    itest_fail "containerd-$version/exit-status" "remote_test.sh exited $rc"
  fi
}

for entry in $matrix; do
  IFS=: read -r suite prefix config <<<"$entry"
  run_one "$suite" "$prefix" "$config"
done

itest_report
