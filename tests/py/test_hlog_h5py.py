"""The HDF5 job log as its users read it: h5py and h5dump on a file written
by the C writer (the unit test binary test_hlog keeps its round-trip file at
HLOG_TEST_KEEP), and the TTFT/ITL snippet of docs/hdf5-log.md run on it."""
import os
import re
import subprocess
import time

import h5py
import numpy as np
import pytest

from conftest import BUILD, ROOT

TEST_HLOG = os.path.join(BUILD, "tests", "test_hlog")

REQUEST_FIELDS = ["id", "worker", "t_arrival", "t_routed", "t_scheduled", "t_prefill_done",
                  "t_first_token", "t_finish", "queue_wait_s", "tokens_in", "tokens_out",
                  "tokens_cached", "route_overlap_blocks", "http_status", "finish_reason", "error"]
TOKEN_FIELDS = ["request_id", "index", "t"]
STEP_FIELDS = ["worker", "t", "step_s", "n_seqs", "n_prefill_tokens", "n_decode_tokens",
               "n_running", "n_waiting", "blocks_used", "blocks_cached", "blocks_free", "spec_draft_tokens",
               "spec_accepted_tokens"]
WORKER_FIELDS = ["rank", "t", "kind", "role", "detail"]
KV_EVENT_FIELDS = ["worker", "t", "id", "kind", "seq_hash", "block_hash", "parent_hash",
                   "has_parent", "n_tokens", "tier"]
T0 = 1.7e9
N_KV = 4200  # test_hlog.c's N_KV
M64 = (1 << 64) - 1
TRANSFER_FIELDS = ["id", "prefill_worker", "decode_worker", "n_blocks", "n_imported", "bytes",
                   "t_prefill_done", "t_sent", "t_received", "t_imported"]
PLANNER_FIELDS = ["t", "ttft_mean_s", "itl_mean_s", "n_ttft", "n_itl", "n_prefill", "n_decode",
                  "prefill_queue", "rank_moved", "n_moved", "target_prefill", "prefill_tps", "decode_tps",
                  "prefill_cap_tps", "decode_cap_tps", "action", "why"]
N_PLAN = 3  # test_hlog.c's N_PLAN


def kv_seq_hash(i):
    """test_hlog.c's gen_kv_event(i).seq_hash, as a Python int."""
    return (0x9E3779B97F4A7C15 * (i + 1)) & M64


