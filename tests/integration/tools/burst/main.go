// Command burst fires a concurrent burst of Prepare/Commit/View/Remove at a snapshotter
// daemon through containerd's proxy client, for crash tests that kill the daemon mid-burst.
//
// Each worker repeats: Prepare an active snapshot on the base (or on its own last kept
// committed snapshot), write a file into its upper directory (found from the mount options,
// no mount needed), Commit it, View the result, Remove the view, and Remove the committed
// snapshot every other round so the store both grows and shrinks.
//
// Once the daemon is gone every call fails with Unavailable; that is the expected end: the
// worker stops. burst prints "ready" on stdout after the first completed round (so a script
// can time its kill inside the burst), a summary at the end, and exits 0, or 3 if any call
// failed with an error other than Unavailable/Canceled/DeadlineExceeded while running.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/snapshots"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"zsnapitest/tools/zsnapclient"
)

var (
	ops        int64
	unexpected int64
	readyOnce  sync.Once
)

func main() {
	address := flag.String("address", "", "unix socket of the snapshotter daemon")
	workers := flag.Int("workers", 8, "concurrent workers")
	duration := flag.Duration("duration", 5*time.Second, "stop after this long")
	base := flag.String("base", "", "committed snapshot to build on (empty: none)")
	prefix := flag.String("prefix", "burst", "prefix of every key and name created")
	flag.Parse()
	if *address == "" {
		fmt.Fprintln(os.Stderr, "usage: burst -address SOCK [-workers N] [-duration D] [-base NAME] [-prefix P]")
		os.Exit(2)
	}
	sn, conn, err := zsnapclient.Open(*address)
	if err != nil {
		fmt.Fprintf(os.Stderr, "burst: %v\n", err)
		os.Exit(1)
	}
	defer conn.Close()
	ctx := namespaces.WithNamespace(context.Background(), "burst")
	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()

	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			worker(ctx, sn, fmt.Sprintf("%s-w%d", *prefix, w), *base)
		}(w)
	}
	wg.Wait()
	fmt.Printf("burst: %d calls, %d unexpected errors\n", atomic.LoadInt64(&ops), atomic.LoadInt64(&unexpected))
	if atomic.LoadInt64(&unexpected) > 0 {
		os.Exit(3)
	}
}

// call records one RPC's outcome; it returns false when the worker should stop.
func call(ctx context.Context, what string, err error) bool {
	atomic.AddInt64(&ops, 1)
	if err == nil {
		return true
	}
	if ctx.Err() != nil || isGone(err) {
		return false
	}
	atomic.AddInt64(&unexpected, 1)
	fmt.Fprintf(os.Stderr, "burst: %s: unexpected error: %v\n", what, err)
	return false
}

// isGone reports errors that mean the daemon went away (or the burst's time ran out).
func isGone(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errdefs.IsUnavailable(err) || errdefs.IsCanceled(err) || errdefs.IsDeadlineExceeded(err) {
		return true
	}
	switch status.Code(errors.Unwrap(err)) {
	case codes.Unavailable, codes.Canceled, codes.DeadlineExceeded:
		return true
	}
	// The proxy client wraps some transport failures in plain text.
	msg := err.Error()
	return strings.Contains(msg, "Unavailable") || strings.Contains(msg, "connection refused") ||
		strings.Contains(msg, "transport is closing") || strings.Contains(msg, "error reading from server")
}

// upperDir finds the writable directory of an active snapshot's mounts: the overlay
// upperdir, or the source of a single rw bind mount.
func upperDir(mounts []mount.Mount) (string, error) {
	for _, m := range mounts {
		for _, o := range m.Options {
			if strings.HasPrefix(o, "upperdir=") {
				return strings.TrimPrefix(o, "upperdir="), nil
			}
		}
	}
	if len(mounts) == 1 && mounts[0].Type == "bind" {
		for _, o := range mounts[0].Options {
			if o == "ro" {
				return "", fmt.Errorf("read-only bind mount %v", mounts[0])
			}
		}
		return mounts[0].Source, nil
	}
	return "", fmt.Errorf("no writable directory in mounts %v", mounts)
}

func worker(ctx context.Context, sn snapshots.Snapshotter, prefix, base string) {
	parent := base
	for round := 0; ; round++ {
		active := fmt.Sprintf("%s-%d-active", prefix, round)
		committed := fmt.Sprintf("%s-%d", prefix, round)
		view := fmt.Sprintf("%s-%d-view", prefix, round)

		mounts, err := sn.Prepare(ctx, active, parent)
		if !call(ctx, "prepare "+active, err) {
			return
		}
		dir, err := upperDir(mounts)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, committed), []byte(strings.Repeat(committed, 64)), 0o644)
		}
		if err != nil {
			if ctx.Err() == nil {
				atomic.AddInt64(&unexpected, 1)
				fmt.Fprintf(os.Stderr, "burst: write into %s: %v\n", active, err)
			}
			return
		}
		if !call(ctx, "commit "+active, sn.Commit(ctx, committed, active)) {
			return
		}
		_, err = sn.View(ctx, view, committed)
		if !call(ctx, "view "+committed, err) {
			return
		}
		if !call(ctx, "remove "+view, sn.Remove(ctx, view)) {
			return
		}
		if round%2 == 1 {
			if !call(ctx, "remove "+committed, sn.Remove(ctx, committed)) {
				return
			}
		} else if round%32 == 30 {
			parent = base // keep chains (and the lowerdir lists of their views) short
		} else {
			parent = committed
		}
		readyOnce.Do(func() { fmt.Println("ready") })
	}
}
