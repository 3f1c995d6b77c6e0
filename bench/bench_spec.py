#!/usr/bin/env python3
"""bench_spec.py - speculative decoding by n-gram lookup against plain
decoding, ratios from one run (`make bench-spec`).

SmolLM2-135M-Instruct (Q4_1) served by a two-rank job (rank 0 the front end,
one engine worker), once with engine:spec_method = none and once with ngram,
interleaved REPEATS times. Each run sends the same chat requests one at a
time (batch 1, where decode is memory-bound and speculation is meant to
help), greedy, streaming: prompts whose answer repeats its input (rewrite
code, fix a typo in a paragraph, turn a list into JSON) and open-ended ones
(where n-gram lookup finds little). Per request: decode tokens/s, from the
first streamed token to the last. The texts must be the same with and
without speculation (the engine verifies drafts by sampling exactly as plain
decoding does); the acceptance rate comes from the job's /metrics.

--concurrency N sends the requests N at a time instead (the engine drafts
while at most engine:spec_max_running sequences run) and compares the
aggregate output tokens/s.

The peer, in the same run (unless --skip-llama): llama.cpp through
llama-cpp-python, the same file, threads and chat requests (its own chat
template), streamed, plain and with its prompt-lookup decoding
(LlamaPromptLookupDecoding, num_pred_tokens = spec tokens). That drafting
loop is the Python package's, not llama.cpp's C llama-lookup example.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import jobutil  # noqa: E402
from conftest import smollm2_path  # noqa: E402

CODE = '''def total_price(items, tax):
    total = 0
    for item in items:
        total = total + item["price"] * item["quantity"]
    total = total + total * tax
    return total


def average_price(items):
    if len(items) == 0:
        return 0
    return sum(item["price"] for item in items) / len(items)
'''

PARAGRAPH = ("The museum opens at nine in the morning and closes at five in the evening. Visitors can buy "
             "tickets at the entrance or online. Children under twelve enter for free, and students pay half "
             "price. The cafe on the second floor serves coffee, tea and sandwhiches until four o'clock.")

REPEATING = {
    "code-rename": "Rename the function total_price to compute_total in this code and output the whole code:\n\n"
                   + CODE,
    "code-comments": "Add a docstring to each function in this Python code and output the whole code:\n\n" + CODE,
    "typo-fix": "Fix the spelling mistake in this paragraph and output the corrected paragraph:\n\n" + PARAGRAPH,
    "list-to-json": "Convert this list to a JSON array of objects with keys name and age:\n"
                    "Alice, 31\nBob, 27\nCarol, 45\nDave, 38\nEve, 29\nFrank, 52",
}
OPEN = {
    "story": "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "explain": "Explain how a refrigerator keeps food cold.",
}
ALL = {**REPEATING, **OPEN}


def stream_one(url, model, prompt, max_tokens):
    """(text, completion tokens, seconds from the first token to the last)."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    text, first, last, usage = [], None, None, None
    with requests.post(url + "/v1/chat/completions", json=body, stream=True, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            ev = json.loads(line[6:])
            if ev.get("usage"):
                usage = ev["usage"]
            for ch in ev.get("choices", []):
                piece = ch.get("delta", {}).get("content")
                if piece:
                    now = time.monotonic()
                    first = first or now
                    last = now
                    text.append(piece)
    n = usage["completion_tokens"]
    return "".join(text), n, (last - first) if first and last else 0.0


def run_one(a, model, spec):
    sets = {"model:threads": a.threads, "engine:spec_method": spec, "engine:spec_tokens": a.spec_tokens,
            "sampling:max_tokens": a.max_tokens}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        with jobutil.start_job(model, tmp, np=2, overrides=sets) as job:
            name = requests.get(job.url + "/v1/models", timeout=10).json()["data"][0]["id"]
            stream_one(job.url, name, "Hello", 8)  # warm-up
            t0 = time.monotonic()
            with ThreadPoolExecutor(a.concurrency) as ex:
                got = dict(zip(ALL, ex.map(lambda p: stream_one(job.url, name, p, a.max_tokens), ALL.values())))
            out["_agg_tok_s"] = sum(n for _, n, _ in got.values()) / (time.monotonic() - t0)
            for k, (text, n, dt) in got.items():
                out[k] = {"text": text, "tokens": n, "tok_s": (n - 1) / dt if dt > 0 else 0.0}
            m = requests.get(job.url + "/metrics", timeout=10).text
            out["_drafted"] = jobutil.metric(m, "vllm:spec_decode_num_draft_tokens_total")
            out["_accepted"] = jobutil.metric(m, "vllm:spec_decode_num_accepted_tokens_total")
    return out


def run_llamacpp(a, model, lookup):
    """{request: decode tok/s} for llama.cpp, plain or with prompt lookup."""
    from llama_cpp import Llama
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding
    kw = dict(model_path=model, n_ctx=2048, n_threads=a.threads, n_threads_batch=a.threads, verbose=False, seed=0)
    if lookup:
        kw["draft_model"] = LlamaPromptLookupDecoding(num_pred_tokens=a.spec_tokens)
    llm = Llama(**kw)
    out = {}
    for k, p in ALL.items():
        first = last = None
        n = 0
        for chunk in llm.create_chat_completion(messages=[{"role": "user", "content": p}], max_tokens=a.max_tokens,
                                                temperature=0, stream=True):
            if chunk["choices"][0]["delta"].get("content"):
                now = time.monotonic()
                first = first or now
                last = now
                n += 1
        out[k] = (n - 1) / (last - first) if first and last and last > first else 0.0
    del llm
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("ROTOR_BUILD", "build"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spec-tokens", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--skip-llama", action="store_true", help="no llama.cpp peer")
    a = ap.parse_args()
    jobutil.ROTOR = os.path.join(a.build, "bin", "rotor")
    model = smollm2_path()
    print(f"{os.path.basename(model)}: {len(ALL)} chat requests {a.concurrency} at a time, greedy, up to "
          f"{a.max_tokens} tokens; {a.threads} threads; spec_tokens {a.spec_tokens}; {a.repeats} interleaved runs")
    res = {"none": [], "ngram": []}
    peer = {"plain": [], "lookup": []}
    for rep in range(a.repeats):
        if not a.skip_llama and a.concurrency == 1:
            for mode in peer:
                peer[mode].append(run_llamacpp(a, model, mode == "lookup"))
                print(f"  [{rep + 1}/{a.repeats}] llama.cpp {mode}: " + ", ".join(
                    f"{k} {peer[mode][-1][k]:.0f}" for k in ALL) + " tok/s", flush=True)
        for spec in res:
            r = run_one(a, model, spec)
            res[spec].append(r)
            rate = r["_accepted"] / r["_drafted"] if r["_drafted"] else 0.0
            print(f"  [{rep + 1}/{a.repeats}] {spec}: " + ", ".join(
                f"{k} {r[k]['tok_s']:.0f}" for k in ALL) + f" tok/s; all {r['_agg_tok_s']:.0f} tok/s; drafts accepted "
                f"{rate:.2f}",
                flush=True)
    same = all(r[k]["text"] == res["none"][0][k]["text"] for spec in res for r in res[spec]
               for k in ALL)
    print("| request | output tokens | plain tok/s | ngram tok/s | speed-up |")
    print("|---|---|---|---|---|")
    ratios = {}
    for k in ALL:
        p = statistics.median(r[k]["tok_s"] for r in res["none"])
        s = statistics.median(r[k]["tok_s"] for r in res["ngram"])
        ratios[k] = s / p
        print(f"| {k} | {res['none'][0][k]['tokens']} | {p:.1f} | {s:.1f} | **{s / p:.2f}x** |")
    drafted = statistics.median(r["_drafted"] for r in res["ngram"])
    accepted = statistics.median(r["_accepted"] for r in res["ngram"])
    agg = {s: statistics.median(r["_agg_tok_s"] for r in res[s]) for s in res}
    print(f"all requests, output tok/s: plain {agg['none']:.1f}, ngram {agg['ngram']:.1f}: "
          f"**{agg['ngram'] / agg['none']:.2f}x**")
    print(f"repeating requests: median speed-up {statistics.median(ratios[k] for k in REPEATING):.2f}x; "
          f"open-ended: {statistics.median(ratios[k] for k in OPEN):.2f}x; drafts per run {drafted:.0f}, "
          f"accepted {accepted:.0f} ({accepted / drafted if drafted else 0:.2f})")
    if peer["plain"]:
        print("| request | llama.cpp plain tok/s | llama.cpp lookup tok/s | rotor ngram tok/s | rotor ngram / llama.cpp "
              "lookup |")
        print("|---|---|---|---|---|")
        for k in ALL:
            lp = statistics.median(r[k] for r in peer["plain"])
            ll = statistics.median(r[k] for r in peer["lookup"])
            s = statistics.median(r[k]["tok_s"] for r in res["ngram"])
            print(f"| {k} | {lp:.1f} | {ll:.1f} | {s:.1f} | **{s / ll if ll else 0:.2f}x** |")
    print("outputs identical with and without speculation:", "yes" if same else "NO")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
