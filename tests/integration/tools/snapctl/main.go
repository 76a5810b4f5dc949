// Command snapctl is the integration scripts' hand on a snapshotter daemon, through
// containerd's proxy client (the calls and error mapping containerd itself uses):
//
//	snapctl -address SOCK ping                 List must answer
//	snapctl -address SOCK count                print the number of snapshots
//	snapctl -address SOCK list                 print kind, name, parent per snapshot
//	snapctl -address SOCK cleanup              call Cleanup
//	snapctl -address SOCK seed NAME            create committed NAME holding the known tree
//	snapctl -address SOCK verify NAME          View NAME, mount it, compare with the known tree
//	snapctl -address SOCK wipe [KEEP...]       remove everything but KEEP (and its parents)
//	snapctl -address SOCK wipe-prefix PREFIX   remove every snapshot whose name has PREFIX
//	snapctl -address SOCK prepare KEY PARENT [LABEL=VALUE...]
//	                                           Prepare KEY with labels, as containerd's CRI
//	                                           unpacker does; print "exists" (ALREADY_EXISTS:
//	                                           the target was committed) or "mounts"
//
// Exit status 0 on success, 1 with a message on stderr otherwise.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/containerd/containerd/errdefs"

	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/continuity/fs/fstest"

	"zsnapitest/tools/zsnapclient"
)

// knownTree is the content of a seeded snapshot: regular files of several sizes, nested
// directories with distinct modes, a symlink, a hard link, an empty file.
func knownTree() fstest.Applier {
	return fstest.Apply(
		fstest.CreateDir("/etc", 0o755),
		fstest.CreateFile("/etc/hostname", []byte("zsnap-crash\n"), 0o644),
		fstest.CreateDir("/data", 0o750),
		fstest.CreateRandomFile("/data/small", 1, 4096, 0o644),
		fstest.CreateRandomFile("/data/large", 2, 3<<20, 0o600),
		fstest.CreateFile("/data/empty", nil, 0o644),
		fstest.CreateDir("/data/deep", 0o700),
		fstest.CreateDir("/data/deep/er", 0o755),
		fstest.CreateRandomFile("/data/deep/er/file", 3, 12345, 0o755),
		fstest.Symlink("../etc/hostname", "/data/hostname-link"),
		fstest.Link("/data/small", "/data/small-hardlink"),
	)
}

func main() {
	address := flag.String("address", "", "unix socket of the snapshotter daemon")
	timeout := flag.Duration("timeout", 60*time.Second, "overall deadline")
	flag.Parse()
	if *address == "" || flag.NArg() < 1 {
		fmt.Fprintln(os.Stderr, "usage: snapctl -address SOCK ping|count|list|cleanup|seed NAME|verify NAME|wipe [KEEP...]|wipe-prefix PREFIX|prepare KEY PARENT [LABEL=VALUE...]")
		os.Exit(2)
	}
	ctx := namespaces.WithNamespace(context.Background(), "snapctl")
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	sn, conn, err := zsnapclient.Open(*address)
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	args := flag.Args()
	if err := run(ctx, sn, args[0], args[1:]); err != nil {
		fail(fmt.Errorf("%s: %w", args[0], err))
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "snapctl: %v\n", err)
	os.Exit(1)
}

func run(ctx context.Context, sn snapshots.Snapshotter, cmd string, args []string) error {
	switch cmd {
	case "ping":
		_, err := zsnapclient.List(ctx, sn)
		return err
	case "count":
		infos, err := zsnapclient.List(ctx, sn)
		if err != nil {
			return err
		}
		fmt.Println(len(infos))
		return nil
	case "list":
		infos, err := zsnapclient.List(ctx, sn)
		if err != nil {
			return err
		}
		for _, i := range infos {
			fmt.Printf("%s\t%s\t%s\n", i.Kind, i.Name, i.Parent)
		}
		return nil
	case "cleanup":
		c, ok := sn.(snapshots.Cleaner)
		if !ok {
			return fmt.Errorf("proxy snapshotter has no Cleanup")
		}
		return c.Cleanup(ctx)
	case "seed":
		if len(args) != 1 {
			return fmt.Errorf("want NAME")
		}
		return seed(ctx, sn, args[0])
	case "verify":
		if len(args) != 1 {
			return fmt.Errorf("want NAME")
		}
		return verify(ctx, sn, args[0])
	case "wipe":
		return zsnapclient.RemoveAll(ctx, sn, args...)
	case "prepare":
		if len(args) < 2 {
			return fmt.Errorf("want KEY PARENT [LABEL=VALUE...]")
		}
		return prepare(ctx, sn, args[0], args[1], args[2:])
	case "wipe-prefix":
		if len(args) != 1 || args[0] == "" {
			return fmt.Errorf("want PREFIX")
		}
		return zsnapclient.RemovePrefix(ctx, sn, args[0])
	}
	return fmt.Errorf("unknown command")
}

// prepare calls Prepare the way containerd's unpacker does for a layer it wants a remote
// snapshotter to provide (snapshots.WithLabels; ALREADY_EXISTS means "the target is there").
func prepare(ctx context.Context, sn snapshots.Snapshotter, key, parent string, pairs []string) error {
	labels := map[string]string{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return fmt.Errorf("label %q is not KEY=VALUE", p)
		}
		labels[k] = v
	}
	_, err := sn.Prepare(ctx, key, parent, snapshots.WithLabels(labels))
	switch {
	case err == nil:
		fmt.Println("mounts")
	case errdefs.IsAlreadyExists(err):
		fmt.Println("exists")
	default:
		return err
	}
	return nil
}

func seed(ctx context.Context, sn snapshots.Snapshotter, name string) error {
	key := name + "-seed-active"
	mounts, err := sn.Prepare(ctx, key, "")
	if err != nil {
		return fmt.Errorf("prepare %s: %w", key, err)
	}
	if err := mount.WithTempMount(ctx, mounts, knownTree().Apply); err != nil {
		return fmt.Errorf("write known tree into %s: %w", key, err)
	}
	if err := sn.Commit(ctx, name, key); err != nil {
		return fmt.Errorf("commit %s as %s: %w", key, name, err)
	}
	return verify(ctx, sn, name)
}

func verify(ctx context.Context, sn snapshots.Snapshotter, name string) error {
	info, err := sn.Stat(ctx, name)
	if err != nil {
		return fmt.Errorf("stat %s: %w", name, err)
	}
	if info.Kind != snapshots.KindCommitted || info.Parent != "" {
		return fmt.Errorf("stat %s: kind %v parent %q, want committed without parent", name, info.Kind, info.Parent)
	}
	key := fmt.Sprintf("%s-verify-%d", name, time.Now().UnixNano())
	mounts, err := sn.View(ctx, key, name)
	if err != nil {
		return fmt.Errorf("view %s: %w", name, err)
	}
	cmpErr := mount.WithReadonlyTempMount(ctx, mounts, func(root string) error {
		return fstest.CheckDirectoryEqualWithApplier(root, knownTree())
	})
	if err := sn.Remove(ctx, key); err != nil {
		return fmt.Errorf("remove view %s: %w", key, err)
	}
	if cmpErr != nil {
		return fmt.Errorf("content of %s: %w", name, cmpErr)
	}
	return nil
}
