# Build a small multi-layer test image from local files only (no internet) as an OCI layout,
# and push it to the private registry with skopeo. Needs lib/common.sh (and lib/registry.sh for
# image_push's registry).
#
# The image (image_build_oci) has three layers:
#   1. rootfs: a shell and a few tools copied from the host (busybox if installed, else dash +
#      coreutils) with the shared libraries ldd names; plus /data with
#        hello.txt "hello from layer 1"   over.txt "layer 1"   removed.txt
#        gone-dir/{a,b}.txt               opaque/{old1.txt,sub/old2.txt}
#   2. changes: .wh.removed.txt, .wh.gone-dir (whiteouts), opaque/.wh..wh..opq + opaque/new.txt
#      (opaque dir), over.txt "layer 2", hard1 + hard2 (hard link, content "linked"),
#      sym -> hello.txt (symlink), deep/a/b/c.txt "deep"
#   3. layer3.txt "layer 3" (a third level, so a middle snapshot has a parent and a child)
# image_expect_* below describe what a container must see; tests compare against them.

# shellcheck disable=SC2034  # IMAGE_EXPECT_* are read by the test scripts
true
if [[ -n ${ZSNAP_ITEST_IMAGE_SH:-} ]]; then return 0; fi
ZSNAP_ITEST_IMAGE_SH=1

# Expected results inside a container (command -> output), shared by every test that runs the
# image.
IMAGE_EXPECT_HELLO="hello from layer 1"
IMAGE_EXPECT_OVER="layer 2"
IMAGE_EXPECT_LINKED="linked"
IMAGE_EXPECT_DEEP="deep"
IMAGE_EXPECT_LAYER3="layer 3"
IMAGE_EXPECT_OPAQUE_LS="new.txt"
IMAGE_EXPECT_DATA_LS="deep hard1 hard2 hello.txt layer3.txt opaque over.txt sym"  # ls -A /data

# image_build_rootfs DIR: fill DIR with a minimal runnable root filesystem from host binaries:
# /bin/sh, cat, ls, stat, readlink, echo, test, sleep (busybox applets if /bin/busybox exists)
# plus their shared libraries and dynamic loader, and /etc/{passwd,group}.
image_build_rootfs() {
  local root=$1 f lib
  mkdir -p "$root"/{bin,etc,tmp,proc,sys,dev,root}
  chmod 1777 "$root/tmp"
  local -a bins=()
  local bb
  bb=$(command -v busybox 2>/dev/null || true)
  if [[ -n $bb ]]; then
    cp -L "$bb" "$root/bin/busybox"
    bins=("$root/bin/busybox")
    for f in sh cat ls stat readlink echo test sleep true find wc; do
      ln -s busybox "$root/bin/$f"
    done
  else
    local sh
    sh=$(command -v dash || command -v bash)
    cp -L "$sh" "$root/bin/sh"
    bins=("$root/bin/sh")
    for f in cat ls stat readlink echo test sleep true find wc; do
      cp -L "$(type -P "$f")" "$root/bin/$f"
      bins+=("$root/bin/$f")
    done
  fi
  # Shared libraries at the paths the binaries' ELF headers ask for (no usrmerge symlinks).
  for f in "${bins[@]}"; do
    for lib in $(ldd "$f" 2>/dev/null | grep -oE '/[^ ]+' | sort -u); do
      [[ -e $root$lib ]] && continue
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
  done
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
  printf 'root:x:0:\n' >"$root/etc/group"
}

# image__tar DIR OUT: write a reproducible uncompressed tar of DIR's contents (entries without a
# leading ./, sorted, root-owned, fixed mtime, hard links kept).
image__tar() {
  local dir=$1 out=$2
  (
    cd "$dir" || exit 1
    # shellcheck disable=SC2046
    tar --create --file - --sort=name --owner=0 --group=0 --numeric-owner \
      --mtime=@1700000000 --format=posix \
      --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
      $(ls -A)
  ) >"$out"
}

# image__blob LAYOUT FILE: move FILE into LAYOUT/blobs/sha256/<digest>; print "sha256:<hex> <size>".
image__blob() {
  local layout=$1 file=$2 hex size
  hex=$(sha256sum "$file" | cut -d' ' -f1)
  size=$(stat -c %s "$file")
  mkdir -p "$layout/blobs/sha256"
  mv -f "$file" "$layout/blobs/sha256/$hex"
  echo "sha256:$hex $size"
}

