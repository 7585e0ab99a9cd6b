#!/usr/bin/python3
"""Plots of attnres runs (docs/PLOTS.md). Each command writes one PNG.

  plot.py loss METRICS.jsonl[=LABEL] ... -o loss.png
      train (solid) and validation (dots) loss per step, runs overlaid
  plot.py hops METRICS.jsonl -o hops.png
      bytes per pipeline hop in the last step: measured, beside the standard
      residual and Full AttnRes on the same layout
  plot.py timeline TRACE.rank0.json TRACE.rank1.json ... -o timeline.png [--steps N] [--until S]
      N steps (default 2) per rank, the last ones or those ending at step S:
      forward, backward and weight passes, communication waits, the
      optimizer, evaluation, checkpoints, messages on the wire (a band
      below each rank); gaps are the bubbles
  plot.py depth DEPTH.json -o depth.png
      mean depth-attention weight of every AttnRes site over its sources
      (from `attnres eval --depth`)
  plot.py dilution DEPTH.json[=LABEL] ... -o rms.png
      RMS of each sublayer's input (PreNorm dilution), runs overlaid
"""
import argparse
import json
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402


def labelled(arg):
    """'path=label' -> (path, label); the label defaults to the path."""
    path, _, label = arg.partition("=")
    return path, label or path


def read_metrics(path):
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not rows:
        sys.exit(f"plot.py: {path}: no metrics lines")
    return rows


def save(fig, out):
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(out)


def plot_loss(args):
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for spec in args.metrics:
        path, label = labelled(spec)
        rows = read_metrics(path)
        line, = ax.plot([r["step"] for r in rows if not r.get("skipped")],
                        [r["loss"] for r in rows if not r.get("skipped")], label=f"{label} train")
        val = [r for r in rows if "val_loss" in r]
        if val:
            ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o--", color=line.get_color(),
                    label=f"{label} validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per byte)")
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, args.out)


def plot_hops(args):
    last = read_metrics(args.metrics)[-1]
    if not last.get("hop_bytes"):
        sys.exit(f"plot.py: {args.metrics}: no hop_bytes (a run with parallel.pp = 1 has no hops)")
    hops = range(len(last["hop_bytes"]))
    series = [("measured", last["hop_bytes"], "tab:green"),
              ("standard residual", last["hop_bytes_standard"], "tab:blue"),
              ("Full AttnRes", last["hop_bytes_full"], "tab:red")]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    width = 0.27
    for i, (name, values, color) in enumerate(series):
        ax.bar([h + (i - 1) * width for h in hops], [v / 1e6 for v in values], width, label=name, color=color)
    ax.set_xticks(list(hops), [f"{h} -> {h + 1}" for h in hops])
    ax.set_xlabel("hop (chunk -> chunk)")
    ax.set_ylabel("MB per step (forward + backward)")
    ax.set_title(f"bytes per hop, step {last['step']}")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    save(fig, args.out)


COLORS = {"F": "tab:blue", "B": "tab:orange", "BI": "tab:orange", "BW": "tab:olive", "W": "tab:olive",
          "comm": "tab:gray", "copy": "tab:purple", "optimizer": "tab:red", "eval": "tab:cyan",
          "checkpoint": "black", "wire": "tab:green"}


def event_color(e):
    if e["cat"] in ("compute",):
        return COLORS.get(e["name"].split("(")[0], "tab:blue")
    return COLORS.get(e["cat"], "tab:gray")


