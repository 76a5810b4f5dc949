#!/usr/bin/env python3
"""layergen: a structure-aware generator of odd and hostile OCI layer blobs (issue 12).

Every case is a pure function of (seed, index): `layergen.py --seed S --index I --out F`
writes case I of seed S again, so a difference the fuzzer finds can be kept as a fixture.

A case is a tar written header by header (not with tarfile, which cannot write the odd
forms): random mixes of directories, files, symlinks, hardlinks, devices, fifos, whiteouts
and opaque markers, entries replacing earlier ones; names long and short, NFC and NFD,
invalid UTF-8, through symlinked parents; headers in ustar (prefix split), GNU (long name and
long link entries) and PAX (path, linkpath, mtime, uid, xattr records of every vendor prefix)
and their combinations; GNU sparse in its PAX forms; end-of-archive variants (two, one or no
zero blocks, short or missing padding of the last member, bytes after a zero block); and
truncation. The tar is then wrapped as plain, gzip or zstd and labelled with a matching,
mismatching, docker or unknown media type.

Each case carries the classes it exercises (so the fuzzer can report differences by class
and leave out classes that are known to differ while they are being fixed) and the paths
whose mtime containerd leaves to the clock (parents created implicitly, whiteout devices).
"""
import argparse
import gzip
import json
import random
import subprocess
import sys
import unicodedata

BLOCK = 512
T0 = 1700000000

OCI = "application/vnd.oci.image.layer.v1.tar"
MEDIA = {
    "plain": [OCI, "application/vnd.docker.image.rootfs.diff.tar"],
    "gzip": [OCI + "+gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip",
             "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"],
    "zstd": [OCI + "+zstd"],
}
UNKNOWN_MEDIA = ["application/x-zsnap-unknown", "application/vnd.oci.image.config.v1+json"]

# Name components: plain ASCII, composed/decomposed Unicode, invalid UTF-8, odd ASCII.
COMPONENTS = [b"a", b"bin", b"etc", b"usr", b"lib", b"data", b"x" * 40, b"long" * 30,
              "caf\u00e9".encode(), unicodedata.normalize("NFD", "caf\u00e9").encode(),
              "\u00c5ngstr\u00f6m".encode(), unicodedata.normalize("NFD", "\u00c5ngstr\u00f6m").encode(),
              b"bad\xff\xfe", b"lat\xe9n", b"sp ace", b"semi;colon", b"-dash", b"..dots",
              b"new\nline", b"tab\tname"]
NFD_NAMES = {unicodedata.normalize("NFD", "caf\u00e9").encode(),
             unicodedata.normalize("NFD", "\u00c5ngstr\u00f6m").encode()}
BAD_UTF8 = {b"bad\xff\xfe", b"lat\xe9n"}

# The odd classes: each case draws at most two of them on top of ordinary entries (every
# entry type, whiteouts, opaque dirs, replacements, long names, symlinked parents, SCHILY
# xattrs), so a difference points at its class.
ODD = ["nfd", "bad-utf8", "mtime-negative", "xattr-vendor", "pax-duplicate", "odd-type",
       "reg-slash", "pax-gnu",
       "pax-nul", "sparse", "eof", "truncate", "mediatype-mismatch", "mediatype-unknown",
       "empty-blob"]


def octal(value, width):
    """A NUL-terminated octal field, or None if the value does not fit."""
    if value < 0:
        return None
    s = b"%o" % value
    if len(s) > width - 1:
        return None
    return s.rjust(width - 1, b"0") + b"\0"


def base256(value, width):
    """GNU's binary number form (first byte 0x80, or 0xff for negative)."""
    if value < 0:
        raw = (1 << (8 * width)) + value
        out = raw.to_bytes(width, "big")
        return b"\xff" + out[1:]
    return b"\x80" + value.to_bytes(width - 1, "big")


def pax_record(key, value):
    if isinstance(key, str):
        key = key.encode()
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + 1
    while len(b"%d" % n) + len(body) != n:
        n = len(b"%d" % n) + len(body)
    return b"%d" % n + body


def pax_time(ns):
    sign = "-" if ns < 0 else ""
    s, frac = divmod(abs(ns), 1_000_000_000)
    return "%s%d.%09d" % (sign, s, frac)


