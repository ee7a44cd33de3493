#!/usr/bin/env python3
"""Markdown tables from a run directory's summary.csv and verdicts.csv (standard library only):
    python3 scripts/results/summary_tables.py RUN_DIR [POSTPROCESS] [METRIC]
Prints the cascade (mean similarity per method and stage), the independent randomisation, the
data randomisation and the controls for one post-processing and metric, then the verdicts."""
import csv
import sys
from collections import OrderedDict

run = sys.argv[1]
post = sys.argv[2] if len(sys.argv) > 2 else None
metric = sys.argv[3] if len(sys.argv) > 3 else "spearman"
rows = list(csv.DictReader(open(f"{run}/summary.csv")))
post = post or rows[0]["postprocess"]
rows = [r for r in rows if r["postprocess"] == post and r["metric"] == metric]
methods = list(OrderedDict.fromkeys(r["method"] for r in rows if r["method"] == r["method_b"]))


def fmt(r):
    if not r or not r["mean"]:
        return "–"
    return f"{float(r['mean']):.2f} [{float(r['ci_low'] or r['mean']):.2f}, {float(r['ci_high'] or r['mean']):.2f}]"


def table(test, title):
    sub = [r for r in rows if r["test"] == test and r["method"] == r["method_b"]]
    if not sub:
        return
    stages = list(OrderedDict.fromkeys((int(r["stage_index"]), r["stage"]) for r in sub))
    print(f"\n**{title}** ({metric} after `{post}`, mean [95% CI])\n")
    print("| method | " + " | ".join(s for _, s in stages) + " |")
    print("|---|" + "---|" * len(stages))
    for m in methods:
        cells = [fmt(next((r for r in sub if r["method"] == m and (int(r["stage_index"]), r["stage"]) == s), None)) for s in stages]
        print(f"| {m} | " + " | ".join(cells) + " |")


table("cascading", "Cascading randomisation, top-down (stage = layer randomised last)")
table("independent", "Independent randomisation (only the named layer randomised)")
table("data_randomization", "Data randomisation (model trained on permuted labels)")
controls = [r for r in rows if r["test"] == "control"]
if controls:
    print(f"\n**Controls** ({metric} after `{post}`)\n")
    stages = list(OrderedDict.fromkeys(r["stage"] for r in controls))
    print("| method | " + " | ".join(stages) + " |")
    print("|---|" + "---|" * len(stages))
    for m in methods:
        cells = [fmt(next((r for r in controls if r["method"] == m and r["stage"] == s), None)) for s in stages]
        print(f"| {m} | " + " | ".join(cells) + " |")
verdicts = [v for v in csv.DictReader(open(f"{run}/verdicts.csv")) if v["postprocess"] == post and v["metric"] == metric]
if verdicts:
    print(f"\n**Verdicts** ({metric} after `{post}`; Wilcoxon signed-rank, alpha {verdicts[0]['alpha']})\n")
    print("| test | method | mean | ceiling | floor | p vs ceiling | p vs floor | verdict |")
    print("|---|---|---|---|---|---|---|---|")
    for v in verdicts:
        print(f"| {v['test']} | {v['method']} | {float(v['mean']):.2f} | {float(v['ceiling_mean']):.2f} | {float(v['floor_mean']):.2f} "
              f"| {float(v['p_vs_ceiling']):.2g} | {float(v['p_vs_floor']):.2g} | {v['verdict']} |")