def plot_timeline(args):
    ranks = []
    for path in args.traces:
        with open(path) as f:
            events = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]
        steps = sorted((e for e in events if e["cat"] == "step" and
                        (args.until is None or int(e["name"].split()[1]) <= args.until)), key=lambda e: e["ts"])
        if not steps:
            sys.exit(f"plot.py: {path}: no step marks" + (f" up to step {args.until}" if args.until else ""))
        shown = steps[-args.steps:]
        t0, t1 = shown[0]["ts"], shown[-1]["ts"] + shown[-1]["dur"]
        rank = next((e["pid"] for e in events), len(ranks))
        ranks.append((rank, [e for e in events if e["cat"] != "step" and t0 <= e["ts"] < t1], t0, shown))
    fig, ax = plt.subplots(figsize=(10, 1.6 + 0.5 * len(ranks)))
    for row, (rank, events, t0, shown) in enumerate(sorted(ranks)):
        for e in events:
            if e["cat"] == "wire":  # messages in flight: a translucent band under the rank's row
                ax.broken_barh([((e["ts"] - t0) / 1e3, e["dur"] / 1e3)], (row + 0.37, 0.1), color=COLORS["wire"],
                               alpha=0.4, linewidth=0)
                continue
            ax.broken_barh([((e["ts"] - t0) / 1e3, e["dur"] / 1e3)], (row - 0.35, 0.7), color=event_color(e),
                           linewidth=0)
        for s in shown:
            ax.axvline((s["ts"] - t0) / 1e3, color="black", linewidth=0.5, linestyle=":")
    ax.set_yticks(range(len(ranks)), [f"rank {r[0]}" for r in sorted(ranks)])
    ax.invert_yaxis()
    ax.set_xlabel("ms (white = idle: the pipeline bubble)")
    handles = [matplotlib.patches.Patch(color=c, label=n) for n, c in
               (("forward", COLORS["F"]), ("backward", COLORS["B"]), ("weight grad", COLORS["W"]),
                ("waiting for a message", COLORS["comm"]), ("a message on the wire (below)", COLORS["wire"]),
                ("AdamW", COLORS["optimizer"]),
                ("evaluation", COLORS["eval"]), ("checkpoint", COLORS["checkpoint"]))]
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    first, last = ranks[0][3][0]["name"], ranks[0][3][-1]["name"]
    ax.set_title(f"{first} to {last}, per rank" if first != last else f"{first}, per rank")
    save(fig, args.out)


def read_depth(path):
    with open(path) as f:
        return json.load(f)


def plot_depth(args):
    d = read_depth(args.depth)
    if d["mode"] != "attnres":
        sys.exit(f"plot.py: {args.depth}: a standard-residual model has no depth attention")
    alpha = d["alpha"]
    width = max(len(a) for a in alpha)
    grid = [a + [math.nan] * (width - len(a)) for a in alpha]
    fig, ax = plt.subplots(figsize=(max(5.0, 2.5 + 0.45 * width), 2.0 + 0.25 * len(alpha)))
    im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    L = d["sublayers"]
    ax.set_yticks(range(len(alpha)),
                  [f"{j} {'attn' if j % 2 == 0 else 'mlp'}" for j in range(L)] + ["output"], fontsize=7)
    ax.set_xticks(range(width), ["emb"] + [f"b{b}" for b in range(width - 1)], fontsize=7)
    ax.set_xlabel("source: embedding, block sums\n(the last of a row may be its partial block)", fontsize=8)
    ax.set_ylabel("AttnRes site (sublayer)")
    ax.set_title(f"mean depth-attention weight\nblock size {d['block_size']}, {d['tokens']} tokens", fontsize=9)
    fig.colorbar(im, ax=ax, label="mean alpha")
    save(fig, args.out)


def plot_dilution(args):
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for spec in args.depth:
        path, label = labelled(spec)
        d = read_depth(path)
        ax.plot(range(len(d["rms"])), d["rms"], "o-", markersize=3,
                label=label if label != path else f"{path} ({d['mode']})")
    ax.set_yscale("log")
    ax.set_xlabel("sublayer (the last point: the final norm's input)")
    ax.set_ylabel("RMS of the sublayer's input")
    ax.set_title("PreNorm dilution: the hidden state each RMSNorm reads")
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, args.out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("loss")
    c.add_argument("metrics", nargs="+")
    c.set_defaults(run=plot_loss)
    c = sub.add_parser("hops")
    c.add_argument("metrics")
    c.set_defaults(run=plot_hops)
    c = sub.add_parser("timeline")
    c.add_argument("traces", nargs="+")
    c.add_argument("--steps", type=int, default=2)
    c.add_argument("--until", type=int, help="the last step shown (default: the last traced)")
    c.set_defaults(run=plot_timeline)
    c = sub.add_parser("depth")
    c.add_argument("depth")
    c.set_defaults(run=plot_depth)
    c = sub.add_parser("dilution")
    c.add_argument("depth", nargs="+")
    c.set_defaults(run=plot_dilution)
    for c in sub.choices.values():
        c.add_argument("-o", "--out", required=True, help="PNG to write")
    args = p.parse_args()
    try:
        args.run(args)
    except (OSError, KeyError, ValueError) as e:
        sys.exit(f"plot.py {args.command}: {e}")


if __name__ == "__main__":
    main()
