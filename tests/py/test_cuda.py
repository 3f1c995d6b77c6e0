"""The cuda engine backend (engine:backend = cuda) on whatever machine runs
the tests. Here (CI: nvcc, no GPU) the CUDA code is built into
librotor_cuda.so, which rotor-cuda-check loads, and a job asked for the cuda
backend refuses to start with a clear error instead of crashing. The
backend's own logic runs everywhere: librotor_cuda_host.so implements the
same interface on the host (tests/cuda_host), and the job served through it
gives the cpu backend's greedy outputs, with prefix-cache hits, batches of
mixed lengths, several blocks per sequence and KV blocks moved to the host
tier and back. On a machine with a GPU the real library serves and is
compared with the cpu backend too (bench/gpu/check.sh runs the kernel and
engine checks there)."""
import os
import shutil
import subprocess

import pytest
import requests

import jobutil
from conftest import BUILD, gen_model
from jobutil import greedy_completions, metric, start_job

CHECK = os.path.join(BUILD, "bin", "rotor-cuda-check")
LIB = os.path.join(BUILD, "lib", "librotor_cuda.so")
HOST_LIB = os.path.join(BUILD, "lib", "librotor_cuda_host.so")
built = pytest.mark.skipif(not os.path.exists(CHECK), reason="built without nvcc: no CUDA code")


def has_gpu():
    if not shutil.which("nvidia-smi"):
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def dense():
    return gen_model("cuda-dense", "--type", "f16", "--tokenizer", "bpe", "--n-vocab", "2000", "--n-ctx", "512",
                     "--seed", "41")


def answers(job, prompts, concurrent=False):
    return greedy_completions(job, prompts, concurrent=concurrent)


# several 16-token blocks each; the third (~140 tokens) needs most of a 12-block
# pool, pushing the first one's blocks into the host tier; the last repeats the
# first's prefix, and so onboards them
PROMPTS = ["The quick brown fox jumps over the lazy dog " * 6, "one two three", "Hello, world! " * 20, "x",
           "The quick brown fox jumps over the lazy dog " * 6 + "and then"]


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_cuda_backend_logic_on_the_host(arch, tmp_path, monkeypatch):
    """The cuda backend through librotor_cuda_host.so: the cpu backend's greedy
    tokens, one request at a time and all at once, with a prefix-cache hit and
    (a KV pool of 12 blocks, a host tier) blocks offloaded and onboarded
    through the backend's block copies."""
    model = gen_model(f"cuda-host-{arch}", "--type", "f16", "--arch", arch, "--tokenizer", "bpe", "--n-vocab",
                      "2000", "--n-ctx", "512", "--seed", "45")
    sets = {"engine:kv_cache_blocks": "12", "kvbm:host_bytes": str(16 << 20), "engine:max_num_seqs": "4",
            "job:heartbeat_interval_s": "0.1"}
    with start_job(model, tmp_path / "cpu", np=2, overrides=sets) as job:
        ref = answers(job, PROMPTS)
        ref_batched = answers(job, PROMPTS, concurrent=True)
    monkeypatch.setitem(jobutil.JOB_ENV, "ROTOR_CUDA_LIB", HOST_LIB)
    with start_job(model, tmp_path / "cuda", np=2, overrides=dict(sets, **{"engine:backend": "cuda"})) as job:
        got = answers(job, PROMPTS)
        got_batched = answers(job, PROMPTS, concurrent=True)
        import time
        time.sleep(0.3)
        m = requests.get(job.url + "/metrics", timeout=10).text
        out = job.output()
    assert "cuda: host (librotor_cuda_host.so, no GPU)" in out
    assert all(ref)
    # f16 activations into the matmuls (the cpu backend keeps f32): a greedy
    # path may part where two logits nearly tie, so compare the first tokens
    same = sum(a[:10] == b[:10] for a, b in zip(ref + ref_batched, got + got_batched))
    assert same >= 8, (ref, got)
    assert got_batched == got  # batching does not change the cuda backend's tokens
    assert metric(m, "vllm:prefix_cache_hits_total") > 0
    assert metric(m, "rotor_kvbm_onboarded_blocks_total") > 0


