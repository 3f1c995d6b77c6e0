"""MoE expert parallelism in the real MPI job (roles:ep): an engine instance
spans two ranks, each computing half of every MoE layer's experts, the
experts' outputs summed over the instance with MPI_Allreduce. Each expert
output is computed on exactly one rank, so the sum restores it and the
instance's greedy outputs equal one rank's, token for token, for a Mixtral-style
and a qwen2moe (shared expert) model, alone and in a batch. The same with
data-parallel attention (roles:ep_attention): both ranks serve requests and
the MoE rows travel to their experts' ranks and back (MPI_Alltoallv)."""
import threading
import time

import h5py
import pytest
import requests

from conftest import gen_model
from jobutil import greedy_completions, metric, start_job, stream_and_drop, wait_idle

HANG_S = 120
PROMPTS = ["The quick brown fox", "one two three four five six seven", "Hello, world! " * 20, "x"]


@pytest.fixture(scope="module", params=["mixtral", "qwen2moe"])
def moe(request):
    if request.param == "mixtral":
        return gen_model("ep-mixtral", "--type", "q4_1", "--tokenizer", "bpe", "--n-vocab", "2000", "--n-expert", "4",
                         "--n-expert-used", "2", "--n-ctx", "512", "--seed", "31")
    return gen_model("ep-qwen2moe", "--type", "q8_0", "--arch", "qwen2moe", "--tokenizer", "bpe", "--n-vocab", "2000",
                     "--n-expert", "6", "--n-expert-used", "2", "--n-ctx", "512", "--seed", "32")


def answers(job, concurrent):
    return greedy_completions(job, PROMPTS, concurrent=concurrent)


def test_expert_parallel_equals_one_rank(moe, tmp_path):
    with start_job(moe, tmp_path / "one", np=2) as job:
        ref = answers(job, concurrent=False)
    with start_job(moe, tmp_path / "ep", np=3, overrides={"roles:ep": "2"}) as job:
        health = requests.get(job.url + "/health", timeout=10).json()
        alone = answers(job, concurrent=False)
        batched = answers(job, concurrent=True)
        out = job.output()
    assert all(ref)
    assert alone == ref
    assert batched == ref
    assert health["workers"] == 1  # one instance of two ranks
    assert "expert rank 1 of 2 up" in out


def test_expert_parallel_refuses_a_dense_model(tmp_path):
    dense = gen_model("ep-dense", "--tokenizer", "bpe", "--n-vocab", "2000", "--seed", "33")
    with pytest.raises(AssertionError, match="needs a mixture-of-experts model"):
        with start_job(dense, tmp_path, np=3, overrides={"roles:ep": "2"}, ready_timeout=60):
            pass


def test_expert_parallel_instances_need_one_role(moe, tmp_path):
    with pytest.raises(AssertionError, match="instance's ranks need one role"):
        with start_job(moe, tmp_path, np=3, overrides={"roles:ep": "2", "roles:worker": "", "roles:prefill": "1",
                                                       "roles:decode": "2"}, ready_timeout=60):
            pass


def test_expert_parallel_with_onboarded_blocks(moe, tmp_path):
    """A KV pool too small for the prompts pushes blocks into the host tier;
    repeats bring them back (onboarding writes KV outside a forward pass):
    the leader sends those blocks to its expert rank too, so the instance's
    outputs stay one rank's."""
    sets = {"engine:kv_cache_blocks": "24", "kvbm:host_bytes": str(64 << 20), "engine:max_num_seqs": "4"}
    prompts = [" ".join(f"p{k} w{i}" for i in range(45)) for k in range(4)]
    order = prompts + prompts[::-1]

    def run(job):
        out = greedy_completions(job, order, max_tokens=8)
        time.sleep(0.6)  # a heartbeat brings the workers' counters
        m = requests.get(job.url + "/metrics", timeout=10).text
        return out, metric(m, "rotor_kvbm_onboarded_blocks_total")

    with start_job(moe, tmp_path / "one", np=2, overrides=sets) as job:
        ref, onboarded_ref = run(job)
    with start_job(moe, tmp_path / "ep", np=3, overrides=dict(sets, **{"roles:ep": "2"})) as job:
        got, onboarded = run(job)
    assert onboarded_ref > 0 and onboarded > 0
    assert got == ref