class Tar:
    def __init__(self, rng, classes):
        self.rng = rng
        self.classes = classes
        self.out = bytearray()

    def raw_header(self, name, mode, uid, gid, size, mtime, typeflag, linkname=b"",
                   fmt="ustar", devmajor=0, devminor=0, prefix=b""):
        h = bytearray(BLOCK)

        def put(off, width, data):
            h[off:off + width] = data[:width].ljust(width, b"\0")

        put(0, 100, name)
        put(100, 8, octal(mode & 0o7777, 8))
        for off, width, v in ((108, 8, uid), (116, 8, gid), (124, 12, size), (136, 12, mtime)):
            f = octal(v, width)
            if f is None:
                f = base256(v, width)  # only the GNU form has it; the caller adds PAX too
            put(off, width, f)
        put(156, 1, typeflag)
        put(157, 100, linkname)
        if fmt == "gnu":
            put(257, 8, b"ustar  \0")
        elif fmt == "ustar":
            put(257, 8, b"ustar\x0000")
        # v7: no magic at all
        if fmt != "v7":
            put(265, 32, b"")
            put(297, 32, b"")
            put(329, 8, octal(devmajor, 8))
            put(337, 8, octal(devminor, 8))
            put(345, 155, prefix)
        h[148:156] = b" " * 8
        chk = sum(h)
        h[148:156] = b"%06o\0 " % chk
        return bytes(h)

    def data(self, payload):
        self.out += payload
        pad = (-len(payload)) % BLOCK
        self.out += b"\0" * pad

    def special(self, typeflag, name, payload):
        """A GNU long name/link ('L', 'K') or PAX ('x', 'g') entry carrying `payload`."""
        self.out += self.raw_header(name, 0o644, 0, 0, len(payload), 0, typeflag,
                                    fmt="gnu" if typeflag in b"LK" else "ustar")
        self.data(payload)

    def entry(self, name, typeflag, mode=0o644, uid=0, gid=0, mtime_ns=None, payload=b"",
              linkname=b"", devmajor=0, devminor=0, xattrs=(), style=None, extra_pax=()):
        rng = self.rng
        if mtime_ns is None:
            mtime_ns = T0 * 1_000_000_000
        style = style or rng.choice(["ustar", "ustar", "gnu", "pax", "pax"])
        pax = list(extra_pax)
        hdr_name, prefix, hdr_link = name, b"", linkname
        secs = mtime_ns // 1_000_000_000 if mtime_ns >= 0 else 0
        if mtime_ns % 1_000_000_000 or mtime_ns < 0:
            pax.append(("mtime", pax_time(mtime_ns)))
            if mtime_ns < 0:
                self.classes.add("mtime-negative")
        big_id = uid > 0o7777777 or gid > 0o7777777
        if big_id:
            pax += [("uid", str(uid)), ("gid", str(gid))]
        for k, v in xattrs:
            pax.append((k, v))
        fmt = "gnu" if style == "gnu" else "ustar"
        if style == "gnu":
            if len(name) > 100:
                self.special(b"L", b"././@LongLink", name + b"\0")
                hdr_name = name[:100]
            if len(linkname) > 100:
                self.special(b"K", b"././@LongLink", linkname + b"\0")
                hdr_link = linkname[:100]
        elif style == "pax" or len(name) > 255 or len(linkname) > 100 or \
                (len(name) > 100 and b"/" not in name[-101:]):
            if style != "pax":
                style = "pax"
            pax.append(("path", name))
            if linkname:
                pax.append(("linkpath", linkname))
            hdr_name = name[-100:]
            hdr_link = linkname[:100]
        elif len(name) > 100:
            # ustar prefix split at a '/' so that name <= 100 and prefix <= 155.
            cut = name.rfind(b"/", 0, 156)
            while cut > 0 and len(name) - cut - 1 > 100:
                cut = -1
            if cut <= 0:
                pax.append(("path", name))
                hdr_name = name[-100:]
            else:
                prefix, hdr_name = name[:cut], name[cut + 1:]
        if pax or rng.random() < 0.05:
            body = b"".join(pax_record(k, v) for k, v in pax)
            self.special(b"x", b"PaxHeaders.0/" + name[-80:], body)
        self.out += self.raw_header(hdr_name, mode, uid, gid, len(payload), secs, typeflag,
                                    hdr_link, fmt, devmajor, devminor, prefix)
        self.data(payload)


