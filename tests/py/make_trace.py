#!/usr/bin/env python3
"""make_trace.py - write a small Mooncake-format trace (JSON Lines) for tests.

Each line is {"timestamp": ms, "input_length": n, "output_length": n,
"hash_ids": [...]}, the format Mooncake publishes and Dynamo, AIPerf and
rotor-bench replay. Requests belong to one of --groups "documents": a group's
requests start with the same --shared-blocks hash ids (so a prefix cache can
reuse them), followed by blocks of their own; the last block is cut so that
input_length is not a multiple of the block size. Arrival gaps are
exponential with mean --mean-gap-ms, divided by --speedup, and timestamps
are whole milliseconds, sorted.

    python3 tests/py/make_trace.py --out /tmp/t.jsonl --n 20 --seed 1 --speedup 10

Importable: make_trace(...) returns the lines as dicts.
"""
import argparse
import json
import random


def make_trace(n, seed=0, speedup=1.0, block_tokens=512, groups=3, shared_blocks=2, own_blocks=(1, 3),
               output=(8, 64), mean_gap_ms=200.0):
    """The trace as a list of dicts (see the module doc)."""
    if n < 1 or speedup <= 0 or block_tokens < 1 or groups < 1 or shared_blocks < 0:
        raise ValueError("n, speedup, block_tokens and groups must be positive, shared_blocks >= 0")
    rng = random.Random(seed)
    # hash ids: groups' shared blocks first, then a counter for own blocks
    group_ids = [[g * shared_blocks + k for k in range(shared_blocks)] for g in range(groups)]
    next_id = groups * shared_blocks
    t = 0.0
    lines = []
    for i in range(n):
        if i:
            t += rng.expovariate(1.0 / mean_gap_ms) / speedup
        own = rng.randint(own_blocks[0], own_blocks[1])
        ids = list(group_ids[rng.randrange(groups)]) + list(range(next_id, next_id + own))
        next_id += own
        cut = rng.randint(0, block_tokens - 1)  # tokens missing from the last block
        lines.append({
            "timestamp": int(round(t)),
            "input_length": max(1, len(ids) * block_tokens - cut),
            "output_length": rng.randint(output[0], output[1]),
            "hash_ids": ids,
        })
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="the .jsonl file to write")
    ap.add_argument("--n", type=int, default=20, help="requests (20)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--speedup", type=float, default=1.0, help="divide the arrival gaps by this (1)")
    ap.add_argument("--block-tokens", type=int, default=512, help="tokens per hash id (512)")
    ap.add_argument("--groups", type=int, default=3, help="groups sharing leading blocks (3)")
    ap.add_argument("--shared-blocks", type=int, default=2, help="leading blocks a group shares (2)")
    ap.add_argument("--mean-gap-ms", type=float, default=200.0, help="mean arrival gap before --speedup (200)")
    ap.add_argument("--max-output", type=int, default=64, help="output_length is uniform in [8, this] (64)")
    a = ap.parse_args()
    lines = make_trace(a.n, a.seed, a.speedup, a.block_tokens, a.groups, a.shared_blocks,
                       output=(min(8, a.max_output), a.max_output), mean_gap_ms=a.mean_gap_ms)
    with open(a.out, "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
