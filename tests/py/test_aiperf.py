"""NVIDIA's aiperf (PyPI, in .venv-aiperf) runs a short streaming chat
profile against the MPI job with no failed request. aiperf needs a Hugging
Face tokenizer: `rotor-model export-tokenizer` writes it from the GGUF."""
import json
import os
import subprocess

import pytest

from conftest import ROOT, ROTOR_MODEL, gen_model
from jobutil import start_job

AIPERF = os.path.join(ROOT, ".venv-aiperf", "bin", "aiperf")


@pytest.fixture(scope="module")
def tiny():
    return gen_model("aiperf-tiny", "--tokenizer", "bpe", "--n-vocab", "2000", "--n-ctx", "512", "--seed", "9")


def test_aiperf_chat_streaming(tiny, tmp_path):
    if not os.path.exists(AIPERF):
        pytest.fail("aiperf is not installed (make deps puts it into .venv-aiperf)")
    tok = tmp_path / "tokenizer"
    subprocess.run([ROTOR_MODEL, "export-tokenizer", tiny, str(tok)], check=True, capture_output=True)
    art = tmp_path / "aiperf"
    n = 40
    with start_job(tiny, tmp_path, np=3) as job:
        r = subprocess.run([AIPERF, "profile", "--model", "aiperf-tiny", "--url", job.url, "--endpoint-type", "chat",
                            "--streaming", "--tokenizer", str(tok), "--request-count", str(n), "--concurrency", "4",
                            "--synthetic-input-tokens-mean", "48", "--output-tokens-mean", "16",
                            "--extra-inputs", "ignore_eos:true", "--artifact-dir", str(art), "--ui-type", "none"],
                           capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    j = json.load(open(art / "profile_export_aiperf.json"))
    assert j["request_count"]["avg"] == n
    assert not j.get("error_summary"), j["error_summary"]
    assert j["time_to_first_token"]["avg"] > 0
    assert j["output_token_throughput"]["avg"] > 0
    # ignore_eos holds: every request produced the output length aiperf asked for
    assert j["output_sequence_length"]["avg"] == pytest.approx(16, rel=0.35)
