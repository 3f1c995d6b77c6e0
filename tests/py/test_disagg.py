"""Disaggregated serving in the real MPI job: roles:prefill ranks compute long
prompts and hand their KV blocks to a roles:decode rank, which goes on from
its prefix cache. An aggregated job on the same model is the reference: the
engine is batch-invariant, so greedy outputs must be identical token for
token. The HDF5 log's /transfers (h5py) and /metrics show which requests
moved, how many blocks and bytes, and when."""
import os
import signal
import threading
import time

import h5py
import pytest
import requests
from openai import OpenAI

from conftest import ROOT, gen_model
from jobutil import metric, start_job, stream_and_drop, wait_idle
from test_kv_router import rank_pid

HANG_S = 120  # only keeps a broken job from hanging the run
MODEL = "disagg-tiny"
BLOCK = 16
LOCAL = 48  # disagg:max_local_prefill_tokens in these tests

# the shipped example, as a user runs it, with these tests' settings on top
SHIPPED = open(os.path.join(ROOT, "configs", "disagg.ini")).read()
TEST_SETS = {"disagg:max_local_prefill_tokens": str(LOCAL), "sampling:temperature": "0", "sampling:max_tokens": "8",
             "job:heartbeat_interval_s": "0.05", "log:flush_interval_s": "0.2", "engine:kv_cache_bytes": "67108864"}
AGG_SETS = dict(TEST_SETS, **{"roles:prefill": "", "roles:decode": "", "roles:worker": "1-"})


@pytest.fixture(scope="module")
def tiny():
    return gen_model(MODEL, "--tokenizer", "bpe", "--n-vocab", "2000", "--n-ctx", "1024", "--seed", "21")


def client(job):
    return OpenAI(base_url=job.url + "/v1", api_key="x", max_retries=0, timeout=HANG_S)


def text(k, words):
    return " ".join(f"w{k}x{(i * 11 + k) % 37} t{i % 5}" for i in range(words))


# long prompts (hundreds of tokens: remote prefill), short ones (local), and
# a repeat of the first long one (its blocks are on the decode worker by then)
PROMPTS = [text(1, 40), "short one", text(2, 25), text(3, 60), "tiny", text(1, 40) + " and more"]


def complete(job, prompts, stream_last=True):
    c = client(job)
    out = []
    for i, p in enumerate(prompts):
        if stream_last and i == len(prompts) - 1:
            s = c.completions.create(model=MODEL, prompt=p, max_tokens=8, temperature=0, stream=True,
                                     extra_body={"ignore_eos": True})
            out.append(("".join(ch.choices[0].text for ch in s if ch.choices), None))
        else:
            r = c.completions.create(model=MODEL, prompt=p, max_tokens=8, temperature=0,
                                     extra_body={"ignore_eos": True})
            out.append((r.choices[0].text, r.usage))
    return out


