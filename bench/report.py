#!/usr/bin/env python3
"""report.py OUTDIR: turns unpack_bench.sh's results.csv (+ zsnap-*.json) into Markdown.

Per whole-image run: wall = sum of the layers' walls, peak RSS = the largest process seen
(/usr/bin/time's maxrss of the layer command: for a pipeline, its largest member). Reported
numbers are medians over reps; ratios are zsnap's median over the other mode's median.
"""
import csv
import glob
import json
import os
import statistics
import sys
from collections import defaultdict

TARGETS = [  # (codec, baseline mode, max ratio)
    ("gzip", "pigz-tar", 0.6),
    ("zstd", "zstd-tar", 1.0),
    ("gzip", "refapply", 0.3),
    ("zstd", "refapply", 0.3),
]
RSS_TARGET_MIB = 256
MODE_ORDER = ["gzip-tar", "pigz-tar", "igzip-tar", "zstd-tar", "refapply", "zsnap"]
CODEC_ORDER = ["gzip", "zstd", "zstd19"]  # images.sh's gzip -6, zstd -3, zstd -19


def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def main():
    out = sys.argv[1]
    rows = list(csv.DictReader(open(os.path.join(out, "results.csv"))))
    runs = defaultdict(lambda: {"wall": 0.0, "rss": 0, "user": 0.0, "sys": 0.0})
    layer_walls = defaultdict(list)
    for r in rows:
        k = (r["fs"], r["codec"], r["mode"], r["rep"])
        runs[k]["wall"] += float(r["wall_s"])
        runs[k]["user"] += float(r["user_s"])
        runs[k]["sys"] += float(r["sys_s"])
        runs[k]["rss"] = max(runs[k]["rss"], int(r["maxrss_kb"]))
        layer_walls[(r["fs"], r["codec"], r["mode"], r["layer"])].append(float(r["wall_s"]))
    # The codecs measured, known ones first in their usual order.
    seen = {r["codec"] for r in rows}
    codecs = [c for c in CODEC_ORDER if c in seen] + sorted(seen - set(CODEC_ORDER))
    med = defaultdict(dict)  # (fs, codec, mode) -> stats
    reps = defaultdict(list)
    for (fs, codec, mode, rep), v in runs.items():
        reps[(fs, codec, mode)].append(v)
    for k, vs in reps.items():
        med[k] = {
            "wall": statistics.median(v["wall"] for v in vs),
            "min": min(v["wall"] for v in vs),
            "max": max(v["wall"] for v in vs),
            "cpu": statistics.median(v["user"] + v["sys"] for v in vs),
            "rss": max(v["rss"] for v in vs) / 1024,
            "n": len(vs),
        }
    tar_bytes = 0
    layers_txt = os.path.join(out, "layers.txt")
    if os.path.exists(layers_txt):
        for line in open(layers_txt):
            tar_bytes += os.path.getsize(line.split()[2])

    env = open(os.path.join(out, "env.txt")).read().strip() if os.path.exists(
        os.path.join(out, "env.txt")) else ""
    print("# zsnap unpack benchmark\n")
    for line in env.splitlines():
        print(f"- {line}")
    print(f"- image: {tar_bytes / 1e6:.0f} MB of tar over "
          f"{len({r['layer'] for r in rows})} layers; wall = sum over layers, median of reps\n")
    print("| codec | mode | wall s (ext4, median) | min–max | MB/s | CPU s | peak RSS MiB "
          "| zsnap ratio | wall s (root fs) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for codec in codecs:
        z = med.get(("ext4", codec, "zsnap"))
        for mode in MODE_ORDER:
            m = med.get(("ext4", codec, mode))
            if not m:
                continue
            ratio = f"{z['wall'] / m['wall']:.2f}x" if z and mode != "zsnap" else "—"
            r = med.get(("rootfs", codec, mode))
            rtxt = f"{r['wall']:.2f}" if r else "—"
            mbps = f"{tar_bytes / m['wall'] / 1e6:.0f}" if tar_bytes else "—"
            print(f"| {codec} | {mode} | {m['wall']:.2f} | {m['min']:.2f}–{m['max']:.2f} | {mbps} "
                  f"| {m['cpu']:.1f} | {m['rss']:.0f} | {ratio} | {rtxt} |")

    print("\n## Targets (ext4 medians)\n")
    print("| target | measured | result |")
    print("|---|---|---|")
    for codec, base, limit in TARGETS:
        z, b = med.get(("ext4", codec, "zsnap")), med.get(("ext4", codec, base))
        if not z or not b:
            print(f"| zsnap/{base} on {codec} ≤ {limit}x | not measured | — |")
            continue
        ratio = z["wall"] / b["wall"]
        print(f"| zsnap/{base} on {codec} ≤ {limit}x | {ratio:.2f}x "
              f"| {'met' if ratio <= limit else 'MISSED'} |")
    for codec in codecs:
        z = med.get(("ext4", codec, "zsnap"))
        if z:
            print(f"| zsnap peak RSS on {codec} ≤ {RSS_TARGET_MIB} MiB | {z['rss']:.0f} MiB "
                  f"| {'met' if z['rss'] <= RSS_TARGET_MIB else 'MISSED'} |")

    layers = sorted({r["layer"] for r in rows}, key=int)
    print("\n## Per layer (ext4, median wall s)\n")
    print("| codec | mode | " + " | ".join(f"layer {l}" for l in layers) + " |")
    print("|---|---|" + "---|" * len(layers))
    for codec in codecs:
        for mode in MODE_ORDER:
            ws = [layer_walls.get(("ext4", codec, mode, l)) for l in layers]
            if not any(ws):
                continue
            print(f"| {codec} | {mode} | " + " | ".join(
                f"{statistics.median(w):.2f}" if w else "—" for w in ws) + " |")

    recs = []
    for p in sorted(glob.glob(os.path.join(out, "zsnap-*.json"))):
        codec, layer, tag = os.path.basename(p)[len("zsnap-"):-len(".json")].split("-", 2)
        fs, _, rep = tag.partition("-")
        try:
            recs.append((fs, codec, int(layer), rep, flatten(json.load(open(p)))))
        except (ValueError, json.JSONDecodeError):
            pass
    fss = {r[0] for r in recs}
    pick = "ext4" if "ext4" in fss else (sorted(fss)[0] if fss else None)
    recs = [r[1:] for r in recs if r[0] == pick]
    if recs:
        keys = [k for k in recs[0][3] if k.endswith(("_s", "busy_s", "wait_s")) or k in (
            "threads", "entries", "bytes_in", "bytes_out")]
        where = pick if pick in ("ext4", "rootfs") else "last run only"
        print(f"\n## zsnap per-stage breakdown ({where}, median over reps; seconds)\n")
        print("| codec | layer | " + " | ".join(keys) + " |")
        print("|---|---|" + "---|" * len(keys))
        group = defaultdict(list)
        for codec, layer, rep, rec in recs:
            group[(codec, layer)].append(rec)
        for (codec, layer), rs in sorted(group.items()):
            cells = []
            for k in keys:
                vals = [r[k] for r in rs if isinstance(r.get(k), (int, float))]
                v = statistics.median(vals) if vals else None
                cells.append("—" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v)))
            print(f"| {codec} | {layer} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
