#!/usr/bin/env bash
# Builds the differential-test tools into OUTDIR: refapply (containerd's applier) and treediff.
# GOPATH mode against Debian's Go source only (golang-github-containerd-containerd-dev):
# no module proxy, no network.
#   tests/tools/refapply/build.sh OUTDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUTDIR}
mkdir -p "$out/gopath"
out=$(cd "$out" && pwd)
export GO111MODULE=off GOPROXY=off GOFLAGS= GOPATH="$out/gopath:/usr/share/gocode" \
  GOCACHE="$out/gocache"
for tool in refapply treediff; do
  (cd "$here/cmd/$tool" && go build -o "$out/$tool" .)
done
