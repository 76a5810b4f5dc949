// Command refsnap serves containerd's own overlayfs snapshotter (the reference
// implementation) on a unix socket through contrib/snapshotservice, the same adapter a Go
// proxy snapshotter would use. The integration harness runs the conformance tests against it
// as a control: a case that fails here is a harness or kernel problem, not a zsnap bug.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/snapshots/overlay"
	"google.golang.org/grpc"
)

func main() {
	root := flag.String("root", "", "snapshotter root directory")
	address := flag.String("address", "", "unix socket to listen on")
	flag.Parse()
	if *root == "" || *address == "" {
		fmt.Fprintln(os.Stderr, "usage: refsnap -root DIR -address SOCKET")
		os.Exit(2)
	}
	sn, err := overlay.NewSnapshotter(*root)
	if err != nil {
		fmt.Fprintf(os.Stderr, "refsnap: overlay snapshotter at %s: %v\n", *root, err)
		os.Exit(1)
	}
	// containerd 1.6's bolt store answers Walk on a never-written store with "bucket does
	// not exist" (an Unknown error); one Prepare+Remove creates the buckets so the control
	// run starts from the same "empty but walkable" state zsnap must provide.
	ctx := namespaces.WithNamespace(context.Background(), "refsnap")
	if _, err := sn.Prepare(ctx, "refsnap-init", ""); err == nil {
		err = sn.Remove(ctx, "refsnap-init")
	}
	if err := os.MkdirAll(filepath.Dir(*address), 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "refsnap: %v\n", err)
		os.Exit(1)
	}
	os.Remove(*address)
	l, err := net.Listen("unix", *address)
	if err != nil {
		fmt.Fprintf(os.Stderr, "refsnap: listen %s: %v\n", *address, err)
		os.Exit(1)
	}
	srv := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(srv, listErrors{snapshotservice.FromSnapshotter(sn)})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		srv.GracefulStop()
	}()
	if err := srv.Serve(l); err != nil {
		fmt.Fprintf(os.Stderr, "refsnap: serve: %v\n", err)
		os.Exit(1)
	}
	sn.Close()
}

// listErrors maps List's error to a gRPC status as containerd's own Snapshots service does
// (services/snapshots/service.go); contrib/snapshotservice in 1.6 returns it unmapped, which
// the client would see as Unknown.
type listErrors struct {
	snapshotsapi.SnapshotsServer
}

func (s listErrors) List(req *snapshotsapi.ListSnapshotsRequest, ss snapshotsapi.Snapshots_ListServer) error {
	return errdefs.ToGRPC(s.SnapshotsServer.List(req, ss))
}
