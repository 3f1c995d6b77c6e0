#!/usr/bin/env python3
"""bench_ep.py - MoE expert parallelism, ratios from one run (`make bench-ep`).

A Mixtral-style model (rotor-model's moe-q4k preset: 8 experts, 2 per token)
served four ways on the same rotor-bench workload, interleaved REPEATS times:
one engine rank with one thread (ep1x1), one engine rank with two threads
(ep1x2: the same cores as the next two), and one instance of two ranks with
one thread each, roles:ep = 2, each rank computing half of every MoE layer's
experts: with attention replicated (ep2x1: one scheduler, every rank runs the
whole batch, MPI_Allreduce of the expert outputs) and with data-parallel
attention (dp2x1: two workers, each its own batch and KV, the rows sent to
their experts' ranks and back with MPI_Alltoallv). Medians compared: output
tokens/s, TTFT, ITL.
"""
import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import jobutil  # noqa: E402


def run_one(a, ep, threads, dp, model):
    sets = {"roles:ep": ep, "model:threads": threads, "engine:kv_cache_bytes": 128 << 20, "sampling:temperature": 0}
    if dp:
        sets["roles:ep_attention"] = "data_parallel"
    with tempfile.TemporaryDirectory() as tmp:
        with jobutil.start_job(model, tmp, np=1 + ep, overrides=sets) as job:
            j = jobutil.rotor_bench(a.build, job, model, 9, [
                "--concurrency", a.concurrency, "--requests", a.requests, "--input-tokens", a.input_tokens,
                "--output-tokens", a.output_tokens])
    return {"tok_s": j["output_token_throughput"], "ttft_p50": j["ttft_ms"]["p50"], "itl_p50": j["itl_ms"]["p50"],
            "errors": j["requests"]["errors"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("ROTOR_BUILD", "build"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--requests", type=int, default=24)
    ap.add_argument("--input-tokens", type=int, default=128)
    ap.add_argument("--output-tokens", type=int, default=64)
    a = ap.parse_args()
    jobutil.ROTOR = os.path.join(a.build, "bin", "rotor")
    model = jobutil.gen_model_in(a.build, "bench-moe-q4k", "--preset", "moe-q4k", "--seed", "7")
    print(f"{os.path.basename(model)}: {a.requests} requests, {a.input_tokens} prompt / {a.output_tokens} output "
          f"tokens, concurrency {a.concurrency}; one thread per rank; {a.repeats} interleaved runs")
    modes = {"ep1x1": (1, 1, False), "ep1x2": (1, 2, False), "ep2x1": (2, 1, False), "dp2x1": (2, 1, True)}
    res = {m: [] for m in modes}
    for rep in range(a.repeats):
        for m, (ep, th, dp) in modes.items():
            r = run_one(a, ep, th, dp, model)
            res[m].append(r)
            print(f"  [{rep + 1}/{a.repeats}] {m}: {r['tok_s']:.1f} tok/s, TTFT p50 {r['ttft_p50']:.0f} ms, "
                  f"ITL p50 {r['itl_p50']:.1f} ms, errors {r['errors']}", flush=True)
    med = {m: {k: statistics.median(r[k] for r in res[m]) for k in ("tok_s", "ttft_p50", "itl_p50")} for m in res}
    print("| mode (ranks x threads) | output tok/s | TTFT p50 ms | ITL p50 ms |")
    print("|---|---|---|---|")
    for m, x in med.items():
        print(f"| {m} | {x['tok_s']:.1f} | {x['ttft_p50']:.0f} | {x['itl_p50']:.1f} |")
    for m, base in (("ep2x1", "ep1x1"), ("ep2x1", "ep1x2"), ("dp2x1", "ep1x2"), ("dp2x1", "ep2x1")):
        print(f"{m} vs {base}: throughput {med[m]['tok_s'] / med[base]['tok_s']:.2f}x, ITL p50 "
              f"{med[base]['itl_p50'] / med[m]['itl_p50']:.2f}x lower, TTFT p50 "
              f"{med[base]['ttft_p50'] / med[m]['ttft_p50']:.2f}x lower")


if __name__ == "__main__":
    main()
