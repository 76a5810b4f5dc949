// Package conformance runs containerd's snapshotter test suite (snapshots/testsuite, the
// definition of a correct snapshotter) against a live daemon through containerd's proxy
// client, the exact path containerd uses for a [proxy_plugins] snapshotter.
//
// The suite calls the factory once per case and runs the cases with t.Parallel() using fixed
// names (c1, a1, p, ...). One long-lived daemon holds one key space, so the binary must run
// with -test.parallel=1, and the factory's cleanup removes everything the case created. The
// daemon is dedicated to this binary: the store must be empty before every case.
package conformance

import (
	"context"
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/testsuite"
	"google.golang.org/grpc"

	"zsnapitest/tools/zsnapclient"
)

var address = flag.String("zsnap.address", "", "unix socket of the snapshotter daemon under test")

// adminCtx is used for bookkeeping calls outside the suite's own context.
func adminCtx() (context.Context, context.CancelFunc) {
	ctx := namespaces.WithNamespace(context.Background(), "conformance-admin")
	return context.WithTimeout(ctx, 2*time.Minute)
}

func open(t *testing.T) (snapshots.Snapshotter, *grpc.ClientConn) {
	t.Helper()
	if *address == "" {
		t.Skip("no -zsnap.address given")
	}
	sn, conn, err := zsnapclient.Open(*address)
	if err != nil {
		t.Fatal(err)
	}
	return sn, conn
}

// requireEmpty fails unless the daemon holds no snapshot at all.
func requireEmpty(sn snapshots.Snapshotter, when string) error {
	ctx, cancel := adminCtx()
	defer cancel()
	infos, err := zsnapclient.List(ctx, sn)
	if err != nil {
		return fmt.Errorf("%s: list: %w", when, err)
	}
	if len(infos) != 0 {
		return fmt.Errorf("%s: daemon not empty: %v", when, zsnapclient.Names(infos))
	}
	return nil
}

func wipe(sn snapshots.Snapshotter, when string) error {
	ctx, cancel := adminCtx()
	defer cancel()
	if err := zsnapclient.RemoveAll(ctx, sn); err != nil {
		return fmt.Errorf("%s: %w", when, err)
	}
	return requireEmpty(sn, when)
}

func TestSnapshotterSuite(t *testing.T) {
	admin, conn := open(t)
	// The cases are parallel subtests: they run after this function returns, so the
	// connection must outlive it (t.Cleanup runs after all subtests).
	t.Cleanup(func() { conn.Close() })
	if err := requireEmpty(admin, "before the suite"); err != nil {
		t.Fatal(err)
	}
	testsuite.SnapshotterSuite(t, "zsnap", func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		// A leftover from the previous case would make this one fail for the wrong reason;
		// the previous case's cleanup already reported it, so clear it and go on.
		if err := requireEmpty(admin, "before case"); err != nil {
			if werr := wipe(admin, "clearing leftovers before case"); werr != nil {
				return nil, nil, fmt.Errorf("%v; %v", err, werr)
			}
		}
		sn := zsnapclient.New(conn)
		cleanup := func() error {
			return wipe(admin, "cleanup after case")
		}
		return sn, cleanup, nil
	})
}