@built
def test_cuda_backend_with_drafts_and_prompt_logprobs_on_the_host(tmp_path, monkeypatch):
    """The cuda backend through the host table with several logits rows per
    sequence: n-gram drafts (the same tokens as without them) and a prompt
    scored with echo (its rows are the generated tokens' own logprobs)."""
    model = gen_model("cuda-host-llama", "--type", "f16", "--arch", "llama", "--tokenizer", "bpe", "--n-vocab",
                      "2000", "--n-ctx", "512", "--seed", "45")
    prompts = ["one two three four one two three four one two", "The quick brown fox " * 4]
    monkeypatch.setitem(jobutil.JOB_ENV, "ROTOR_CUDA_LIB", HOST_LIB)
    outs = {}
    for spec in ("none", "ngram"):
        with start_job(model, tmp_path / spec, np=2, overrides={"engine:backend": "cuda", "engine:spec_method": spec,
                                                                "engine:spec_ngram_min": "1"}) as job:
            outs[spec] = greedy_completions(job, prompts, max_tokens=24)
            m = requests.get(job.url + "/metrics", timeout=10).text
            if spec == "ngram":
                assert metric(m, "vllm:spec_decode_num_draft_tokens_total") > 0
                name = requests.get(job.url + "/v1/models", timeout=10).json()["data"][0]["id"]
                gen = requests.post(job.url + "/v1/completions", json={
                    "model": name, "prompt": prompts[1], "max_tokens": 6, "temperature": 0, "logprobs": 0},
                    timeout=60).json()["choices"][0]
                ids = requests.post(job.url + "/tokenize", json={"prompt": prompts[1]}, timeout=10).json()["tokens"]
                echo = requests.post(job.url + "/v1/completions", json={
                    "model": name, "prompt": ids, "max_tokens": 1, "temperature": 0, "logprobs": 0, "echo": True},
                    timeout=60).json()["choices"][0]["logprobs"]
                assert echo["token_logprobs"][0] is None and len(echo["token_logprobs"]) == len(ids) + 1
                assert echo["token_logprobs"][-1] == gen["logprobs"]["token_logprobs"][0]
    assert outs["ngram"] == outs["none"] and all(outs["none"])


@built
def test_cuda_graphs_give_the_eager_tokens_on_the_host(tmp_path, monkeypatch):
    """Steps run as CUDA graphs (engine:cuda_graph_max_tokens) give exactly
    the tokens of eager steps. The host table records a graph's calls with
    their arguments and replays them reading the buffers as they are at
    launch, as CUDA does, so a step input that the graph would not see (a
    pointer that moves, a value passed by value) changes the tokens here.
    Decodes of 1-4 sequences, mixed prefill and decode steps, and a prompt
    scored with echo (many logits rows) reuse shapes, so graphs replay."""
    model = gen_model("cuda-host-llama", "--type", "f16", "--arch", "llama", "--tokenizer", "bpe", "--n-vocab",
                      "2000", "--n-ctx", "512", "--seed", "45")
    monkeypatch.setitem(jobutil.JOB_ENV, "ROTOR_CUDA_LIB", HOST_LIB)
    outs, logs = {}, {}
    for graphs in ("0", "512"):
        with start_job(model, tmp_path / graphs, np=2, overrides={
                "engine:backend": "cuda", "engine:cuda_graph_max_tokens": graphs, "engine:max_num_seqs": "4",
                "engine:max_num_batched_tokens": "64"}) as job:
            one = greedy_completions(job, PROMPTS, max_tokens=20)
            many = greedy_completions(job, PROMPTS, max_tokens=20, concurrent=True)
            name = requests.get(job.url + "/v1/models", timeout=10).json()["data"][0]["id"]
            echo = requests.post(job.url + "/v1/completions", json={
                "model": name, "prompt": PROMPTS[0], "max_tokens": 1, "temperature": 0, "logprobs": 0,
                "echo": True}, timeout=60).json()["choices"][0]["logprobs"]["token_logprobs"]
            outs[graphs] = (one, many, echo)
            logs[graphs] = job.output()
    assert all(outs["0"][0]) and len(outs["0"][2]) > 20
    assert outs["512"] == outs["0"]
    assert "run as CUDA graphs" in logs["512"] and "run as CUDA graphs" not in logs["0"]
    assert "no graph for steps" not in logs["512"]


