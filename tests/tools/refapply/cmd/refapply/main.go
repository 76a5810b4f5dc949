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
// With --media-type T the blob is opened as containerd's applier opens a descriptor of that
// media type (diff/apply/apply.go: diff.NewProcessorChain + diff.GetProcessor until the
// stream is a plain layer; diff/stream.go compressedHandler: images.DiffCompression decides,
// an unknown media type has no processor and is refused, a compressed or docker-plain type
// goes through compression.DecompressStream, which detects by magic, and an OCI plain type
// is read as is). Without it the codec is detected by magic.
//
//	refapply [--gzip|--zstd|--plain|--auto] [--media-type T] [--parent DIR]... [--json] BLOB DEST
//	refapply --batch   < cases.jsonl > results.jsonl
//
// --batch applies many layers in one process (the differential fuzzer): each stdin line is
// {"blob":B,"dest":D,"media_type":T,"parents":[DIR...]} and yields one stdout line
// {"ok":bool,"diff_id":...,"error":...,"start_ns":N,"end_ns":N}; start/end bracket the
// apply, so a caller can tell mtimes the applier left to the clock.
package main

import (
	"bufio"
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
	"github.com/containerd/containerd/diff"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
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
	mediaType := flag.String("media-type", "", "open the blob as containerd's applier opens a descriptor of this media type")
	batch := flag.Bool("batch", false, "apply the cases read from stdin (JSON lines), one result line each")
	var ps parents
	flag.Var(&ps, "parent", "parent layer directory, nearest first (archive.WithParents); repeatable")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: refapply [--gzip|--zstd|--plain|--auto] [--parent DIR]... [--json] BLOB DEST\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *batch {
		if err := runBatch(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "refapply: batch: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if flag.NArg() != 2 {
		flag.Usage()
		os.Exit(2)
	}
	blob, dest := flag.Arg(0), flag.Arg(1)
	if err := run(blob, dest, *gz, *zst, *plain, *mediaType, ps, *asJSON); err != nil {
		fmt.Fprintf(os.Stderr, "refapply: %s: %v\n", blob, err)
		os.Exit(1)
	}
}

// openLayer returns the uncompressed layer stream of blob f, as containerd's applier makes it,
// and the codec DecompressStream detected ("" when the media type did not decompress).
func openLayer(f io.Reader, mediaType string) (io.ReadCloser, string, error) {
	if mediaType == "" {
		ds, err := compression.DecompressStream(f)
		if err != nil {
			return nil, "", fmt.Errorf("decompress: %w", err)
		}
		return ds, codecName(ds.GetCompression()), nil
	}
	// containerd diff/apply/apply.go (fsApplier.Apply): the same loop, no processor payloads.
	ctx := context.Background()
	var processor diff.StreamProcessor = diff.NewProcessorChain(mediaType, f)
	for {
		var err error
		if processor, err = diff.GetProcessor(ctx, processor, nil); err != nil {
			return nil, "", fmt.Errorf("failed to get stream processor for %s: %w", mediaType, err)
		}
		if processor.MediaType() == ocispec.MediaTypeImageLayer {
			break
		}
	}
	return processor, "", nil
}

// apply applies blob to dest and returns the diffID, the codec detected and the bytes out.
func apply(blob, dest, mediaType string, ps []string) (string, string, int64, error) {
	f, err := os.Open(blob)
	if err != nil {
		return "", "", 0, err
	}
	defer f.Close()
	ds, codec, err := openLayer(f, mediaType)
	if err != nil {
		return "", "", 0, err
	}
	defer ds.Close()
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return "", "", 0, err
	}
	rc := &hashingReader{r: ds, h: sha256.New()}
	opts := []archive.ApplyOpt{archive.WithConvertWhiteout(archive.OverlayConvertWhiteout)}
	if len(ps) > 0 {
		opts = append(opts, archive.WithParents(ps))
	}
	if _, err := archive.Apply(context.Background(), dest, rc, opts...); err != nil {
		return "", "", 0, fmt.Errorf("apply: %w", err)
	}
	// Read any trailing data, as containerd's applier does.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return "", "", 0, fmt.Errorf("drain: %w", err)
	}
	return "sha256:" + hex.EncodeToString(rc.h.Sum(nil)), codec, rc.n, nil
}

type batchCase struct {
	Blob      string   `json:"blob"`
	Dest      string   `json:"dest"`
	MediaType string   `json:"media_type"`
	Parents   []string `json:"parents"`
}

type batchResult struct {
	OK      bool   `json:"ok"`
	DiffID  string `json:"diff_id,omitempty"`
	Error   string `json:"error,omitempty"`
	StartNs int64  `json:"start_ns"`
	EndNs   int64  `json:"end_ns"`
}

func applyCase(c batchCase) (res batchResult) {
	res.StartNs = time.Now().UnixNano()
	defer func() {
		if p := recover(); p != nil {
			res = batchResult{Error: fmt.Sprintf("panic: %v", p), StartNs: res.StartNs}
		}
		res.EndNs = time.Now().UnixNano()
	}()
	id, _, _, err := apply(c.Blob, c.Dest, c.MediaType, c.Parents)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.OK, res.DiffID = true, id
	return res
}

func runBatch(in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	w := bufio.NewWriter(out)
	enc := json.NewEncoder(w)
	for sc.Scan() {
		var c batchCase
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			return fmt.Errorf("bad case line: %w", err)
		}
		if err := enc.Encode(applyCase(c)); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return sc.Err()
}

func run(blob, dest string, gz, zst, plain bool, mediaType string, ps parents, asJSON bool) error {
	start := time.Now()
	if gz || zst || plain {
		// The codec check needs the magic: peek at it the way DecompressStream does.
		f, err := os.Open(blob)
		if err != nil {
			return err
		}
		ds, err := compression.DecompressStream(f)
		if err != nil {
			f.Close()
			return fmt.Errorf("decompress: %w", err)
		}
		got := ds.GetCompression()
		ds.Close()
		f.Close()
		want := compression.Uncompressed
		switch {
		case gz:
			want = compression.Gzip
		case zst:
			want = compression.Zstd
		}
		if got != want {
			return fmt.Errorf("compression is %s, not %s", codecName(got), codecName(want))
		}
	}
	diffID, codec, bytesOut, err := apply(blob, dest, mediaType, ps)
	if err != nil {
		return err
	}
	end := time.Now()
	if !asJSON {
		fmt.Println(diffID)
		return nil
	}
	total := end.Sub(start).Seconds()
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
		"codec":     codec,
		"bytes_in":  bytesIn,
		"bytes_out": bytesOut,
		"total_s":   total,
		"start_ns":  start.UnixNano(),
		"end_ns":    end.UnixNano(),
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
