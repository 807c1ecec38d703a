#!/usr/bin/env python3
"""Turns Google Benchmark JSON files (from bench/gpu_suite.sh) into Markdown tables.

Usage: bench/results_table.py [--filter REGEX] bench_norm.json bench_conv1d.json ...
Prints one table per file: benchmark, time (µs), GB/s, fraction of the same-run device copy,
TOPS and any other counters the program reports.
"""
import argparse
import json
import re
import sys

SKIP = {"bytes", "iterations"}


def fmt(v):
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 1:
            return f"{v:.2f}"
        return f"{v:.3f}"
    return str(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--filter", default=None, help="only benchmarks whose name matches")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    for path in a.files:
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            print(f"error: {path}: {e}", file=sys.stderr)
            return 1
        ctx = data.get("context", {})
        rows = [b for b in data.get("benchmarks", []) if b.get("run_type", "iteration") == "iteration"]
        if a.filter:
            rows = [b for b in rows if re.search(a.filter, b["name"])]
        if not rows:
            continue
        counters = []
        for b in rows:
            for k in b:
                if k in ("GB/s", "copy_frac", "TOPS") or (k not in counters and isinstance(b[k], (int, float))
                                                          and k not in SKIP and k not in (
                    "family_index", "per_family_instance_index", "repetitions", "repetition_index", "threads",
                    "real_time", "cpu_time")):
                    if k not in counters:
                        counters.append(k)
        print(f"\n### {path.split('/')[-1]} — {ctx.get('gpu', '?')} (sm_{ctx.get('sm', '?')}), "
              f"same-run copy {float(ctx.get('copy_GBps', 0)):.0f} GB/s\n")
        print("| benchmark | time (µs) | " + " | ".join(counters) + " |")
        print("|---|---|" + "---|" * len(counters))
        for b in rows:
            t = b["real_time"]
            unit = b.get("time_unit", "ns")
            us = t / 1000.0 if unit == "ns" else (t if unit == "us" else t * 1000.0)
            vals = []
            for k in counters:
                v = b.get(k, "")
                if k == "GB/s" and isinstance(v, float):
                    v = v / 1e9
                vals.append(fmt(v) if v != "" else "")
            name = b["name"].replace("/manual_time", "").replace("|", "\\|")
            print(f"| {name} | {us:.2f} | " + " | ".join(vals) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