@built
def test_check_tool_through_the_host_table(dense):
    """rotor-cuda-check's kernel checks and engine comparison, run through the
    host table: its C references agree with the host implementation of every
    op (so a FAIL on a GPU is the kernel's), and the cuda backend's engine
    (graphs, gemv and all) matches the cpu engine's tokens."""
    env = dict(os.environ, ROTOR_CUDA_LIB=HOST_LIB)
    r = subprocess.run([CHECK, "--model", dense], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "host (librotor_cuda_host.so, no GPU)" in r.stdout and "all OK" in r.stdout
    for what in ("rmsnorm_f16 3x70", "gemv_f16 (3 x 64) x (8200 x 64)^T", "qkv_rope_store (NeoX) + head norms",
                 "paged attention (GQA 8/2, head 36)"):
        assert what in r.stdout
    assert "FAIL" not in r.stdout
    assert "16 greedy tokens identical for 6/6 requests" in r.stdout


def test_check_tool_loads_the_library():
    r = subprocess.run([CHECK], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    if not has_gpu():
        assert "librotor_cuda.so loaded (interface 3); no CUDA device" in r.stdout
    else:
        assert "all OK" in r.stdout


@built
def test_the_library_exports_one_symbol():
    nm = shutil.which("nm")
    if not nm:
        pytest.skip("no nm")
    out = subprocess.run([nm, "-D", "--defined-only", LIB], capture_output=True, text=True, check=True).stdout
    assert [line.split()[-1] for line in out.splitlines()] == ["rt_cuda_api"]


def test_cuda_backend_without_a_gpu_is_refused(dense, tmp_path):
    if has_gpu():
        pytest.skip("this machine has a GPU: test_cuda_backend_serves runs instead")
    why = "no CUDA device" if os.path.exists(LIB) else "librotor_cuda.so could not be loaded"
    with pytest.raises(AssertionError, match=why):
        with start_job(dense, tmp_path, np=2, overrides={"engine:backend": "cuda"}, ready_timeout=60):
            pass


def test_cuda_backend_serves(dense, tmp_path):
    if not has_gpu() or not os.path.exists(LIB):
        pytest.skip("no GPU here")
    prompts = ["The quick brown fox", "one two three four five six seven", "Hello, world! " * 20]

    def run(backend, where):
        with start_job(dense, tmp_path / where, np=2, overrides={"engine:backend": backend}) as job:
            return greedy_completions(job, prompts, max_tokens=16)
    ref, got = run("cpu", "cpu"), run("cuda", "cuda")
    # f16 weights and activations on the GPU, int8 activations on the CPU:
    # greedy paths may part late; the first tokens agree
    assert sum(a[:8] == b[:8] for a, b in zip(ref, got)) >= 2, (ref, got)


def test_kv_pool_from_gpu_memory_utilization(dense, tmp_path, monkeypatch):
    """Without engine:kv_cache_blocks the cuda backend gives the KV pool what
    is left of engine:gpu_memory_utilization x the GPU's memory (the host
    table's "GPU" has 4 GiB) once weights and scratch are in, as vLLM does:
    each further quarter of the memory adds the same number of blocks."""
    import re
    monkeypatch.setitem(jobutil.JOB_ENV, "ROTOR_CUDA_LIB", HOST_LIB)
    blocks = []
    for util in ("0.25", "0.5", "0.75"):
        with start_job(dense, tmp_path / util, np=2, overrides={"engine:backend": "cuda",
                                                                "engine:gpu_memory_utilization": util}) as job:
            assert greedy_completions(job, ["hi"], max_tokens=4)[0]
            out = job.output()
        blocks.append(int(re.search(r"weights f16, (\d+) KV blocks", out).group(1)))
    assert blocks[0] > 0
    assert abs((blocks[2] - blocks[1]) - (blocks[1] - blocks[0])) <= 1, blocks


@pytest.mark.parametrize("sets,why", [
    ({"engine:kv_type": "f32"}, "the KV cache is f16"),
    # a 16 MiB "GPU": weights and scratch fit, 5% of it leaves no room for KV
    ({"engine:gpu_memory_utilization": "0.05"}, "no room for a KV pool"),
    # ... and more scratch than it has
    ({"engine:max_num_batched_tokens": "65536"}, "out of memory"),
])
def test_cuda_backend_refuses_what_it_cannot_do(dense, tmp_path, monkeypatch, sets, why):
    monkeypatch.setitem(jobutil.JOB_ENV, "ROTOR_CUDA_LIB", HOST_LIB)
    monkeypatch.setitem(jobutil.JOB_ENV, "ROTOR_CUDA_HOST_MEMORY", str(16 << 20))
    with pytest.raises(AssertionError, match=why):
        with start_job(dense, tmp_path, np=2, overrides=dict(sets, **{"engine:backend": "cuda"}), ready_timeout=60):
            pass


def test_cuda_backend_refuses_moe(tmp_path, monkeypatch):
    moe = gen_model("cuda-moe", "--type", "q8_0", "--tokenizer", "bpe", "--n-vocab", "2000", "--n-expert", "4",
                    "--n-expert-used", "2", "--seed", "46")
    monkeypatch.setitem(jobutil.JOB_ENV, "ROTOR_CUDA_LIB", HOST_LIB)
    with pytest.raises(AssertionError, match="mixture-of-experts models are not supported yet"):
        with start_job(moe, tmp_path, np=2, overrides={"engine:backend": "cuda"}, ready_timeout=60):
            pass


def test_bench_engine_on_the_cuda_backend(dense, monkeypatch):
    """rotor bench-engine --backend cuda (what bench/gpu/check.sh times on a
    GPU) runs through the host table: a JSON answer with every batch size."""
    import json
    env = dict(os.environ, ROTOR_CUDA_LIB=HOST_LIB)
    r = subprocess.run([os.path.join(BUILD, "bin", "rotor"), "bench-engine", "--backend", "cuda", "--model", dense,
                        "--seqs", "1,3", "--gen", "4", "--prefix-tokens", "48"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert [d["seqs"] for d in j["decode"]] == [1, 3] and all(d["decode_tok_s"] > 0 for d in j["decode"])
    assert all(0 < d["forward_share"] <= 1 for d in j["decode"])
    assert j["ttft_cold_s"] > 0 and j["ttft_cached_s"] > 0
    bad = subprocess.run([os.path.join(BUILD, "bin", "rotor"), "bench-engine", "--backend", "tpu", "--model", dense],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "unknown backend 'tpu'" in bad.stderr