class Case:
    """Builds one random layer; `paths` tracks what the layer holds so later entries can link
    to, replace or white out earlier ones."""

    def __init__(self, rng, exclude, odd):
        self.rng = rng
        self.exclude = exclude
        self.odd = odd
        self.classes = set()
        self.tar = Tar(rng, self.classes)
        self.kind = {}  # path -> 'd' | 'f' | 'l' | 'o' (other)
        self.explicit_dirs = set()
        self.ignore_mtime = set()

    def allowed(self, cls):
        return cls in self.odd if cls in ODD else cls not in self.exclude

    def component(self):
        for _ in range(20):
            c = self.rng.choice(COMPONENTS)
            cls = "nfd" if c in NFD_NAMES else "bad-utf8" if c in BAD_UTF8 else None
            if cls is None or self.allowed(cls):
                if cls:
                    self.classes.add(cls)
                return c
        return b"a"

    def new_path(self):
        rng = self.rng
        dirs = [p for p, k in self.kind.items() if k == "d"]
        if dirs and rng.random() < 0.6:
            base = rng.choice(dirs)
        else:
            base = b""
        parts = [self.component() for _ in range(rng.choice([1, 1, 1, 2, 3]))]
        path = b"/".join(([base] if base else []) + parts)
        return path

    def implied_parents(self, path, is_dir=False):
        """Records the parents `path` makes implicitly; False (skip the entry) if the path goes
        through a symlink of this layer and the class symlink-parent is left out."""
        parts = path.split(b"/")
        above = [self.kind.get(b"/".join(parts[:i])) for i in range(1, len(parts))]
        if "l" in above:
            if not self.allowed("symlink-parent"):
                return False
            self.classes.add("symlink-parent")
        if "f" in above or "o" in above:  # below a file, device or whiteout of this layer
            if not self.allowed("under-nondir"):
                return False
            self.classes.add("under-nondir")
        if not is_dir and self.kind.get(path) == "d" and not self.replacing(path):
            return False
        for i in range(1, len(parts)):
            parent = b"/".join(parts[:i])
            if self.kind.get(parent) is None:
                self.kind[parent] = "d"
                self.ignore_mtime.add(parent)
                self.classes.add("implied-parent")
        return True

    def set_kind(self, path, kind):
        """`path` is now a non-directory: what was below it is gone."""
        prefix = path + b"/"
        for p in [p for p in self.kind if p.startswith(prefix)]:
            del self.kind[p]
        self.explicit_dirs = {d for d in self.explicit_dirs if d != path and not d.startswith(prefix)}
        self.kind[path] = kind

    def replacing(self, path):
        """An entry is about to replace or white out `path`. If that removes a directory a
        header of this layer named (or one below it), containerd's applier fails at the end
        when it sets the directory times (archive/tar.go applyNaive: chtimes over `dirs`):
        class dir-replaced. False: skip the entry, the class is left out."""
        prefix = path + b"/"
        if any(d == path or d.startswith(prefix) for d in self.explicit_dirs):
            if not self.allowed("dir-replaced"):
                return False
            self.classes.add("dir-replaced")
        return True

    def mtime(self):
        rng = self.rng
        r = rng.random()
        if r < 0.6:
            return T0 * 1_000_000_000
        if r < 0.8:
            return (T0 + rng.randrange(-10 ** 6, 10 ** 6)) * 1_000_000_000 + rng.randrange(10 ** 9)
        if r < 0.9 and self.allowed("mtime-negative"):
            return -rng.randrange(1, 10 ** 10) * 1_000_000 - rng.randrange(1, 10 ** 6)
        return rng.choice([0, 1, 2 ** 33 * 1_000_000_000, 4102444800 * 1_000_000_000])

    def xattrs(self):
        rng = self.rng
        out = []
        for _ in range(rng.choice([0, 0, 0, 1, 2])):
            r = rng.random()
            value = rng.choice(["v", "", "x" * 200, "bin\u00ff"])
            if r < 0.6:
                key = "SCHILY.xattr." + rng.choice(["user.a", "user.b", "trusted.t"])
                if any(k == key for k, _ in out):
                    # The same record twice: archive/tar's parsePAX keeps the last one.
                    if not self.allowed("pax-duplicate"):
                        continue
                    self.classes.add("pax-duplicate")
                self.classes.add("xattr-schily")
                out.append((key, value))
            elif self.allowed("xattr-vendor"):
                self.classes.add("xattr-vendor")
                out.append(rng.choice([("LIBARCHIVE.xattr.user.la", "dmFsdWU="),
                                       ("RHT.security.selinux", "system_u:object_r:bin_t:s0"),
                                       ("LIBARCHIVE.xattr.user.raw", "YWJj")]))
        return out

    def owner(self):
        r = self.rng.random()
        if r < 0.7:
            return 0, 0
        if r < 0.95:
            return self.rng.randrange(1, 70000), self.rng.randrange(1, 70000)
        return 3000000, 3000001

    def add_random(self):
        rng = self.rng
        kinds = ["dir", "file", "file", "file", "symlink", "hardlink", "fifo", "device",
                 "whiteout", "opaque", "replace", "under-symlink", "odd-type", "reg-slash",
                 "pax-gnu", "pax-nul", "sparse"]
        k = rng.choice(kinds)
        t = self.tar
        uid, gid = self.owner()
        common = dict(uid=uid, gid=gid, mtime_ns=self.mtime(), xattrs=self.xattrs())
        if k == "dir":
            p = self.new_path()
            if not self.implied_parents(p, is_dir=True):
                return
            if self.kind.get(p) not in (None, "d"):
                self.classes.add("replace")
            t.entry(p + (b"/" if rng.random() < 0.5 else b""), b"5",
                    mode=rng.choice([0o755, 0o700, 0o1777, 0o2755, 0o555]), **common)
            self.kind[p] = "d"
            self.explicit_dirs.add(p)
        elif k == "file" or k == "replace":
            if k == "replace" and self.kind:
                p = rng.choice(sorted(self.kind))
                if not self.replacing(p):
                    return
                self.classes.add("replace")
            else:
                p = self.new_path()
            if not self.implied_parents(p):
                return
            payload = rng.choice([b"", b"hello\n", rng.randbytes(rng.randrange(1, 3000)),
                                  b"\0" * 1024])
            t.entry(p, rng.choice([b"0", b"0", b"\0"]), payload=payload,
                    mode=rng.choice([0o644, 0o755, 0o4755, 0o600, 0o000]), **common)
            self.set_kind(p, "f")
        elif k == "symlink":
            p = self.new_path()
            if not self.implied_parents(p):
                return
            target = rng.choice([b"a", b"../../../../etc", b"/etc/passwd", b"x" * 150,
                                 rng.choice(sorted(self.kind)) if self.kind else b"a"])
            t.entry(p, b"2", mode=0o777, linkname=target, **common)
            self.set_kind(p, "l")
        elif k == "hardlink":
            files = [p for p, kk in self.kind.items() if kk == "f"]
            if not files:
                return
            self.classes.add("hardlink")
            p = self.new_path()
            if not self.implied_parents(p):
                return
            t.entry(p, b"1", linkname=rng.choice(files), **common)
            self.set_kind(p, "f")
        elif k == "fifo" or k == "device":
            p = self.new_path()
            if not self.implied_parents(p):
                return
            self.classes.add("device")
            if k == "fifo":
                t.entry(p, b"6", mode=0o644, **common)
            else:
                t.entry(p, rng.choice([b"3", b"4"]), mode=0o600, devmajor=rng.randrange(1, 9),
                        devminor=rng.randrange(0, 9), **common)
            self.set_kind(p, "o")
        elif k == "whiteout":
            self.classes.add("whiteout")
            target = rng.choice(sorted(self.kind)) if self.kind and rng.random() < 0.1 else None
            if target is not None:
                if not self.replacing(target):
                    return
                parent, _, base = target.rpartition(b"/")
            else:
                parent, base = (rng.choice(sorted(p for p, kk in self.kind.items() if kk == "d"))
                                if any(kk == "d" for kk in self.kind.values()) and
                                rng.random() < 0.5 else b""), self.component()
            wh = (parent + b"/" if parent else b"") + b".wh." + base
            if not self.implied_parents(wh):
                return
            t.entry(wh, b"0", **common)
            name = (parent + b"/" if parent else b"") + base
            self.set_kind(name, "o")
            self.ignore_mtime.add(name)
            if parent:
                self.ignore_mtime.add(parent)
        elif k == "opaque":
            dirs = [p for p, kk in self.kind.items() if kk == "d"]
            if not dirs:
                return
            self.classes.add("opaque")
            d = rng.choice(dirs)
            t.entry(d + b"/.wh..wh..opq", b"0", **common)
        elif k == "under-symlink":
            links = [p for p, kk in self.kind.items() if kk == "l"]
            if not links:
                return
            if not self.allowed("symlink-parent"):
                return
            self.classes.add("symlink-parent")
            p = rng.choice(links) + b"/" + self.component()
            t.entry(p, b"0", payload=b"through a symlink\n", **common)
            self.set_kind(p, "f")
        elif k == "odd-type" and self.allowed("odd-type"):
            self.classes.add("odd-type")
            p = self.new_path()
            if not self.implied_parents(p):
                return
            t.entry(p, rng.choice([b"7", b"Z", b"S", b"V", b"M", b"N", b"A"]),
                    payload=b"odd\n", **common)
            self.set_kind(p, "o")
        elif k == "reg-slash" and self.allowed("reg-slash"):
            self.classes.add("reg-slash")
            p = self.new_path()
            if not self.implied_parents(p):
                return
            t.entry(p + b"/", rng.choice([b"0", b"\0"]), mode=0o755, **common)
            self.set_kind(p, "o")
            self.ignore_mtime.add(p)
        elif k == "pax-gnu" and self.allowed("pax-gnu"):
            # A PAX path and a GNU long name for one entry (archive/tar: the GNU one wins).
            self.classes.add("pax-gnu")
            p1, p2 = self.new_path(), self.new_path()
            if not (self.implied_parents(p1) and self.implied_parents(p2)):
                return
            t.special(b"L", b"././@LongLink", p2 + b"\0")
            t.entry(p1, b"0", payload=b"which name?\n", style="ustar",
                    extra_pax=[("path", p1)], **common)
            self.kind[p1] = self.set_kind(p2, "o")
        elif k == "pax-nul" and self.allowed("pax-nul"):
            self.classes.add("pax-nul")
            p = self.new_path()
            if not self.implied_parents(p):
                return
            t.entry(p, b"0", payload=b"nul\n", style="ustar", extra_pax=[("path", p + b"\0x")],
                    **common)
            self.set_kind(p, "o")
        elif k == "sparse" and self.allowed("sparse"):
            self.add_sparse(common)

    def add_sparse(self, common):
        """GNU sparse, PAX formats 0.0, 0.1 and 1.0 (archive/tar reader.go readGNUSparsePAX*)."""
        rng = self.rng
        self.classes.add("sparse")
        p = self.new_path()
        if not self.implied_parents(p):
            return
        chunks = [(0, b"head"), (8192, b"middle"), (20000, b"tail")]
        real_size = 20000 + len(b"tail") + rng.choice([0, 100])
        data = b"".join(c for _, c in chunks)
        form = rng.choice(["0.0", "0.1", "1.0"])
        pax = [("GNU.sparse.size", str(real_size)), ("GNU.sparse.realsize", str(real_size))]
        payload = data
        if form == "0.0":
            pax.append(("GNU.sparse.numblocks", str(len(chunks))))
            for off, c in chunks:
                pax += [("GNU.sparse.offset", str(off)), ("GNU.sparse.numbytes", str(len(c)))]
        elif form == "0.1":
            pax += [("GNU.sparse.numblocks", str(len(chunks))),
                    ("GNU.sparse.map", ",".join("%d,%d" % (o, len(c)) for o, c in chunks))]
        else:
            pax += [("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0"),
                    ("GNU.sparse.name", p)]
            m = "%d\n" % len(chunks) + "".join("%d\n%d\n" % (o, len(c)) for o, c in chunks)
            m = m.encode()
            m += b"\0" * ((-len(m)) % BLOCK)
            payload = m + data
        self.tar.entry(b"GNUSparseFile.0/" + p.rpartition(b"/")[2] if form == "1.0" else p,
                       b"0", payload=payload, style="ustar", extra_pax=pax,
                       **{k: v for k, v in common.items() if k != "xattrs"})
        self.set_kind(p, "f")

    def finish(self):
        rng = self.rng
        t = self.tar
        r = rng.random()
        if not self.allowed("eof") or r < 0.2:
            t.out += b"\0" * (2 * BLOCK)
        else:
            self.classes.add("eof")
            v = rng.choice(["one-zero", "none", "short-pad", "no-pad", "after-zero", "many"])
            if v == "one-zero":
                t.out += b"\0" * BLOCK
            elif v in ("short-pad", "no-pad"):
                # Cut the last member's padding (only if the last thing written was data).
                pad = len(t.out) % BLOCK
                stripped = bytes(t.out).rstrip(b"\0")
                keep = len(stripped) + (rng.randrange(1, BLOCK) if v == "short-pad" else 0)
                if keep < len(t.out):
                    del t.out[keep:]
                del pad
            elif v == "after-zero":
                t.out += b"\0" * BLOCK + rng.randbytes(BLOCK)
            elif v == "many":
                t.out += b"\0" * (BLOCK * rng.randrange(3, 40))
        if self.allowed("truncate") and rng.random() < 0.5:
            self.classes.add("truncate")
            del t.out[rng.randrange(0, max(1, len(t.out))):]
        return bytes(t.out)


