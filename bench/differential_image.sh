#!/usr/bin/env bash
# Differential check on a benchmark image (too big to build in CI): every layer, in every codec
# images.sh wrote (gzip, zstd, zstd19), unpacked by `zsnap unpack` and by containerd's applier
# (tests/tools/refapply), trees compared with treediff and both diffIDs checked against the
# image's. Run after bench/images.sh and a build with tests (ctest -R differential builds the
# Go tools into build/difftools, or run tests/tools/refapply/build.sh).
#
#   sudo bench/differential_image.sh
#   sudo IMAGE=smallfiles bench/differential_image.sh
# Env: IMAGE (python, minbase or smallfiles; default python), ZSNAP_BIN (default
#      build/plugin/zsnap), DIFFTOOLS (default build/difftools), ZSNAP_BENCH_CACHE (default
#      /var/tmp/zsnap-bench-v2), WORK (default /dev/shm/zsnap-bigdiff).
set -uo pipefail
cd "$(dirname "$0")/.."
zsnap=${ZSNAP_BIN:-$PWD/build/plugin/zsnap}
tools=${DIFFTOOLS:-$PWD/build/difftools}
cache=${ZSNAP_BENCH_CACHE:-/var/tmp/zsnap-bench-v2}
work=${WORK:-/dev/shm/zsnap-bigdiff}
layers_txt=$cache/layers-${IMAGE:-python}.txt
[[ -f $layers_txt ]] || { echo "no $layers_txt: run bench/images.sh first" >&2; exit 2; }
rm -rf "$work" && mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
pass=0 fail=0
while read -r n diffid _tar blobs; do
  for blob in $blobs; do
    d=$work/layer$n-${blob##*.}
    mkdir -p "$d"
    ref_id=$("$tools/refapply" "$blob" "$d/ref" 2>"$d/ref.err")
    got_id=$("$zsnap" unpack --json "$blob" "$d/got" 2>"$d/got.err" | jq -r .diff_id)
    if "$tools/treediff" "$d/ref" "$d/got" >"$d/treediff.txt" 2>&1 &&
      [[ $ref_id == "$diffid" && $got_id == "$diffid" ]]; then
      echo "PASS layer$n ${blob##*/} ($(tail -n1 "$d/treediff.txt"))"
      pass=$((pass + 1))
    else
      echo "FAIL layer$n ${blob##*/}: refapply=$ref_id zsnap=$got_id want=$diffid"
      tail -n 20 "$d/treediff.txt" "$d/got.err" "$d/ref.err"
      fail=$((fail + 1))
    fi
    rm -rf "$d"
  done
done <"$layers_txt"
echo "$pass passed, $fail failed"
((fail == 0))
