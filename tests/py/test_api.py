"""The OpenAI-compatible front end as clients meet it: the `openai` package,
curl, `requests` and raw sockets against a real `rotor serve` job (one rank
with an in-process engine unless a test says otherwise).

Most tests share one job on a small generated model (fast); the SmolLM2
tests check real chat and greedy equality with `rotor generate`; a few tests
start their own job for limits (API key, body size, queue, timeouts), the
drain on SIGINT, and the HDF5 log.
"""
import json
import os
import socket
import subprocess
import threading
import time

import h5py
import pytest
import requests
from openai import OpenAI

import openai
from conftest import ROTOR, gen_model, run
from jobutil import assert_error, start_job

N_CTX = 256
HANG_S = 60  # only to keep a broken server from hanging the test run


@pytest.fixture(scope="module")
def tiny():
    return gen_model("fe-tiny", "--tokenizer", "bpe", "--n-vocab", "2000", "--n-ctx", str(N_CTX), "--seed", "3")


@pytest.fixture(scope="module")
def job(tiny, tmp_path_factory):
    with start_job(tiny, tmp_path_factory.mktemp("job")) as j:
        yield j


@pytest.fixture(scope="module")
def client(job):
    return OpenAI(base_url=job.url + "/v1", api_key="unused", max_retries=0, timeout=HANG_S)


MODEL = "fe-tiny"


def post(job, path, body, **kw):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(job.url + path, data=data, headers={"Content-Type": "application/json"},
                         timeout=HANG_S, **kw)


def sse(resp):
    """Parsed SSE events of a streaming response; '[DONE]' stays a string."""
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    events = []
    for line in resp.iter_lines():
        if not line:
            continue
        line = line.decode()
        assert line.startswith("data: "), line
        payload = line[len("data: "):]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def still_serves(job):
    r = post(job, "/v1/completions", {"model": MODEL, "prompt": "still there?", "max_tokens": 2})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] >= 1


def greedy_completion(job, prompt, n, **extra):
    r = post(job, "/v1/completions", {"model": MODEL, "prompt": prompt, "max_tokens": n, "temperature": 0,
                                      "ignore_eos": True, **extra})
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------- basics

def test_models_health_metrics(job):
    r = requests.get(job.url + "/v1/models", timeout=HANG_S)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    [m] = body["data"]
    assert m["id"] == MODEL and m["object"] == "model" and m["owned_by"] == "rotor"
    assert m["max_model_len"] == N_CTX and isinstance(m["created"], int)
    one = requests.get(job.url + "/v1/models/" + MODEL, timeout=HANG_S)
    assert one.status_code == 200 and one.json()["id"] == MODEL
    assert_error(requests.get(job.url + "/v1/models/nope", timeout=HANG_S), 404, code="model_not_found")

    h = requests.get(job.url + "/health", timeout=HANG_S)
    assert h.status_code == 200 and h.json()["status"] == "ok"

    m = requests.get(job.url + "/metrics", timeout=HANG_S)
    assert m.status_code == 200
    assert m.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "vllm:time_to_first_token_seconds" in m.text


def test_openai_models_list(client):
    assert [m.id for m in client.models.list()] == [MODEL]


def test_chat_non_streaming(client):
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello there"}],
                                       max_tokens=6, temperature=0)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == MODEL
    [c] = r.choices
    assert c.index == 0 and c.message.role == "assistant" and isinstance(c.message.content, str)
    assert c.finish_reason in ("stop", "length")
    u = r.usage
    assert u.prompt_tokens > 0 and 1 <= u.completion_tokens <= 6
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert u.prompt_tokens_details.cached_tokens >= 0


def test_chat_streaming_matches_non_streaming(client):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me a story"}]
    whole = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=10, temperature=0,
                                           extra_body={"ignore_eos": True})
    stream = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=10, temperature=0,
                                            extra_body={"ignore_eos": True}, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(ch.object == "chat.completion.chunk" and ch.id == chunks[0].id for ch in chunks)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 10 == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    assert text == whole.choices[0].message.content


