package conformance

import (
	"context"
	"strings"
	"testing"

	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/snapshots"
)

// TestErrorClasses checks the error class of every refusal as containerd's proxy client maps
// the gRPC status back (errdefs.FromGRPC); containerd's metadata layer and CRI branch on these.
func TestErrorClasses(t *testing.T) {
	sn, conn := open(t)
	defer conn.Close()
	ctx := namespaces.WithNamespace(context.Background(), "conformance-errors")
	if err := requireEmpty(sn, "before error checks"); err != nil {
		if werr := wipe(sn, "clearing leftovers"); werr != nil {
			t.Fatalf("%v; %v", err, werr)
		}
	}
	defer func() {
		if err := wipe(sn, "after error checks"); err != nil {
			t.Error(err)
		}
	}()

	type check func(error) bool
	expect := func(what string, err error, want check, wantName string) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: expected %s, got success", what, wantName)
			return
		}
		if !want(err) {
			t.Errorf("%s: expected %s, got %v", what, wantName, err)
		}
	}
	ok := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// An empty store walks cleanly, with and without filters.
	n := 0
	ok("Walk on empty store", sn.Walk(ctx, func(context.Context, snapshots.Info) error { n++; return nil }))
	ok("Walk on empty store with filter", sn.Walk(ctx, func(context.Context, snapshots.Info) error { n++; return nil }, "kind==committed"))
	if n != 0 {
		t.Errorf("Walk on empty store: expected 0 infos, got %d", n)
	}

	// Missing things are NotFound.
	_, err := sn.Stat(ctx, "missing")
	expect("Stat(missing)", err, errdefs.IsNotFound, "NotFound")
	_, err = sn.Mounts(ctx, "missing")
	expect("Mounts(missing)", err, errdefs.IsNotFound, "NotFound")
	_, err = sn.Usage(ctx, "missing")
	expect("Usage(missing)", err, errdefs.IsNotFound, "NotFound")
	expect("Remove(missing)", sn.Remove(ctx, "missing"), errdefs.IsNotFound, "NotFound")
	expect("Commit(missing key)", sn.Commit(ctx, "c-missing", "missing"), errdefs.IsNotFound, "NotFound")
	_, err = sn.Update(ctx, snapshots.Info{Name: "missing", Labels: map[string]string{"a": "b"}})
	expect("Update(missing)", err, errdefs.IsNotFound, "NotFound")
	_, err = sn.Prepare(ctx, "orphan", "missing-parent")
	expect("Prepare(parent missing)", err, errdefs.IsNotFound, "NotFound")
	_, err = sn.View(ctx, "orphan-view", "missing-parent")
	expect("View(parent missing)", err, errdefs.IsNotFound, "NotFound")

	// Build: base (committed) <- active-1 (active), base <- view-1 (view).
	_, err = sn.Prepare(ctx, "base-active", "")
	ok("Prepare(base-active)", err)
	ok("Commit(base)", sn.Commit(ctx, "base", "base-active"))
	_, err = sn.Prepare(ctx, "active-1", "base")
	ok("Prepare(active-1, base)", err)
	_, err = sn.View(ctx, "view-1", "base")
	ok("View(view-1, base)", err)

	// One key space for keys and names: reuse is AlreadyExists.
	_, err = sn.Prepare(ctx, "active-1", "")
	expect("Prepare(existing active key)", err, errdefs.IsAlreadyExists, "AlreadyExists")
	_, err = sn.Prepare(ctx, "base", "")
	expect("Prepare(key = committed name)", err, errdefs.IsAlreadyExists, "AlreadyExists")
	_, err = sn.View(ctx, "view-1", "base")
	expect("View(existing view key)", err, errdefs.IsAlreadyExists, "AlreadyExists")
	_, err = sn.View(ctx, "base", "")
	expect("View(key = committed name)", err, errdefs.IsAlreadyExists, "AlreadyExists")
	_, err = sn.Prepare(ctx, "other-active", "")
	ok("Prepare(other-active)", err)
	expect("Commit(name taken)", sn.Commit(ctx, "base", "other-active"), errdefs.IsAlreadyExists, "AlreadyExists")

	// A parent must be committed.
	_, err = sn.Prepare(ctx, "on-active", "active-1")
	expect("Prepare(parent is active)", err, errdefs.IsInvalidArgument, "InvalidArgument")

	// Only an active snapshot can be committed.
	expect("Commit(view)", sn.Commit(ctx, "c-from-view", "view-1"), errdefs.IsFailedPrecondition, "FailedPrecondition")
	if _, err := sn.Stat(ctx, "view-1"); err != nil {
		t.Errorf("Stat(view-1) after refused Commit: %v", err)
	}

	// A snapshot with children cannot be removed; the message must say "remove"
	// (testsuite checkSnapshotterBasic asserts the substring).
	err = sn.Remove(ctx, "base")
	expect("Remove(base with children)", err, errdefs.IsFailedPrecondition, "FailedPrecondition")
	if err != nil && !strings.Contains(err.Error(), "remove") {
		t.Errorf("Remove(base with children): message %q lacks \"remove\"", err.Error())
	}

	// Only labels are mutable.
	_, err = sn.Update(ctx, snapshots.Info{Name: "base", Parent: "x"}, "parent")
	expect("Update(mask parent)", err, errdefs.IsInvalidArgument, "InvalidArgument")
	_, err = sn.Update(ctx, snapshots.Info{Name: "base", Kind: snapshots.KindActive}, "kind")
	expect("Update(mask kind)", err, errdefs.IsInvalidArgument, "InvalidArgument")
	info, err := sn.Update(ctx, snapshots.Info{Name: "base", Labels: map[string]string{"l": "v"}}, "labels.l")
	ok("Update(mask labels.l)", err)
	if info.Labels["l"] != "v" {
		t.Errorf("Update(mask labels.l): labels %v, want l=v", info.Labels)
	}

	// A filter that does not parse is InvalidArgument.
	for _, f := range []string{`name==`, `labels."unterminated`, `kind==committed,,`} {
		err = sn.Walk(ctx, func(context.Context, snapshots.Info) error { return nil }, f)
		expect("Walk(filter "+f+")", err, errdefs.IsInvalidArgument, "InvalidArgument")
	}

	// The Walk on the populated store sees all four.
	infos := map[string]snapshots.Kind{}
	ok("Walk", sn.Walk(ctx, func(_ context.Context, i snapshots.Info) error { infos[i.Name] = i.Kind; return nil }))
	want := map[string]snapshots.Kind{"base": snapshots.KindCommitted, "active-1": snapshots.KindActive,
		"view-1": snapshots.KindView, "other-active": snapshots.KindActive}
	for name, kind := range want {
		if infos[name] != kind {
			t.Errorf("Walk: %s kind %v, want %v (all: %v)", name, infos[name], kind, infos)
		}
	}
	if len(infos) != len(want) {
		t.Errorf("Walk: got %v, want %v", infos, want)
	}
}
