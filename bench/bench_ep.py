#!/usr/bin/env python3
"""bench_ep.py - MoE expert parallelism, ratios from one run (`make bench-ep`).

A Mixtral-style model (rotor-model's moe-q4k preset: 8 experts, 2 per token)
served by one engine rank (ep = 1) and by one instance of two ranks (roles:ep
= 2: each rank computes half of every MoE layer's experts, attention is
replicated), one thread per rank, the same rotor-bench workload, interleaved
REPEATS times; medians compared: output tokens/s, TTFT, ITL. Also the packed
weights each rank holds (the instance keeps each expert on one rank).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import jobutil  # noqa: E402


def model_path(build):
    path = os.path.join(build, "models", "bench-moe-q4k.gguf")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        subprocess.run([os.path.join(build, "bin", "rotor-model"), "gen", "--out", path, "--preset", "moe-q4k",
                        "--seed", "7"], check=True, stdout=subprocess.DEVNULL)
    return path


def run_one(a, ep, model):
    sets = {"roles:ep": ep, "model:threads": 1, "engine:kv_cache_bytes": 128 << 20, "sampling:temperature": 0}
    with tempfile.TemporaryDirectory() as tmp:
        with jobutil.start_job(model, tmp, np=1 + ep, overrides=sets) as job:
            out = os.path.join(tmp, "rb.json")
            subprocess.run([f"{a.build}/bin/rotor-bench", "profile", "--url", job.url, "--model",
                            os.path.basename(model)[:-5], "--endpoint", "completions", "--tokenizer-gguf", model,
                            "--seed", "9", "--concurrency", str(a.concurrency), "--requests", str(a.requests),
                            "--input-tokens", str(a.input_tokens), "--output-tokens", str(a.output_tokens),
                            "--json", out, "--no-progress"], check=True, stdout=subprocess.DEVNULL)
            with open(out) as f:
                j = json.load(f)
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
    model = model_path(a.build)
    print(f"{os.path.basename(model)}: {a.requests} requests, {a.input_tokens} prompt / {a.output_tokens} output "
          f"tokens, concurrency {a.concurrency}; one thread per rank; {a.repeats} interleaved runs")
    res = {1: [], 2: []}
    for rep in range(a.repeats):
        for ep in res:
            r = run_one(a, ep, model)
            res[ep].append(r)
            print(f"  [{rep + 1}/{a.repeats}] ep {ep}: {r['tok_s']:.1f} tok/s, TTFT p50 {r['ttft_p50']:.0f} ms, "
                  f"ITL p50 {r['itl_p50']:.1f} ms, errors {r['errors']}", flush=True)
    med = {ep: {k: statistics.median(r[k] for r in res[ep]) for k in ("tok_s", "ttft_p50", "itl_p50")} for ep in res}
    print("| ranks per instance (roles:ep) | output tok/s | TTFT p50 ms | ITL p50 ms |")
    print("|---|---|---|---|")
    for ep, x in med.items():
        print(f"| {ep} | {x['tok_s']:.1f} | {x['ttft_p50']:.0f} | {x['itl_p50']:.1f} |")
    print(f"ep 2 vs ep 1: throughput {med[2]['tok_s'] / med[1]['tok_s']:.2f}x, ITL p50 "
          f"{med[1]['itl_p50'] / med[2]['itl_p50']:.2f}x lower, TTFT p50 {med[1]['ttft_p50'] / med[2]['ttft_p50']:.2f}x "
          f"lower")


if __name__ == "__main__":
    main()
