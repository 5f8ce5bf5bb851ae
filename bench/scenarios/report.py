#!/usr/bin/env python3
"""Renders the scenarios' JSON results as one Markdown table with the budgets of bench/README.md.

Usage: report.py RESULT.json... [--check-budgets | --no-budgets]
Each figure: median and min–max over the verified runs (void runs are listed below the table
with their reason and never enter a figure). Exit status: 1 when a run is void, or with
--check-budgets when a budget is missed; else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path


def figures(doc: dict) -> dict:
    """{metric key: {"median", "min", "max", "n"}} over the scenario's verified runs."""
    out = {}
    good = [run["values"] for run in doc["runs"] if not run["void"]]
    for metric in doc["metrics"]:
        values = [v[metric["key"]] for v in good if v.get(metric["key"]) is not None]
        if values:
            out[metric["key"]] = {"median": statistics.median(values), "min": min(values), "max": max(values),
                                  "n": len(values)}
    return out


def budgets(docs: dict, figs: dict) -> dict:
    """{(scenario, metric key): (text, passed: bool)} for every budget whose figures exist."""
    out = {}

    def median(scenario, key):
        return figs.get(scenario, {}).get(key, {}).get("median")

    for s in ("S1", "S2"):
        ratio = median(s, "ratio")
        if ratio is not None:
            out[(s, "ratio")] = ("≥ 0.8×", ratio >= 0.8)
    bulk = median("S1", "bridge_cpu_us_per_event")
    s3 = docs.get("S3")
    if s3:
        for n in s3["params"]["streams"]:
            cpu = median("S3", "cpu_us_per_event@%d" % n)
            if cpu is not None and bulk is not None:
                out[("S3", "cpu_us_per_event@%d" % n)] = ("≤ 2× S1 = %.2f µs" % (2 * bulk), cpu <= 2 * bulk)
            versus_single = median("S3", "cpu_vs_single@%d" % n)
            if versus_single is not None:
                out[("S3", "cpu_vs_single@%d" % n)] = ("≤ 2×", versus_single <= 2)
            rss = median("S3", "rss_kib_per_stream@%d" % n)
            if rss is not None and n >= 10000:
                out[("S3", "rss_kib_per_stream@%d" % n)] = ("≤ 32 KiB", rss <= 32)
    ratio = median("S4", "p99_ratio")
    if ratio is not None:
        out[("S4", "p99_ratio")] = ("≤ 2×", ratio <= 2)
    restart = median("S5", "restart_s")
    if restart is not None:
        out[("S5", "restart_s")] = ("≤ 10 s", restart <= 10)
    return out


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    kernel = platform.release()
    load = "load average %.1f / %.1f / %.1f (1 / 5 / 15 min, at report time)" % os.getloadavg()
    return "%s, nproc %d, %s, Linux %s, %s" % (time.strftime("%Y-%m-%d"), os.cpu_count() or 0, model, kernel, load)


def render(paths: list, with_budgets: bool = True) -> tuple:
    docs = {}
    for path in paths:
        doc = json.loads(Path(path).read_text())
        docs[doc["scenario"]] = doc
    order = sorted(docs)
    figs = {s: figures(docs[s]) for s in order}
    checks = budgets(docs, figs) if with_budgets else {}
    lines = ["Machine: %s" % machine(), "",
             "| scenario | figure | median | min – max | runs | budget |",
             "|---|---|---|---|---|---|"]
    void = []
    missed = []
    for s in order:
        doc = docs[s]
        for metric in doc["metrics"]:
            fig = figs[s].get(metric["key"])
            if fig is None:
                continue
            fmt = metric["fmt"]
            unit = " " + metric["unit"] if metric["unit"] not in ("×",) else "×"
            budget = ""
            if (s, metric["key"]) in checks:
                text, passed = checks[(s, metric["key"])]
                budget = "%s %s" % (text, "**met**" if passed else "**MISSED**")
                if not passed:
                    missed.append("%s %s" % (s, metric["label"]))
            lines.append("| %s %s | %s | %s%s | %s – %s | %d | %s |" % (
                s, doc["title"], metric["label"].replace("|", "\\|"), fmt % fig["median"], unit, fmt % fig["min"], fmt % fig["max"],
                fig["n"], budget))
        for i, run in enumerate(doc["runs"], 1):
            if run["void"]:
                void.append("%s run %d is void: %s" % (s, i, "; ".join(run["void"])))
    if void:
        lines += [""] + ["- " + v for v in void]
    return "\n".join(lines) + "\n", void, missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+")
    parser.add_argument("--check-budgets", action="store_true", help="exit 1 when a budget is missed")
    parser.add_argument("--no-budgets", action="store_true", help="leave the budget column empty (smoke runs)")
    args = parser.parse_args()
    text, void, missed = render(args.results, with_budgets=not args.no_budgets)
    sys.stdout.write(text)
    if missed:
        sys.stdout.write("\nBudgets missed: %s\n" % "; ".join(missed))
    if void:
        return 1
    return 1 if args.check_budgets and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
