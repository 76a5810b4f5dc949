// treediff compares two directory trees exhaustively and reports every difference:
// presence, file type, full mode (incl. setuid/setgid/sticky), uid/gid, size and SHA-256 of
// regular-file content, symlink target, device major/minor, every xattr (llistxattr, so
// trusted.* and security.* too), mtime in nanoseconds and hardlink groups (the set of paths
// sharing an inode, and st_nlink).
//
//	treediff [flags] EXPECTED GOT
//
// Output: one line per difference, "DIFF <path>: <attribute>: expected <x>, got <y>", then a
// summary line. Exit 0 when identical, 1 on differences, 2 on errors.
//
// Timestamps that containerd's applier itself leaves to the clock are skipped by default:
// the root directory's mtime (archive.Apply ignores a root entry) and whiteout devices'
// mtimes (OverlayConvertWhiteout mknods them without utimes). --ignore-mtime skips more.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

type entry struct {
	mode   uint32
	uid    uint32
	gid    uint32
	size   int64
	digest string
	target string
	rdev   uint64
	xattrs map[string]string
	mtime  int64
	nlink  uint64
	ino    uint64
}

type tree struct {
	root    string
	entries map[string]*entry
	groups  map[uint64][]string // inode -> paths, for inodes seen more than once
}

type pathList []string

func (p *pathList) String() string     { return strings.Join(*p, ",") }
func (p *pathList) Set(v string) error { *p = append(*p, filepath.Clean(v)); return nil }

func listXattrs(path string) (map[string]string, error) {
	out := map[string]string{}
	sz, err := unix.Llistxattr(path, nil)
	if err != nil {
		if err == unix.ENOTSUP {
			return out, nil
		}
		return nil, fmt.Errorf("llistxattr %s: %w", path, err)
	}
	if sz == 0 {
		return out, nil
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(path, buf)
	if err != nil {
		return nil, fmt.Errorf("llistxattr %s: %w", path, err)
	}
	for _, name := range strings.Split(string(buf[:sz]), "\x00") {
		if name == "" {
			continue
		}
		vsz, err := unix.Lgetxattr(path, name, nil)
		if err != nil {
			return nil, fmt.Errorf("lgetxattr %s %s: %w", path, name, err)
		}
		val := make([]byte, vsz)
		vsz, err = unix.Lgetxattr(path, name, val)
		if err != nil {
			return nil, fmt.Errorf("lgetxattr %s %s: %w", path, name, err)
		}
		out[name] = string(val[:vsz])
	}
	return out, nil
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func scan(root string) (*tree, error) {
	t := &tree{root: root, entries: map[string]*entry{}, groups: map[uint64][]string{}}
	byIno := map[uint64][]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return fmt.Errorf("lstat %s: %w", path, err)
		}
		e := &entry{mode: st.Mode, uid: st.Uid, gid: st.Gid, size: st.Size,
			rdev: st.Rdev, mtime: st.Mtim.Nano(), nlink: uint64(st.Nlink), ino: st.Ino}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			if e.digest, err = hashFile(path); err != nil {
				return err
			}
		case unix.S_IFLNK:
			if e.target, err = os.Readlink(path); err != nil {
				return err
			}
		}
		if e.xattrs, err = listXattrs(path); err != nil {
			return err
		}
		t.entries[rel] = e
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			byIno[st.Ino] = append(byIno[st.Ino], rel)
		}
		return nil
	})
	for ino, paths := range byIno {
		if len(paths) > 1 {
			sort.Strings(paths)
			t.groups[ino] = paths
		}
	}
	return t, err
}

func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFCHR:
		return "chardev"
	case unix.S_IFBLK:
		return "blockdev"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	}
	return fmt.Sprintf("type(%o)", mode&unix.S_IFMT)
}

func isWhiteout(e *entry) bool {
	return e.mode&unix.S_IFMT == unix.S_IFCHR && e.rdev == 0
}

func (t *tree) group(rel string) []string {
	e := t.entries[rel]
	if g, ok := t.groups[e.ino]; ok {
		return g
	}
	return []string{rel}
}

func fmtTime(ns int64) string {
	return fmt.Sprintf("%d.%09d", ns/1e9, ns%1e9)
}

