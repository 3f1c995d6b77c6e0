"""vLLM's POST /tokenize and POST /detokenize on rank 0 (docs/http-api.md).

One job on SmolLM2 (a real byte-level BPE vocabulary and ChatML template with
special tokens) serves most tests: /tokenize must count exactly what the
completion endpoints report as usage.prompt_tokens, agree with llama.cpp's
tokenizer, and round-trip through /detokenize; bad requests get OpenAI JSON
errors and leave the job serving. A second job (an MPI job of two ranks on a
small generated model, with an API key) checks the key and that the
endpoints answer on rank 0 of a real MPI job.
"""
import json

import pytest
import requests

from conftest import gen_model
from jobutil import assert_error, start_job

HANG_S = 60
MODEL = "smollm2"
N_CTX = 2048

TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "naïve café, Zürich — ünïcödé “quotes” 日本語のテキスト 🙂🚀 Ελληνικά",
    "  leading spaces\tand tabs\nand new lines\n",
    "<|im_start|> looks special but is plain text here",
]

MESSAGES = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2? Answer in digits."}],
    [{"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
     {"role": "user", "content": "日本語で答えて 🙂"},
     {"role": "assistant", "content": None},
     {"role": "user", "content": "again"}],
]


@pytest.fixture(scope="module")
def job(smollm2, tmp_path_factory):
    with start_job(smollm2, tmp_path_factory.mktemp("tok"),
                   overrides={"server:model_name": MODEL, "model:ctx_size": str(N_CTX)}) as j:
        yield j


@pytest.fixture(scope="module")
def llama_vocab(smollm2, llama_cpp):
    return llama_cpp.Llama(model_path=smollm2, vocab_only=True, verbose=False)


def post(job, path, body, headers=None):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(job.url + path, data=data, timeout=HANG_S,
                         headers={"Content-Type": "application/json", **(headers or {})})


def tokenize(job, body):
    r = post(job, "/tokenize", body)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    out = r.json()
    assert set(out) >= {"count", "max_model_len", "tokens"}
    assert out["count"] == len(out["tokens"])
    assert out["max_model_len"] == N_CTX
    assert all(isinstance(t, int) for t in out["tokens"])
    return out


def detokenize(job, tokens, **extra):
    r = post(job, "/detokenize", {"tokens": tokens, **extra})
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == {"prompt"}
    return out["prompt"]


def completion_prompt_tokens(job, prompt):
    r = post(job, "/v1/completions", {"model": MODEL, "prompt": prompt, "max_tokens": 1, "temperature": 0})
    assert r.status_code == 200, r.text
    return r.json()["usage"]["prompt_tokens"]


def still_serves(job):
    r = post(job, "/v1/completions", {"model": MODEL, "prompt": "still there?", "max_tokens": 2})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] >= 1


# ------------------------------------------------------------- /tokenize

@pytest.mark.parametrize("text", TEXTS)
def test_tokenize_text_equals_completions_and_llama_cpp(job, llama_vocab, text):
    out = tokenize(job, {"model": MODEL, "prompt": text})
    assert out == tokenize(job, {"prompt": text, "add_special_tokens": True})  # model optional, default true
    assert out["count"] == completion_prompt_tokens(job, text)
    # the same ids as a completion of those ids: /v1/completions takes them as its prompt
    assert completion_prompt_tokens(job, out["tokens"]) == out["count"]
    assert out["tokens"] == llama_vocab.tokenize(text.encode(), add_bos=True, special=False)
    plain = tokenize(job, {"prompt": text, "add_special_tokens": False})
    assert plain["tokens"] == llama_vocab.tokenize(text.encode(), add_bos=False, special=False)


@pytest.mark.parametrize("messages", MESSAGES)
def test_tokenize_messages_equals_chat_usage(job, messages):
    out = tokenize(job, {"model": MODEL, "messages": messages})
    r = post(job, "/v1/chat/completions", {"model": MODEL, "messages": messages, "max_tokens": 1,
                                           "temperature": 0})
    assert r.status_code == 200, r.text
    assert out["count"] == r.json()["usage"]["prompt_tokens"]
    # the generation prompt: "<|im_start|>assistant\n" ends the rendered prompt
    text = detokenize(job, out["tokens"])
    assert text.endswith("<|im_start|>assistant\n"), text
    no_gen = tokenize(job, {"messages": messages, "add_generation_prompt": False})
    r = post(job, "/v1/chat/completions", {"model": MODEL, "messages": messages, "max_tokens": 1,
                                           "add_generation_prompt": False})
    assert r.status_code == 200, r.text
    assert no_gen["count"] == r.json()["usage"]["prompt_tokens"] < out["count"]
    assert out["tokens"][:no_gen["count"]] == no_gen["tokens"]


