"""Tools (function calling) in chat completions, through the openai client,
on SmolLM2-135M-Instruct (a ChatML model: Hermes-style <tool_call> blocks).
SmolLM2 is not trained for tools, so the tests force calls where they need
one: tool_choice naming a function makes the answer start with the call's
opening and the model writes the arguments; "required" leaves the name to
it. Asserted: the calls come back as message.tool_calls with finish_reason
"tool_calls", arguments a JSON object's text; streamed the same as whole; a
conversation with an assistant's calls and the tools' results is served;
tool_choice "none" gives text only; bad tools get a 400."""
import json

import openai
import pytest
import requests
from openai import OpenAI

from jobutil import assert_error, start_job

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "get_time", "description": "The local time in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
NAMED = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture(scope="module")
def job(smollm2, tmp_path_factory):
    with start_job(smollm2, tmp_path_factory.mktemp("tools"), np=2, overrides={"model:threads": 2}) as j:
        yield j


@pytest.fixture(scope="module")
def client(job):
    model = requests.get(job.url + "/v1/models", timeout=10).json()["data"][0]["id"]
    return OpenAI(base_url=job.url + "/v1", api_key="x", max_retries=0, timeout=120), model


def chat(client, stream=False, **kw):
    c, model = client
    args = dict(model=model, messages=ASK, tools=TOOLS, temperature=0, max_tokens=48)
    args.update(kw)
    if not stream:
        ch = c.chat.completions.create(**args).choices[0]
        calls = [(t.id, t.type, t.function.name, t.function.arguments) for t in ch.message.tool_calls or []]
        return ch.finish_reason, ch.message.content, calls
    content, calls, finish = [], {}, None
    for chunk in c.chat.completions.create(stream=True, **args):
        ch = chunk.choices[0]
        content.append(ch.delta.content or "")
        for t in ch.delta.tool_calls or []:
            calls[t.index] = (t.id, t.type, t.function.name, t.function.arguments)
        finish = ch.finish_reason or finish
    return finish, "".join(content) or None, [calls[i] for i in sorted(calls)]


@pytest.mark.parametrize("choice", [NAMED, "required"])
def test_forced_call_comes_back_as_tool_calls(client, choice):
    finish, content, calls = chat(client, tool_choice=choice)
    assert finish == "tool_calls" and content is None
    assert len(calls) == 1
    cid, kind, name, args = calls[0]
    assert cid.startswith("call_") and kind == "function"
    assert isinstance(json.loads(args), dict)
    if choice == NAMED:
        assert name == "get_weather"
    # streamed: the same call, as a delta (its id differs: one per response)
    sfinish, scontent, scalls = chat(client, stream=True, tool_choice=choice)
    assert (sfinish, scontent) == (finish, content)
    assert [c[1:] for c in scalls] == [c[1:] for c in calls]


def test_parallel_tool_calls_false_keeps_one(client):
    finish, _, calls = chat(client, tool_choice="required", parallel_tool_calls=False, max_tokens=120)
    assert finish == "tool_calls" and len(calls) == 1


def test_auto_and_none_give_text_when_no_call(client):
    finish, content, calls = chat(client, tool_choice="none")
    assert calls == [] and finish in ("stop", "length") and content
    assert "<tool_call>" not in content
    for stream in (False, True):
        finish, content, calls = chat(client, stream=stream)  # auto: this model answers in text
        if not calls:
            assert finish in ("stop", "length") and content


def test_conversation_with_calls_and_results(job, client):
    history = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 18, "sky": "sunny"}'},
        {"role": "tool", "tool_call_id": "call_2", "content": "14:05"},
    ]
    c, model = client
    r = c.chat.completions.create(model=model, messages=history, tools=TOOLS, temperature=0, max_tokens=24)
    assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")
    assert r.usage.prompt_tokens > 150  # the tools' definitions and both results are in the prompt
    # /tokenize renders the same prompt with the same tools
    t = requests.post(job.url + "/tokenize", json={"messages": history, "tools": TOOLS}, timeout=10).json()
    assert t["count"] == r.usage.prompt_tokens
    # the same without the tools block is shorter by the definitions
    r2 = c.chat.completions.create(model=model, messages=history, tools=TOOLS, tool_choice="none", temperature=0,
                                   max_tokens=1)
    assert r2.usage.prompt_tokens < r.usage.prompt_tokens


@pytest.mark.parametrize("body,param", [
    ({"tools": [{"type": "function", "function": {}}]}, "tools"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": 1}}]}]},
     "messages[0].tool_calls"),
])
def test_bad_tools_are_refused(job, client, body, param):
    _, model = client
    req = dict({"model": model, "messages": ASK, "max_tokens": 2}, **body)
    assert_error(requests.post(job.url + "/v1/chat/completions", json=req, timeout=30), 400, param=param)
    with pytest.raises(openai.BadRequestError):
        client[0].chat.completions.create(**req)


def test_llama3_family_json_calls(smollm2, tmp_path):
    """The Llama 3 family's JSON calls, on SmolLM2 with model:chat_template
    = llama3 (its vocabulary lacks Llama 3's header tokens, which it then
    reads as text; the forced opening is what matters here)."""
    with start_job(smollm2, tmp_path, np=2, overrides={"model:threads": 2, "model:chat_template": "llama3"}) as j:
        model = requests.get(j.url + "/v1/models", timeout=10).json()["data"][0]["id"]
        cl = (OpenAI(base_url=j.url + "/v1", api_key="x", max_retries=0, timeout=120), model)
        finish, content, calls = chat(cl, tool_choice=NAMED)
        assert finish == "tool_calls" and content is None
        assert [c[2] for c in calls] == ["get_weather"] and isinstance(json.loads(calls[0][3]), dict)
        sfinish, scontent, scalls = chat(cl, stream=True, tool_choice=NAMED)
        assert sfinish == "tool_calls" and [c[1:] for c in scalls] == [c[1:] for c in calls]
        # a history with a call and its result (an ipython turn) is served
        history = ASK + [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]
        r = cl[0].chat.completions.create(model=model, messages=history, tools=TOOLS, max_tokens=8, temperature=0)
        assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")
