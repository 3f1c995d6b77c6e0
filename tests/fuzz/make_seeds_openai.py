#!/usr/bin/env python3
"""make_seeds_openai.py - (re)create the seed corpus of the request-parser fuzzer.

    python3 tests/fuzz/make_seeds_openai.py [--out build/fuzz-openai/seeds]

Writes request bodies for tests/fuzz/fuzz_openai.c, which feeds each one to
the chat, completions, /tokenize and /detokenize parsers: realistic ones
(chat with every field, completions with a string, token ids or [[ids]]
prompt, echo and logprobs, logit_bias, stop lists, tokenize and detokenize
bodies) and broken ones named after what is wrong with them (truncated JSON,
deep nesting, huge numbers, NaN-like values, wrong types, out-of-range values,
non-UTF-8 bytes, very long strings, trailing data). Standard library only.
"""
import argparse
import json
import os

MSG = [{"role": "user", "content": "Hello!"}]


def dumps(o):
    return json.dumps(o, separators=(',', ':'), ensure_ascii=False).encode()


def valid_seeds():
    s = {}
    s['chat-min'] = {"model": "m", "messages": MSG}
    s['chat-all'] = {
        "model": "SmolLM2-135M-Instruct.Q4_1",
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "developer", "content": None},
                     {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                     {"role": "assistant", "content": "ok"},
                     {"role": "user", "content": "again \u00e9\u4e2d\U0001f600"}],
        "max_tokens": 16, "max_completion_tokens": 8, "temperature": 0.7, "top_p": 0.9,
        "top_k": 40, "min_p": 0.05, "presence_penalty": 0.5, "frequency_penalty": -0.5,
        "repetition_penalty": 1.1, "seed": 42, "n": 2, "stop": ["\n\n", "END"],
        "stop_token_ids": [2, 0], "logit_bias": {"15": -100, "7": 2.5}, "logprobs": True,
        "top_logprobs": 5, "ignore_eos": False, "skip_special_tokens": False, "stream": True,
        "stream_options": {"include_usage": True}, "add_generation_prompt": True, "user": "u1",
        "tools": [], "functions": [], "response_format": {"type": "text"}, "best_of": 2,
        "unknown": [1, {"x": None}]}
    s['chat-nulls'] = {"model": "m", "messages": MSG, "temperature": None, "stop": None, "seed": None,
                       "logit_bias": None, "stream_options": None, "n": None}
    s['chat-stop-string'] = {"model": "m", "messages": MSG, "stop": "###", "seed": -7}
    s['chat-stop-empty'] = {"model": "m", "messages": MSG, "stop": ["", "x", ""]}
    s['chat-top-logprobs-0'] = {"model": "m", "messages": MSG, "logprobs": True, "top_logprobs": 0}
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                                               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
    s['chat-tools'] = {"model": "m", "tools": [tool, {"type": "function", "function": {"name": "noop"}}],
                       "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                       "parallel_tool_calls": False,
                       "messages": MSG + [{"role": "assistant", "content": None, "tool_calls": [
                           {"id": "call_0", "type": "function",
                            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
                           {"id": "call_1", "type": "function", "function": {"name": "noop", "arguments": {}}}]},
                           {"role": "tool", "content": "sunny"}]}
    s['chat-tool-choice-required'] = {"model": "m", "messages": MSG, "tools": [tool], "tool_choice": "required"}
    s['chat-tool-choice-none'] = {"model": "m", "messages": MSG, "tool_choice": "none"}
    s['cmpl-string'] = {"model": "m", "prompt": "Once upon a time", "max_tokens": 5, "temperature": 0}
    s['cmpl-ids'] = {"model": "m", "prompt": [1, 2, 3, 2147483647, 0], "max_tokens": 1}
    s['cmpl-ids-nested'] = {"model": "m", "prompt": [[9, 8, 7]]}
    s['cmpl-string-in-array'] = {"model": "m", "prompt": ["one prompt"], "suffix": ""}
    s['cmpl-echo-logprobs'] = {"model": "m", "prompt": "The capital of France is", "echo": True,
                               "logprobs": 5, "max_tokens": 1, "n": 1, "best_of": 1}
    s['cmpl-logprobs-bool'] = {"model": "m", "prompt": "x", "logprobs": True, "echo": False}
    s['cmpl-logit-bias'] = {"model": "m", "prompt": "x", "logit_bias": {str(i): (i % 201) - 100 for i in range(0, 300, 7)}}
    s['chat-json-object'] = {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                             "response_format": {"type": "json_object"}}
    s['chat-json-object-tools-none'] = {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                        "tools": [{"type": "function", "function": {"name": "f"}}],
                                        "tool_choice": "none", "response_format": {"type": "json_object"}}
    s['cmpl-json-schema'] = {"model": "m", "prompt": "x", "response_format": {
        "type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}}
    s['cmpl-format-string'] = {"model": "m", "prompt": "x", "response_format": "json"}
    s['cmpl-stops'] = {"model": "m", "prompt": "x", "stop": ["a", "bb", "\u00e9", "\n"], "stop_token_ids": list(range(64))}
    s['tokenize-prompt'] = {"model": "m", "prompt": "Hello world", "add_special_tokens": False,
                            "return_token_strs": True}
    s['tokenize-messages'] = {"messages": MSG + [{"role": "assistant", "content": "hi"}],
                              "add_generation_prompt": False, "add_special_tokens": True,
                              "continue_final_message": False, "tools": None}
    s['detokenize'] = {"model": "m", "tokens": [1, 2, 3, 0]}
    s['detokenize-empty'] = {"tokens": []}
    return {k: dumps(v) for k, v in s.items()}


def broken_seeds():
    b = {}
    chat = valid_seeds()['chat-all']
    b['empty'] = b''
    b['ws-only'] = b' \n\t '
    b['truncated-chat'] = chat[:len(chat) // 2]
    b['truncated-string'] = b'{"model":"m","messages":[{"role":"user","content":"abc'
    b['truncated-escape'] = b'{"model":"m","prompt":"\\u00'
    b['trailing-data'] = b'{"model":"m","prompt":"x"} {"x":1}'
    b['trailing-ws'] = b'{"model":"m","prompt":"x"}  \r\n\t'
    b['nul-after'] = b'{"model":"m","prompt":"x"}\x00'
    b['not-object-array'] = b'[1,2,3]'
    b['not-object-string'] = b'"hello"'
    b['bom'] = b'\xef\xbb\xbf{"model":"m","prompt":"x"}'
    b['deep-array'] = b'{"model":"m","prompt":' + b'[' * 2000 + b']' * 2000 + b'}'
    b['deep-object'] = b'{"a":' * 1500 + b'1' + b'}' * 1500
    b['deep-content'] = b'{"model":"m","messages":[{"role":"user","content":' + b'[' * 900 + b']' * 900 + b'}]}'
    b['huge-numbers'] = b'{"model":"m","prompt":[1e400],"max_tokens":1e999,"temperature":-1e999,"n":1e308,"seed":1e30}'
    b['huge-int-literal'] = b'{"model":"m","prompt":[' + b'9' * 400 + b'],"top_k":' + b'9' * 400 + b'}'
    b['negative-zero'] = b'{"model":"m","prompt":[-0],"temperature":-0.0,"top_k":-0,"seed":-0}'
    b['nan-like'] = b'{"model":"m","prompt":"x","temperature":NaN,"top_p":Infinity,"min_p":-inf}'
    b['nan-string'] = b'{"model":"m","prompt":"x","temperature":"NaN","logit_bias":{"1":"nan"}}'
    b['fraction-int'] = b'{"model":"m","prompt":[1.5],"max_tokens":2.5,"n":1.0000001,"seed":0.5}'
    b['exp-int'] = b'{"model":"m","prompt":[1e2,2E+1],"max_tokens":1e1,"seed":9.2e18}'
    b['seed-huge'] = b'{"model":"m","prompt":"x","seed":-9.3e18}'
    b['wrong-types'] = dumps({"model": 1, "messages": {"role": "user"}, "stop": 3, "logit_bias": [1],
                             "stream": "yes", "n": "2", "prompt": True})
    b['model-array'] = dumps({"model": ["m"], "prompt": "x"})
    b['messages-empty'] = dumps({"model": "m", "messages": []})
    b['messages-not-objects'] = dumps({"model": "m", "messages": [1, "user", None]})
    b['role-missing'] = dumps({"model": "m", "messages": [{"content": "x"}]})
    b['role-tool'] = dumps({"model": "m", "messages": [{"role": "tool", "content": "x"}]})
    b['role-long'] = dumps({"model": "m", "messages": [{"role": "r" * 300, "content": "x"}]})
    b['content-part-image'] = dumps({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x"}}]}]})
    b['content-part-no-text'] = dumps({"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]})
    b['content-part-array'] = dumps({"model": "m", "messages": [{"role": "user", "content": [[{"type": "text"}]]}]})
    b['content-part-long-type'] = dumps({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "a" + "\u00e9" * 400, "text": "x"}]}]})
    b['content-number'] = dumps({"model": "m", "messages": [{"role": "user", "content": 5}]})
    b['prompt-empty-array'] = dumps({"model": "m", "prompt": []})
    b['prompt-empty-nested'] = dumps({"model": "m", "prompt": [[]]})
    b['prompt-batched'] = dumps({"model": "m", "prompt": ["a", "b"]})
    b['prompt-batched-ids'] = dumps({"model": "m", "prompt": [[1], [2]]})
    b['prompt-mixed'] = dumps({"model": "m", "prompt": [1, "a", None, -1, 2147483648]})
    b['prompt-negative'] = dumps({"model": "m", "prompt": [-1]})
    b['prompt-object'] = dumps({"model": "m", "prompt": {"text": "x"}})
    b['stop-too-many'] = dumps({"model": "m", "prompt": "x", "stop": [str(i) for i in range(17)]})
    b['stop-too-long'] = dumps({"model": "m", "prompt": "x", "stop": ["s" * 1025]})
    b['stop-wrong-entry'] = dumps({"model": "m", "prompt": "x", "stop": ["a", 1]})
    b['stop-ids-too-many'] = dumps({"model": "m", "prompt": "x", "stop_token_ids": list(range(65))})
    b['stop-ids-bad'] = dumps({"model": "m", "prompt": "x", "stop_token_ids": [1, -2, "3"]})
    b['logit-bias-keys'] = dumps({"model": "m", "prompt": "x", "logit_bias": {
        "": 1, " 5": 1, "+5": 1, "5x": 1, "-3": 1, "99999999999999999999": 1, "2147483648": 1}})
    b['logit-bias-values'] = dumps({"model": "m", "prompt": "x", "logit_bias": {"1": 100.5, "2": None, "3": "1"}})
    b['logit-bias-too-many'] = dumps({"model": "m", "prompt": "x", "logit_bias": {str(i): 0 for i in range(1025)}})
    b['logit-bias-long-key'] = dumps({"model": "m", "prompt": "x", "logit_bias": {"a" + "\u00e9" * 100: 1}})
    b['logit-bias-bad-utf8-key'] = b'{"model":"m","prompt":"x","logit_bias":{"\xff\xfe":1}}'
    b['top-logprobs-no-logprobs'] = dumps({"model": "m", "messages": MSG, "top_logprobs": 3})
    b['top-logprobs-big'] = dumps({"model": "m", "messages": MSG, "logprobs": True, "top_logprobs": 21})
    b['legacy-logprobs-big'] = dumps({"model": "m", "prompt": "x", "logprobs": 6})
    b['stream-options-no-stream'] = dumps({"model": "m", "prompt": "x", "stream_options": {"include_usage": True}})
    b['stream-options-bad'] = dumps({"model": "m", "prompt": "x", "stream": True, "stream_options": {"include_usage": 1}})
    b['tools'] = dumps({"model": "m", "messages": MSG, "tools": [{"type": "function"}]})
    b['tools-not-array'] = dumps({"model": "m", "messages": MSG, "tools": {"type": "function"}})
    b['tool-choice-unknown'] = dumps({"model": "m", "messages": MSG, "tools": [
        {"type": "function", "function": {"name": "f"}}], "tool_choice": {"function": {"name": "g"}}})
    b['tool-choice-no-tools'] = dumps({"model": "m", "messages": MSG, "tool_choice": "auto"})
    b['tool-calls-on-user'] = dumps({"model": "m", "messages": [{"role": "user", "content": "x", "tool_calls": []}]})
    b['tool-calls-bad'] = dumps({"model": "m", "messages": [{"role": "assistant", "tool_calls": [
        {"function": {"name": "f", "arguments": 1}}]}]})
    b['tool-calls-bad-utf8'] = (b'{"model":"m","messages":[{"role":"assistant","tool_calls":[{"function":'
                                b'{"name":"\xff","arguments":"\xfe"}}]}],"tools":[{"type":"function",'
                                b'"function":{"name":"\xc3"}}]}')
    b['tools-completions'] = dumps({"model": "m", "prompt": "x", "tools": [{"type": "function"}]})
    b['response-format-json'] = dumps({"model": "m", "messages": MSG, "response_format": {"type": "json_object"}})
    b['response-format-array'] = dumps({"model": "m", "messages": MSG, "response_format": [{"type": "text"}]})
    b['suffix'] = dumps({"model": "m", "prompt": "x", "suffix": "y"})
    b['best-of'] = dumps({"model": "m", "prompt": "x", "best_of": 3, "n": "2"})
    b['ranges'] = dumps({"model": "m", "prompt": "x", "temperature": 2.01, "top_p": 0, "min_p": 1.5,
                         "top_k": -2, "presence_penalty": 3, "repetition_penalty": 0, "n": 17})
    b['max-tokens-zero'] = dumps({"model": "m", "prompt": "x", "max_tokens": 0})
    b['user-number'] = dumps({"model": "m", "prompt": "x", "user": 5})
    b['duplicate-keys'] = b'{"model":"m","model":1,"prompt":"x","prompt":[1],"logit_bias":{"1":1,"1":2}}'
    b['bad-utf8-model'] = b'{"model":"\xc3\x28","prompt":"x"}'
    b['bad-utf8-prompt'] = b'{"model":"m","prompt":"\xed\xa0\x80 surrogate \xf4\x90\x80\x80"}'
    b['bad-utf8-content'] = b'{"model":"m","messages":[{"role":"user","content":"\xe2\x82"}]}'
    b['bad-utf8-part'] = b'{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"\x80"}]}]}'
    b['bad-utf8-role'] = b'{"model":"m","messages":[{"role":"\xff","content":"x"}]}'
    b['bad-utf8-stop'] = b'{"model":"m","prompt":"x","stop":["\xc0\xaf"]}'
    b['bad-utf8-type'] = b'{"model":"m","messages":[{"role":"user","content":[{"type":"\xfe","text":"x"}]}]}'
    b['escaped-surrogates'] = b'{"model":"m","prompt":"\\ud83d\\ude00 \\ud800 \\udc00 \\u0000 end"}'
    b['escaped-nul-model'] = b'{"model":"\\u0000","prompt":"\\u0000x"}'
    b['raw-control-chars'] = b'{"model":"m","prompt":"a\x01\x1f\x7f"}'
    b['long-string'] = dumps({"model": "m", "prompt": "x" * 12000})
    b['long-model'] = dumps({"model": "\u4e2d" * 3000, "prompt": "x"})
    b['many-messages'] = dumps({"model": "m", "messages": [{"role": "user", "content": "a"}] * 400})
    b['many-parts'] = dumps({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "p"}] * 500}]})
    b['tokenize-both'] = dumps({"prompt": "x", "messages": MSG})
    b['tokenize-neither'] = dumps({"model": "m"})
    b['tokenize-prompt-ids'] = dumps({"prompt": [1, 2]})
    b['tokenize-template'] = dumps({"messages": MSG, "chat_template": "{{x}}"})
    b['tokenize-continue'] = dumps({"messages": MSG, "continue_final_message": True})
    b['tokenize-tools'] = dumps({"messages": MSG, "tools": [{}]})
    b['detokenize-missing'] = dumps({"model": "m"})
    b['detokenize-wrong'] = dumps({"tokens": "1 2 3"})
    b['detokenize-bad-ids'] = dumps({"tokens": [1, -1, 2.5, None, 1e10]})
    b['detokenize-model-number'] = dumps({"model": 3, "tokens": [1]})
    return b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default='build/fuzz-openai/seeds')
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    seeds = {'valid-' + k: v for k, v in valid_seeds().items()}
    seeds.update({'broken-' + k: v for k, v in broken_seeds().items()})
    for name, data in sorted(seeds.items()):
        with open(os.path.join(args.out, name + '.json'), 'wb') as f:
            f.write(data)
    print('%d seeds in %s' % (len(seeds), args.out))


if __name__ == '__main__':
    main()