@pytest.mark.parametrize("transfer", ["mpi", "ucx"])
def test_disaggregated_equals_aggregated(tiny, tmp_path, transfer):
    """Long prompts prefill on the prefill rank and decode on the decode rank
    with the aggregated job's exact output; short prompts and one whose
    prefix the decode rank holds prefill locally; /transfers logs every
    hand-off with its blocks, bytes and times; /metrics counts them."""
    with start_job(tiny, tmp_path / "agg", np=2, config=SHIPPED, overrides=AGG_SETS) as job:
        ref = complete(job, PROMPTS)
    with start_job(tiny, tmp_path / "dis", np=3, config=SHIPPED,
                   overrides=dict(TEST_SETS, **{"disagg:transfer": transfer})) as job:
        got = complete(job, PROMPTS)
        time.sleep(0.3)
        m = requests.get(job.url + "/metrics", timeout=10).text
        logs = job.h5_logs()
    assert [t for t, _ in got] == [t for t, _ in ref]
    with h5py.File(logs[0], "r") as f:
        req = f["requests"][:]
        xf = f["transfers"][:]
        assert f["meta"].attrs["n_transfers"] == len(xf)
    req = req[req["t_arrival"].argsort()]
    assert len(req) == len(PROMPTS)
    assert set(req["worker"].tolist()) == {2}  # every request decodes on the decode rank
    remote = [i for i, r in enumerate(req)
              if r["tokens_in"] - r["route_overlap_blocks"] * BLOCK > LOCAL and (r["tokens_in"] - 1) // BLOCK > 0]
    assert remote == [0, 2, 3], [(r["tokens_in"], r["route_overlap_blocks"]) for r in req]
    assert sorted(xf["id"].tolist()) == sorted(req["id"][remote].tolist())
    for x in xf:
        r = req[req["id"] == x["id"]][0]
        n_full = (r["tokens_in"] - 1) // BLOCK
        assert (x["prefill_worker"], x["decode_worker"]) == (1, 2)
        assert x["n_blocks"] == n_full and x["n_imported"] == n_full
        assert x["bytes"] > 0 and x["bytes"] % x["n_blocks"] == 0
        assert x["t_prefill_done"] <= x["t_sent"] <= x["t_received"] <= x["t_imported"]
        assert r["t_arrival"] <= x["t_prefill_done"] <= r["t_first_token"]
        assert r["tokens_cached"] == n_full * BLOCK  # the hand-off, found as a prefix hit
    assert len({int(x["bytes"]) // int(x["n_blocks"]) for x in xf}) == 1  # one block size
    # the repeat found its prefix on the decode rank: no remote prefill
    assert req[5]["tokens_cached"] >= (req[0]["tokens_in"] // BLOCK - 1) * BLOCK
    assert metric(m, "rotor_disagg_remote_prefills_total") == 3
    assert metric(m, "rotor_disagg_kv_transfers_total") == 3
    assert metric(m, "rotor_disagg_kv_transfer_blocks_total") == xf["n_blocks"].sum()
    assert metric(m, "rotor_disagg_kv_transfer_bytes_total") == xf["bytes"].sum()
    assert metric(m, "rotor_disagg_kv_transfer_seconds_total") > 0
    for _, u in got[:-1]:
        assert u.completion_tokens == 8


def test_cancels_and_a_stopped_prefill_rank(tiny, tmp_path):
    """Clients that go away while their prompt is on the prefill rank or on
    its way lose nothing for anyone else; when the prefill rank stops
    answering, long prompts prefill on the decode rank instead (same
    output), and once it answers again they go remote again."""
    with start_job(tiny, tmp_path / "agg", np=2, config=SHIPPED, overrides=AGG_SETS) as job:
        ref = [t for t, _ in complete(job, [text(7, 50), text(8, 50), text(9, 50)], stream_last=False)]
    with start_job(tiny, tmp_path / "dis", np=3, config=SHIPPED, overrides=TEST_SETS) as job:
        # 12 streams of long prompts, each dropped after 0..2 chunks
        statuses = [None] * 12

        def drop(i):
            body = {"model": MODEL, "prompt": text(100 + i, 50), "max_tokens": 64, "ignore_eos": True}
            statuses[i] = stream_and_drop(job, body, i % 3, HANG_S)
        threads = [threading.Thread(target=drop, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(HANG_S)
        assert statuses == [200] * 12, statuses
        assert complete(job, [text(7, 50)], stream_last=False)[0][0] == ref[0]
        m = wait_idle(job, HANG_S)  # every cancelled request ends on both ranks
        deadline = time.monotonic() + HANG_S
        remote_before = metric(m, "rotor_disagg_remote_prefills_total")
        assert remote_before >= 1

        pid = rank_pid(job, 1)
        os.kill(pid, signal.SIGSTOP)
        try:
            while requests.get(job.url + "/health", timeout=10).status_code != 503:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert complete(job, [text(8, 50)], stream_last=False)[0][0] == ref[1]
            m = requests.get(job.url + "/metrics", timeout=10).text
            assert metric(m, "rotor_disagg_remote_prefills_total") == remote_before  # prefilled locally
        finally:
            os.kill(pid, signal.SIGCONT)
        while requests.get(job.url + "/health", timeout=10).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert complete(job, [text(9, 50)], stream_last=False)[0][0] == ref[2]
        m = requests.get(job.url + "/metrics", timeout=10).text
        assert metric(m, "rotor_disagg_remote_prefills_total") == remote_before + 1


def planner_job(tiny, tmp_path, roles, sets):
    cfg = SHIPPED.replace("prefill = 1\ndecode = 2", roles)
    base = dict(TEST_SETS, **{"planner:interval_s": "0.5", "planner:cooldown_s": "1000", "planner:min_samples": "2",
                              "disagg:max_local_prefill_tokens": "0"})
    base.update(sets)
    return start_job(tiny, tmp_path, np=5, config=cfg, overrides=base)


def load(job, n=8, words=50, max_tokens=8):
    """n long prompts at once, a few times, until the planner acts or 30 s pass."""
    c = client(job)
    outs = []

    def one(i):
        r = c.completions.create(model=MODEL, prompt=text(300 + i, words), max_tokens=max_tokens, temperature=0,
                                 extra_body={"ignore_eos": True})
        outs.append(r.choices[0].text)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(HANG_S)
        m = requests.get(job.url + "/metrics", timeout=10).text
        if metric(m, "rotor_planner_moves_total") >= 1:
            return m, outs
    return m, outs


def test_planner_moves_a_decode_rank_to_prefill(tiny, tmp_path):
    """Prompts wait (TTFT far over its target) while decode has room (ITL far
    under its): the planner rank moves one decode rank into the prefill pool,
    once (cooldown), logged in /workers; requests keep their exact outputs."""
    with start_job(tiny, tmp_path / "agg", np=2, config=SHIPPED, overrides=AGG_SETS) as job:
        ref = complete(job, [text(9, 50)], stream_last=False)[0][0]
    with planner_job(tiny, tmp_path / "p", "prefill = 1\ndecode = 2-3\nplanner = 4",
                     {"planner:ttft_slo_ms": "0.5", "planner:itl_slo_ms": "100000"}) as job:
        m, outs = load(job)
        assert metric(m, "rotor_planner_moves_total") == 1, m
        assert metric(m, "rotor_disagg_prefill_workers") == 2
        assert all(outs)
        assert complete(job, [text(9, 50)], stream_last=False)[0][0] == ref
        after = []
        threads = [threading.Thread(target=lambda i=i: after.append(complete(job, [text(400 + i, 50)], False)))
                   for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(HANG_S)
        assert len(after) == 6
        time.sleep(0.5)
        logs = job.h5_logs()
        out = job.output()
    with h5py.File(logs[0], "r") as f:
        w = f["workers"][:]
        xf = f["transfers"][:]
        req = f["requests"][:]
        plan = f["planner"][:]
    moves = w[w["kind"] == b"role"]
    # every interval's decision is in /planner: holds, and the one move with what it saw
    assert len(plan) >= 2
    moved_rec = plan[plan["action"] == b"to_prefill"]
    assert len(moved_rec) == 1 and moved_rec[0]["rank_moved"] == moves[0]["rank"]
    assert moved_rec[0]["ttft_mean_s"] > 0.0005 and moved_rec[0]["n_ttft"] >= 2
    assert (moved_rec[0]["n_prefill"], moved_rec[0]["n_decode"]) == (1, 2)
    holds = plan[plan["action"] == b"hold"]
    assert len(holds) >= 1 and (holds["rank_moved"] == -1).all()
    assert any(b"cooling down" in h["why"] for h in holds[holds["t"] > moved_rec[0]["t"]]) or \
        not (holds["t"] > moved_rec[0]["t"]).any()
    assert len(moves) == 1 and moves[0]["role"] == b"prefill" and moves[0]["rank"] in (2, 3), moves
    assert b"TTFT" in moves[0]["detail"]
    # after the move both prefill ranks compute prompts for the decode rank left
    moved = int(moves[0]["rank"])
    routed_after = set(req["id"][req["t_routed"] > moves[0]["t"]].tolist())
    late = xf[[int(i) in routed_after for i in xf["id"]]]
    assert {int(x) for x in late["prefill_worker"]} <= {1, moved} and moved in set(late["prefill_worker"].tolist())
    assert {int(x) for x in late["decode_worker"]} == {5 - moved}
    assert f"now a prefill rank" in out


def test_planner_moves_a_prefill_rank_to_decode(tiny, tmp_path):
    """Tokens come slowly (ITL over its target) while prompts are quick
    (TTFT far under its): a prefill rank joins the decode pool."""
    with planner_job(tiny, tmp_path, "prefill = 1-2\ndecode = 3\nplanner = 4",
                     {"planner:ttft_slo_ms": "100000", "planner:itl_slo_ms": "0.01"}) as job:
        m, outs = load(job, n=4, words=10, max_tokens=16)
        assert metric(m, "rotor_planner_moves_total") == 1, m
        assert metric(m, "rotor_disagg_prefill_workers") == 1
        assert all(outs)


def test_predictive_planner_sizes_the_pools(tiny, tmp_path):
    """planner:mode = predictive: from the load (long prompts, few output
    tokens) and what the ranks' steps show they serve, the planner aims at 2
    prefill ranks of 3 and moves one decode rank, before any latency target
    is missed (targets nobody can miss here); each interval's forecast and
    capacities are in /planner."""
    with planner_job(tiny, tmp_path, "prefill = 1\ndecode = 2-3\nplanner = 4",
                     {"planner:mode": "predictive", "planner:predictor": "trend",
                      "planner:ttft_slo_ms": "100000", "planner:itl_slo_ms": "100000"}) as job:
        m, outs = load(job, n=8, words=60, max_tokens=4)
        assert metric(m, "rotor_planner_moves_total") == 1, m
        assert metric(m, "rotor_disagg_prefill_workers") == 2
        assert all(outs)
        time.sleep(0.5)
        logs = job.h5_logs()
        out = job.output()
    with h5py.File(logs[0], "r") as f:
        w = f["workers"][:]
        plan = f["planner"][:]
    moved = plan[plan["action"] == b"to_prefill"]
    assert len(moved) == 1 and moved[0]["n_moved"] == 1 and moved[0]["target_prefill"] == 2, plan
    assert moved[0]["prefill_tps"] > 0 and moved[0]["prefill_cap_tps"] > 0 and moved[0]["decode_cap_tps"] > 0
    # prompts dominate: the demand in prefill ranks is over twice decode's
    p_ranks = moved[0]["prefill_tps"] / moved[0]["prefill_cap_tps"]
    d_ranks = moved[0]["decode_tps"] / moved[0]["decode_cap_tps"]
    assert p_ranks > 2 * d_ranks, (p_ranks, d_ranks)
    assert b"prefill of 3" in moved[0]["why"]
    holds = plan[plan["action"] == b"hold"]
    assert (holds["n_moved"] == 0).all() and (holds["rank_moved"] == -1).all()
    moves = w[w["kind"] == b"role"]
    assert len(moves) == 1 and moves[0]["role"] == b"prefill" and moves[0]["rank"] in (2, 3), moves
    assert "planner up (predictive, predictor trend)" in out
