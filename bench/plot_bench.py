#!/usr/bin/env python3
"""Plots of rotor-bench runs, read from their HDF5 files (docs/bench.md).

    .venv/bin/python bench/plot_bench.py RUN.h5 [MORE.h5 ...] --out DIR

writes into DIR (made if missing):
  latency_cdf.png           CDFs of TTFT, ITL per token (gaps between content
                            chunks), ITL per request and request latency
  ttft_over_time.png        each request's TTFT at its send time
  itl_over_time.png         each token gap at its arrival time, and each
                            request's ITL at its end
  throughput_over_time.png  output tokens/s in 1 s bins (--bin S)

With several files, every plot shows one series per run (labelled by the
file name, or --labels), so two endpoints can be compared by eye; the
numbers side by side come from `rotor-bench compare A.h5 B.h5`.

Only measured requests that succeeded are plotted: warm-up requests
(/requests warmup = 1) and failed ones (http_status != 200 or an error
kind) are left out, as in the summary. Times are seconds since the run's
start (rotor-bench's monotonic clock), shown relative to the first measured
send.
"""
import argparse
import os
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


class Run:
    """The measured, successful requests of one rotor-bench HDF5 file."""

    def __init__(self, path, label=None):
        self.path = path
        self.label = label or os.path.splitext(os.path.basename(path))[0]
        with h5py.File(path, "r") as f:
            rq = f["requests"][()]
            tt = f["token_times"][()] if "token_times" in f else None
            self.meta = {k: _text(v) for k, v in f["meta"].attrs.items()} if "meta" in f else {}
        err = np.array([_text(e) for e in rq["error"]]) if len(rq) else np.array([], dtype=str)
        ok = (rq["warmup"] == 0) & (rq["http_status"] == 200) & (err == "")
        self.n_all = len(rq)
        self.n_failed = int(((rq["warmup"] == 0) & ~ok).sum())
        r = rq[ok]
        self.index = r["index"].astype(np.int64)
        self.t0 = float(r["t_send"].min()) if len(r) else 0.0
        self.t_send = r["t_send"] - self.t0
        self.t_end = r["t_end"] - self.t0
        self.ttft_ms = (r["t_first"] - r["t_send"]) * 1e3
        self.latency_ms = (r["t_end"] - r["t_send"]) * 1e3
        self.out_tokens = r["output_tokens"].astype(np.int64)
        # ITL per request, as AIPerf: (latency - TTFT) / (output tokens - 1)
        multi = self.out_tokens > 1
        self.itl_req_ms = (self.latency_ms[multi] - self.ttft_ms[multi]) / (self.out_tokens[multi] - 1)
        self.itl_req_t = self.t_end[multi]
        # token arrival times of the kept requests, and the gaps between them
        self.tok_t = np.array([])
        self.gap_ms = np.array([])
        self.gap_t = np.array([])
        if tt is not None and len(tt):
            keep = np.isin(tt["request"].astype(np.int64), self.index)
            t = tt[keep]
            order = np.lexsort((t["index"], t["request"]))
            t = t[order]
            self.tok_t = t["t"] - self.t0
            same = t["request"][1:] == t["request"][:-1]
            self.gap_ms = (np.diff(t["t"]) * 1e3)[same]
            self.gap_t = self.tok_t[1:][same]

    def token_events(self):
        """(time, tokens) pairs for throughput: token arrivals when recorded,
        else each request's output tokens at its end (non-streaming runs)."""
        if len(self.tok_t):
            return self.tok_t, np.ones(len(self.tok_t))
        return self.t_end, self.out_tokens.astype(float)


def _text(v):
    if isinstance(v, bytes):
        return v.split(b"\0", 1)[0].decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.dtype.kind == "S":
        return _text(v.tobytes())
    return v if isinstance(v, str) else str(v)


def _cdf(ax, values, label):
    if len(values) == 0:
        return
    x = np.sort(values)
    y = np.arange(1, len(x) + 1) / len(x)
    ax.step(x, y, where="post", label=f"{label} (p50 {np.percentile(x, 50):.1f})")


