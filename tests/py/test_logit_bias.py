"""OpenAI's logit_bias in the real job (SmolLM2, the openai client): +100
forces a token at every step, -100 bans the greedy choice, on the MPI job
and the in-process engine; bad maps get a 400 and the job keeps serving."""
import pytest
import requests
from openai import BadRequestError, OpenAI

from jobutil import start_job

PROMPT = "The capital of France is"


def client(job):
    model = requests.get(job.url + "/v1/models", timeout=10).json()["data"][0]["id"]
    return OpenAI(base_url=job.url + "/v1", api_key="x", max_retries=0, timeout=120), model


def ids_of(job, text):
    r = requests.post(job.url + "/tokenize", json={"prompt": text, "add_special_tokens": False}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["tokens"]


def text_of(job, ids):
    r = requests.post(job.url + "/detokenize", json={"tokens": ids}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["prompt"]


@pytest.mark.parametrize("np", [2, 1])
def test_logit_bias_forces_and_bans(smollm2, tmp_path, np):
    with start_job(smollm2, tmp_path, np=np, overrides={"model:threads": 2}) as job:
        c, model = client(job)

        def complete(n, bias=None, **kw):
            r = c.completions.create(model=model, prompt=PROMPT, max_tokens=n, temperature=0,
                                     logit_bias=bias or {}, **kw)
            return r.choices[0]

        first = complete(1).text
        (t,) = ids_of(job, first)  # one token: its id
        banned = complete(1, {str(t): -100}).text
        assert banned != first and banned
        # +100 on a token the model would never pick, greedy and sampled
        forced = ids_of(job, " banana")[0]
        got = complete(6, {str(forced): 100}, extra_body={"ignore_eos": True})
        assert got.text == text_of(job, [forced] * 6)
        got = c.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                        temperature=1.0, seed=3, logit_bias={str(forced): 100},
                                        logprobs=True)
        assert got.choices[0].message.content == text_of(job, [forced] * 4)
        # the reported logprobs are the model's own (raw), not the biased ones: far below 0
        assert all(x.logprob < -1.0 for x in got.choices[0].logprobs.content)
        # bad maps: a clear 400, and the job still serves
        for bad, words in (({"99999999": 1}, "outside the vocabulary"), ({"1": 101}, "from -100 to 100"),
                           ({"x": 1}, "token ids")):
            with pytest.raises(BadRequestError, match=words) as err:
                complete(1, bad)
            assert err.value.body["param"] == "logit_bias"
        assert complete(1).text == first