def test_tokenize_messages_template_specials(job, llama_vocab):
    msgs = [{"role": "user", "content": "Hi"}]
    out = tokenize(job, {"messages": msgs})
    im_start = llama_vocab.tokenize(b"<|im_start|>", add_bos=False, special=True)
    assert len(im_start) == 1 and out["tokens"].count(im_start[0]) == 2  # user turn + generation prompt
    # add_special_tokens adds the tokenizer's special tokens (BOS where the
    # model adds one) once more, in front of the chat prompt
    with_specials = tokenize(job, {"prompt": "hi"})["tokens"]
    n_plain = tokenize(job, {"prompt": "hi", "add_special_tokens": False})["count"]
    specials = with_specials[:len(with_specials) - n_plain]  # none for SmolLM2; see test_spm_mpi_job
    again = tokenize(job, {"messages": msgs, "add_special_tokens": True})
    assert again["tokens"] == specials + out["tokens"]


def test_tokenize_token_strs(job, llama_vocab):
    out = tokenize(job, {"prompt": "Hello world", "add_special_tokens": False, "return_token_strs": True})
    assert len(out["token_strs"]) == out["count"] >= 2
    assert out["token_strs"][1] == "Ġworld"  # the vocabulary's own spelling
    assert "token_strs" not in tokenize(job, {"prompt": "Hello world"})


def test_tokenize_empty_prompt(job, llama_vocab):
    out = tokenize(job, {"prompt": ""})
    assert out["tokens"] == llama_vocab.tokenize(b"", add_bos=True, special=False)
    assert tokenize(job, {"prompt": "", "add_special_tokens": False})["count"] == 0


# ----------------------------------------------------------- /detokenize

@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(job, text):
    ids = tokenize(job, {"prompt": text, "add_special_tokens": False})["tokens"]
    assert detokenize(job, ids) == text
    assert detokenize(job, ids, model=MODEL) == text


def test_detokenize_specials_and_partial_characters(job, llama_vocab):
    with_bos = tokenize(job, {"prompt": "hi"})["tokens"]
    plain = tokenize(job, {"prompt": "hi", "add_special_tokens": False})["tokens"]
    special = llama_vocab.detokenize(with_bos[:len(with_bos) - len(plain)], special=True).decode()
    assert detokenize(job, with_bos) == special + "hi"  # special tokens are spelled out, as vLLM's decode does
    assert detokenize(job, []) == ""
    # a character split over byte tokens comes out whole; a lone part of one
    # as U+FFFD (one per byte, as the streaming detokenizer flushes it)
    emoji = tokenize(job, {"prompt": "🙂", "add_special_tokens": False})["tokens"]
    assert len(emoji) > 1 and detokenize(job, emoji) == "🙂"
    part = detokenize(job, emoji[:1])
    assert part and set(part) == {"\ufffd"}
    assert detokenize(job, emoji + emoji[:1] + plain) == "🙂" + part + "hi"
    # a NUL byte token (JSON from cJSON cannot carry U+0000) shows as U+FFFD
    [nul] = llama_vocab.tokenize(b"\x00", add_bos=False, special=False)
    assert detokenize(job, plain + [nul] + plain) == "hi\ufffdhi"


# --------------------------------------------------------------- errors

@pytest.mark.parametrize("path", ["/tokenize", "/detokenize"])
def test_malformed_bodies(job, path):
    for body in (b"{not json", b"", b"[1, 2]", b'{"prompt": "x"} trailing', b'"just a string"', b"null"):
        err = assert_error(post(job, path, body), 400)
        assert err["type"] == "invalid_request_error"
    still_serves(job)