def test_expert_parallel_disaggregated(moe, tmp_path):
    """Expert parallelism and disaggregation together: a prefill instance and a
    decode instance of two ranks each; long prompts are prefilled on the
    first, handed to the second's leader, which passes the imported blocks
    to its expert rank: outputs stay one rank's."""
    with start_job(moe, tmp_path / "one", np=2) as job:
        ref = answers(job, concurrent=False)
    with start_job(moe, tmp_path / "ep", np=5, overrides={
            "roles:ep": "2", "roles:worker": "", "roles:prefill": "1-2", "roles:decode": "3-4",
            "disagg:max_local_prefill_tokens": "16", "job:heartbeat_interval_s": "0.1"}) as job:
        got = answers(job, concurrent=False)
        time.sleep(0.3)
        m = requests.get(job.url + "/metrics", timeout=10).text
    assert got == ref
    assert metric(m, "rotor_disagg_remote_prefills_total") >= 1  # the long prompt went remote


DP = {"roles:ep": "2", "roles:ep_attention": "data_parallel", "router:policy": "round_robin"}


def test_data_parallel_attention_equals_one_rank(moe, tmp_path):
    """roles:ep_attention = data_parallel: both ranks of the instance are
    workers with their own requests, batches and KV; each MoE layer sends
    the rows to their experts' ranks and back (MPI_Alltoallv). One request
    at a time (the other rank only serves experts: empty forward passes)
    and all at once (two batches of different sizes) give one rank's
    outputs."""
    with start_job(moe, tmp_path / "one", np=2) as job:
        ref = answers(job, concurrent=False)
    with start_job(moe, tmp_path / "dp", np=3, overrides=DP) as job:
        health = requests.get(job.url + "/health", timeout=10).json()
        alone = answers(job, concurrent=False)
        batched = answers(job, concurrent=True)
        logs = job.h5_logs()
        out = job.output()
    assert all(ref)
    assert alone == ref
    assert batched == ref
    assert health["workers"] == 2  # two workers, one instance
    assert "expert rank" not in out
    with h5py.File(logs[0], "r") as f:
        req = f["requests"][:]
    assert set(req["worker"]) == {1, 2}  # round robin: both ranks served requests


def test_data_parallel_attention_disaggregated(moe, tmp_path):
    """One instance whose two ranks have different roles: rank 1 prefills,
    rank 2 decodes; they step together for the experts while a long prompt
    is prefilled on one and handed to the other: outputs stay one rank's."""
    with start_job(moe, tmp_path / "one", np=2) as job:
        ref = answers(job, concurrent=False)
    with start_job(moe, tmp_path / "dp", np=3, overrides=dict(DP, **{
            "roles:worker": "", "roles:prefill": "1", "roles:decode": "2",
            "disagg:max_local_prefill_tokens": "16", "job:heartbeat_interval_s": "0.1"})) as job:
        got = answers(job, concurrent=False)
        time.sleep(0.3)
        m = requests.get(job.url + "/metrics", timeout=10).text
    assert got == ref
    assert metric(m, "rotor_disagg_remote_prefills_total") >= 1


def test_data_parallel_attention_under_churn(moe, tmp_path):
    """The instance's ranks step together, so one rank's odd steps (only
    ending cancellations, preempting, nothing at all) must still join every
    exchange: 8 streams dropped after 0..2 chunks and 4 long ones that
    outgrow a small KV pool (preemption), then both ranks still serve one
    rank's outputs and every request has ended."""
    sets = {"engine:kv_cache_blocks": "20", "engine:max_num_seqs": "4", "job:heartbeat_interval_s": "0.1"}
    with start_job(moe, tmp_path / "one", np=2, overrides=sets) as job:
        ref = answers(job, concurrent=False)
    with start_job(moe, tmp_path / "dp", np=3, overrides=dict(DP, **sets)) as job:
        model = requests.get(job.url + "/v1/models", timeout=10).json()["data"][0]["id"]

        statuses = [None] * 12

        def drop(i):  # the first eight go after 0..2 lines; the last four read to the end, growing past the pool
            body = {"model": model, "prompt": f"stream {i} " + "word " * (10 + 9 * (i % 8)),
                    "max_tokens": 48 if i < 8 else 200, "ignore_eos": True}
            statuses[i] = stream_and_drop(job, body, i % 3 if i < 8 else None, HANG_S)
        threads = [threading.Thread(target=drop, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(HANG_S)
        assert answers(job, concurrent=True) == ref
        m = wait_idle(job, HANG_S)  # every dropped request ends on its rank
        assert metric(m, "vllm:num_preemptions_total") >= 1  # the long streams outgrew the pools
        assert statuses == [200] * 12, statuses
        assert requests.get(job.url + "/health", timeout=10).json()["workers"] == 2
        assert metric(m, "vllm:num_preemptions_total") >= 1  # the long streams outgrew the pools
        assert statuses == [200] * 12, statuses
