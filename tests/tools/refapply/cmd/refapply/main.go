// refapply is the differential reference: it applies one OCI layer blob to a directory
// exactly as containerd's overlay applier does (diff/apply/apply_linux.go), using Debian's
// containerd Go source:
//
//	compression.DecompressStream (unpigz for gzip when installed, klauspost zstd) ->
//	archive.Apply(ctx, dest, r, WithConvertWhiteout(OverlayConvertWhiteout)[, WithParents])
//	-> drain trailing bytes, like the applier, so the diffID covers the whole stream
//
// and prints the diffID (sha256 of the decompressed stream).
//
//	refapply [--gzip|--zstd|--plain|--auto] [--parent DIR]... [--json] BLOB DEST
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"time"

	"github.com/containerd/containerd/archive"
	"github.com/containerd/containerd/archive/compression"
)

type parents []string

func (p *parents) String() string     { return strings.Join(*p, ",") }
func (p *parents) Set(v string) error { *p = append(*p, v); return nil }

type hashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

func main() {
	gz := flag.Bool("gzip", false, "require a gzip blob")
	zst := flag.Bool("zstd", false, "require a zstd blob")
	plain := flag.Bool("plain", false, "require an uncompressed blob")
	flag.Bool("auto", true, "detect the compression (default)")
	asJSON := flag.Bool("json", false, "print a JSON record instead of the bare diffID")
	var ps parents
	flag.Var(&ps, "parent", "parent layer directory, nearest first (archive.WithParents); repeatable")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: refapply [--gzip|--zstd|--plain|--auto] [--parent DIR]... [--json] BLOB DEST\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 {
		flag.Usage()
		os.Exit(2)
	}
	blob, dest := flag.Arg(0), flag.Arg(1)
	if err := run(blob, dest, *gz, *zst, *plain, ps, *asJSON); err != nil {
		fmt.Fprintf(os.Stderr, "refapply: %s: %v\n", blob, err)
		os.Exit(1)
	}
}

func run(blob, dest string, gz, zst, plain bool, ps parents, asJSON bool) error {
	start := time.Now()
	f, err := os.Open(blob)
	if err != nil {
		return err
	}
	defer f.Close()
	ds, err := compression.DecompressStream(f)
	if err != nil {
		return fmt.Errorf("decompress: %w", err)
	}
	defer ds.Close()
	want := compression.Uncompressed
	switch {
	case gz:
		want = compression.Gzip
	case zst:
		want = compression.Zstd
	}
	if (gz || zst || plain) && ds.GetCompression() != want {
		return fmt.Errorf("compression is %s, not %s", codecName(ds.GetCompression()), codecName(want))
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return err
	}
	rc := &hashingReader{r: ds, h: sha256.New()}
	opts := []archive.ApplyOpt{archive.WithConvertWhiteout(archive.OverlayConvertWhiteout)}
	if len(ps) > 0 {
		opts = append(opts, archive.WithParents(ps))
	}
	if _, err := archive.Apply(context.Background(), dest, rc, opts...); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	// Read any trailing data, as containerd's applier does.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	diffID := "sha256:" + hex.EncodeToString(rc.h.Sum(nil))
	if !asJSON {
		fmt.Println(diffID)
		return nil
	}
	total := time.Since(start).Seconds()
	// The compressed digest is computed afterwards, outside the timed path (containerd's
	// content store verifies it at fetch time, not in the applier).
	g, err := os.Open(blob)
	if err != nil {
		return err
	}
	defer g.Close()
	ch := sha256.New()
	bytesIn, err := io.Copy(ch, g)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]interface{}{
		"diff_id":   diffID,
		"digest":    "sha256:" + hex.EncodeToString(ch.Sum(nil)),
		"codec":     codecName(ds.GetCompression()),
		"bytes_in":  bytesIn,
		"bytes_out": rc.n,
		"total_s":   total,
	})
}

func codecName(c compression.Compression) string {
	switch c {
	case compression.Gzip:
		return "gzip"
	case compression.Zstd:
		return "zstd"
	case compression.Uncompressed:
		return "plain"
	}
	return fmt.Sprintf("unknown(%d)", c)
}