def test_content_parts_and_developer_role(client):
    plain = client.chat.completions.create(
        model=MODEL, max_tokens=5, temperature=0,
        messages=[{"role": "system", "content": "a\nb"}, {"role": "user", "content": "hi"}])
    parts = client.chat.completions.create(
        model=MODEL, max_tokens=5, temperature=0,
        messages=[{"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                  {"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    assert parts.usage.prompt_tokens == plain.usage.prompt_tokens
    assert parts.choices[0].message.content == plain.choices[0].message.content


def test_completions_prompt_forms(tiny, client):
    text = client.completions.create(model=MODEL, prompt="hello world", max_tokens=5, temperature=0)
    assert text.object == "text_completion" and text.id.startswith("cmpl-")
    one = client.completions.create(model=MODEL, prompt=["hello world"], max_tokens=5, temperature=0)
    assert one.choices[0].text == text.choices[0].text
    # the same prompt as token ids (from rotor generate's prompt_ids)
    g = json.loads(run([ROTOR, "generate", "--model", tiny, "--prompt", "hello world", "-n", "1",
                        "--json"]).stdout)
    ids = client.completions.create(model=MODEL, prompt=g["prompt_ids"], max_tokens=5, temperature=0)
    assert ids.choices[0].text == text.choices[0].text
    assert ids.usage.prompt_tokens == len(g["prompt_ids"]) == text.usage.prompt_tokens


def test_completion_streaming(job):
    whole = greedy_completion(job, "once upon a time", 8)
    r = post(job, "/v1/completions", {"model": MODEL, "prompt": "once upon a time", "max_tokens": 8,
                                      "temperature": 0, "ignore_eos": True, "stream": True}, stream=True)
    ev = sse(r)
    assert ev[-1] == "[DONE]"
    chunks = ev[:-1]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["choices"][0]["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all("usage" not in c for c in chunks)  # no include_usage


def test_greedy_equals_generate(tiny, job):
    # the server computes with the engine's numerics (packed GEMM, engine attention)
    g = json.loads(run([ROTOR, "generate", "--model", tiny, "--prompt", "The meaning of life is",
                        "-n", "12", "--ignore-eos", "--json", "--numerics", "engine"]).stdout)
    r = greedy_completion(job, "The meaning of life is", 12)
    assert r["choices"][0]["text"] == g["text"]
    assert r["usage"]["completion_tokens"] == len(g["ids"]) == 12
    assert r["usage"]["prompt_tokens"] == len(g["prompt_ids"])


def test_seed_reproducible(client):
    def gen(seed):
        r = client.completions.create(model=MODEL, prompt="Random words:", max_tokens=16, temperature=1.0,
                                      seed=seed, extra_body={"ignore_eos": True})
        return r.choices[0].text
    a, b, c = gen(7), gen(7), gen(8)
    assert a == b
    assert a != c


def test_stop_strings(job):
    base = greedy_completion(job, "stop test", 16)["choices"][0]["text"]
    stop = base[6:9]
    want = base[:base.index(stop)]
    r = greedy_completion(job, "stop test", 16, stop=[stop, "never-appears-zz"])
    assert r["choices"][0]["text"] == want
    assert r["choices"][0]["finish_reason"] == "stop"
    assert r["usage"]["completion_tokens"] < 16
    s = post(job, "/v1/completions", {"model": MODEL, "prompt": "stop test", "max_tokens": 16, "temperature": 0,
                                      "ignore_eos": True, "stop": stop, "stream": True,
                                      "stream_options": {"include_usage": True}}, stream=True)
    ev = sse(s)
    chunks = [e for e in ev[:-1] if e["choices"]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == want
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert ev[-2]["usage"]["completion_tokens"] == r["usage"]["completion_tokens"]
    still_serves(job)


def test_stop_token_ids(tiny, job):
    g = json.loads(run([ROTOR, "generate", "--model", tiny, "--prompt", "stop ids", "-n", "12", "--ignore-eos",
                        "--json"]).stdout)
    ids = g["ids"]
    k = next(i for i in range(3, 12) if ids[i] not in ids[:i])
    before = greedy_completion(job, "stop ids", k)["choices"][0]["text"]
    r = greedy_completion(job, "stop ids", 12, stop_token_ids=[ids[k]])
    assert r["choices"][0]["finish_reason"] == "stop"
    assert r["usage"]["completion_tokens"] == k + 1  # the stop token counts, its text is not shown
    assert r["choices"][0]["text"] == before


def test_n_choices(client):
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "two please"}], n=2,
                                       max_tokens=7, temperature=1.0, seed=11, extra_body={"ignore_eos": True})
    assert [c.index for c in r.choices] == [0, 1]
    assert r.usage.completion_tokens == 14
    assert r.choices[0].message.content != r.choices[1].message.content
    s = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "two please"}], n=2,
                                       max_tokens=7, temperature=1.0, seed=11, extra_body={"ignore_eos": True},
                                       stream=True)
    texts = ["", ""]
    for ch in s:
        for c in ch.choices:
            texts[c.index] += c.delta.content or ""
    assert texts == [c.message.content for c in r.choices]


