"""vLLM's min_tokens in the real job (SmolLM2, the openai client): the
model's end of turn and stop strings cannot end an answer before
min_tokens tokens; after that they do; min_tokens over max_tokens is a 400."""
import pytest
import requests
from openai import BadRequestError, OpenAI

from jobutil import start_job

ASK = [{"role": "user", "content": "What is the capital of France?"}]


def test_min_tokens(smollm2, tmp_path):
    with start_job(smollm2, tmp_path, np=2, overrides={"model:threads": 2}) as job:
        model = requests.get(job.url + "/v1/models", timeout=10).json()["data"][0]["id"]
        c = OpenAI(base_url=job.url + "/v1", api_key="x", max_retries=0, timeout=120)

        def ask(**kw):
            r = c.chat.completions.create(model=model, messages=ASK, temperature=0, max_tokens=40, **kw)
            return r.choices[0].message.content, r.choices[0].finish_reason, r.usage.completion_tokens

        text, finish, n = ask()
        assert finish == "stop" and n < 20  # "The capital of France is Paris." and the end of turn
        text2, finish2, n2 = ask(extra_body={"min_tokens": 20})
        assert n2 >= 20 and text2.startswith(text.rstrip("."))
        # a stop string inside the first min_tokens tokens does not end it
        text3, _, n3 = ask(stop=["Paris"], extra_body={"min_tokens": 12})
        assert "Paris" in text3 and n3 >= 12
        text4, finish4, _ = ask(stop=["Paris"])
        assert "Paris" not in text4 and finish4 == "stop"
        with pytest.raises(BadRequestError, match="min_tokens"):
            ask(extra_body={"min_tokens": 41})
        with pytest.raises(BadRequestError, match="min_tokens"):
            c.chat.completions.create(model=model, messages=ASK, extra_body={"min_tokens": -1})
