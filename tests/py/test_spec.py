"""Speculative decoding by n-gram lookup (engine:spec_method = ngram) in the
real job, on SmolLM2-135M-Instruct: the same texts as plain decoding (greedy
and seeded sampling, one at a time and concurrent, streamed and not), with
drafts accepted per /metrics; the in-process engine (one rank) too; a bad
setting refused at start."""
from concurrent.futures import ThreadPoolExecutor
import json

import h5py
import pytest
import requests
from openai import OpenAI

from jobutil import metric, start_job

CODE = '''def area(width, height):
    result = width * height
    return result


def perimeter(width, height):
    result = 2 * (width + height)
    return result
'''

CHATS = [
    ("Rename the function area to rect_area in this code and output the whole code:\n\n" + CODE, {}),
    ("Repeat this sentence three times: the cat sat on the mat.", {}),
    ("Rewrite this code with type hints and output the whole code:\n\n" + CODE,
     {"temperature": 0.8, "top_p": 0.95, "seed": 7}),
    ("Write a haiku about the sea.", {"temperature": 0.7, "seed": 3, "frequency_penalty": 0.5}),
]
MAX_TOKENS = 80


def chat_all(job, concurrent):
    model = requests.get(job.url + "/v1/models", timeout=10).json()["data"][0]["id"]
    c = OpenAI(base_url=job.url + "/v1", api_key="x", max_retries=0, timeout=300)

    def one(i):
        prompt, extra = CHATS[i]
        r = c.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                      max_tokens=MAX_TOKENS, logprobs=True, **dict({"temperature": 0}, **extra))
        ch = r.choices[0]
        return ch.message.content, ch.finish_reason, r.usage.completion_tokens, [t.logprob for t in
                                                                                   ch.logprobs.content]
    if not concurrent:
        return [one(i) for i in range(len(CHATS))]
    with ThreadPoolExecutor(len(CHATS)) as ex:
        return list(ex.map(one, range(len(CHATS))))


def streamed(job, i):
    prompt, extra = CHATS[i]
    model = requests.get(job.url + "/v1/models", timeout=10).json()["data"][0]["id"]
    body = dict({"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": MAX_TOKENS,
                 "temperature": 0, "stream": True}, **extra)
    parts = []
    with requests.post(job.url + "/v1/chat/completions", json=body, stream=True, timeout=300) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith(b"data: ") and line != b"data: [DONE]":
                for ch in json.loads(line[6:])["choices"]:
                    parts.append(ch["delta"].get("content") or "")
    return "".join(parts)


@pytest.fixture(scope="module")
def plain(smollm2, tmp_path_factory):
    with start_job(smollm2, tmp_path_factory.mktemp("plain"), np=2,
                   overrides={"model:threads": 2, "engine:spec_method": "none"}) as job:
        out = chat_all(job, concurrent=False)
        m = requests.get(job.url + "/metrics", timeout=10).text
        assert metric(m, "vllm:spec_decode_num_draft_tokens_total") == 0
    return out


def test_ngram_speculation_gives_the_same_outputs(smollm2, tmp_path, plain):
    with start_job(smollm2, tmp_path, np=2, overrides={"model:threads": 2, "engine:spec_method": "ngram",
                                                       "engine:spec_tokens": 5}) as job:
        alone = chat_all(job, concurrent=False)
        m = requests.get(job.url + "/metrics", timeout=10).text
        drafted = metric(m, "vllm:spec_decode_num_draft_tokens_total")
        accepted = metric(m, "vllm:spec_decode_num_accepted_tokens_total")
        together = chat_all(job, concurrent=True)  # 4 running: spec_max_running's default
        texts = [streamed(job, i) for i in range(2)]
        m = requests.get(job.url + "/metrics", timeout=10).text
        logs = job.h5_logs()
    # the HDF5 log's steps add up to the counters (the log is complete once the job stopped)
    with h5py.File(logs[0], "r") as f:
        steps = f["steps"][:]
    assert steps["spec_draft_tokens"].sum() == metric(m, "vllm:spec_decode_num_draft_tokens_total")
    assert steps["spec_accepted_tokens"].sum() == metric(m, "vllm:spec_decode_num_accepted_tokens_total")
    assert (steps["spec_accepted_tokens"] <= steps["spec_draft_tokens"]).all()
    assert alone == plain
    assert together == plain
    assert texts == [p[0] for p in plain[:2]]
    # the code rename and the repeated sentence copy their prompt: most drafts there are right
    assert drafted > 0 and 0 < accepted <= drafted
    assert accepted >= 0.2 * drafted, (accepted, drafted)


def test_ngram_speculation_in_process_engine(smollm2, tmp_path, plain):
    with start_job(smollm2, tmp_path, np=1, overrides={"model:threads": 2, "engine:spec_method": "ngram"}) as job:
        got = chat_all(job, concurrent=True)
        m = requests.get(job.url + "/metrics", timeout=10).text
    assert got == plain
    assert metric(m, "vllm:spec_decode_num_accepted_tokens_total") > 0


@pytest.mark.parametrize("sets,words", [
    ({"engine:spec_method": "medusa"}, "engine:spec_method: 'medusa' is not none or ngram"),
    ({"engine:spec_method": "ngram", "engine:spec_ngram_min": 4, "engine:spec_ngram_max": 2},
     "engine:spec_ngram_max 2 is less than engine:spec_ngram_min 4"),
    ({"engine:spec_tokens": 17}, "engine:spec_tokens"),
])
def test_bad_speculation_settings_are_refused(smollm2, tmp_path, sets, words):
    with pytest.raises(AssertionError, match=words):
        with start_job(smollm2, tmp_path, np=2, overrides=sets, ready_timeout=60):
            pass