def test_default_max_tokens(job):
    r = post(job, "/v1/completions", {"model": MODEL, "prompt": "x", "ignore_eos": True})
    assert r.status_code == 200
    assert r.json()["usage"]["completion_tokens"] == 16  # sampling:max_tokens of the job's config
    # near the end of the context the default shrinks to what fits
    r = post(job, "/v1/completions", {"model": MODEL, "prompt": [5] * (N_CTX - 3), "ignore_eos": True})
    assert r.status_code == 200
    assert r.json()["usage"]["completion_tokens"] == 3


def test_cached_tokens(client):
    prompt = list(range(300, 400))  # 100 tokens: 6 full KV blocks of 16
    first = client.completions.create(model=MODEL, prompt=prompt, max_tokens=2, temperature=0)
    second = client.completions.create(model=MODEL, prompt=prompt, max_tokens=2, temperature=0)
    assert first.usage.prompt_tokens == second.usage.prompt_tokens == 100
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert 16 <= second.usage.prompt_tokens_details.cached_tokens < 100
    assert first.choices[0].text == second.choices[0].text


def test_chat_logprobs(client):
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "logprobs"}],
                                       max_tokens=5, temperature=0, logprobs=True, top_logprobs=3,
                                       extra_body={"ignore_eos": True})
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens == 5
    for e in content:
        assert e.logprob <= 0 and isinstance(e.token, str) and isinstance(e.bytes, list)
        assert len(e.top_logprobs) == 3
        lps = [t.logprob for t in e.top_logprobs]
        assert lps == sorted(lps, reverse=True)
        assert abs(e.logprob - lps[0]) < 1e-4  # greedy picks the most likely token
    plain = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "logprobs"}],
                                           max_tokens=5, temperature=0, logprobs=True)
    assert all(e.top_logprobs == [] for e in plain.choices[0].logprobs.content)
    none = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "logprobs"}],
                                          max_tokens=5, temperature=0)
    assert none.choices[0].logprobs is None


def test_chat_logprobs_streaming(job):
    r = post(job, "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "lp"}],
                                           "max_tokens": 6, "temperature": 0, "ignore_eos": True,
                                           "logprobs": True, "top_logprobs": 2, "stream": True}, stream=True)
    entries = []
    for e in sse(r)[:-1]:
        lp = e["choices"][0]["logprobs"]
        if lp:
            entries += lp["content"]
    assert len(entries) == 6
    assert all(len(e["top_logprobs"]) == 2 for e in entries)


def test_completion_logprobs(client):
    r = client.completions.create(model=MODEL, prompt="legacy", max_tokens=4, temperature=0, logprobs=2,
                                  extra_body={"ignore_eos": True})
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 4
    assert all(2 <= len(d) <= 3 for d in lp.top_logprobs)
    assert lp.text_offset == sorted(lp.text_offset)


# ---------------------------------------------------------------- errors

def test_malformed_json(job):
    for body in (b"{not json", b"", b"[1, 2]", b'{"model": "fe-tiny"} trailing', b'"just a string"'):
        err = assert_error(post(job, "/v1/chat/completions", body), 400)
        assert err["type"] == "invalid_request_error"
    still_serves(job)


