"""The MPI job itself: role maps refused at start, routing over worker ranks,
a worker that stops answering (SIGSTOP) taken out of routing and put back,
orderly shutdown with a grace period, and the HDF5 log checked with h5py
against what the clients saw."""
import os
import signal
import subprocess
import threading
import time

import h5py
import pytest
import requests
from openai import OpenAI

from conftest import ROTOR, gen_model
from jobutil import JOB_ENV, MPIRUN, metric, start_job

HANG_S = 120  # only keeps a broken job from hanging the run
MODEL = "job-tiny"


@pytest.fixture(scope="module")
def tiny():
    return gen_model(MODEL, "--tokenizer", "bpe", "--n-vocab", "2000", "--n-ctx", "512", "--seed", "5")


def client(job):
    return OpenAI(base_url=job.url + "/v1", api_key="x", max_retries=0, timeout=HANG_S)


def mpirun(np, *args):
    return [MPIRUN, "--oversubscribe", "--allow-run-as-root", "-np", str(np), ROTOR, "serve", *args]


@pytest.mark.parametrize("np,sets,key", [
    (3, {"roles:worker": "1-5"}, "roles:worker"),            # more ranks than the job has
    (3, {"roles:worker": "1"}, "rank 2"),                     # a rank without a role
    (3, {"roles:worker": "0-2"}, "roles:worker"),             # overlaps the router
    (3, {"roles:router": "1", "roles:worker": "0,2"}, "roles:router"),
    (4, {"roles:worker": "1", "roles:prefill": "2", "roles:decode": ""}, "roles:"),
    (3, {"router:policy": "fastest"}, "router:policy"),
    (3, {"planner:mode": "psychic"}, "planner:mode"),
    (3, {"planner:predictor": "prophet"}, "planner:predictor"),
    (3, {"roles:ep_attention": "sharded"}, "roles:ep_attention"),
])
def test_role_maps_refused(tiny, tmp_path, np, sets, key):
    cmd = mpirun(np, "/dev/null", "--set", f"model:path={tiny}", "--set", f"log:dir={tmp_path}")
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_S, env=JOB_ENV)
    assert r.returncode != 0
    assert key in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(tmp_path, "endpoint"))


def test_one_rank_refuses_worker_ranks(tiny, tmp_path):
    r = subprocess.run([ROTOR, "serve", "/dev/null", "--set", f"model:path={tiny}", "--set", "roles:worker=1",
                        "--set", f"log:dir={tmp_path}"], capture_output=True, text=True, timeout=HANG_S,
                       env=JOB_ENV)
    assert r.returncode == 1 and "roles:worker" in r.stderr and "1 rank" in r.stderr


def worker_pids(job):
    """Pids of the job's rank processes other than rank 0 (found by the unique log dir in their command line)."""
    rank0 = int(open(os.path.join(job.log_dir, "rank0.pid")).read())
    out = subprocess.run(["pgrep", "-f", f"log:dir={job.log_dir}"], capture_output=True, text=True).stdout
    pids = [int(p) for p in out.split()]
    ranks = []
    for p in pids:
        try:
            exe = os.readlink(f"/proc/{p}/exe")
        except OSError:
            continue
        if exe == os.path.realpath(ROTOR) and p != rank0:
            ranks.append(p)
    return ranks


def test_routing_and_hdf5_log(tiny, tmp_path):
    """Requests spread over both workers (round robin); the HDF5 log has every
    request with ordered timestamps and the token counts the clients saw."""
    seen = {}
    with start_job(tiny, tmp_path, np=3, overrides={"router:policy": "round_robin"}) as job:
        c = client(job)
        for i in range(6):
            r = c.completions.create(model=MODEL, prompt=f"request {i}", max_tokens=5 + i, temperature=0,
                                     extra_body={"ignore_eos": True})
            seen[r.id] = r.usage
        s = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "stream"}],
                                      max_tokens=7, stream=True, stream_options={"include_usage": True},
                                      extra_body={"ignore_eos": True})
        chunks = list(s)
        seen["stream"] = chunks[-1].usage
        logs = job.h5_logs()
    assert len(logs) == 1
    with h5py.File(logs[0], "r") as f:
        req = f["requests"][:]
        tok = f["tokens"][:]
        steps = f["steps"][:]
        workers = f["workers"][:]
        assert f["meta"].attrs["end_time"] > 0  # closed cleanly
    assert len(req) == len(seen)
    assert sorted(req["worker"].tolist()) == [1] * 4 + [2] * 3 or sorted(req["worker"].tolist()) == [1] * 3 + [2] * 4
    # round robin: consecutive requests alternate
    order = req[req["t_arrival"].argsort()]["worker"].tolist()
    assert all(a != b for a, b in zip(order, order[1:])), order
    assert sorted(req["tokens_out"].tolist()) == sorted(u.completion_tokens for u in seen.values())
    assert sorted(req["tokens_in"].tolist()) == sorted(u.prompt_tokens for u in seen.values())
    for r in req:
        assert r["http_status"] == 200 and r["error"] == b""
        ts = [r["t_arrival"], r["t_routed"], r["t_scheduled"], r["t_prefill_done"], r["t_first_token"], r["t_finish"]]
        assert all(t > 0 for t in ts), r
        assert ts == sorted(ts), r
        mine = tok[tok["request_id"] == r["id"]]
        assert len(mine) == r["tokens_out"]
        assert sorted(mine["index"].tolist()) == list(range(r["tokens_out"]))
        assert mine["t"].min() >= r["t_routed"] and mine["t"].max() <= r["t_finish"]
    assert len(steps) > 0 and set(steps["worker"].tolist()) == {1, 2}
    assert steps["n_decode_tokens"].sum() + steps["n_prefill_tokens"].sum() > 0
    ups = {(w["rank"], w["kind"]) for w in workers}
    assert {(1, b"up"), (2, b"up"), (1, b"shutdown"), (2, b"shutdown")} <= ups


