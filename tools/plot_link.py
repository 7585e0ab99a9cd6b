#!/usr/bin/python3
"""Plots bench/bench_link.sh's link.tsv: step time against link bandwidth per
residual mode, measured (solid) and predicted by `attnres plan` (dashed).

    tools/plot_link.py OUT_DIR/link.tsv docs/link_step_time.png
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

GBPS = {"10gbit": 10, "1gbit": 1, "300mbit": 0.3, "100mbit": 0.1}


def main(tsv, png):
    rows = list(csv.DictReader(open(tsv), delimiter="\t"))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for mode, color in (("standard", "tab:blue"), ("block", "tab:green"), ("full", "tab:red")):
        mine = [r for r in rows if r["mode"] == mode]
        shaped = [r for r in mine if r["link"] in GBPS]
        x = [GBPS[r["link"]] for r in shaped]
        ax.plot(x, [float(r["step_s"]) for r in shaped], "o-", color=color, label=f"{mode} measured")
        ax.plot(x, [float(r["predicted_s"]) for r in shaped], "x--", color=color, label=f"{mode} predicted")
        for r in mine:
            if r["link"] == "unlimited":
                ax.axhline(float(r["step_s"]), color=color, linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("link bandwidth, Gbit/s (dotted: unshaped)")
    ax.set_ylabel("step time, s (4096 tokens)")
    ax.set_title("small.yaml, pp = 2 on 2 namespace hosts over TCP")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: tools/plot_link.py LINK_TSV OUT_PNG")
    main(sys.argv[1], sys.argv[2])