def plot_cdfs(runs, out):
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    panels = [("TTFT", "ms", lambda r: r.ttft_ms), ("ITL per token (chunk gaps)", "ms", lambda r: r.gap_ms),
              ("ITL per request", "ms", lambda r: r.itl_req_ms), ("Request latency", "ms", lambda r: r.latency_ms)]
    for ax, (title, unit, get) in zip(axes.flat, panels):
        for r in runs:
            _cdf(ax, get(r), r.label)
        ax.set_title(title)
        ax.set_xlabel(unit)
        ax.set_ylabel("fraction of requests" if "token" not in title else "fraction of tokens")
        ax.set_ylim(0, 1.01)
        ax.ticklabel_format(axis="x", useOffset=False)
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("rotor-bench: latency CDFs")
    fig.tight_layout()
    return _save(fig, out, "latency_cdf.png")


def plot_ttft(runs, out):
    fig, ax = plt.subplots(figsize=(10, 5))
    for r in runs:
        ax.plot(r.t_send, r.ttft_ms, ".", ms=3, label=r.label)
    ax.set_xlabel("send time (s)")
    ax.set_ylabel("TTFT (ms)")
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_title("rotor-bench: TTFT over time")
    ax.grid(alpha=0.3)
    if ax.has_data():
        ax.legend()
    return _save(fig, out, "ttft_over_time.png")


def plot_itl(runs, out):
    fig, ax = plt.subplots(figsize=(10, 5))
    for r in runs:
        if len(r.gap_ms):
            ax.plot(r.gap_t, r.gap_ms, ".", ms=1, alpha=0.4, label=f"{r.label}: token gaps")
        ax.plot(r.itl_req_t, r.itl_req_ms, "x", ms=4, label=f"{r.label}: ITL per request (at its end)")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("ITL (ms)")
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_title("rotor-bench: inter-token latency over time")
    ax.grid(alpha=0.3)
    if ax.has_data():
        ax.legend(fontsize=8)
    return _save(fig, out, "itl_over_time.png")


def plot_throughput(runs, out, bin_s):
    fig, ax = plt.subplots(figsize=(10, 5))
    for r in runs:
        t, w = r.token_events()
        if len(t) == 0:
            continue
        # bins of bin_s up to the last token; a partial last bin is divided
        # by its own width (merged into the one before if under a quarter bin)
        t_max = max(float(t.max()), 1e-9)
        edges = np.arange(0.0, t_max, bin_s)
        if len(edges) > 1 and t_max - edges[-1] < 0.25 * bin_s:
            edges = edges[:-1]
        edges = np.append(edges, t_max)
        hist, edges = np.histogram(t, bins=edges, weights=w)
        ax.stairs(hist / np.diff(edges), edges, label=r.label)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("output tokens/s")
    ax.set_title(f"rotor-bench: output token throughput ({bin_s:g} s bins)")
    ax.grid(alpha=0.3)
    if ax.has_data():
        ax.legend()
    return _save(fig, out, "throughput_over_time.png")


def _save(fig, out, name):
    path = os.path.join(out, name)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description="Plot rotor-bench HDF5 runs (latency CDFs, TTFT/ITL/throughput over time).")
    ap.add_argument("runs", nargs="+", metavar="RUN.h5")
    ap.add_argument("--out", required=True, help="folder for the PNGs (made if missing)")
    ap.add_argument("--labels", help="comma-separated labels, one per run (default: file names)")
    ap.add_argument("--bin", type=float, default=1.0, help="throughput bin width in s (default 1)")
    a = ap.parse_args(argv)
    labels = a.labels.split(",") if a.labels else [None] * len(a.runs)
    if len(labels) != len(a.runs):
        ap.error("--labels needs one label per run")
    if a.bin <= 0:
        ap.error("--bin must be > 0")
    runs = [Run(p, lab) for p, lab in zip(a.runs, labels)]
    os.makedirs(a.out, exist_ok=True)
    written = [plot_cdfs(runs, a.out), plot_ttft(runs, a.out), plot_itl(runs, a.out),
               plot_throughput(runs, a.out, a.bin)]
    for r in runs:
        print(f"{r.path}: {len(r.ttft_ms)} requests plotted ({r.n_failed} failed, "
              f"{r.n_all - len(r.ttft_ms) - r.n_failed} warm-up left out)")
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