@pytest.mark.parametrize("field,value,param", [
    ("temperature", "hot", "temperature"),
    ("temperature", 2.5, "temperature"),
    ("top_p", 0, "top_p"),
    ("max_tokens", 0, "max_tokens"),
    ("max_tokens", 1.5, "max_tokens"),
    ("n", 17, "n"),
    ("stream", "yes", "stream"),
    ("stop", 5, "stop"),
    ("stop", ["ok", 3], "stop"),
    ("seed", "abc", "seed"),
    ("presence_penalty", 3, "presence_penalty"),
    ("messages", "hello", "messages"),
    ("messages", [], "messages"),
    ("messages", [{"role": "robot", "content": "x"}], "messages[0].role"),
    ("messages", [{"role": "user", "content": 5}], "messages[0].content"),
    ("messages", [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
     "messages[0].content"),
    ("top_logprobs", 3, "top_logprobs"),           # without logprobs
    ("stream_options", {"include_usage": True}, "stream_options"),  # without stream
    ("tools", [{"type": "function"}], "tools"),
    ("tool_choice", "required", "tool_choice"),  # without tools
    ("model", 7, "model"),
])
def test_chat_bad_fields(job, field, value, param):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, field: value}
    assert_error(post(job, "/v1/chat/completions", body), 400, param=param)


@pytest.mark.parametrize("body,param", [
    ({"model": MODEL}, "prompt"),
    ({"model": MODEL, "prompt": []}, "prompt"),
    ({"model": MODEL, "prompt": ["a", "b"]}, "prompt"),
    ({"model": MODEL, "prompt": [1, -2]}, "prompt"),
    ({"model": MODEL, "prompt": [1, 999999]}, "prompt"),
    ({"model": MODEL, "prompt": "x", "logprobs": 6}, "logprobs"),
    ({"model": MODEL, "prompt": "x", "echo": 1}, "echo"),
    ({"prompt": "x"}, "model"),
])
def test_completion_bad_fields(job, body, param):
    assert_error(post(job, "/v1/completions", body), 400, param=param)


def test_unknown_model(client, job):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 404
    assert_error(post(job, "/v1/completions", {"model": "nope", "prompt": "x"}), 404, param="model",
                 code="model_not_found")


def test_empty_messages_with_openai(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[])


def test_context_length(job):
    err = assert_error(post(job, "/v1/completions", {"model": MODEL, "prompt": [7] * N_CTX}), 400,
                       code="context_length_exceeded")
    assert f"maximum context length is {N_CTX} tokens" in err["message"]
    err = assert_error(post(job, "/v1/completions", {"model": MODEL, "prompt": [7] * 10, "max_tokens": N_CTX}),
                       400, code="context_length_exceeded")
    assert f"{10 + N_CTX} tokens (10 in the prompt, {N_CTX} in the completion)" in err["message"]
    long_chat = {"model": MODEL, "messages": [{"role": "user", "content": "word " * 2000}]}
    assert_error(post(job, "/v1/chat/completions", long_chat), 400, param="messages",
                 code="context_length_exceeded")
    still_serves(job)


def test_routes_and_methods(job):
    assert_error(requests.get(job.url + "/v1/nothing", timeout=HANG_S), 404)
    assert_error(post(job, "/v1/embeddings", {"model": MODEL, "input": "x"}), 404)
    r = requests.get(job.url + "/v1/chat/completions", timeout=HANG_S)
    assert_error(r, 405)
    assert r.headers["Allow"] == "POST"
    assert_error(requests.delete(job.url + "/health", timeout=HANG_S), 405)
    still_serves(job)


def test_huge_body(job):
    # default server:max_body_bytes is 1 MiB: a 1.5 MiB body gets an OpenAI 413
    body = json.dumps({"model": MODEL, "prompt": "a" * (3 << 19)})
    assert_error(post(job, "/v1/completions", body), 413, code="request_too_large")
    # far beyond it, evhttp refuses before reading the body (still a 413);
    # curl sends "Expect: 100-continue" and so never sends the body
    big = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", job.url + "/v1/completions",
                          "-H", "Content-Type: application/json", "-H", "Expect: 100-continue",
                          "--data-binary", "@-"], input=b"x" * (8 << 20), capture_output=True, timeout=HANG_S)
    assert big.stdout == b"413"
    still_serves(job)


