"""The KV-aware router (router:policy = kv_aware) in the real MPI job: it
learns from the workers' KV events which worker holds which prompt prefix and
sends a request to the worker holding its prefix. The same workload under
round_robin is the reference: the clients' cached_tokens and the HDF5 log
(h5py) show where each request went and what it found cached; the log's
/kv_events are checked against block hashes computed with the xxhash
package."""
import os
import signal
import struct
import subprocess
import time

import h5py
import pytest
import requests
import xxhash
from openai import OpenAI

from conftest import ROTOR, gen_model
from jobutil import metric, start_job

HANG_S = 120  # only keeps a broken job from hanging the run
MODEL = "kvr-tiny"
BLOCK = 16


@pytest.fixture(scope="module")
def tiny():
    return gen_model(MODEL, "--tokenizer", "bpe", "--n-vocab", "2000", "--n-ctx", "512", "--seed", "9")


def client(job):
    return OpenAI(base_url=job.url + "/v1", api_key="x", max_retries=0, timeout=HANG_S)


def prefix(k, lines=24):
    """A long shared prefix (~12 tokens a line: many KV blocks) per conversation k."""
    return " ".join(f"doc{k} line{i} item{(i * 7 + k) % 13}" for i in range(lines))


def run_workload(job, n_prefixes=4, per_prefix=4):
    """Requests that share prefixes, interleaved (P0 q0, P1 q0, ..., P0 q1, ...)
    and sent one at a time; returns [(prefix index, usage)] in order."""
    c = client(job)
    out = []
    for q in range(per_prefix):
        for k in range(n_prefixes):
            r = c.completions.create(model=MODEL, prompt=prefix(k) + f" question {q} about {k}?", max_tokens=2,
                                     temperature=0, extra_body={"ignore_eos": True})
            out.append((k, r.usage))
    time.sleep(0.3)  # a heartbeat brings the last step's stats
    return out, requests.get(job.url + "/metrics", timeout=10).text


