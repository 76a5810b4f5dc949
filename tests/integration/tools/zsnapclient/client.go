// Package zsnapclient dials a snapshotter daemon's Snapshots v1 gRPC socket exactly as
// containerd 1.6 does for a [proxy_plugins] entry (services/server/server.go getClient:
// insecure, exponential back-off capped at 3 s, 16 MiB messages) and wraps it in
// containerd's own proxy client, so every test sees the errors containerd would see.
//
// It also holds the bookkeeping the integration tests share: listing everything and
// removing it children first. Functions are safe for concurrent use as far as the
// underlying snapshotter is; RemoveAll assumes nobody else is creating snapshots.
package zsnapclient

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/defaults"
	"github.com/containerd/containerd/pkg/dialer"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// SnapshotterName is what containerd would pass as the proxy plugin's name.
const SnapshotterName = "zsnap"

// Dial connects lazily to the unix socket at address, with containerd's options.
func Dial(address string) (*grpc.ClientConn, error) {
	backoffConfig := backoff.DefaultConfig
	backoffConfig.MaxDelay = 3 * time.Second
	gopts := []grpc.DialOption{
		grpc.WithInsecure(),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoffConfig}),
		grpc.WithContextDialer(dialer.ContextDialer),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(defaults.DefaultMaxRecvMsgSize)),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(defaults.DefaultMaxSendMsgSize)),
	}
	conn, err := grpc.Dial(dialer.DialAddress(address), gopts...)
	if err != nil {
		return nil, fmt.Errorf("failed to dial %q: %w", address, err)
	}
	return conn, nil
}

// New returns containerd's proxy snapshotter over conn.
func New(conn *grpc.ClientConn) snapshots.Snapshotter {
	return proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), SnapshotterName)
}

// Open dials address and returns the proxy snapshotter and the connection to close.
func Open(address string) (snapshots.Snapshotter, *grpc.ClientConn, error) {
	conn, err := Dial(address)
	if err != nil {
		return nil, nil, err
	}
	return New(conn), conn, nil
}

// List returns every snapshot's Info, sorted by name.
func List(ctx context.Context, sn snapshots.Snapshotter, filters ...string) ([]snapshots.Info, error) {
	var infos []snapshots.Info
	err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		infos = append(infos, info)
		return nil
	}, filters...)
	if err != nil {
		return nil, err
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name < infos[j].Name })
	return infos, nil
}

// RemoveAll removes every snapshot except those named in keep (and their ancestors, which
// cannot be removed while keep exists), leaves first. It fails if a pass makes no progress.
func RemoveAll(ctx context.Context, sn snapshots.Snapshotter, keep ...string) error {
	kept := map[string]bool{}
	for _, k := range keep {
		kept[k] = true
	}
	return removeMatching(ctx, sn, kept, func(string) bool { return true })
}

// RemovePrefix removes every snapshot whose name starts with prefix, leaves first. Snapshots
// with other names are kept (with their ancestors).
func RemovePrefix(ctx context.Context, sn snapshots.Snapshotter, prefix string) error {
	return removeMatching(ctx, sn, nil, func(name string) bool { return strings.HasPrefix(name, prefix) })
}

func removeMatching(ctx context.Context, sn snapshots.Snapshotter, kept map[string]bool, match func(string) bool) error {
	if kept == nil {
		kept = map[string]bool{}
	}
	for pass := 0; ; pass++ {
		infos, err := List(ctx, sn)
		if err != nil {
			return fmt.Errorf("list: %w", err)
		}
		byName := map[string]snapshots.Info{}
		for _, info := range infos {
			byName[info.Name] = info
		}
		// Protect kept (and unmatched) snapshots and their whole ancestry.
		protected := map[string]bool{}
		for _, info := range infos {
			if !match(info.Name) {
				kept[info.Name] = true
			}
		}
		for k := range kept {
			for n := k; n != ""; n = byName[n].Parent {
				if _, ok := byName[n]; !ok || protected[n] {
					break
				}
				protected[n] = true
			}
		}
		hasChild := map[string]bool{}
		for _, info := range infos {
			if info.Parent != "" {
				hasChild[info.Parent] = true
			}
		}
		var leaves []string
		for _, info := range infos {
			if !protected[info.Name] && !hasChild[info.Name] {
				leaves = append(leaves, info.Name)
			}
		}
		if len(leaves) == 0 {
			if len(infos) == len(protected) {
				return nil
			}
			return fmt.Errorf("remove all: no removable leaf among %d snapshots (pass %d)", len(infos), pass)
		}
		var errs []string
		for _, name := range leaves {
			if err := sn.Remove(ctx, name); err != nil {
				errs = append(errs, fmt.Sprintf("remove %q: %v", name, err))
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("remove all: %s", strings.Join(errs, "; "))
		}
	}
}

// Names returns the names of infos, for messages.
func Names(infos []snapshots.Info) []string {
	names := make([]string, 0, len(infos))
	for _, info := range infos {
		names = append(names, fmt.Sprintf("%s(%s)", info.Name, info.Kind))
	}
	return names
}