def test_curl(job):
    out = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", job.url + "/v1/chat/completions",
                          "-H", "Content-Type: application/json",
                          "-d", json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                                            "max_tokens": 3})],
                         capture_output=True, text=True, timeout=HANG_S)
    body, code = out.stdout.rsplit("\n", 1)
    assert code == "200"
    assert json.loads(body)["choices"][0]["message"]["role"] == "assistant"
    out = subprocess.run(["curl", "-sS", "-N", job.url + "/v1/completions", "-H", "Content-Type: application/json",
                          "-d", json.dumps({"model": MODEL, "prompt": "hi", "max_tokens": 3, "stream": True})],
                         capture_output=True, text=True, timeout=HANG_S)
    lines = [ln for ln in out.stdout.split("\n") if ln]
    assert lines[-1] == "data: [DONE]"
    assert all(ln.startswith("data: {") for ln in lines[:-1]) and len(lines) >= 2
    bad = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", job.url + "/v1/completions",
                          "-d", "{oops"], capture_output=True, text=True, timeout=HANG_S)
    assert bad.stdout == "400"


def test_bad_requests_do_not_disturb_a_stream(job):
    """A stream runs while malformed requests come and go on other sockets."""
    r = post(job, "/v1/completions", {"model": MODEL, "prompt": "steady", "max_tokens": 40, "temperature": 0,
                                      "ignore_eos": True, "stream": True}, stream=True)
    bad = [b"{", b'{"model": 1}', json.dumps({"model": MODEL, "prompt": [-1]}).encode()]
    for b in bad * 3:
        assert post(job, "/v1/completions", b).status_code == 400
    ev = sse(r)
    assert ev[-1] == "[DONE]"
    text = "".join(e["choices"][0]["text"] for e in ev[:-1])
    assert text == greedy_completion(job, "steady", 40)["choices"][0]["text"]


def test_concurrent_streams(job):
    """More streams than the engine takes at once (4 x max_num_seqs = 64):
    the rest wait in the front end's backlog, and all complete."""
    n = 100
    results = [None] * n

    def one(i):
        r = post(job, "/v1/chat/completions",
                 {"model": MODEL, "messages": [{"role": "user", "content": f"client {i}"}], "max_tokens": 8,
                  "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}, stream=True)
        ev = sse(r)
        results[i] = (ev[-1], ev[-2]["usage"]["completion_tokens"])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_S)
    assert results == [("[DONE]", 8)] * n


def raw_http(job, body, path="/v1/chat/completions"):
    """A raw socket that sent one POST; returns the socket."""
    s = socket.create_connection((job.host, job.port), timeout=HANG_S)
    data = json.dumps(body).encode()
    s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
              % (path.encode(), len(data)) + data)
    return s


def active_requests(job):
    for line in requests.get(job.url + "/metrics", timeout=HANG_S).text.splitlines():
        if line.startswith("rotor_http_active_requests"):
            return float(line.split()[-1])
    raise AssertionError("rotor_http_active_requests is missing from /metrics")


def wait_idle(job):
    deadline = time.monotonic() + HANG_S
    while active_requests(job) != 0:
        assert time.monotonic() < deadline, "requests stayed active"
        time.sleep(0.02)


# ------------------------------------------------- jobs of their own

@pytest.fixture(scope="module")
def smollm2_job(smollm2, tmp_path_factory):
    with start_job(smollm2, tmp_path_factory.mktemp("smol"),
                   overrides={"server:model_name": "smollm2", "model:ctx_size": "2048"}) as j:
        yield j


def test_smollm2_chat_equals_generate(smollm2, smollm2_job):
    question = "What is the capital of France?"
    g = json.loads(run([ROTOR, "generate", "--model", smollm2, "--chat", "--prompt", question, "-n", "24",
                        "--json", "--numerics", "engine"]).stdout)
    c = OpenAI(base_url=smollm2_job.url + "/v1", api_key="x", max_retries=0, timeout=HANG_S)
    r = c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": question}],
                                  max_tokens=24, temperature=0)
    assert r.usage.prompt_tokens == len(g["prompt_ids"])
    assert r.choices[0].message.content == g["text"]
    assert r.choices[0].finish_reason == g["finish_reason"]
    assert "Paris" in r.choices[0].message.content


