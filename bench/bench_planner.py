#!/usr/bin/env python3
"""bench_planner.py - the SLO planner at fleet scale, ratios from one run (`make bench-planner`).

Simulated GPUs (engine:backend = sim: every step sleeps for the time an H100
would take on Llama-3-8B; scheduling, routing, KV hand-offs are real) serve a
prompt-heavy workload at a fixed request rate, disaggregated, starting from a
split that has too few prefill GPUs for it. Jobs on the same workload, one
per mode (--modes), interleaved REPEATS times:
  - static: the split stays as configured;
  - reactive: a planner rank moves GPUs between the pools (planner.h), one
    at a time, when TTFT misses planner:ttft_slo_ms while ITL has headroom
    under planner:itl_slo_ms (and the reverse);
  - predictive: the planner rank forecasts each pool's demand in tokens/s and
    moves as many GPUs as it takes to load both pools alike (planner:mode =
    predictive, capacities learnt from the GPUs' steps).
Medians compared: TTFT (p50, mean, p99), goodput under the TTFT SLO, ITL p50,
the moves the planner made and the split it ended with.
"""
import argparse
import os
import statistics
import sys
import tempfile

import h5py
import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import jobutil  # noqa: E402
from jobutil import metric  # noqa: E402


def run_one(a, mode, model):
    n_ranks = 1 + a.gpus + 1  # router, GPUs, the planner rank (idle in the static run)
    last = a.gpus
    sets = {"engine:backend": "sim", "sim:gpu": a.sim_gpu, "sim:shape": a.sim_shape, "router:policy": "kv_aware",
            "engine:max_num_batched_tokens": 8192, "engine:max_num_seqs": 64,
            "roles:worker": "", "roles:prefill": f"1-{a.prefill}", "roles:decode": f"{a.prefill + 1}-{last}",
            "planner:ttft_slo_ms": a.ttft_slo_ms, "planner:itl_slo_ms": a.itl_slo_ms,
            "planner:interval_s": a.interval, "planner:cooldown_s": a.cooldown, "job:heartbeat_interval_s": 0.2}
    # both jobs have the planner rank; the static one's targets cannot be missed, so it
    # never moves a GPU (the same ranks, the same messages)
    sets["roles:planner"] = str(last + 1)
    if mode == "predictive":
        sets["planner:mode"] = "predictive"
        sets["planner:predictor"] = a.predictor
    if mode == "static":
        sets["planner:ttft_slo_ms"] = 3600000
        sets["planner:itl_slo_ms"] = 3600000
    with tempfile.TemporaryDirectory() as tmp:
        with jobutil.start_job(model, tmp, np=n_ranks, overrides=sets) as job:
            j = jobutil.rotor_bench(a.build, job, model, 5, [
                "--rate", a.rate, "--arrival", "poisson", "--duration", a.duration, "--input-tokens", a.input_tokens,
                "--output-tokens", a.output_tokens, "--goodput", f"ttft:{a.ttft_slo_ms}"])
            m = requests.get(job.url + "/metrics", timeout=10).text
            logs = job.h5_logs()
        with h5py.File(logs[0], "r") as f:
            w = f["workers"][:]
        moves = [(round(float(x["t"] - w["t"].min()), 1), int(x["rank"]), x["role"].decode())
                 for x in w[w["kind"] == b"role"]]
    return {"ttft_p50": j["ttft_ms"]["p50"], "ttft_mean": j["ttft_ms"]["mean"], "ttft_p99": j["ttft_ms"]["p99"],
            "itl_p50": j["itl_ms"]["p50"], "goodput": j["goodput"]["fraction"], "tok_s": j["output_token_throughput"],
            "errors": j["requests"]["errors"], "moves": metric(m, "rotor_planner_moves_total"),
            "prefill_gpus": metric(m, "rotor_disagg_prefill_workers"), "log": moves}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("ROTOR_BUILD", "build"))
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--prefill", type=int, default=1, help="prefill GPUs at start")
    ap.add_argument("--rate", type=float, default=24, help="requests/s (Poisson)")
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--input-tokens", type=int, default=2048)
    ap.add_argument("--output-tokens", type=int, default=64)
    ap.add_argument("--ttft-slo-ms", type=float, default=500)
    ap.add_argument("--itl-slo-ms", type=float, default=50)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--cooldown", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", default="static,reactive,predictive", help="comma-separated: static, reactive, "
                    "predictive (the first is the reference of the ratios)")
    ap.add_argument("--predictor", default="constant", help="planner:predictor of the predictive mode")
    ap.add_argument("--sim-gpu", default="h100")
    ap.add_argument("--sim-shape", default="llama3-8b")
    a = ap.parse_args()
    jobutil.ROTOR = os.path.join(a.build, "bin", "rotor")
    # a small GGUF for the tokenizer and the file (the sim times sim:shape instead)
    model = jobutil.gen_model_in(a.build, "planner-bench", "--tokenizer", "bpe", "--n-vocab", "2000",
                                 "--n-ctx", "8192", "--seed", "11")
    print(f"{a.gpus} simulated {a.sim_gpu}s timing {a.sim_shape}, {a.prefill} prefill at start; "
          f"{a.rate} req/s for {a.duration:.0f} s, {a.input_tokens} prompt / {a.output_tokens} output tokens; "
          f"SLOs TTFT {a.ttft_slo_ms:.0f} ms, ITL {a.itl_slo_ms:.0f} ms; {a.repeats} interleaved runs")
    modes = a.modes.split(",")
    if not modes or any(m not in ("static", "reactive", "predictive") for m in modes):
        ap.error("--modes: static, reactive or predictive, comma-separated")
    res = {m: [] for m in modes}
    for rep in range(a.repeats):
        for mode in res:
            r = run_one(a, mode, model)
            res[mode].append(r)
            print(f"  [{rep + 1}/{a.repeats}] {mode:10s} TTFT p50 {r['ttft_p50']:8.0f} ms, mean {r['ttft_mean']:8.0f}, "
                  f"p99 {r['ttft_p99']:8.0f}; goodput {r['goodput']:.2f}; ITL p50 {r['itl_p50']:.1f} ms; "
                  f"{r['tok_s']:.0f} tok/s; prefill GPUs at the end {r['prefill_gpus']:.0f}; moves {r['log']}; "
                  f"errors {r['errors']}", flush=True)
    keys = ("ttft_p50", "ttft_mean", "ttft_p99", "goodput", "itl_p50", "tok_s", "prefill_gpus")
    med = {m: {k: statistics.median(r[k] for r in res[m]) for k in keys} for m in res}
    print(f"\nmedians of {a.repeats}")
    print("| mode | TTFT p50 ms | TTFT mean ms | TTFT p99 ms | goodput (TTFT <= %.0f ms) | ITL p50 ms | output tok/s "
          "| prefill GPUs at the end |" % a.ttft_slo_ms)
    print("|---|---|---|---|---|---|---|---|")
    for m, x in med.items():
        print(f"| {m} | {x['ttft_p50']:.0f} | {x['ttft_mean']:.0f} | {x['ttft_p99']:.0f} | {x['goodput']:.2f} | "
              f"{x['itl_p50']:.1f} | {x['tok_s']:.0f} | {x['prefill_gpus']:.0f} |")
    s = med[modes[0]]
    for m in modes[1:]:
        p = med[m]
        print(f"{m} vs {modes[0]}: TTFT p50 {s['ttft_p50'] / p['ttft_p50']:.2f}x lower, mean "
              f"{s['ttft_mean'] / p['ttft_mean']:.2f}x lower; goodput {p['goodput']:.2f} vs {s['goodput']:.2f}; "
              f"ITL p50 {p['itl_p50'] / s['itl_p50']:.2f}x")


if __name__ == "__main__":
    main()