@pytest.fixture(scope="module")
def log_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("hlog")
    path = str(d / "job.h5")
    env = dict(os.environ, HLOG_TEST_KEEP=path)
    r = subprocess.run([TEST_HLOG], cwd=str(d), env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.path.exists(path)
    return path


def test_layout_dtypes_and_counts(log_file):
    with h5py.File(log_file, "r") as f:
        assert set(f.keys()) == {"meta", "requests", "tokens", "steps", "workers", "kv_events",
                                 "transfers", "planner"}
        for name, fields, n, chunk in (("requests", REQUEST_FIELDS, 300, 1024),
                                       ("tokens", TOKEN_FIELDS, 5000, 8192),
                                       ("steps", STEP_FIELDS, 2000, 4096),
                                       ("workers", WORKER_FIELDS, 20, 256),
                                       ("kv_events", KV_EVENT_FIELDS, N_KV, 4096),
                                       ("transfers", TRANSFER_FIELDS, 3, 1024),
                                       ("planner", PLANNER_FIELDS, N_PLAN, 256)):
            ds = f[name]
            assert list(ds.dtype.names) == fields, name
            assert ds.shape == (n,), name
            assert ds.maxshape == (None,), name
            assert ds.chunks == (chunk,), name
            assert "CLOCK_REALTIME" in ds.attrs["units"]
        rq = f["requests"].dtype
        assert rq["id"] == np.dtype("<u8") and rq["t_arrival"] == np.dtype("<f8")
        assert rq["finish_reason"] == np.dtype("S16") and rq["error"] == np.dtype("S128")
        kv = f["kv_events"].dtype
        assert kv["seq_hash"] == np.dtype("<u8") and kv["kind"] == np.dtype("S16")
        assert kv["worker"] == np.dtype("<i4") and kv["t"] == np.dtype("<f8")
        pl = f["planner"].dtype
        assert pl["t"] == np.dtype("<f8") and pl["rank_moved"] == np.dtype("<i4")
        assert pl["action"] == np.dtype("S16") and pl["why"] == np.dtype("S128")
        assert "s since the Unix epoch" in f["planner"].attrs["units"]
        m = f["meta"].attrs
        assert m["model"] == "smollm2.gguf"
        assert m["roles"] == "0:router 1-2:worker"
        assert m["config"].startswith("[roles]\n")
        assert m["layout_version"] == 3
        assert m["rotor_version"]
        assert m["hostname"]
        assert m["dropped_records"] == 0
        assert (m["n_requests"], m["n_tokens"], m["n_steps"], m["n_workers"],
                m["n_kv_events"], m["n_transfers"], m["n_planner"]) == (300, 5000, 2000, 20,
                                                                        N_KV, 3, N_PLAN)
        assert 0 < m["start_time"] <= m["end_time"]


def test_values(log_file):
    with h5py.File(log_file, "r", swmr=True) as f:
        rq = f["requests"][:]
        tok = f["tokens"][:]
        steps = f["steps"][:]
        workers = f["workers"][:]
        kv = f["kv_events"][:]
        pl = f["planner"][:]
    assert list(rq["id"]) == list(range(1000, 1300))
    r1 = rq[1]
    assert r1["worker"] == 2 and r1["http_status"] == 200 and r1["tokens_in"] == 11
    assert r1["finish_reason"] == b"stop" and r1["error"] == b""
    assert r1["t_arrival"] == T0 + 1
    assert r1["t_first_token"] - r1["t_arrival"] == pytest.approx(0.0125, abs=1e-6)
    assert rq[0]["finish_reason"] == b"error" and rq[0]["worker"] == -1
    assert rq[0]["error"] == b"worker 2 is down (request 0)"
    assert rq[7]["finish_reason"] == b"x" * 15  # an unterminated field is cut to 15 bytes
    assert tok[0]["request_id"] == 1000 and tok[49]["index"] == 49 and tok[50]["index"] == 0
    assert tok[50]["request_id"] == 1001
    assert steps[3]["n_prefill_tokens"] == 300 and steps[3]["blocks_free"] == 997
    assert steps[3]["spec_draft_tokens"] == 12 and steps[3]["spec_accepted_tokens"] == 9
    assert workers[1]["kind"] == b"down" and workers[0]["role"] == b"router"
    assert workers[5]["detail"] == b"event 5"
    assert kv["seq_hash"].dtype == np.dtype("<u8") and kv["kind"].dtype == np.dtype("S16")
    assert [bytes(k) for k in kv["kind"][:7]] == [b"stored", b"removed", b"stored", b"stored",
                                                  b"removed", b"stored", b"cleared"]
    assert kv[11]["kind"] == b"y" * 15  # an unterminated field is cut to 15 bytes
    assert int(kv[0]["seq_hash"]) == kv_seq_hash(0) == 0x9E3779B97F4A7C15
    assert int(kv[1000]["seq_hash"]) == kv_seq_hash(1000) and kv_seq_hash(1000) >= 1 << 63
    assert kv[0]["has_parent"] == 0 and kv[0]["parent_hash"] == 0
    assert kv[5]["has_parent"] == 1 and int(kv[5]["parent_hash"]) == kv_seq_hash(4)
    assert all(int(b) >> 63 == 1 for b in kv["block_hash"][:100])
    assert (kv[4]["worker"], kv[4]["id"], kv[4]["tier"], kv[4]["n_tokens"]) == (2, 2, 2, 5)
    assert kv[4]["t"] == pytest.approx(T0 + 0.004, abs=1e-6)
    for w in (1, 2, 3):  # per worker, ids 1, 2, ... without a gap
        ids = kv["id"][kv["worker"] == w]
        assert list(ids) == list(range(1, len(ids) + 1))
    assert [bytes(a) for a in pl["action"]] == [b"hold", b"to_prefill", b"to_decode"]
    assert list(pl["rank_moved"]) == [-1, 4, 2]
    assert pl[1]["why"] == b"ttft 0.750 s over 1.000 s, itl under headroom"
    assert pl[2]["why"] == b"z" * 127  # an unterminated field is cut to 127 bytes
    assert pl[1]["ttft_mean_s"] == 0.75 and pl[2]["n_decode"] == 3
    # the predictive planner's view (test_hlog.c's gen_planner)
    assert list(pl["n_moved"]) == [0, 1, 2] and list(pl["target_prefill"]) == [-1, 4, 5]
    assert list(pl["prefill_tps"]) == [0.0, 1000.5, 2001.0] and list(pl["decode_cap_tps"]) == [300.125, 600.25, 900.375]


def test_h5dump_header(log_file):
    r = subprocess.run(["h5dump", "-H", log_file], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for name in ("/", "meta", "requests", "tokens", "steps", "workers", "kv_events", "transfers",
                 "planner"):
        assert re.search(r'(GROUP|DATASET) "%s"' % re.escape(name), r.stdout), name
    assert "H5S_UNLIMITED" in r.stdout and '"t_first_token"' in r.stdout


def test_docs_snippet_computes_ttft_and_itl(log_file):
    doc = open(os.path.join(ROOT, "docs", "hdf5-log.md")).read()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert blocks, "docs/hdf5-log.md has no python block"
    code = blocks[0]
    assert '"LOG.h5"' in code
    ns = {}
    exec(compile(code.replace('"LOG.h5"', repr(log_file)), "hdf5-log.md", "exec"), ns)
    ttft, itl = ns["ttft"], ns["itl"]
    # 300 requests, those with i % 11 == 0 never got a token; 100 x 50 tokens
    assert len(ttft) == 300 - 28
    assert np.allclose(ttft, 0.0125, atol=1e-6)
    assert len(itl) == 100 * 49
    assert np.allclose(itl, 0.004, atol=1e-6)


COUNTS = (300, 5000, 2000, 20, N_KV)
NAMES = ("requests", "tokens", "steps", "workers", "kv_events")


def swmr_counts(path):
    with h5py.File(path, "r", swmr=True) as f:
        return tuple(f[k].shape[0] for k in NAMES)


def test_killed_writer_keeps_flushed_records(tmp_path):
    """Read while the writer runs (SWMR), SIGKILL it, and the flushed records
    are all there; a plain open needs `h5clear -s` first (docs/hdf5-log.md)."""
    path = str(tmp_path / "killed.h5")
    p = subprocess.Popen([TEST_HLOG, "--write-and-wait", path], cwd=str(tmp_path))
    try:
        counts = None
        for _ in range(1200):  # a cap that only keeps a broken writer from hanging the test
            assert p.poll() is None, "writer exited"
            try:
                counts = swmr_counts(path)
            except (OSError, KeyError):  # not created yet
                counts = None
            if counts == COUNTS:
                break
            time.sleep(0.1)
        assert counts == COUNTS
    finally:
        p.kill()
        p.wait()
    assert swmr_counts(path) == COUNTS
    with h5py.File(path, "r", swmr=True) as f:
        assert f["meta"].attrs["model"] == "killed"
        assert f["meta"].attrs["end_time"] == 0  # never closed
        assert f["tokens"][4999]["index"] == 49
        assert f["requests"][299]["id"] == 1299
        assert int(f["kv_events"][N_KV - 1]["seq_hash"]) == kv_seq_hash(N_KV - 1)
    with pytest.raises(OSError):
        h5py.File(path, "r")  # the file is still marked open for writing
    subprocess.run(["h5clear", "-s", path], check=True, capture_output=True, timeout=120)
    with h5py.File(path, "r") as f:
        assert tuple(f[k].shape[0] for k in NAMES) == COUNTS
