#!/usr/bin/env bash
# Builds the integration tests' Go programs against Debian's containerd 1.6 sources
# (golang-github-containerd-containerd-dev, /usr/share/gocode) in GOPATH mode: no modules,
# no downloads. The package root "zsnapitest" is a symlink to tests/integration inside a
# scratch GOPATH.
#
#   tools/build.sh OUTDIR     -> OUTDIR/{conformance.test,burst,snapctl,refsnap}
#
# Needs ZSNAP_BUILD_DIR (the Go build cache and scratch GOPATH live in
# $ZSNAP_BUILD_DIR/itest/go, so later runs are incremental). Prints nothing on success.
set -euo pipefail
out=${1:?usage: build.sh OUTDIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)   # tests/integration
gocode=/usr/share/gocode
base=${ZSNAP_BUILD_DIR:?ZSNAP_BUILD_DIR must be set}/itest/go

command -v go >/dev/null || { echo "build.sh: go not found (scripts/setup.sh installs golang-go)" >&2; exit 1; }
[[ -d $gocode/src/github.com/containerd/containerd/snapshots/testsuite ]] || {
  echo "build.sh: $gocode lacks containerd's snapshots/testsuite (golang-github-containerd-containerd-dev)" >&2
  exit 1
}

mkdir -p "$base/gopath/src" "$base/cache" "$out"
ln -sfn "$here" "$base/gopath/src/zsnapitest"

export GO111MODULE=off GOFLAGS= GOPROXY=off GOENV=off GOTOOLCHAIN=local
export GOPATH=$base/gopath:$gocode GOCACHE=$base/cache
# Serialise concurrent builds sharing one cache/GOPATH (two scripts run by hand at once).
exec 9>"$base/lock"
flock 9

cd "$base/gopath/src/zsnapitest"
go test -c -o "$out/conformance.test" zsnapitest/conformance
for t in burst snapctl refsnap; do
  go build -o "$out/$t" "zsnapitest/tools/$t"
done
