"""The sim backend in the real MPI job: eight simulated H100s timing Llama-3-8B
(engine:backend = sim, sim:shape = llama3-8b) behind the KV-aware router on
this small machine. Requests are answered with the sim's tokens; what the
job logs (HDF5, h5py) follows the time model: a cold 1,024-token prefill of
an 8B model is compute-bound (~40 ms at half an H100's peak), a decode step
memory-bound (~6 ms); a repeat of a prompt is routed to its worker and
prefills only what the cache lacks."""
import h5py
from openai import OpenAI

from conftest import gen_model
from jobutil import start_job

MODEL = "sim-tiny"
HANG_S = 120


def test_eight_simulated_gpus(tmp_path):
    model = gen_model(MODEL, "--tokenizer", "bpe", "--n-vocab", "2000", "--n-ctx", "4096", "--seed", "3")
    prompts = [[(31 * k + 7 * i) % 1900 + 50 for i in range(1024)] for k in range(4)]
    with start_job(model, tmp_path, np=9, overrides={
            "engine:backend": "sim", "sim:gpu": "h100", "sim:shape": "llama3-8b", "router:policy": "kv_aware",
            "engine:max_num_batched_tokens": "2048", "job:heartbeat_interval_s": "0.2"}) as job:
        c = OpenAI(base_url=job.url + "/v1", api_key="x", max_retries=0, timeout=HANG_S)
        out = []
        for p in prompts + [prompts[2] + [5, 6, 7]]:
            r = c.completions.create(model=MODEL, prompt=p, max_tokens=8, temperature=0.7, seed=1,
                                     extra_body={"ignore_eos": True})
            out.append(r)
        logs = job.h5_logs()
    assert all(r.usage.completion_tokens == 8 for r in out)
    assert [r.usage.prompt_tokens_details.cached_tokens for r in out] == [0, 0, 0, 0, 1024]
    with h5py.File(logs[0], "r") as f:
        req = f["requests"][:]
        steps = f["steps"][:]
    req = req[req["t_arrival"].argsort()]
    assert len(set(req["worker"][:4].tolist())) == 4  # four cold prompts, four idle GPUs
    assert req["worker"][4] == req["worker"][2]  # the repeat goes where its prefix is
    assert len(set(steps["worker"].tolist())) == 4
    # what the steps took is the time model's (lower bounds: the sim sleeps at least that long)
    prefill = steps[steps["n_prefill_tokens"] == 1024]
    decode = steps[(steps["n_decode_tokens"] == 1) & (steps["n_prefill_tokens"] == 0)]
    assert len(prefill) == 4 and len(decode) >= 4 * 7
    assert (prefill["step_s"] >= 0.0295).all()  # 2 x 6.98G x 1024 + attention at 495 TFLOP/s, + 0.15 ms
    assert (decode["step_s"] >= 0.0055).all()  # 15 GB of weights at 2.68 TB/s
    # the repeat prefilled only its 3 new tokens
    assert (steps["n_prefill_tokens"] == 3).sum() == 1


def test_disaggregated_simulated_gpus(tmp_path):
    """Two simulated prefill GPUs and two decode GPUs: a long prompt is computed
    on a prefill GPU and handed to a decode GPU as blocks without bytes (the
    sim's KV is bookkeeping), which admits it once the modelled transfer
    (sim:link_gbps) is over and then prefills only the last block; a short
    prompt prefills where it decodes."""
    model = gen_model(MODEL, "--tokenizer", "bpe", "--n-vocab", "2000", "--n-ctx", "4096", "--seed", "3")
    long_prompt = [(13 * i) % 1900 + 50 for i in range(1000)]
    with start_job(model, tmp_path, np=5, overrides={
            "engine:backend": "sim", "sim:gpu": "h100", "sim:shape": "llama3-8b", "router:policy": "kv_aware",
            "roles:worker": "", "roles:prefill": "1-2", "roles:decode": "3-4",
            "disagg:max_local_prefill_tokens": "256", "engine:max_num_batched_tokens": "2048",
            "sim:link_gbps": "1", "job:heartbeat_interval_s": "0.2"}) as job:
        c = OpenAI(base_url=job.url + "/v1", api_key="x", max_retries=0, timeout=HANG_S)
        rl = c.completions.create(model=MODEL, prompt=long_prompt, max_tokens=4, extra_body={"ignore_eos": True})
        rs = c.completions.create(model=MODEL, prompt=long_prompt[:100], max_tokens=4,
                                  extra_body={"ignore_eos": True})
        logs = job.h5_logs()
    assert rl.usage.prompt_tokens_details.cached_tokens == 999 // 16 * 16  # handed off: all but the last block
    assert rl.usage.completion_tokens == 4 and rs.usage.completion_tokens == 4
    with h5py.File(logs[0], "r") as f:
        xf = f["transfers"][:]
        req = f["requests"][:]
        steps = f["steps"][:]
    assert len(xf) == 1
    x = xf[0]
    assert x["n_blocks"] == 999 // 16 and x["n_imported"] == 999 // 16 and x["bytes"] == 0
    assert x["prefill_worker"] in (1, 2) and x["decode_worker"] in (3, 4)
    assert set(req["worker"].tolist()) <= {3, 4}
    # the prefill GPU computed the 992 tokens of full blocks, the decode GPU the last 8
    assert ((steps["worker"] == x["prefill_worker"]) & (steps["n_prefill_tokens"] == 992)).sum() == 1
    last = steps[(steps["worker"] == x["decode_worker"]) & (steps["n_prefill_tokens"] == 8)]
    assert len(last) == 1
    # ... once the modelled hand-off was over: 62 blocks of 16 tokens x 128 KiB (Llama-3-8B, BF16) at 1 GB/s
    assert last[0]["t"] - last[0]["step_s"] >= x["t_sent"] + 62 * 16 * 131072 / 1e9


def test_prefill_queue_limit(tmp_path):
    """disagg:max_prefill_queue = 1: long prompts arriving together go to the
    prefill GPU while it has none in flight, and prefill where they decode
    otherwise (Dynamo's max prefill queue size); all are answered."""
    import threading

    import requests

    from jobutil import metric
    model = gen_model(MODEL, "--tokenizer", "bpe", "--n-vocab", "2000", "--n-ctx", "4096", "--seed", "3")
    with start_job(model, tmp_path, np=3, overrides={
            "engine:backend": "sim", "sim:gpu": "h100", "sim:shape": "llama3-8b",
            "roles:worker": "", "roles:prefill": "1", "roles:decode": "2",
            "disagg:max_local_prefill_tokens": "256", "disagg:max_prefill_queue": "1",
            "engine:max_num_batched_tokens": "2048", "job:heartbeat_interval_s": "0.2"}) as job:
        c = OpenAI(base_url=job.url + "/v1", api_key="x", max_retries=0, timeout=HANG_S)
        out = []

        def one(k):
            p = [(17 * i + k) % 1900 + 50 for i in range(3000)]
            out.append(c.completions.create(model=MODEL, prompt=p, max_tokens=4, extra_body={"ignore_eos": True}))
        ts = [threading.Thread(target=one, args=(k,)) for k in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(HANG_S)
        m = requests.get(job.url + "/metrics", timeout=10).text
    assert len(out) == 6 and all(r.usage.completion_tokens == 4 for r in out)
    remote = metric(m, "rotor_disagg_remote_prefills_total")
    assert 1 <= remote < 6, remote