def wrap(rng, tar, allowed, classes):
    codec = rng.choice(["plain", "gzip", "gzip", "zstd", "zstd"])
    if codec == "gzip":
        blob = gzip.compress(tar, compresslevel=rng.choice([1, 6]), mtime=0)
    elif codec == "zstd":
        blob = subprocess.run(["zstd", "-q", "-c", "-%d" % rng.choice([1, 3])], input=tar,
                              stdout=subprocess.PIPE, check=True).stdout
    else:
        blob = tar
    r = rng.random()
    if r < 0.75:
        media = rng.choice(MEDIA[codec])
    elif r < 0.95 and allowed("mediatype-mismatch"):
        classes.add("mediatype-mismatch")
        media = rng.choice([m for c, ms in MEDIA.items() if c != codec for m in ms])
    elif allowed("mediatype-unknown"):
        classes.add("mediatype-unknown")
        media = rng.choice(UNKNOWN_MEDIA)
    else:
        media = rng.choice(MEDIA[codec])
    return blob, media, codec


def make_case(seed, index, exclude=frozenset()):
    """-> dict(blob=bytes, media_type, codec, classes=[...], ignore_mtime=[str paths])."""
    rng = random.Random("%s:%d" % (seed, index))
    pool = sorted(set(ODD) - exclude)
    odd = set(rng.sample(pool, min(len(pool), rng.choice([0, 0, 1, 1, 2]))))
    c = Case(rng, exclude, odd)
    if c.allowed("empty-blob") and rng.random() < 0.1:
        c.classes.add("empty-blob")
        tar = b""
    else:
        for _ in range(rng.randrange(1, 25)):
            c.add_random()
        tar = c.finish()
    blob, media, codec = wrap(rng, tar, c.allowed, c.classes)
    def names(paths):
        return sorted(p.decode("utf-8", "surrogateescape") for p in paths)
    return {"blob": blob, "media_type": media, "codec": codec, "classes": sorted(c.classes),
            "ignore_mtime": names(c.ignore_mtime), "explicit_dirs": names(c.explicit_dirs)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", required=True)
    ap.add_argument("--index", type=int, required=True)
    ap.add_argument("--out", required=True, help="blob file to write")
    ap.add_argument("--exclude", default="", help="comma-separated classes to leave out")
    a = ap.parse_args()
    case = make_case(a.seed, a.index, frozenset(filter(None, a.exclude.split(","))))
    with open(a.out, "wb") as f:
        f.write(case["blob"])
    meta = {k: v for k, v in case.items() if k != "blob"}
    json.dump(meta, sys.stdout)
    print()


if __name__ == "__main__":
    main()
