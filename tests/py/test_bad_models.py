"""Broken model files get a clear error naming the problem, never a crash."""
import os
import subprocess

import pytest

from conftest import ROTOR, gen_model


def generate(path):
    return subprocess.run([ROTOR, "generate", "--model", path, "--prompt", "hello", "-n", "2"],
                          capture_output=True, text=True, timeout=120)


def variant(tmp_path, name, edit):
    src = gen_model("tiny-f32-bpe", "--type", "f32", "--tokenizer", "bpe", "--seed", "1")
    data = open(src, "rb").read()
    out = tmp_path / name
    out.write_bytes(edit(data))
    return str(out)


@pytest.mark.parametrize("name,edit,words", [
    ("truncated.gguf", lambda d: d[: len(d) // 2], ["runs past the end"]),
    ("header-only.gguf", lambda d: d[:40], ["metadata count 25 is more than the file can hold"]),
    ("not-gguf.gguf", lambda d: b"GGML" + d[4:], ["bad magic"]),
    ("version9.gguf", lambda d: d[:4] + (9).to_bytes(4, "little") + d[8:], ["unknown version 9"]),
    ("arch.gguf", lambda d: d.replace(b"\x05\x00\x00\x00\x00\x00\x00\x00llama", b"\x05\x00\x00\x00\x00\x00\x00\x00lamma", 1),
     ["architecture 'lamma' is not supported"]),
    ("missing-tensor.gguf", lambda d: d.replace(b"blk.0.ffn_up.weight", b"blk.0.ffn_up.weighX", 1),
     ["missing tensor blk.0.ffn_up.weight"]),
    ("empty.gguf", lambda d: b"", ["truncated"]),
])
def test_broken_model_is_refused_clearly(tmp_path, name, edit, words):
    r = generate(variant(tmp_path, name, edit))
    assert r.returncode == 1, f"exit {r.returncode} (negative = killed by a signal): {r.stderr}"
    for w in words:
        assert w in r.stderr, f"{name}: {w!r} not in: {r.stderr}"


def moe_variant(tmp_path, name, edit):
    src = gen_model("tiny-moe-f32", "--type", "f32", "--tokenizer", "bpe", "--n-expert", "4", "--n-expert-used", "2",
                    "--seed", "15")
    out = tmp_path / name
    out.write_bytes(edit(open(src, "rb").read()))
    return str(out)


def set_u32(key, value):
    """edit: the u32 metadata value of key (GGUF: key string, type 4, value)"""
    k = key.encode()
    def edit(d):
        i = d.index(len(k).to_bytes(8, "little") + k) + 8 + len(k)
        assert d[i:i + 4] == (4).to_bytes(4, "little")
        return d[:i + 4] + value.to_bytes(4, "little") + d[i + 8:]
    return edit


@pytest.mark.parametrize("name,edit,words", [
    ("used-gt-count.gguf", set_u32("llama.expert_used_count", 5),
     ["llama.expert_used_count = 5 out of range [1, 4]"]),
    ("too-many-experts.gguf", set_u32("llama.expert_count", 100000),
     ["llama.expert_count = 100000 out of range"]),
    ("expert-count-vs-tensor.gguf", set_u32("llama.expert_count", 3),
     ["tensor blk.0.ffn_gate_inp.weight has shape [64, 4, 1], expected [64, 3]"]),
    ("missing-router.gguf", lambda d: d.replace(b"blk.1.ffn_gate_inp.weight", b"blk.1.ffn_gate_inp.weighX", 1),
     ["missing tensor blk.1.ffn_gate_inp.weight"]),
    ("qwen3-missing-q-norm.gguf", lambda d: d.replace(b"blk.0.attn_q_norm.weight", b"blk.0.attn_q_norm.weighX", 1),
     ["missing tensor blk.0.attn_q_norm.weight"]),
])
def test_broken_moe_model_is_refused_clearly(tmp_path, name, edit, words):
    if name.startswith("qwen3"):
        src = gen_model("tiny-qwen3moe-f32", "--type", "f32", "--arch", "qwen3moe", "--seed", "23")
        out = tmp_path / name
        out.write_bytes(edit(open(src, "rb").read()))
        r = generate(str(out))
    else:
        r = generate(moe_variant(tmp_path, name, edit))
    assert r.returncode == 1, f"exit {r.returncode} (negative = killed by a signal): {r.stderr}"
    for w in words:
        assert w in r.stderr, f"{name}: {w!r} not in: {r.stderr}"


def test_missing_file():
    r = generate("/nonexistent/model.gguf")
    assert r.returncode == 1
    assert "cannot open /nonexistent/model.gguf" in r.stderr