def aborted(job):
    """vllm:request_success_total{finished_reason="abort"}."""
    for line in requests.get(job.url + "/metrics", timeout=HANG_S).text.splitlines():
        if line.startswith("vllm:request_success_total{") and 'finished_reason="abort"' in line:
            return float(line.split()[-1])
    return 0.0


def wait_active(job, n):
    deadline = time.monotonic() + HANG_S
    while active_requests(job) != n:
        assert time.monotonic() < deadline, f"never {n} requests active"
        time.sleep(0.005)


def test_limits_queue_disconnect_and_log(smollm2, tmp_path):
    """max_queued_requests=1: a second request while one runs gets 429 with
    Retry-After; a client that disconnects (before its reply, or mid-stream)
    has its request cancelled; the job serves on, and the HDF5 log holds
    every request with its outcome."""
    with start_job(smollm2, tmp_path, overrides={"server:max_queued_requests": "1",
                                                 "server:model_name": "smollm2"}) as j:
        body = {"model": "smollm2", "messages": [{"role": "user", "content": "Count to a thousand."}],
                "max_tokens": 1500, "ignore_eos": True}
        # a non-streaming request, left before its answer
        s = raw_http(j, body)
        wait_active(j, 1)
        busy = requests.post(j.url + "/v1/chat/completions", json={**body, "max_tokens": 2}, timeout=HANG_S)
        assert_error(busy, 429, code="rate_limit_exceeded")
        assert busy.headers["Retry-After"] == "1"
        s.close()
        wait_idle(j)
        assert aborted(j) == 1
        # a stream, left after a few chunks
        s = raw_http(j, {**body, "stream": True})
        got = b""
        while got.count(b"data: ") < 3:  # the role chunk and tokens arrived
            chunk = s.recv(4096)
            assert chunk, "the stream ended early"
            got += chunk
        assert got.startswith(b"HTTP/1.1 200")
        s.close()
        wait_idle(j)
        assert aborted(j) == 2
        ok = requests.post(j.url + "/v1/chat/completions", json={**body, "max_tokens": 3}, timeout=HANG_S)
        assert ok.status_code == 200
        done = ok.json()
        [h5] = j.h5_logs()
    with h5py.File(h5, "r") as f:
        rq = f["requests"][:]
        toks = f["tokens"][:]
    assert len(rq) == 4
    [rejected] = [r for r in rq if r["http_status"] == 429]
    assert rejected["worker"] == -1 and rejected["error"].startswith(b"Too many requests")
    gone = [r for r in rq if r["finish_reason"] == b"abort"]
    assert sorted(int(r["http_status"]) for r in gone) == [200, 499]  # streamed / nothing sent yet
    assert all(r["tokens_out"] < 1500 for r in gone)
    [fine] = [r for r in rq if r["http_status"] == 200 and r["finish_reason"] != b"abort"]
    assert fine["finish_reason"] == b"length"
    assert fine["tokens_out"] == done["usage"]["completion_tokens"] == 3
    assert fine["tokens_in"] == done["usage"]["prompt_tokens"]
    assert fine["t_arrival"] <= fine["t_routed"] <= fine["t_scheduled"] <= fine["t_prefill_done"] \
        <= fine["t_first_token"] <= fine["t_finish"]
    assert (toks["request_id"] == fine["id"]).sum() == 3


