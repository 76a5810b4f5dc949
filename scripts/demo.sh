#!/usr/bin/env bash
# zsnap demo on a fresh Debian 12 machine, as root: installs the packages, builds zsnap, starts
# it with a private containerd wired to it ([proxy_plugins.zsnap]) and a local registry on
# 127.0.0.1 holding a three-layer image built from local files (gzip and zstd variants), pulls
# the image through zsnap, runs a container from it, unpacks a layer with `zsnap unpack`, and
# prints what happened at each step. Everything runs in a scratch dir that is removed at the end
# (DEMO_KEEP=1 keeps it). No internet beyond Debian's package mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "installing Debian packages (scripts/setup.sh)"
bash scripts/setup.sh >/tmp/zsnap-demo-setup.log 2>&1 || { tail -20 /tmp/zsnap-demo-setup.log; exit 1; }

say "building zsnap"
cmake -S "$src" -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target zsnap
export ZSNAP_BIN=$src/build/plugin/zsnap ZSNAP_SOURCE_DIR=$src ZSNAP_BUILD_DIR=$src/build
"$ZSNAP_BIN" version

set +e
export ITEST_KEEP=${DEMO_KEEP:-}
source tests/integration/lib/all.sh
itest_init demo
itest_require_cmd skopeo jq curl zstd gzip tar

say "starting zsnap, a private containerd wired to it, and a registry on 127.0.0.1"
zsnap_start || itest_die "zsnap did not start (log: $ZSNAP_LOG)"
containerd_start || itest_die "containerd did not start (log: $CONTAINERD_LOG)"
registry_start || itest_die "docker-registry did not start"
echo "zsnap      pid $ZSNAP_PID socket $ZSNAP_SOCKET root $ZSNAP_ROOT"
echo "containerd $(containerd_version), proxy plugin:"
itest_ctr plugins ls | grep -E 'TYPE|zsnap'
echo "registry   http://$REGISTRY_ADDR"

say "building a 3-layer image from local files and pushing it (gzip and zstd) with skopeo"
image_build_oci "$ITEST_DIR/oci" v1 none || itest_die "image build failed"
for v in gzip zstd; do
  image_push "$ITEST_DIR/oci" v1 "demo/app:$v" "$v" >/dev/null || itest_die "push $v failed"
  echo "demo/app:$v layers: $(image_layer_media_types "demo/app:$v" | tr '\n' ' ')"
done

for v in gzip zstd; do
  say "pulling $REGISTRY_ADDR/demo/app:$v through zsnap (namespace demo-$v)"
  CTR_NAMESPACE=demo-$v itest_ctr image pull --plain-http --snapshotter zsnap \
    "$REGISTRY_ADDR/demo/app:$v" | tail -3
  say "running a container from it"
  CTR_NAMESPACE=demo-$v itest_ctr run --rm --snapshotter zsnap "$REGISTRY_ADDR/demo/app:$v" \
    "demo-$v" sh -c 'echo "hello.txt: $(cat /data/hello.txt)"; echo "/data: $(ls -A /data | tr "\\n" " ")"'
done

say "zsnap's snapshots, as containerd sees them"
CTR_NAMESPACE=demo-gzip itest_ctr snapshot --snapshotter zsnap ls
say "zsnap's side: one INFO line per operation"
grep -E '\b(prepare|commit|view|remove)\b.*code=' "$ZSNAP_LOG" | tail -8

say "zsnap unpack of the image's largest layer (timing record)"
blob=$(find "$ITEST_DIR/oci/blobs/sha256" -type f -size +100k | head -1)
zstd -q -19 -c "$blob" >"$ITEST_DIR/layer.tar.zst"
"$ZSNAP_BIN" unpack "$ITEST_DIR/layer.tar.zst" "$ITEST_DIR/unpacked"

say "done"
echo "Every step above ran against real containerd $(containerd_version), runc, docker-registry and"
echo "skopeo; the scratch dir $ITEST_DIR is removed now (DEMO_KEEP=1 keeps it)."