# image_build_oci LAYOUT TAG [COMPRESSION]: build the three-layer test image described above as
# an OCI image layout in LAYOUT (created) under reference name TAG. COMPRESSION is the layer
# encoding in the layout: gzip (default), zstd, none, or mixed (layer 1 gzip, 2 zstd, 3 plain
# tar). IMAGE_LAYER3_TEXT (default $IMAGE_EXPECT_LAYER3) sets layer 3's file, so two builds can
# share layers 1-2 (the tars are reproducible) and differ on top. Prints nothing; returns
# non-zero on error.
image_build_oci() {
  local layout=$1 tag=$2 comp=${3:-gzip}
  local work
  work=$(mktemp -d "${ITEST_DIR:-/tmp}/image-build.XXXXXX")
  mkdir -p "$layout"

  # Layer 1: rootfs + data.
  local l1=$work/l1
  image_build_rootfs "$l1"
  mkdir -p "$l1/data/gone-dir" "$l1/data/opaque/sub"
  echo "$IMAGE_EXPECT_HELLO" >"$l1/data/hello.txt"
  echo "layer 1" >"$l1/data/over.txt"
  echo "to be removed" >"$l1/data/removed.txt"
  echo a >"$l1/data/gone-dir/a.txt"
  echo b >"$l1/data/gone-dir/b.txt"
  echo old1 >"$l1/data/opaque/old1.txt"
  echo old2 >"$l1/data/opaque/sub/old2.txt"

  # Layer 2: whiteouts, opaque dir, overwrite, hard link, symlink, deep path.
  local l2=$work/l2
  mkdir -p "$l2/data/opaque" "$l2/data/deep/a/b"
  : >"$l2/data/.wh.removed.txt"
  : >"$l2/data/.wh.gone-dir"
  : >"$l2/data/opaque/.wh..wh..opq"
  echo new >"$l2/data/opaque/new.txt"
  echo "$IMAGE_EXPECT_OVER" >"$l2/data/over.txt"
  echo "$IMAGE_EXPECT_LINKED" >"$l2/data/hard1"
  ln "$l2/data/hard1" "$l2/data/hard2"
  ln -s hello.txt "$l2/data/sym"
  echo "$IMAGE_EXPECT_DEEP" >"$l2/data/deep/a/b/c.txt"
  # tar records the mode of the directory entries; keep them ordinary.
  chmod 0755 "$l2/data" "$l2/data/opaque"

  # Layer 3.
  local l3=$work/l3
  mkdir -p "$l3/data"
  echo "${IMAGE_LAYER3_TEXT:-$IMAGE_EXPECT_LAYER3}" >"$l3/data/layer3.txt"

  local media_type diff_ids=() layers_json="" i digest size c
  local -a comps
  case $comp in
    gzip | zstd | none) comps=("$comp" "$comp" "$comp") ;;
    mixed) comps=(gzip zstd none) ;;
    *) itest_log "image_build_oci: unknown compression $comp"; return 1 ;;
  esac
  for i in 1 2 3; do
    c=${comps[i - 1]}
    case $c in
      gzip) media_type=application/vnd.oci.image.layer.v1.tar+gzip ;;
      zstd) media_type=application/vnd.oci.image.layer.v1.tar+zstd ;;
      none) media_type=application/vnd.oci.image.layer.v1.tar ;;
    esac
    image__tar "$work/l$i" "$work/l$i.tar" || return 1
    diff_ids+=("sha256:$(sha256sum "$work/l$i.tar" | cut -d' ' -f1)")
    case $c in
      gzip) gzip -n -6 -c "$work/l$i.tar" >"$work/l$i.blob" ;;
      zstd) zstd -q -3 -c "$work/l$i.tar" >"$work/l$i.blob" ;;
      none) cp "$work/l$i.tar" "$work/l$i.blob" ;;
    esac
    read -r digest size < <(image__blob "$layout" "$work/l$i.blob")
    layers_json+=$(jq -nc --arg mt "$media_type" --arg d "$digest" --argjson s "$size" \
      '{mediaType:$mt,digest:$d,size:$s}'),
  done
  layers_json="[${layers_json%,}]"

  local arch
  arch=$(containerd_platform 2>/dev/null || echo linux/amd64)
  arch=${arch#linux/}
  jq -nc --arg arch "$arch" --args '{
      architecture: $arch, os: "linux",
      config: {Env: ["PATH=/bin"], Cmd: ["/bin/sh"], WorkingDir: "/"},
      rootfs: {type: "layers", diff_ids: $ARGS.positional},
      history: [{created_by: "zsnap itest layer 1"}, {created_by: "zsnap itest layer 2"},
                {created_by: "zsnap itest layer 3"}]
    }' "${diff_ids[@]}" >"$work/config.json"
  read -r digest size < <(image__blob "$layout" "$work/config.json")
  jq -nc --arg d "$digest" --argjson s "$size" --argjson layers "$layers_json" '{
      schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $d, size: $s},
      layers: $layers
    }' >"$work/manifest.json"
  read -r digest size < <(image__blob "$layout" "$work/manifest.json")
  echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  local index='{"schemaVersion":2,"manifests":[]}'
  [[ -f $layout/index.json ]] && index=$(cat "$layout/index.json")
  jq -c --arg d "$digest" --argjson s "$size" --arg tag "$tag" '
      .manifests |= (map(select(.annotations["org.opencontainers.image.ref.name"] != $tag)) + [{
        mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $d, size: $s,
        annotations: {"org.opencontainers.image.ref.name": $tag}}])' <<<"$index" >"$layout/index.json"
  rm -rf "$work"
}