def test_api_key_body_limit_and_slow_client(tiny, tmp_path):
    with start_job(tiny, tmp_path, overrides={"server:api_key": "sekrit", "server:max_body_bytes": "4096",
                                              "server:timeout_s": "1"}) as j:
        body = {"model": MODEL, "prompt": "key", "max_tokens": 2}
        assert_error(requests.post(j.url + "/v1/completions", json=body, timeout=HANG_S), 401,
                     code="invalid_api_key")
        assert_error(requests.post(j.url + "/v1/completions", json=body, timeout=HANG_S,
                                   headers={"Authorization": "Bearer wrong"}), 401)
        assert requests.get(j.url + "/health", timeout=HANG_S).status_code == 200  # no key needed
        assert requests.get(j.url + "/v1/models", timeout=HANG_S).status_code == 401
        good = OpenAI(base_url=j.url + "/v1", api_key="sekrit", max_retries=0, timeout=HANG_S)
        assert good.completions.create(model=MODEL, prompt="key", max_tokens=2).usage.completion_tokens >= 1
        with pytest.raises(openai.AuthenticationError):
            OpenAI(base_url=j.url + "/v1", api_key="nope", max_retries=0).models.list()

        big = {"model": MODEL, "prompt": "a" * 5000}
        assert_error(requests.post(j.url + "/v1/completions", json=big, timeout=HANG_S,
                                   headers={"Authorization": "Bearer sekrit"}), 413)

        # slow loris: half a request line, then nothing; the server drops it
        # (server:timeout_s) while it keeps answering others
        slow = socket.create_connection((j.host, j.port), timeout=HANG_S)
        slow.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
        assert good.completions.create(model=MODEL, prompt="k", max_tokens=1).usage.completion_tokens == 1
        rest = slow.recv(4096)  # b"" once the server closes (or a 4xx page)
        assert rest == b"" or rest.startswith(b"HTTP/1.1 4")
        slow.close()
        # a body that never completes is dropped the same way
        slow = socket.create_connection((j.host, j.port), timeout=HANG_S)
        slow.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"mo")
        rest = slow.recv(4096)
        assert rest == b"" or rest.startswith(b"HTTP/1.1 4")
        slow.close()
        assert good.completions.create(model=MODEL, prompt="k", max_tokens=1).usage.completion_tokens == 1


def test_drain_on_sigint(smollm2, tmp_path):
    """SIGINT: new requests get 503, a running stream may run for the grace
    period and is then cancelled (an error event, then [DONE]); exit 0."""
    with start_job(smollm2, tmp_path, overrides={"job:shutdown_grace_s": "1", "server:model_name": "smollm2"}) as j:
        # 2500 tokens take far longer than the grace period on a CPU
        r = requests.post(j.url + "/v1/completions", stream=True, timeout=HANG_S,
                          json={"model": "smollm2", "prompt": "Once upon a time", "max_tokens": 2500,
                                "ignore_eos": True, "stream": True})
        lines = r.iter_lines()
        first = next(ln for ln in lines if ln)
        assert first.startswith(b"data: {")
        os.kill(j.proc.pid, 2)
        deadline = time.monotonic() + HANG_S
        while True:  # the health check turns 503 once the drain began
            h = requests.get(j.url + "/health", timeout=HANG_S)
            if h.status_code == 503:
                break
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert_error(requests.post(j.url + "/v1/completions", json={"model": "smollm2", "prompt": "x"},
                                   timeout=HANG_S), 503)
        rest = [ln.decode() for ln in lines if ln]
        assert rest[-1] == "data: [DONE]"
        err = json.loads(rest[-2][len("data: "):])["error"]
        assert err["code"] == "service_unavailable" and "shutting down" in err["message"]
        assert j.proc.wait(timeout=HANG_S) == 0


@pytest.mark.slow
def test_mpi_job_three_ranks(tiny, tmp_path):
    """The same API through the MPI job: rank 0 front end, two worker ranks."""
    with start_job(tiny, tmp_path, np=3) as j:
        c = OpenAI(base_url=j.url + "/v1", api_key="x", max_retries=0, timeout=HANG_S)
        outs = [c.completions.create(model=MODEL, prompt="mpi", max_tokens=6, temperature=0,
                                     extra_body={"ignore_eos": True}) for _ in range(4)]
        assert len({o.choices[0].text for o in outs}) == 1
        assert all(o.usage.completion_tokens == 6 for o in outs)
        s = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4,
                                      stream=True, stream_options={"include_usage": True})
        chunks = list(s)
        assert chunks[-1].usage.completion_tokens <= 4
