#!/usr/bin/env bash
# Differential fuzzing (issue 12): random odd and hostile layers (tests/tools/refapply/
# layergen.py) applied by containerd 1.6's own applier (refapply) and by `zsnap unpack`; both
# must refuse a layer or make the same tree with the same diffID (difffuzz.py compares with
# treediff). Two rounds: the fixed seed 1, then a random seed that is printed
# (ZSNAP_DIFFFUZZ_SEED=N repeats it); each runs ZSNAP_DIFFFUZZ_SECONDS (default 120).
# A difference prints the case, what differed and the command that regenerates it; the blobs
# are kept in $ZSNAP_BUILD_DIR/itest/difffuzz/differences.
#
# KNOWN_DIFFERENT lists the layer classes zsnap does not yet read as containerd does (issue
# 12's list): the generator leaves them out here. Remove a class once it is fixed; a long run
# without --exclude shows what is still open:
#   python3 tests/tools/refapply/difffuzz.py --refapply R --treediff T --zsnap Z \
#     --work /tmp/df --seed S --count 100000
# Needs root (devices, owners, trusted.* xattrs); skips (77) without it.
set -uo pipefail

src=${ZSNAP_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${ZSNAP_BUILD_DIR:-$src/build}
zsnap=${ZSNAP_BIN:-$build/plugin/zsnap}
work=$build/itest/difffuzz
seconds=${ZSNAP_DIFFFUZZ_SECONDS:-120}
KNOWN_DIFFERENT=(
  nfd                  # names in NFD come out NFC (libarchive charset conversion)
  bad-utf8             # invalid UTF-8 names are not kept byte-exact
  mtime-negative       # negative fractional PAX mtimes (Go truncates toward zero)
  xattr-vendor         # LIBARCHIVE.xattr.* / RHT.security.selinux applied (containerd: SCHILY.xattr.* only)
  pax-duplicate        # a PAX record given twice: archive/tar keeps the last
  odd-type             # unknown/contiguous/old-sparse typeflags ('7', 'Z', 'S', ...)
  reg-slash            # a type-'0' entry whose name ends in '/'
  pax-gnu              # PAX path plus GNU long name on one entry (archive/tar: GNU wins)
  pax-nul              # NUL inside a PAX path (archive/tar: ErrHeader)
  sparse               # GNU sparse in its PAX 0.0/0.1/1.0 forms
  eof                  # missing/short padding of the last member, one or no zero blocks, data after a zero block
  truncate             # a stream cut short (containerd: unexpected EOF)
  empty-blob           # a zero-byte blob is an empty layer
  symlink-parent       # parents created through a symlinked parent (mkparent after a dir became a symlink)
  dir-replaced         # a directory a header named is replaced or whited out later (containerd fails setting its times)
  under-nondir         # an entry below a file or device of the same layer (containerd: not a directory)
)

if [[ $(id -u) -ne 0 ]]; then
  echo "SKIP difffuzz: needs root (device nodes, owners, trusted.* xattrs)" >&2
  exit 77
fi
[[ -x $zsnap ]] || { echo "FAIL setup: zsnap binary not found at $zsnap"; exit 1; }
rm -rf "$work"
mkdir -p "$work"
if ! "$src/tests/tools/refapply/build.sh" "$build/difftools" >"$work/build-tools.log" 2>&1; then
  echo "FAIL setup: building refapply/treediff failed"
  sed 's/^/    /' "$work/build-tools.log" | head -n 40
  exit 1
fi
exclude=$(IFS=,; echo "${KNOWN_DIFFERENT[*]}")
seeds=(1 "${ZSNAP_DIFFFUZZ_SEED:-$(( $(date +%s%N) % 1000000 ))}")
echo "difffuzz: seeds ${seeds[*]} (ZSNAP_DIFFFUZZ_SEED=${seeds[1]} repeats the second), ${seconds}s each; left out: $exclude"
failed=0
for seed in "${seeds[@]}"; do
  python3 "$src/tests/tools/refapply/difffuzz.py" --refapply "$build/difftools/refapply" \
    --treediff "$build/difftools/treediff" --zsnap "$zsnap" --work "$work/run-$seed" \
    --seed "$seed" --seconds "$seconds" --exclude "$exclude" --keep "$work/differences" \
    2>"$work/stderr-$seed.log"
  rc=$?
  if ((rc == 0)); then
    echo "PASS difffuzz-seed-$seed"
  else
    echo "FAIL difffuzz-seed-$seed (exit $rc; differences kept in $work/differences)"
    tail -n 5 "$work/stderr-$seed.log" | sed 's/^/    /'
    failed=$((failed + 1))
  fi
done
echo "$((${#seeds[@]} - failed)) passed, $failed failed"
((failed == 0))