@pytest.mark.parametrize("body,param", [
    ({}, "prompt"),
    ({"prompt": 5}, "prompt"),
    ({"prompt": ["a"]}, "prompt"),
    ({"prompt": [1, 2]}, "prompt"),
    ({"prompt": "x", "messages": [{"role": "user", "content": "x"}]}, "messages"),
    ({"prompt": "x", "add_special_tokens": "yes"}, "add_special_tokens"),
    ({"prompt": "x", "return_token_strs": 1}, "return_token_strs"),
    ({"prompt": "x", "model": 7}, "model"),
    ({"messages": "hello"}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content"),
    ({"messages": [{"role": "user", "content": "x"}], "add_generation_prompt": "no"}, "add_generation_prompt"),
    ({"messages": [{"role": "user", "content": "x"}], "add_special_tokens": 0}, "add_special_tokens"),
    ({"messages": [{"role": "user", "content": "x"}], "continue_final_message": True},
     "continue_final_message"),
    ({"messages": [{"role": "user", "content": "x"}], "chat_template": "{{ messages }}"}, "chat_template"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}, "tools"),
])
def test_tokenize_bad_fields(job, body, param):
    err = assert_error(post(job, "/tokenize", body), 400, param=param)
    assert err["type"] == "invalid_request_error"


@pytest.mark.parametrize("body,param", [
    ({}, "tokens"),
    ({"tokens": None}, "tokens"),
    ({"tokens": "1 2 3"}, "tokens"),
    ({"tokens": {"0": 1}}, "tokens"),
    ({"tokens": [1, 2.5]}, "tokens"),
    ({"tokens": [1, "2"]}, "tokens"),
    ({"tokens": [1, -1]}, "tokens"),
    ({"tokens": [1, [2]]}, "tokens"),
    ({"tokens": [1, "N_VOCAB"]}, "tokens"),   # the first id past the vocabulary
    ({"tokens": [2 ** 31]}, "tokens"),
    ({"tokens": [1e300]}, "tokens"),
    ({"tokens": [1], "model": ["smollm2"]}, "model"),
])
def test_detokenize_bad_fields(job, llama_vocab, body, param):
    if body.get("tokens") == [1, "N_VOCAB"]:
        body = {"tokens": [1, llama_vocab.n_vocab()]}
    err = assert_error(post(job, "/detokenize", body), 400, param=param)
    assert err["type"] == "invalid_request_error"


def test_detokenize_out_of_range_message(job, llama_vocab):
    nv = llama_vocab.n_vocab()
    err = assert_error(post(job, "/detokenize", {"tokens": [1, 2, nv]}), 400, param="tokens")
    assert "tokens[2]" in err["message"] and str(nv) in err["message"] and f"0..{nv - 1}" in err["message"]


def test_body_too_large(job):
    # default server:max_body_bytes is 1 MiB
    assert_error(post(job, "/tokenize", {"prompt": "a" * (3 << 19)}), 413, code="request_too_large")
    assert_error(post(job, "/detokenize", {"tokens": [1] * (1 << 19)}), 413, code="request_too_large")


def test_unknown_model(job):
    for path, body in (("/tokenize", {"model": "gpt-4o", "prompt": "x"}),
                       ("/tokenize", {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}),
                       ("/detokenize", {"model": "gpt-4o", "tokens": [1]})):
        err = assert_error(post(job, path, body), 404, param="model", code="model_not_found")
        assert "gpt-4o" in err["message"] and MODEL in err["message"]


def test_methods_and_paths(job):
    for path in ("/tokenize", "/detokenize", "/tokenize/"):
        for method in ("GET", "PUT", "DELETE"):
            r = requests.request(method, job.url + path, timeout=HANG_S)
            assert_error(r, 405, code="method_not_allowed")
            assert r.headers["Allow"] == "POST"
    # vLLM serves them at the root, not under /v1
    assert_error(post(job, "/v1/tokenize", {"prompt": "x"}), 404, code="not_found")
    assert_error(post(job, "/v1/detokenize", {"tokens": [1]}), 404, code="not_found")
    assert tokenize(job, {"prompt": "x"}) == post(job, "/tokenize/", {"prompt": "x"}).json()