def test_worker_stops_answering(tiny, tmp_path):
    """SIGSTOP one worker: after job:heartbeat_timeout_s its requests fail with
    a clear error, /health turns 503, the other worker keeps serving; after
    SIGCONT it is back in routing and the job still shuts down cleanly."""
    with start_job(tiny, tmp_path, np=3, overrides={"job:heartbeat_interval_s": "0.1",
                                                    "job:heartbeat_timeout_s": "1.5"}) as job:
        c = client(job)
        pids = worker_pids(job)
        assert len(pids) == 2, pids
        os.kill(pids[0], signal.SIGSTOP)
        try:
            # a long request lands on either worker; those on the stopped one must fail, not hang
            results = []

            def go(i):
                try:
                    r = c.completions.create(model=MODEL, prompt=f"x{i}", max_tokens=200, temperature=0,
                                             extra_body={"ignore_eos": True})
                    results.append(("ok", r.usage.completion_tokens))
                except Exception as e:  # noqa: BLE001 - the error is what we check
                    results.append(("error", str(e)))

            threads = [threading.Thread(target=go, args=(i,)) for i in range(4)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=HANG_S)
            assert len(results) == 4
            errors = [m for k, m in results if k == "error"]
            oks = [n for k, n in results if k == "ok"]
            assert errors, results  # least-loaded spreads 4 requests over both workers
            assert all("stopped answering" in m for m in errors), errors
            assert oks and all(n == 200 for n in oks), results
            assert time.monotonic() - t0 < HANG_S
            h = requests.get(job.url + "/health", timeout=10)
            assert h.status_code == 503
            # routing avoids the stopped worker now
            r = c.completions.create(model=MODEL, prompt="after", max_tokens=3, temperature=0)
            assert r.usage.completion_tokens >= 1
        finally:
            os.kill(pids[0], signal.SIGCONT)
        deadline = time.monotonic() + 30
        while requests.get(job.url + "/health", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the worker never came back"
            time.sleep(0.1)
        logs = job.h5_logs()
    with h5py.File(logs[0], "r") as f:
        kinds = [(w["rank"], w["kind"].decode()) for w in f["workers"][:]]
        req = f["requests"][:]
    assert any(k == "down" for _, k in kinds) and sum(k == "up" for _, k in kinds) >= 3
    assert sum(1 for r in req if b"stopped answering" in r["error"]) == len(errors)


def test_shutdown_lets_requests_finish(tiny, tmp_path):
    """SIGTERM to rank 0 while a request streams: it completes within the grace
    period, then every rank exits 0 (start_job checks the exit code)."""
    with start_job(tiny, tmp_path, np=3, overrides={"job:shutdown_grace_s": "60"}) as job:
        c = client(job)
        stream = c.completions.create(model=MODEL, prompt="long", max_tokens=120, temperature=0, stream=True,
                                      extra_body={"ignore_eos": True})
        it = iter(stream)
        first = next(it)
        os.kill(int(open(os.path.join(job.log_dir, "rank0.pid")).read()), signal.SIGTERM)
        rest = list(it)
        reasons = [ch.choices[0].finish_reason for ch in [first] + rest if ch.choices]
        assert reasons[-1] == "length"
        texts = [ch.choices[0].text for ch in [first] + rest if ch.choices]
        assert len([t for t in texts if t]) >= 100  # every token arrived (a few may be held for UTF-8)
        assert job.proc.wait(timeout=HANG_S) == 0



def test_metrics_aggregate_workers(tiny, tmp_path):
    """/metrics of the MPI job adds up the workers' engine stats: both workers
    up, a repeated long prompt shows prefix-cache hits, tokens are counted."""
    with start_job(tiny, tmp_path, np=3, overrides={"router:policy": "round_robin",
                                                    "job:heartbeat_interval_s": "0.05"}) as job:
        c = client(job)
        prompt = " ".join(f"word{i}" for i in range(120))
        for _ in range(3):  # round robin: a worker sees the prompt twice
            c.completions.create(model=MODEL, prompt=prompt, max_tokens=3, temperature=0,
                                 extra_body={"ignore_eos": True})
        time.sleep(0.5)  # a heartbeat carries the workers' latest counters
        m = requests.get(job.url + "/metrics", timeout=10).text
    assert metric(m, "rotor_workers") == 4  # up 2 + configured 2
    assert metric(m, "vllm:prefix_cache_queries_total") > 0
    assert metric(m, "vllm:prefix_cache_hits_total") >= 64  # the repeated prompt's full blocks
    assert metric(m, "vllm:generation_tokens_total") == 9
    assert metric(m, "vllm:num_requests_running") == 0
