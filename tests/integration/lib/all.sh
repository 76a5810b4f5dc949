# Entry point of zsnap's integration-test library: `source "$(dirname "$0")/lib/all.sh"`.
# Sources, in order:
#   common.sh      scratch dir + cleanup trap (itest_init), polling, free ports, PASS/FAIL report
#   zsnap.sh       zsnap_start / zsnap_stop: private zsnap daemon (ZSNAP_ROOT, ZSNAP_SOCKET)
#   containerd.sh  containerd_start / containerd_stop / itest_ctr: private containerd with
#                  [proxy_plugins.zsnap]
#   registry.sh    registry_start / registry_stop: docker-registry on 127.0.0.1:<free port>
#   image.sh       image_build_oci / image_push: the three-layer test image, pushed with skopeo
#   debian.sh      debian_fetch_containerd: other containerd releases from Debian suites
# Typical use:
#   itest_init my_test; zsnap_start; containerd_start; registry_start
#   image_build_oci "$ITEST_DIR/oci" v1; image_push "$ITEST_DIR/oci" v1 test/img:gz gzip
#   itest_check pull itest_ctr image pull --plain-http --snapshotter zsnap "$REGISTRY_ADDR/test/img:gz"
#   itest_report
_itest_lib=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
for _f in common zsnap containerd registry image debian; do
  # shellcheck source=/dev/null
  [[ -f $_itest_lib/$_f.sh ]] && source "$_itest_lib/$_f.sh"
done
unset _f _itest_lib
