"""The KV block manager's host tier (kvbm:host_bytes) in the real MPI job: a
prompt whose blocks the worker's small KV pool evicted comes back from host
memory - the client sees them as cached tokens, the greedy answer is the
same, /metrics counts the blocks onboarded, and the HDF5 log's /kv_events
show its blocks stored in tier 2 (host) with the hashes the xxhash package
computes. Without the tier the same run prefills it all again."""
import time

import h5py
import requests
from openai import OpenAI

from jobutil import metric, start_job
from test_kv_router import BLOCK, MODEL, block_hashes, tiny  # noqa: F401 - tiny is a fixture

HANG_S = 120


def run(job):
    c = OpenAI(base_url=job.url + "/v1", api_key="x", max_retries=0, timeout=HANG_S)
    prompts = [[(17 * k + 29 * i) % 1900 + 50 for i in range(8 * BLOCK + 3)] for k in range(4)]
    out = []
    for p in prompts + [prompts[0]]:  # 4 prompts of 9 blocks through a 20-block pool, then the first again
        r = c.completions.create(model=MODEL, prompt=p, max_tokens=4, temperature=0, extra_body={"ignore_eos": True})
        out.append(r)
    time.sleep(0.3)
    return prompts, out, requests.get(job.url + "/metrics", timeout=10).text


def test_host_tier_brings_evicted_blocks_back(tiny, tmp_path):  # noqa: F811
    base = {"engine:kv_cache_blocks": "20", "job:heartbeat_interval_s": "0.05"}
    with start_job(tiny, tmp_path / "g2", np=2, overrides={**base, "kvbm:host_bytes": str(64 << 20)}) as job:
        prompts, out, m = run(job)
        logs = job.h5_logs()
    with start_job(tiny, tmp_path / "none", np=2, overrides=base) as job:
        _, out_none, m_none = run(job)
    assert [r.usage.prompt_tokens_details.cached_tokens for r in out] == [0, 0, 0, 0, 8 * BLOCK]
    assert out[4].choices[0].text == out[0].choices[0].text
    assert out_none[4].usage.prompt_tokens_details.cached_tokens == 0  # evicted and gone
    assert out_none[4].choices[0].text == out[0].choices[0].text
    assert metric(m, "rotor_kvbm_onboarded_blocks_total") == 8
    assert metric(m, "rotor_kvbm_offloaded_blocks_total") >= 8
    assert metric(m_none, "rotor_kvbm_onboarded_blocks_total") == 0
    with h5py.File(logs[0], "r") as f:
        ev = f["kv_events"][:]
    g2 = {int(e["seq_hash"]) for e in ev if e["tier"] == 2 and e["kind"] == b"stored"}
    first = [sh for sh, _, _ in block_hashes(prompts[0])]
    assert set(first) <= g2  # the first prompt's 8 blocks went to the host tier
    g1 = [int(e["seq_hash"]) for e in ev if e["tier"] == 1 and e["kind"] == b"stored"]
    assert all(g1.count(sh) == 2 for sh in first)  # stored in G1, evicted, stored again when onboarded


def test_disk_tier_brings_evicted_blocks_back(tiny, tmp_path):  # noqa: F811
    """The same with the disk tier alone (kvbm:disk_dir, an HDF5 file per
    worker on local disk, removed when the job ends): the first prompt's
    blocks come back from disk, the events say tier 3."""
    disk = tmp_path / "nvme"
    disk.mkdir()
    sets = {"engine:kv_cache_blocks": "20", "job:heartbeat_interval_s": "0.05", "kvbm:disk_dir": str(disk),
            "kvbm:disk_bytes": str(64 << 20)}
    with start_job(tiny, tmp_path / "g3", np=2, overrides=sets) as job:
        files = [p.name for p in disk.iterdir()]
        prompts, out, m = run(job)
        logs = job.h5_logs()
    assert len(files) == 1 and files[0].startswith("rotor-kv-") and files[0].endswith(".h5")
    assert list(disk.iterdir()) == []  # a cache: gone with the job
    assert [r.usage.prompt_tokens_details.cached_tokens for r in out] == [0, 0, 0, 0, 8 * BLOCK]
    assert out[4].choices[0].text == out[0].choices[0].text
    assert metric(m, "rotor_kvbm_onboarded_blocks_total") == 8
    cap = [float(line.rsplit(" ", 1)[1]) for line in m.splitlines()
           if line.startswith("rotor_kvbm_disk_blocks{") and 'state="capacity"' in line]
    held = [float(line.rsplit(" ", 1)[1]) for line in m.splitlines()
            if line.startswith("rotor_kvbm_disk_blocks{") and 'state="held"' in line]
    assert cap and cap[0] > 100 and held and 8 <= held[0] <= cap[0], (cap, held)
    with h5py.File(logs[0], "r") as f:
        ev = f["kv_events"][:]
    g3 = {int(e["seq_hash"]) for e in ev if e["tier"] == 3 and e["kind"] == b"stored"}
    assert {sh for sh, _, _ in block_hashes(prompts[0])} <= g3


def test_router_follows_blocks_into_the_host_tier(tiny, tmp_path):  # noqa: F811
    """kv_aware counts a worker's host-tier blocks as held (onboarding is a
    copy, not a prefill). The first prompt goes to worker A; 4 others, each
    new, alternate B, A, B, A (ties go round-robin), and the two on A push
    all of the first prompt's blocks out of A's 16-block pool into its host
    tier. The repeat would go to B next, round-robin; it goes to A and finds
    them."""
    sets = {"engine:kv_cache_blocks": "16", "kvbm:host_bytes": str(64 << 20), "router:policy": "kv_aware"}
    with start_job(tiny, tmp_path, np=3, overrides=sets) as job:
        c = OpenAI(base_url=job.url + "/v1", api_key="x", max_retries=0, timeout=HANG_S)
        prompts = [[(23 * k + 31 * i) % 1900 + 50 for i in range(8 * BLOCK + 3)] for k in range(5)]
        out = [c.completions.create(model=MODEL, prompt=p, max_tokens=4, temperature=0,
                                    extra_body={"ignore_eos": True}) for p in prompts + [prompts[0]]]
        logs = job.h5_logs()
    with h5py.File(logs[0], "r") as f:
        req = f["requests"][:]
        ev = f["kv_events"][:]
    workers = req[req["t_arrival"].argsort()]["worker"].tolist()
    assert workers[:5] == [workers[0], workers[1]] * 2 + [workers[0]] and workers[0] != workers[1], workers
    first = {sh for sh, _, _ in block_hashes(prompts[0])}
    a = workers[0]
    removed_g1 = {int(e["seq_hash"]) for e in ev if e["worker"] == a and e["tier"] == 1 and e["kind"] == b"removed"}
    assert first <= removed_g1  # evicted from A's pool...
    assert workers[5] == a  # ...and still routed to A
    assert out[5].usage.prompt_tokens_details.cached_tokens == 8 * BLOCK
