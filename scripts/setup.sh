#!/usr/bin/env bash
# Installs every Debian 12 package zsnap's build, tests, benchmark and daemon need.
# Idempotent; run as root. Nothing is downloaded at build time and nothing is vendored.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
  echo "setup.sh: must run as root (it installs Debian packages)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive

BUILD_PKGS=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libgrpc++-dev
  libzstd-dev zlib1g-dev libisal-dev libssl-dev libboost-dev
  libfuse3-dev libabsl-dev libsqlite3-dev libarchive-dev
  libtomlplusplus-dev libspdlog-dev nlohmann-json3-dev libsystemd-dev libre2-dev
  libgtest-dev libgmock-dev libbenchmark-dev prometheus-cpp-dev
  clang libclang-rt-14-dev
)
RUNTIME_PKGS=(
  containerd runc docker-registry skopeo
  zstd pigz isal gzip tar xz-utils e2fsprogs util-linux iproute2 kmod attr
)
TEST_PKGS=(
  golang-go golang-github-containerd-containerd-dev
  golang-golang-x-sys-dev debootstrap systemd prometheus curl jq python3 dpkg-dev fakeroot time
  openssl ca-certificates
)

apt-get update
apt-get install -y --no-install-recommends "${BUILD_PKGS[@]}" "${RUNTIME_PKGS[@]}" "${TEST_PKGS[@]}"

# Debian's containerd and docker-registry packages start system services. zsnap's tests run
# private instances with their own config, root and socket, so the system ones are not needed;
# leave them as the administrator had them but make sure they do not hold our ports/sockets.
modprobe overlay 2>/dev/null || true
echo "setup.sh: done"
