#!/usr/bin/env python3
"""difffuzz: differential fuzzing of `zsnap unpack` against containerd's applier (issue 12).

For case 0, 1, 2, ... of a seed (layergen.py), the blob is applied by refapply (containerd
1.6's own diff.GetProcessor + archive.Apply + OverlayConvertWhiteout, one --batch process for
the whole run) and by `zsnap unpack --media-type T`, each into an empty directory. The two
must agree: both refuse the layer, or both apply it with the same diffID and trees treediff
finds equal (type, mode, owner, content, links, devices, xattrs, ns mtimes, hardlink groups;
mtimes containerd leaves to the clock are skipped).

  difffuzz.py --refapply R --treediff T --zsnap Z --work DIR --seed S
              [--count N] [--seconds S] [--exclude c1,c2] [--keep DIR]

Stops after N cases or S seconds, whichever comes first. Every difference is kept in --keep
as <seed>-<index>.blob plus a .txt saying what differed and how to regenerate it. Prints a
summary by class; exit 1 if any case differed.
"""
import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import layergen  # noqa: E402


def run_zsnap(zsnap, blob, dest, media_type):
    args = [zsnap, "unpack", "--json"]
    if media_type:
        args += ["--media-type", media_type]
    p = subprocess.run(args + [blob, dest], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120)
    if p.returncode != 0:
        return False, None, p.stderr.decode("utf-8", "replace").strip()[-300:]
    try:
        out = json.loads(p.stdout)
    except ValueError:
        return False, None, "zsnap unpack printed no JSON: %r" % p.stdout[:200]
    return True, out.get("diff_id") or out.get("diffID"), ""


def implied_dirs(root, explicit):
    """Directories in the applied tree that no tar entry named (parents made on the way, also
    through symlinked parents): containerd's mkparent leaves their mtime to the clock."""
    explicit = set(explicit)
    out = []
    rootb = os.fsencode(root)
    for dirpath, dirnames, _ in os.walk(rootb):
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                continue
            rel = os.fsdecode(os.path.relpath(full, rootb))
            if rel not in explicit:
                out.append(rel)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--refapply", required=True)
    ap.add_argument("--treediff", required=True)
    ap.add_argument("--zsnap", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--seed", required=True)
    ap.add_argument("--count", type=int, default=10 ** 9)
    ap.add_argument("--seconds", type=float, default=10 ** 9)
    ap.add_argument("--start", type=int, default=0, help="first case index")
    ap.add_argument("--exclude", default="")
    ap.add_argument("--keep", default="")
    a = ap.parse_args()
    exclude = frozenset(filter(None, a.exclude.split(",")))
    os.makedirs(a.work, exist_ok=True)
    if a.keep:
        os.makedirs(a.keep, exist_ok=True)
    ref = subprocess.Popen([a.refapply, "--batch"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True, bufsize=1)
    deadline = time.monotonic() + a.seconds
    stats = collections.Counter()
    by_class = collections.Counter()
    seen_class = collections.Counter()
    refusals = collections.Counter()  # containerd's reasons, paths blanked
    kept = 0
    i = a.start
    while i < a.start + a.count and time.monotonic() < deadline:
        case = layergen.make_case(a.seed, i, exclude)
        d = os.path.join(a.work, "case")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        blob = os.path.join(d, "layer.blob")
        with open(blob, "wb") as f:
            f.write(case["blob"])
        ref_dir, got_dir = os.path.join(d, "ref"), os.path.join(d, "got")
        os.makedirs(ref_dir)
        ref.stdin.write(json.dumps({"blob": blob, "dest": ref_dir,
                                    "media_type": case["media_type"]}) + "\n")
        ref.stdin.flush()
        line = ref.stdout.readline()
        if not line:
            print("difffuzz: refapply --batch died", file=sys.stderr)
            return 2
        r = json.loads(line)
        ok, diff_id, err = run_zsnap(a.zsnap, blob, got_dir, case["media_type"])
        problems = []
        if r["ok"] != ok:
            problems.append("containerd %s, zsnap %s" % (
                "applied" if r["ok"] else "refused (%s)" % r.get("error", "")[:300],
                "applied" if ok else "refused (%s)" % err))
        elif ok:
            if r.get("diff_id") != diff_id:
                problems.append("diffID %s vs zsnap %s" % (r.get("diff_id"), diff_id))
            args = [a.treediff]
            for p in case["ignore_mtime"] + implied_dirs(ref_dir, case["explicit_dirs"]):
                args += ["-ignore-mtime", p]
            t = subprocess.run(args + [ref_dir, got_dir], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=120)
            if t.returncode != 0:
                problems.append(t.stdout.decode("utf-8", "replace").strip()[-1500:])
        stats["cases"] += 1
        if not r["ok"] and not ok:
            refusals[re.sub(r'"[^"]*"|/\S*', "_", r.get("error", ""))[:90]] += 1
        stats["applied" if r["ok"] and ok else "refused" if not r["ok"] and not ok else
              "disagree"] += 1
        for c in case["classes"]:
            seen_class[c] += 1
        if problems:
            stats["different"] += 1
            for c in case["classes"]:
                by_class[c] += 1
            regen = "layergen.py --seed %s --index %d --out X%s" % (
                a.seed, i, " --exclude " + a.exclude if a.exclude else "")
            report = "case %s:%d media_type=%s codec=%s classes=%s\n  %s\n  regenerate: %s\n" % (
                a.seed, i, case["media_type"], case["codec"], ",".join(case["classes"]),
                "\n  ".join(problems), regen)
            print("DIFF " + report, end="")
            if a.keep and kept < 50:
                base = os.path.join(a.keep, "%s-%d" % (a.seed, i))
                shutil.copyfile(blob, base + ".blob")
                with open(base + ".txt", "w") as f:
                    f.write(report)
                kept += 1
        i += 1
    ref.stdin.close()
    ref.wait(timeout=60)
    print("difffuzz seed %s: %d cases (%d applied by both, %d refused by both), %d different"
          % (a.seed, stats["cases"], stats["applied"], stats["refused"], stats["different"]))
    print("  classes seen: " + " ".join("%s=%d" % kv for kv in sorted(seen_class.items())))
    if refusals:
        print("  refused by both, top reasons: " + "; ".join(
            "%d x %s" % (n, why) for why, n in refusals.most_common(5)))
    if by_class:
        print("  classes in differences: " + " ".join("%s=%d" % kv for kv in
                                                     sorted(by_class.items())))
    return 1 if stats["different"] else 0


if __name__ == "__main__":
    sys.exit(main())