def test_bad_requests_do_not_disturb_a_stream(job):
    """A stream runs while bad /tokenize and /detokenize requests come and go."""
    r = requests.post(job.url + "/v1/completions", stream=True, timeout=HANG_S,
                      json={"model": MODEL, "prompt": "Once upon a time", "max_tokens": 24, "temperature": 0,
                            "ignore_eos": True, "stream": True})
    bad = [("/tokenize", b"{"), ("/tokenize", b'{"prompt": 1}'), ("/detokenize", b'{"tokens": [-1]}'),
           ("/detokenize", b'{"tokens": [99999999]}'), ("/detokenize", b'{"tokens": 3}')]
    for path, b in bad * 3:
        assert post(job, path, b).status_code == 400
    events = [ln for ln in r.iter_lines() if ln]
    assert r.status_code == 200 and events[-1] == b"data: [DONE]"
    text = "".join(json.loads(e[len(b"data: "):])["choices"][0]["text"] for e in events[:-1])
    whole = post(job, "/v1/completions", {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 24,
                                          "temperature": 0, "ignore_eos": True})
    assert text == whole.json()["choices"][0]["text"]
    still_serves(job)


# ------------------------------------------------ MPI job with an API key

@pytest.fixture(scope="module")
def spm():
    """A small SentencePiece model that adds BOS, with a Llama 2 chat template."""
    return gen_model("tok-spm", "--tokenizer", "spm", "--n-vocab", "2000", "--n-ctx", "256", "--seed", "5")


@pytest.fixture(scope="module")
def keyed_job(spm, tmp_path_factory):
    with start_job(spm, tmp_path_factory.mktemp("tokkey"), np=2, overrides={"server:api_key": "sekrit"}) as j:
        yield j


def test_api_key(keyed_job):
    j = keyed_job
    for path, body in (("/tokenize", {"prompt": "hello"}), ("/detokenize", {"tokens": [1, 2]})):
        assert_error(post(j, path, body), 401, code="invalid_api_key")
        r = post(j, path, body, headers={"Authorization": "Bearer wrong"})
        assert_error(r, 401, code="invalid_api_key")
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert post(j, path, body, headers={"Authorization": "bearer sekrit"}).status_code == 200
    assert requests.get(j.url + "/health", timeout=HANG_S).status_code == 200  # still no key needed


def test_spm_mpi_job(keyed_job, spm, llama_cpp):
    """On rank 0 of an MPI job, with a vocabulary that adds BOS."""
    j = keyed_job
    good = {"Authorization": "Bearer sekrit"}
    ref = llama_cpp.Llama(model_path=spm, vocab_only=True, verbose=False)
    text = "hello world 🙂"
    out = post(j, "/tokenize", {"model": "tok-spm", "prompt": text}, headers=good).json()
    assert out["max_model_len"] == 256
    assert out["tokens"] == ref.tokenize(text.encode(), add_bos=True, special=False)
    assert out["tokens"][0] == ref.token_bos()
    c = post(j, "/v1/completions", {"model": "tok-spm", "prompt": text, "max_tokens": 1}, headers=good)
    assert c.status_code == 200, c.text
    assert c.json()["usage"]["prompt_tokens"] == out["count"]
    plain = post(j, "/tokenize", {"prompt": text, "add_special_tokens": False}, headers=good).json()
    assert plain["tokens"] == out["tokens"][1:]
    # the pieces joined, as llama.cpp's detokenizer joins them: SentencePiece's
    # "▁" before the first word stays a space
    d = post(j, "/detokenize", {"tokens": plain["tokens"]}, headers=good)
    assert d.status_code == 200 and d.json() == {"prompt": ref.detokenize(plain["tokens"]).decode()}
    assert d.json()["prompt"].lstrip(" ") == text
    d = post(j, "/detokenize", {"tokens": out["tokens"]}, headers=good).json()["prompt"]
    assert d == ref.detokenize(out["tokens"][:1], special=True).decode() + ref.detokenize(plain["tokens"]).decode()

    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]
    t = post(j, "/tokenize", {"messages": chat}, headers=good).json()
    c = post(j, "/v1/chat/completions", {"model": "tok-spm", "messages": chat, "max_tokens": 1}, headers=good)
    assert c.status_code == 200, c.text
    assert c.json()["usage"]["prompt_tokens"] == t["count"]
    assert t["tokens"][0] == ref.token_bos() and t["tokens"][1] != ref.token_bos()
    # add_special_tokens on messages: the tokenizer's BOS once more (vLLM's double BOS)
    again = post(j, "/tokenize", {"messages": chat, "add_special_tokens": True}, headers=good).json()
    assert again["tokens"] == [ref.token_bos()] + t["tokens"]
    assert_error(post(j, "/detokenize", {"tokens": [ref.n_vocab()]}, headers=good), 400, param="tokens")