# image_push LAYOUT TAG REPO:TAG [FORMAT]: push oci:LAYOUT:TAG to the private registry as
# REPO:TAG with skopeo, as an OCI manifest. FORMAT gzip|zstd recompresses the layers on the
# way (skopeo --dest-compress-format); empty keeps the layout's encoding. Prints the pushed
# manifest digest.
image_push() {
  local layout=$1 tag=$2 dest=$3 format=${4:-}
  local -a opts=(--quiet --dest-tls-verify=false --format oci --digestfile "$ITEST_DIR/push.digest")
  # (skopeo 1.9: --dest-compress would force gzip; --dest-compress-format alone recompresses.)
  [[ -z $format ]] || opts+=(--dest-compress-format "$format")
  # skopeo (as root) remembers in /var/lib/containers/cache which compressed blobs of an
  # uncompressed layer a registry already has, and reuses them instead of recompressing: a zstd
  # push after a gzip push of the same layers would silently stay gzip, and the cache survives
  # between runs. Run it in a private mount namespace with an empty tmpfs there instead.
  unshare --mount --propagation private bash -c '
    mkdir -p /var/lib/containers 2>/dev/null
    mount -t tmpfs -o size=16m,mode=0700 zsnap-itest-skopeo /var/lib/containers || exit 1
    exec skopeo copy "$@"' skopeo "${opts[@]}" "oci:$layout:$tag" "docker://$REGISTRY_ADDR/$dest" >&2 ||
    return 1
  cat "$ITEST_DIR/push.digest"
  echo
}

# image_layer_media_types REPO:TAG: print the pushed manifest's layer media types, one a line.
image_layer_media_types() {
  registry_manifest "$1" | jq -r '.layers[].mediaType'
}

# image_chain_ids LAYOUT TAG: print the layer chain IDs (the names containerd gives the
# committed snapshots) of oci:LAYOUT:TAG, bottom layer first, one a line.
image_chain_ids() {
  local layout=$1 tag=$2 manifest config chain="" diff
  manifest=$(jq -r --arg tag "$tag" \
    '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $tag) | .digest' \
    "$layout/index.json") || return 1
  config=$(jq -r '.config.digest' "$layout/blobs/sha256/${manifest#sha256:}") || return 1
  for diff in $(jq -r '.rootfs.diff_ids[]' "$layout/blobs/sha256/${config#sha256:}"); do
    if [[ -z $chain ]]; then
      chain=$diff
    else
      chain=sha256:$(printf '%s %s' "$chain" "$diff" | sha256sum | cut -d' ' -f1)
    fi
    echo "$chain"
  done
}

# image_push_raw LAYOUT TAG REPO:TAG: push oci:LAYOUT:TAG byte for byte with the Registry API
# (monolithic blob uploads, then the manifest) — unlike skopeo, which compresses plain tar
# layers on the way to a registry. Plain HTTP, no auth. Prints the manifest digest.
image_push_raw() {
  local layout=$1 tag=$2 dest=$3 repo=${3%:*} rtag=${3##*:} manifest digest location
  manifest=$(jq -r --arg tag "$tag" \
    '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $tag) | .digest' \
    "$layout/index.json") || return 1
  local mfile=$layout/blobs/sha256/${manifest#sha256:}
  for digest in $(jq -r '.config.digest, .layers[].digest' "$mfile"); do
    location=$(curl -sSf -X POST -D - -o /dev/null "http://$REGISTRY_ADDR/v2/$repo/blobs/uploads/" |
      tr -d '\r' | awk 'tolower($1) == "location:" {print $2}') || return 1
    [[ $location == http* ]] || location=http://$REGISTRY_ADDR$location
    [[ $location == *\?* ]] && location+="&digest=$digest" || location+="?digest=$digest"
    curl -sSf -X PUT -H 'Content-Type: application/octet-stream' \
      --data-binary "@$layout/blobs/sha256/${digest#sha256:}" "$location" >/dev/null || return 1
  done
  curl -sSf -X PUT -H "Content-Type: $(jq -r .mediaType "$mfile")" --data-binary "@$mfile" \
    "http://$REGISTRY_ADDR/v2/$repo/manifests/$rtag" >/dev/null || return 1
  echo "$manifest"
}
