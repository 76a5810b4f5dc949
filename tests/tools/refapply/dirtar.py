#!/usr/bin/env python3
"""dirtar: writes a directory tree as an OCI layer tar (PAX format, numeric owners).

Used by the differential test and the benchmark image builder to turn a real filesystem
state into a layer the way a container builder would:

  dirtar.py SRC OUT.tar                   # SRC is a whole rootfs (a base layer)
  dirtar.py --overlay-upper SRC OUT.tar   # SRC is an overlayfs upperdir (a diff layer)

With --overlay-upper, overlayfs whiteouts (0/0 character devices) become `.wh.<name>`
entries and opaque directories (xattr trusted.overlay.opaque=y) get a `.wh..wh..opq` entry,
as containerd's diff writer emits them; trusted.overlay.* xattrs are never written.

Entries are written in lexical order, each directory before its children, hardlinked files
as one regular entry plus hardlink entries. Every xattr the file has goes into a
SCHILY.xattr.* record (binary values are kept byte-exact). mtimes keep nanoseconds through
a PAX mtime record; --clamp-mtime EPOCH caps later mtimes (reproducible images). The root
directory itself is not written (containerd's applier ignores it anyway).
"""
import argparse
import os
import stat
import sys
import tarfile

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"


def pax_time(ns):
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    s, frac = divmod(ns, 1_000_000_000)
    return f"{sign}{s}.{frac:09d}" if frac else f"{sign}{s}"


def xattrs_of(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for n in sorted(names):
        if n.startswith("trusted.overlay."):
            continue
        try:
            v = os.getxattr(path, n, follow_symlinks=False)
        except OSError:
            continue
        out[n] = v
    return out


class Writer:
    def __init__(self, out, overlay_upper, clamp):
        self.tar = tarfile.open(out, "w", format=tarfile.PAX_FORMAT,
                                encoding="utf-8", errors="surrogateescape")
        self.overlay_upper = overlay_upper
        self.clamp = clamp
        self.inodes = {}  # (dev, ino) -> first archived name
        self.whiteout_ns = (clamp if clamp is not None else 0) * 1_000_000_000

    def mtime_ns(self, st):
        ns = st.st_mtime_ns
        if self.clamp is not None and ns > self.clamp * 1_000_000_000:
            ns = self.clamp * 1_000_000_000
        return ns

    def info(self, name, st, ns):
        ti = tarfile.TarInfo(name)
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid, ti.gid = st.st_uid, st.st_gid
        ti.uname = ti.gname = ""
        ti.mtime = ns // 1_000_000_000
        if ns % 1_000_000_000 or ns < 0:
            ti.pax_headers["mtime"] = pax_time(ns)
        return ti

    def add(self, path, name):
        st = os.lstat(path)
        ns = self.mtime_ns(st)
        m = st.st_mode
        if self.overlay_upper and stat.S_ISCHR(m) and st.st_rdev == 0:
            d, b = os.path.split(name)
            ti = tarfile.TarInfo(os.path.join(d, WHITEOUT_PREFIX + b))
            ti.mode, ti.mtime, ti.uname, ti.gname = 0o644, ns // 1_000_000_000, "", ""
            self.tar.addfile(ti)
            return False
        ti = self.info(name, st, ns)
        fobj = None
        key = (st.st_dev, st.st_ino)
        if not stat.S_ISDIR(m) and st.st_nlink > 1 and key in self.inodes:
            ti.type = tarfile.LNKTYPE
            ti.linkname = self.inodes[key]
        elif stat.S_ISREG(m):
            ti.type = tarfile.REGTYPE
            ti.size = st.st_size
            fobj = open(path, "rb")
            if st.st_nlink > 1:
                self.inodes[key] = name
        elif stat.S_ISDIR(m):
            ti.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(m):
            ti.type = tarfile.SYMTYPE
            ti.linkname = os.readlink(path)
            if st.st_nlink > 1:
                self.inodes[key] = name
        elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(m) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            if st.st_nlink > 1:
                self.inodes[key] = name
        elif stat.S_ISFIFO(m):
            ti.type = tarfile.FIFOTYPE
            if st.st_nlink > 1:
                self.inodes[key] = name
        else:
            print(f"dirtar: skipping socket {path}", file=sys.stderr)
            return False
        if ti.type != tarfile.LNKTYPE:
            for k, v in xattrs_of(path).items():
                ti.pax_headers["SCHILY.xattr." + k] = v.decode("utf-8", "surrogateescape")
        try:
            self.tar.addfile(ti, fobj)
        finally:
            if fobj:
                fobj.close()
        if stat.S_ISDIR(m) and self.overlay_upper:
            try:
                opq = os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False)
            except OSError:
                opq = b""
            if opq == b"y":
                o = tarfile.TarInfo(os.path.join(name, OPAQUE))
                o.mode, o.mtime, o.uname, o.gname = 0o644, ns // 1_000_000_000, "", ""
                self.tar.addfile(o)
        return stat.S_ISDIR(m)

    def walk(self, path, name):
        for entry in sorted(os.listdir(path), key=os.fsencode):
            p = os.path.join(path, entry)
            n = os.path.join(name, entry) if name else entry
            if self.add(p, n):
                self.walk(p, n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--overlay-upper", action="store_true")
    ap.add_argument("--clamp-mtime", type=int, default=None)
    ap.add_argument("src")
    ap.add_argument("out")
    a = ap.parse_args()
    w = Writer(a.out, a.overlay_upper, a.clamp_mtime)
    w.walk(a.src, "")
    w.tar.close()


if __name__ == "__main__":
    main()