func main() {
	rootMtime := flag.Bool("root-mtime", false, "also compare the root directory's mtime")
	whiteoutMtime := flag.Bool("whiteout-mtime", false, "also compare whiteout devices' mtimes")
	var ignoreMtime pathList
	flag.Var(&ignoreMtime, "ignore-mtime", "relative path whose mtime is not compared; repeatable")
	maxLines := flag.Int("max", 0, "print at most this many differences (0: all)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: treediff [flags] EXPECTED GOT\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 {
		flag.Usage()
		os.Exit(2)
	}
	a, err := scan(flag.Arg(0))
	if err != nil {
		fmt.Fprintf(os.Stderr, "treediff: %v\n", err)
		os.Exit(2)
	}
	b, err := scan(flag.Arg(1))
	if err != nil {
		fmt.Fprintf(os.Stderr, "treediff: %v\n", err)
		os.Exit(2)
	}
	skipMtime := map[string]bool{}
	for _, p := range ignoreMtime {
		skipMtime[p] = true
	}

	var names []string
	seen := map[string]bool{}
	for n := range a.entries {
		names = append(names, n)
		seen[n] = true
	}
	for n := range b.entries {
		if !seen[n] {
			names = append(names, n)
		}
	}
	sort.Strings(names)

	diffs, printed := 0, 0
	paths := map[string]bool{}
	report := func(path, attr, want, got string) {
		diffs++
		paths[path] = true
		if *maxLines == 0 || printed < *maxLines {
			fmt.Printf("DIFF %s: %s: expected %s, got %s\n", path, attr, want, got)
			printed++
		}
	}
	for _, n := range names {
		ea, inA := a.entries[n]
		eb, inB := b.entries[n]
		switch {
		case !inB:
			report(n, "presence", typeName(ea.mode), "missing")
			continue
		case !inA:
			report(n, "presence", "missing", typeName(eb.mode))
			continue
		}
		if ea.mode&unix.S_IFMT != eb.mode&unix.S_IFMT {
			report(n, "type", typeName(ea.mode), typeName(eb.mode))
			continue
		}
		if ea.mode != eb.mode {
			report(n, "mode", fmt.Sprintf("%04o", ea.mode&07777), fmt.Sprintf("%04o", eb.mode&07777))
		}
		if ea.uid != eb.uid || ea.gid != eb.gid {
			report(n, "owner", fmt.Sprintf("%d:%d", ea.uid, ea.gid), fmt.Sprintf("%d:%d", eb.uid, eb.gid))
		}
		switch ea.mode & unix.S_IFMT {
		case unix.S_IFREG:
			if ea.size != eb.size {
				report(n, "size", fmt.Sprint(ea.size), fmt.Sprint(eb.size))
			} else if ea.digest != eb.digest {
				report(n, "content", "sha256:"+ea.digest, "sha256:"+eb.digest)
			}
		case unix.S_IFLNK:
			if ea.target != eb.target {
				report(n, "symlink target", fmt.Sprintf("%q", ea.target), fmt.Sprintf("%q", eb.target))
			}
		case unix.S_IFCHR, unix.S_IFBLK:
			if ea.rdev != eb.rdev {
				report(n, "device", fmt.Sprintf("%d:%d", unix.Major(ea.rdev), unix.Minor(ea.rdev)),
					fmt.Sprintf("%d:%d", unix.Major(eb.rdev), unix.Minor(eb.rdev)))
			}
		}
		var keys []string
		for k := range ea.xattrs {
			keys = append(keys, k)
		}
		for k := range eb.xattrs {
			if _, ok := ea.xattrs[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			va, okA := ea.xattrs[k]
			vb, okB := eb.xattrs[k]
			switch {
			case !okB:
				report(n, "xattr "+k, fmt.Sprintf("%q", va), "absent")
			case !okA:
				report(n, "xattr "+k, "absent", fmt.Sprintf("%q", vb))
			case va != vb:
				report(n, "xattr "+k, fmt.Sprintf("%q", va), fmt.Sprintf("%q", vb))
			}
		}
		checkMtime := !skipMtime[n] && (n != "." || *rootMtime) && (!isWhiteout(ea) || *whiteoutMtime)
		if checkMtime && ea.mtime != eb.mtime {
			report(n, "mtime", fmtTime(ea.mtime), fmtTime(eb.mtime))
		}
		if ea.mode&unix.S_IFMT != unix.S_IFDIR {
			ga, gb := a.group(n), b.group(n)
			// Once per expected group (its first path; every path of a singleton).
			if strings.Join(ga, "\x00") != strings.Join(gb, "\x00") && n == ga[0] {
				report(n, "hardlink group", fmt.Sprintf("%q", ga), fmt.Sprintf("%q", gb))
			}
			if ea.nlink != eb.nlink {
				report(n, "nlink", fmt.Sprint(ea.nlink), fmt.Sprint(eb.nlink))
			}
		}
	}
	if diffs > 0 {
		fmt.Printf("treediff: %d differences in %d entries (%d expected, %d got)\n",
			diffs, len(paths), len(a.entries), len(b.entries))
		os.Exit(1)
	}
	fmt.Printf("treediff: identical (%d entries)\n", len(a.entries))
}