def test_kv_aware_follows_the_cached_prefix(tiny, tmp_path):
    """Under kv_aware every request after a prefix's first goes to the worker
    that served it and finds the prefix cached; new prefixes spread over the
    workers. round_robin on the same workload finds much less."""
    results = {}
    for policy in ("kv_aware", "round_robin"):
        with start_job(tiny, tmp_path / policy, np=4,
                       overrides={"router:policy": policy, "job:heartbeat_interval_s": "0.05"}) as job:
            seen, m = run_workload(job)
            logs = job.h5_logs()
        with h5py.File(logs[0], "r") as f:
            req = f["requests"][:]
        req = req[req["t_arrival"].argsort()]
        assert len(req) == len(seen)
        results[policy] = (seen, m, req)

    seen, m, req = results["kv_aware"]
    workers = req["worker"].tolist()
    first = {}
    for (k, usage), w, rec in zip(seen, workers, req):
        assert rec["tokens_cached"] == usage.prompt_tokens_details.cached_tokens
        # the router's estimate, per request: what the worker then found cached
        assert rec["route_overlap_blocks"] * BLOCK == rec["tokens_cached"], rec
        if k not in first:
            first[k] = (w, usage.prompt_tokens)
            continue
        assert w == first[k][0], (k, workers)  # the worker holding the prefix
        # the whole shared prefix's full blocks, less the block where the question starts
        assert usage.prompt_tokens_details.cached_tokens >= (first[k][1] // BLOCK - 2) * BLOCK, usage
    assert len({w for w, _ in first.values()}) == 3, workers  # 4 new prefixes over 3 idle workers
    assert metric(m, "rotor_router_request_blocks_total") == sum(u.prompt_tokens // BLOCK for _, u in seen)
    overlap = metric(m, "rotor_router_overlap_blocks_total")
    assert overlap >= sum(u.prompt_tokens_details.cached_tokens // BLOCK for _, u in seen)
    assert metric(m, "rotor_router_kv_index_blocks") >= sum(p // BLOCK - 1 for _, p in first.values())

    kv_cached = sum(u.prompt_tokens_details.cached_tokens for _, u in seen)
    rr_seen, rr_m, rr_req = results["round_robin"]
    assert (rr_req["route_overlap_blocks"] == -1).all()  # no estimate under other policies
    rr_cached = sum(u.prompt_tokens_details.cached_tokens for _, u in rr_seen)
    # 3 workers, 4 prefixes in turn: round robin sends each prefix's requests
    # to 3 different workers, so at most a quarter of the hits remain
    assert rr_cached * 2 < kv_cached, (rr_cached, kv_cached)
    assert metric(rr_m, "rotor_router_request_blocks_total") == 0  # counted for kv_aware only
    assert metric(rr_m, "rotor_router_kv_index_blocks") > 0  # the index learns under every policy


def test_kv_index_follows_evictions(tiny, tmp_path):
    """Small KV pools evict all the time: the router's index drops what the
    workers evict (REMOVED events), so it never knows of more blocks than the
    pools hold, and requests keep succeeding."""
    pool = 24
    with start_job(tiny, tmp_path, np=3,
                   overrides={"router:policy": "kv_aware", "engine:kv_cache_blocks": str(pool),
                              "job:heartbeat_interval_s": "0.05"}) as job:
        c = client(job)
        for i in range(12):  # 12 different prompts of ~6-8 blocks each into 2 x 24 blocks
            r = c.completions.create(model=MODEL, prompt=prefix(100 + i, 8), max_tokens=2, temperature=0,
                                     extra_body={"ignore_eos": True})
            assert r.choices[0].finish_reason == "length"
        time.sleep(0.3)
        m = requests.get(job.url + "/metrics", timeout=10).text
        # a prefix the index still holds is routed to its worker and hits
        last = c.completions.create(model=MODEL, prompt=prefix(111, 8) + " again", max_tokens=2, temperature=0,
                                    extra_body={"ignore_eos": True})
    indexed = metric(m, "rotor_router_kv_index_blocks")
    assert 0 < indexed <= 2 * pool, indexed
    assert last.usage.prompt_tokens_details.cached_tokens >= 4 * BLOCK, last.usage


def block_hashes(tokens):
    """Sequence hashes of the full blocks of a token list, computed here with
    the xxhash package: Dynamo's and vLLM's scheme (xxh3-64, seed 1337, token
    ids as LE u32; a later block chains [parent seq hash, block hash] as LE
    u64s)."""
    out, parent = [], None
    for b in range(len(tokens) // BLOCK):
        bh = xxhash.xxh3_64_intdigest(struct.pack(f"<{BLOCK}I", *tokens[b * BLOCK:(b + 1) * BLOCK]), seed=1337)
        sh = bh if parent is None else xxhash.xxh3_64_intdigest(struct.pack("<QQ", parent, bh), seed=1337)
        out.append((sh, bh, parent))
        parent = sh
    return out


def test_kv_events_in_the_log_match_xxhash(tiny, tmp_path):
    """Prompts given as token ids: the /kv_events the workers sent to rank 0
    (HDF5 log, h5py) carry, for the worker that served each prompt, the block
    and sequence hashes the xxhash package computes from those ids, with their
    parents; ids run 1, 2, ... per worker; and the router sent the repeat of a
    prompt to that worker."""
    prompts = [[(37 * p + 11 * i) % 1900 + 50 for i in range(5 * BLOCK + 3)] for p in range(3)]
    with start_job(tiny, tmp_path, np=3, overrides={"router:policy": "kv_aware"}) as job:
        c = client(job)
        for p in prompts + [prompts[1] + [7, 8, 9]]:
            c.completions.create(model=MODEL, prompt=p, max_tokens=2, temperature=0,
                                 extra_body={"ignore_eos": True})
        logs = job.h5_logs()
    with h5py.File(logs[0], "r") as f:
        ev = f["kv_events"][:]
        req = f["requests"][:]
        assert f["meta"].attrs["layout_version"] == 3
        assert f["meta"].attrs["n_kv_events"] == len(ev)
    req = req[req["t_arrival"].argsort()]
    for w in set(ev["worker"].tolist()):
        assert ev[ev["worker"] == w]["id"].tolist() == list(range(1, (ev["worker"] == w).sum() + 1))
    assert set(ev["kind"].tolist()) == {b"stored"}  # the pools are large: nothing evicted
    assert (ev["tier"] == 1).all() and (ev["n_tokens"] == BLOCK).all()
    for p, r in zip(prompts, req):
        mine = ev[ev["worker"] == r["worker"]]
        stored = {int(e["seq_hash"]): (int(e["block_hash"]), int(e["parent_hash"]) if e["has_parent"] else None)
                  for e in mine}
        for sh, bh, parent in block_hashes(p):
            assert stored.get(sh) == (bh, parent)
    assert req[3]["worker"] == req[1]["worker"]
    assert req[3]["tokens_cached"] == 5 * BLOCK


def test_random_policy_spreads(tiny, tmp_path):
    """router:policy = random (the baseline Dynamo also offers): 20 requests one
    at a time reach more than one of 3 workers (all on one: 3 ** -19)."""
    with start_job(tiny, tmp_path, np=4, overrides={"router:policy": "random"}) as job:
        c = client(job)
        for i in range(20):
            r = c.completions.create(model=MODEL, prompt=f"request {i}", max_tokens=1, temperature=0)
            assert r.usage.completion_tokens == 1
        logs = job.h5_logs()
    with h5py.File(logs[0], "r") as f:
        workers = f["requests"]["worker"].tolist()
    assert len(workers) == 20 and len(set(workers)) > 1, workers


def rank_pid(job, rank):
    """Pid of the job's process of MPI rank `rank` (Open MPI puts the rank in each process's environment)."""
    out = subprocess.run(["pgrep", "-f", f"log:dir={job.log_dir}"], capture_output=True, text=True).stdout
    for p in map(int, out.split()):
        try:
            env = open(f"/proc/{p}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if f"OMPI_COMM_WORLD_RANK={rank}".encode() in env and os.readlink(f"/proc/{p}/exe") == os.path.realpath(ROTOR):
            return p
    raise AssertionError(f"no process of rank {rank}")


def test_worker_down_leaves_the_index(tiny, tmp_path):
    """A worker that stops answering leaves the router's index with it: its
    prefix is routed to the other worker (a miss there, then a hit), and when
    it answers again the router still sends the prefix where it knows it is."""
    prompt = [(13 * i) % 1900 + 50 for i in range(8 * BLOCK + 3)]
    with start_job(tiny, tmp_path, np=3, overrides={"router:policy": "kv_aware", "job:heartbeat_interval_s": "0.1",
                                                    "job:heartbeat_timeout_s": "1.5"}) as job:
        c = client(job)

        def ask():
            r = c.completions.create(model=MODEL, prompt=prompt, max_tokens=2, temperature=0,
                                     extra_body={"ignore_eos": True})
            return r.usage.prompt_tokens_details.cached_tokens

        def index_blocks():
            time.sleep(0.3)  # past a heartbeat
            return metric(requests.get(job.url + "/metrics", timeout=10).text, "rotor_router_kv_index_blocks")

        def health():
            return requests.get(job.url + "/health", timeout=10).status_code

        assert ask() == 0
        assert index_blocks() == 8
        time.sleep(0.5)  # the log's flush interval: the request's record is in the file
        with h5py.File(job.h5_logs()[0], "r", swmr=True) as f:
            first = int(f["requests"][:]["worker"][0])
        pid = rank_pid(job, first)
        os.kill(pid, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + HANG_S
            while health() != 503:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert index_blocks() == 0  # the stopped worker's blocks left the index
            assert ask() == 0  # the other worker, cold
            assert index_blocks() == 8
        finally:
            os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + HANG_S
        while health() != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert ask() == 8 * BLOCK  # routed where the router knows the prefix is
        logs = job.h5_logs()
    with h5py.File(logs[0], "r") as f:
        workers = f["requests"]["worker"].tolist()
    assert workers[0] == first and workers[1] != first and workers[2] == workers[1], workers
