"""rotor-bench (docs/bench.md) against a scripted fake endpoint with known
delays (tests/py/fakeserver.py), against aiperf on the same endpoint, and
against the real job.

- metric arithmetic: TTFT, ITL, latency, token counts and throughputs in the
  JSON summary match the fake server's script and are exactly what the
  HDF5 records imply; goodput splits a known fraction; errors are counted by
  kind and kept out of the latency statistics; warm-up requests are in the
  HDF5 file (marked) but in no metric;
- 2,000 concurrent streams from one process, none dropped (the fake server
  holds every answer until all 2,000 requests are open);
- trace replay (a Mooncake trace from make_trace.py) at the trace's times
  (within 5 ms), with its lengths and shared blocks as identical token spans;
- TTFT p50, ITL p50 and output throughput within 10% of aiperf's;
- a run against `rotor serve`, `rotor-bench compare`, and the plots.
"""
import json
import math
import re
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import BUILD, ROOT, ROTOR_MODEL, gen_model
from fakeserver import FakeServer, Reply, errors_every, table
from jobutil import start_job

RB = os.path.join(BUILD, "bin", "rotor-bench")
AIPERF = os.path.join(ROOT, ".venv-aiperf", "bin", "aiperf")
PLOT = os.path.join(ROOT, "bench", "plot_bench.py")
MAKE_TRACE = os.path.join(ROOT, "tests", "py", "make_trace.py")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Scheduling noise on a shared 2-core machine: the fake server sends on
# absolute deadlines, so a single delay is late by at most a few ms.
TOL_MS = 5.0


@pytest.fixture(scope="module", autouse=True)
def rotor_bench():
    if not os.path.exists(RB):
        pytest.fail(f"{RB} is not built (make build)")
    return RB


@pytest.fixture(scope="module")
def tiny():
    # the same model as test_aiperf.py (cached once for both)
    return gen_model("aiperf-tiny", "--tokenizer", "bpe", "--n-vocab", "2000", "--n-ctx", "512", "--seed", "9")


def profile(url, tmp_path, name, *args, timeout=180, model="fake"):
    """Run rotor-bench profile; return (summary dict, h5 path, stdout)."""
    h5 = os.path.join(str(tmp_path), name + ".h5")
    js = os.path.join(str(tmp_path), name + ".json")
    cmd = [RB, "profile", "--url", url, "--model", model, "--no-progress", "--out", h5, "--json", js,
           *[str(a) for a in args]]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    with open(js) as f:
        return json.load(f), h5, r.stdout


def _text(v):
    if isinstance(v, bytes):
        return v.split(b"\0", 1)[0].decode()
    return str(v)


def load_h5(path):
    """(/requests records, /token_times records, /meta attrs, summary dict)."""
    with h5py.File(path, "r") as f:
        rq = f["requests"][()]
        tt = f["token_times"][()]
        meta = {k: _text(v) for k, v in f["meta"].attrs.items()}
        summary = json.loads(_text(f["summary"].attrs["summary_json"]))
    return rq, tt, meta, summary


def errors_of(rq):
    return np.array([_text(e) for e in rq["error"]])


def ms(a):
    return np.asarray(a, dtype=float) * 1e3


def check_stats(stats, values):
    """The JSON's percentiles/mean/min/max are exactly those of values
    (numpy's linear-interpolation percentiles, as AIPerf)."""
    v = np.asarray(values, dtype=float)
    assert len(v) > 0
    for p in (50, 90, 95, 99):
        assert stats[f"p{p}"] == pytest.approx(np.percentile(v, p), rel=1e-6, abs=1e-6), p
    assert stats["mean"] == pytest.approx(v.mean(), rel=1e-6, abs=1e-6)
    assert stats["min"] == pytest.approx(v.min(), rel=1e-6, abs=1e-6)
    assert stats["max"] == pytest.approx(v.max(), rel=1e-6, abs=1e-6)


# -- the fake endpoint itself -----------------------------------------------

def test_fakeserver_speaks_openai():
    """The official openai client reads the fake server's streams, usage,
    whole answers and errors; token times follow the script."""
    import time

    import openai
    with FakeServer(ttft=0.040, itl=0.010, script=errors_every(3)) as srv:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="k", max_retries=0)
        t0 = time.monotonic()
        times, usage = [], None
        for ch in c.chat.completions.create(model="m", messages=[{"role": "user", "content": "a b c"}],
                                            max_tokens=8, stream=True, stream_options={"include_usage": True}):
            if ch.choices and ch.choices[0].delta.content:
                times.append(time.monotonic() - t0)
            if ch.usage:
                usage = ch.usage
        assert len(times) == 8 and usage.completion_tokens == 8 and usage.prompt_tokens == 3
        # 7 gaps of 10 ms, by the server's own clock below (the client's
        # receipts may each be late by scheduling on a loaded machine)
        assert times == sorted(times) and times[-1] > times[0]
        r = c.completions.create(model="m", prompt=[1, 2, 3, 4], max_tokens=5)
        assert r.choices[0].text.split() == [f"tok{k}" for k in range(5)] and r.usage.prompt_tokens == 4
        with pytest.raises(openai.InternalServerError):
            c.completions.create(model="m", prompt="x", max_tokens=2)
    assert [r.status for r in srv.records] == [200, 200, 500]
    # the stream ended at TTFT + 7 ITL after arrival, the whole answer at TTFT + 4 ITL:
    # never early (the server sleeps them); late only by scheduling, which a loaded
    # machine stretches without bound, so no upper limit
    assert (srv.records[0].t_done - srv.records[0].t_arrival) * 1e3 >= 110 - 1
    assert (srv.records[1].t_done - srv.records[1].t_arrival) * 1e3 >= 80 - 1


# -- metric arithmetic ------------------------------------------------------

@pytest.fixture(scope="module")
def basic_run(tmp_path_factory):
    """TTFT 50 ms, ITL 10 ms, 20 tokens; concurrency 4, 40 requests."""
    tmp = tmp_path_factory.mktemp("basic")
    with FakeServer(ttft=0.050, itl=0.010, tokens=20) as srv:
        s, h5, out = profile(srv.url, tmp, "basic", "--concurrency", 4, "--requests", 40,
                             "--input-tokens", 32, "--output-tokens", 20, "--seed", 7)
    return srv, s, h5, out


def test_metrics_match_script(basic_run):
    srv, s, h5, out = basic_run
    assert len(srv.records) == 40 and not srv.errors
    assert srv.max_inflight == 4, "fixed concurrency 4"
    for r in srv.records:
        b = r.body
        assert r.path == "/v1/chat/completions" and r.status == 200
        assert b["model"] == "fake" and b["stream"] is True and b["ignore_eos"] is True
        assert b["stream_options"] == {"include_usage": True}
        assert b["max_tokens"] == 20 and b.get("max_completion_tokens", 20) == 20
        assert isinstance(b["messages"], list) and b["messages"][-1]["role"] == "user"
    assert s["requests"]["completed"] == 40 and s["requests"]["errors"] == 0
    assert s["ttft_ms"]["p50"] == pytest.approx(50.0, abs=TOL_MS)
    assert s["itl_ms"]["p50"] == pytest.approx(10.0, abs=1.0)
    assert s["itl_token_ms"]["p50"] == pytest.approx(10.0, abs=TOL_MS)
    assert s["latency_ms"]["p50"] == pytest.approx(50.0 + 19 * 10.0, abs=2 * TOL_MS)
    assert s["output_tokens"]["min"] == s["output_tokens"]["max"] == 20
    assert "TTFT" in out.upper() or "ttft" in out, "the summary table is printed"


def test_metrics_exact_from_hdf5(basic_run):
    srv, s, h5, _ = basic_run
    rq, tt, meta, summary = load_h5(h5)
    assert summary == s, "/summary summary_json is the JSON summary"
    assert meta["url"] == srv.url and meta["model"] == "fake"
    assert json.loads(meta["params_json"])
    assert len(rq) == 40 and not rq["warmup"].any()
    assert (rq["http_status"] == 200).all() and (errors_of(rq) == "").all()
    assert (rq["output_tokens"] == 20).all()
    assert sorted(rq["index"].tolist()) == list(range(40))
    ttft = ms(rq["t_first"] - rq["t_send"])
    lat = ms(rq["t_end"] - rq["t_send"])
    itl = (lat - ttft) / 19
    # each request: latency = TTFT + 19 ITL of the script. A TTFT is never
    # early (the server sleeps 50 ms after the request reached it); any one
    # time may be late by scheduling on a loaded machine (the first token's
    # as much as the last's), so the bulk - the median - is what sits on the
    # script
    assert np.all(ttft >= 50.0 - 1), ttft
    assert abs(np.median(ttft) - 50.0) < 3 * TOL_MS, ttft
    assert abs(np.median(lat - ttft) - 190.0) < 2 * TOL_MS, lat - ttft
    # the summary is exactly the arithmetic of the records
    check_stats(s["ttft_ms"], ttft)
    check_stats(s["latency_ms"], lat)
    check_stats(s["itl_ms"], itl)
    # token times: 20 per request, the first is t_first, gaps are ITL per token
    gaps = []
    for r in rq:
        t = np.sort(tt[tt["request"] == r["index"]], order="index")
        assert t["index"].tolist() == list(range(20))
        assert t["t"][0] == pytest.approx(r["t_first"], abs=1e-9)
        assert t["t"][-1] <= r["t_end"] + 1e-9
        gaps.extend(ms(np.diff(t["t"])))
    check_stats(s["itl_token_ms"], gaps)
    assert np.median(gaps) == pytest.approx(10.0, abs=TOL_MS)
    # duration and throughputs
    dur = float(rq["t_end"].max() - rq["t_send"].min())
    assert s["duration_s"] == pytest.approx(dur, rel=1e-6)
    assert s["output_token_throughput"] == pytest.approx(40 * 20 / dur, rel=1e-6)
    assert s["input_token_throughput"] == pytest.approx(rq["input_tokens"].sum() / dur, rel=1e-6)
    assert s["request_throughput"] == pytest.approx(40 / dur, rel=1e-6)
    check_stats(s["input_tokens"], rq["input_tokens"])


def test_goodput_fraction(tmp_path):
    """Half the requests answer after 30 ms, half after 120 ms: an SLO of
    TTFT <= 100 ms is met by exactly half."""
    script = table([Reply(ttft=0.030), Reply(ttft=0.120)])
    with FakeServer(itl=0.005, tokens=5, script=script) as srv:
        s, h5, _ = profile(srv.url, tmp_path, "goodput", "--concurrency", 4, "--requests", 40,
                           "--output-tokens", 5, "--goodput", "ttft:100")
    assert len(srv.records) == 40
    assert s["requests"]["completed"] == 40
    g = s["goodput"]
    assert g["fraction"] == 0.5
    assert g["requests_per_s"] == pytest.approx(20 / s["duration_s"], rel=1e-6)
    assert g["slo"] == {"ttft_ms": 100}
    rq, _, _, _ = load_h5(h5)
    ttft = ms(rq["t_first"] - rq["t_send"])
    assert int((ttft <= 100).sum()) == 20


def test_errors_by_kind_excluded(tmp_path):
    """Every 4th request answers 500 at once: 10 http_5xx errors, and none of
    them in the latency, TTFT or token statistics."""
    with FakeServer(ttft=0.050, itl=0.010, tokens=5, script=errors_every(4)) as srv:
        s, h5, _ = profile(srv.url, tmp_path, "errors", "--concurrency", 4, "--requests", 40,
                           "--output-tokens", 5)
    assert len(srv.records) == 40
    assert sum(r.status == 500 for r in srv.records) == 10
    req = s["requests"]
    assert req["completed"] == 30 and req["errors"] == 10
    assert {k: v for k, v in req["errors_by_kind"].items() if v} == {"http_5xx": 10}
    # a 500 comes back in ~1 ms: counted in the stats, it would pull the minimum down
    assert s["latency_ms"]["min"] >= 50 + 4 * 10 - TOL_MS
    assert s["ttft_ms"]["min"] >= 50 - TOL_MS
    assert s["output_tokens"]["min"] == 5
    assert s["output_token_throughput"] == pytest.approx(30 * 5 / s["duration_s"], rel=1e-6)
    rq, _, _, _ = load_h5(h5)
    bad = rq["http_status"] == 500
    assert bad.sum() == 10 and (errors_of(rq)[bad] == "http_5xx").all()
    assert (errors_of(rq)[~bad] == "").all()


def test_warmup_excluded(tmp_path):
    """3 warm-up requests (answered after 200 ms) then 6 measured ones (30 ms),
    one at a time: the warm-up is marked in the HDF5 file and in no metric."""
    script = lambda i, path, body: Reply(ttft=0.200) if i < 3 else Reply(ttft=0.030)  # noqa: E731
    with FakeServer(itl=0.005, tokens=3, script=script) as srv:
        s, h5, _ = profile(srv.url, tmp_path, "warmup", "--concurrency", 1, "--warmup", 3, "--requests", 6,
                           "--output-tokens", 3)
    assert len(srv.records) == 9
    assert s["requests"]["completed"] == 6 and s["requests"]["errors"] == 0
    assert s["ttft_ms"]["max"] < 100, "a warm-up request's TTFT is in the stats"
    rq, tt, _, _ = load_h5(h5)
    assert len(rq) == 9
    w = rq["warmup"] == 1
    assert w.sum() == 3
    assert np.all(ms(rq["t_first"][w] - rq["t_send"][w]) > 150)
    assert rq["t_send"][w].max() < rq["t_send"][~w].min(), "warm-up goes first"
    m = rq[~w]
    assert s["duration_s"] == pytest.approx(float(m["t_end"].max() - m["t_send"].min()), rel=1e-6)
    check_stats(s["ttft_ms"], ms(m["t_first"] - m["t_send"]))


def test_completions_not_streamed(tmp_path):
    """--endpoint completions --no-stream: one answer after TTFT + 4 ITL;
    --api-key goes out as a bearer token and into no output."""
    with FakeServer(ttft=0.050, itl=0.010, tokens=5) as srv:
        s, h5, _ = profile(srv.url, tmp_path, "nostream", "--endpoint", "completions", "--no-stream",
                           "--concurrency", 2, "--requests", 6, "--output-tokens", 5, "--api-key", "sekrit-42")
    assert len(srv.records) == 6
    for r in srv.records:
        assert r.path == "/v1/completions" and r.body["stream"] is False and "prompt" in r.body
        assert r.headers.get("authorization") == "Bearer sekrit-42"
    assert s["requests"]["completed"] == 6
    assert s["latency_ms"]["p50"] == pytest.approx(90.0, abs=TOL_MS)
    assert s["output_tokens"]["min"] == s["output_tokens"]["max"] == 5
    for p in (h5, h5[:-3] + ".json"):
        with open(p, "rb") as f:
            assert b"sekrit-42" not in f.read(), p


def test_seed_reproducible(tmp_path):
    """The same --seed sends the same prompts and lengths; another seed does not."""
    def bodies(seed, name):
        with FakeServer(ttft=0.001, itl=0.001) as srv:
            profile(srv.url, tmp_path, name, "--concurrency", 1, "--requests", 5, "--input-tokens", "20:5",
                    "--output-tokens", "6:2", "--seed", seed)
        return [(r.body["messages"], r.body["max_tokens"]) for r in srv.records]
    a, b, c = bodies(5, "s5a"), bodies(5, "s5b"), bodies(6, "s6")
    assert len(a) == 5 and a == b
    assert a != c
    assert len({json.dumps(m) for m, _ in a}) > 1, "every prompt is the same"


# -- 2,000 concurrent streams -----------------------------------------------

def test_2000_concurrent_streams(tmp_path):
    """One rotor-bench process holds 2,000 streams: the fake server answers
    nothing until all 2,000 requests are open at once."""
    n = 2000
    with FakeServer(ttft=0.010, itl=0.005, tokens=4, gate=n, gate_timeout=90) as srv:
        s, h5, _ = profile(srv.url, tmp_path, "c2000", "--concurrency", n, "--requests", n,
                           "--input-tokens", 16, "--output-tokens", 4, "--timeout", 120, timeout=300)
    assert not srv.errors
    assert len(srv.records) == n
    assert srv.max_inflight == n, f"only {srv.max_inflight} requests were open at once"
    assert all(r.status == 200 and r.tokens == 4 for r in srv.records)
    assert s["requests"]["completed"] == n and s["requests"]["errors"] == 0
    assert s["output_tokens"]["min"] == 4
    rq, tt, _, _ = load_h5(h5)
    assert len(rq) == n and (rq["http_status"] == 200).all()
    assert len(tt) == 4 * n
    cpu = s["client_cpu_us_per_token"]
    assert cpu > 0 and math.isfinite(cpu)
    print(f"\nrotor-bench, 2,000 concurrent streams x 4 tokens: client CPU {cpu:.1f} us per token")


# -- trace replay -----------------------------------------------------------

@pytest.mark.parametrize("speed", [1, 2])
def test_trace_replay(tiny, tmp_path, speed):
    """A Mooncake trace replayed: requests arrive at the trace's times /
    speed (within 5 ms, relative to the first), with its input lengths
    (token ids on /v1/completions) and output lengths, and equal hash ids
    send equal token spans."""
    if not os.path.exists(MAKE_TRACE):
        pytest.fail(f"{MAKE_TRACE} is missing")
    block = 64
    trace = tmp_path / "trace.jsonl"
    subprocess.run([sys.executable, MAKE_TRACE, "--out", str(trace), "--n", "16", "--seed", "3",
                    "--mean-gap-ms", "100", "--block-tokens", str(block), "--max-output", "16"],
                   check=True, capture_output=True, text=True, timeout=60)
    rows = sorted((json.loads(line) for line in open(trace) if line.strip()), key=lambda r: r["timestamp"])
    assert len(rows) == 16
    hashes = [h for r in rows for h in r["hash_ids"]]
    assert len(hashes) > len(set(hashes)), "the trace shares no block; the span check would prove nothing"
    with FakeServer(ttft=0.005, itl=0.002) as srv:
        s, h5, _ = profile(srv.url, tmp_path, "trace", "--endpoint", "completions", "--trace", str(trace),
                           "--speed", speed, "--block-tokens", block, "--tokenizer-gguf", tiny)
    assert s["requests"]["completed"] == len(rows) and s["requests"]["errors"] == 0
    assert len(srv.records) == len(rows) and not srv.errors
    # match each trace row to the request with its lengths that arrived nearest its time
    t0 = min(r.t_arrival for r in srv.records)
    free = list(srv.records)
    spans, late = {}, []
    for row in rows:
        want = (row["timestamp"] - rows[0]["timestamp"]) / speed
        cands = [r for r in free if isinstance(r.body.get("prompt"), list)
                 and len(r.body["prompt"]) == row["input_length"] and r.body["max_tokens"] == row["output_length"]]
        assert cands, f"no request with the lengths of {row}"
        rec = min(cands, key=lambda r: abs((r.t_arrival - t0) * 1e3 - want))
        free.remove(rec)
        late.append((rec.t_arrival - t0) * 1e3 - want)
        ids = rec.body["prompt"]
        assert all(isinstance(t, int) for t in ids), "token ids expected on /v1/completions"
        for j, h in enumerate(row["hash_ids"]):
            span = ids[j * block:(j + 1) * block]
            if len(span) < block:  # the last block is cut to input_length
                assert spans.get(h, span)[:len(span)] == span, f"hash id {h}: different tokens"
                continue
            assert spans.setdefault(h, span) == span, f"hash id {h} maps to different tokens"
    # rotor-bench's own send times (HDF5), relative to the first, are the
    # trace's times / speed about their median offset: within 0.5 ms at the
    # median and 25 ms each (a loaded 2-core machine delayed one send 8 ms once
    # in CI, and under ASan the first send 0.7 ms, shifting the rest); the arrivals, timed by this
    # Python fake server's thread (which a loaded 2-core machine can hold up:
    # CI once saw one arrival 7.7 ms late while every send was within 0.4 ms,
    # and a late first arrival shifts all the others), keep the trace's gaps:
    # about their median offset, within 1 ms at the median and 25 ms each
    rq, _, _, _ = load_h5(h5)
    sent = np.sort(ms(rq["t_send"] - rq["t_send"].min()))
    want = np.array([(r["timestamp"] - rows[0]["timestamp"]) / speed for r in rows])
    sent_late = sent - want
    print(f"trace replay x{speed}: send lateness max {np.abs(sent_late).max():.2f} ms, "
          f"median {np.median(np.abs(sent_late)):.2f} ms")
    sent_dev = np.abs(sent_late - np.median(sent_late))  # about the median offset: a late first send shifts all
    assert np.median(sent_dev) <= 0.5 and sent_dev.max() <= 25.0, \
        f"send vs trace time (ms): {sent_late.round(2).tolist()}"
    why = (f"arrival vs trace time (ms): {[round(x, 2) for x in late]}; "
           f"send vs trace time (ms): {sent_late.round(2).tolist()}")
    dev = np.abs(np.array(late) - np.median(late))
    assert np.median(dev) <= 1.0 and dev.max() <= 25.0, why


# -- agreement with aiperf --------------------------------------------------

def test_agrees_with_aiperf(tiny, tmp_path):
    """The same fake endpoint and workload through rotor-bench and aiperf:
    TTFT p50, ITL p50 and output token throughput within 10%."""
    if not os.path.exists(AIPERF):
        pytest.fail("aiperf is not installed (make deps puts it into .venv-aiperf)")
    tok = tmp_path / "tokenizer"
    subprocess.run([ROTOR_MODEL, "export-tokenizer", tiny, str(tok)], check=True, capture_output=True, timeout=120)
    n, conc, osl = 40, 4, 20
    with FakeServer(ttft=0.050, itl=0.010, tokens=osl) as srv:
        s, _, _ = profile(srv.url, tmp_path, "rb", "--concurrency", conc, "--requests", n,
                          "--input-tokens", 32, "--output-tokens", osl, "--tokenizer-gguf", tiny)
        art = tmp_path / "aiperf"
        r = subprocess.run([AIPERF, "profile", "--model", "fake", "--url", srv.url, "--endpoint-type", "chat",
                            "--streaming", "--tokenizer", str(tok), "--request-count", str(n),
                            "--concurrency", str(conc), "--synthetic-input-tokens-mean", "32",
                            "--output-tokens-mean", str(osl), "--use-server-token-count",
                            "--extra-inputs", "ignore_eos:true", "--artifact-dir", str(art), "--ui-type", "none"],
                           capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    a = json.load(open(art / "profile_export_aiperf.json"))
    assert a["request_count"]["avg"] == n
    assert len(srv.records) == 2 * n
    pairs = {"TTFT p50": (s["ttft_ms"]["p50"], a["time_to_first_token"]["p50"]),
             "ITL p50": (s["itl_ms"]["p50"], a["inter_token_latency"]["p50"]),
             "output tokens/s": (s["output_token_throughput"], a["output_token_throughput"]["avg"])}
    print("\nrotor-bench vs aiperf: " + ", ".join(f"{k} {x:.2f} / {y:.2f}" for k, (x, y) in pairs.items()))
    # the latencies are the fake server's pacing, seen by both clients: within 10%.
    # The throughput also counts each client's own time between a request's end and
    # the next one's start, where aiperf (Python) is the slower of the two on a
    # loaded 2-core machine (CI once: 329 vs 292 tokens/s): within 20%
    for k, (x, y) in pairs.items():
        rel = 0.20 if k == "output tokens/s" else 0.10
        assert x == pytest.approx(y, rel=rel), f"{k}: rotor-bench {x} vs aiperf {y}"


# -- the real job, compare, plots -------------------------------------------

def test_against_rotor_and_compare(tiny, tmp_path):
    """Two short runs against `rotor serve` with prompts of the model's own
    tokens (--tokenizer-gguf); `rotor-bench compare` prints their ratios."""
    with start_job(tiny, tmp_path, np=1) as job:
        a, a_h5, _ = profile(job.url, tmp_path, "a", "--endpoint", "completions", "--concurrency", 1,
                             "--requests", 6, "--input-tokens", 24, "--output-tokens", 8, "--tokenizer-gguf", tiny,
                             model="aiperf-tiny")
        b, b_h5, _ = profile(job.url, tmp_path, "b", "--concurrency", 4, "--requests", 8, "--input-tokens", 24,
                             "--output-tokens", 8, "--tokenizer-gguf", tiny, model="aiperf-tiny")
    for s, n in ((a, 6), (b, 8)):
        assert s["requests"]["completed"] == n and s["requests"]["errors"] == 0
        assert s["output_tokens"]["min"] == s["output_tokens"]["max"] == 8, "ignore_eos holds the length"
        assert s["ttft_ms"]["p50"] > 0 and s["output_token_throughput"] > 0
    # token-id prompts on /v1/completions: rotor counts exactly the tokens sent
    assert a["input_tokens"]["min"] == a["input_tokens"]["max"] == 24
    # chat: the same 24-token user message, plus the chat template's tokens
    assert b["input_tokens"]["min"] == b["input_tokens"]["max"] > 24
    r = subprocess.run([RB, "compare", a_h5, b_h5], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # "metric   A   B   B/A" rows
    rows = re.finditer(r"^(\S.*?)\s{2,}(\S+)\s+(\S+)\s+(\S+)$", r.stdout, re.M)
    lines = {m.group(1): m.groups()[1:] for m in rows}
    for key, get in (("output token throughput (tok/s)", lambda s: s["output_token_throughput"]),
                     ("TTFT (ms) p50", lambda s: s["ttft_ms"]["p50"]),
                     ("request throughput (req/s)", lambda s: s["request_throughput"])):
        assert key in lines, r.stdout
        assert float(lines[key][-1]) == pytest.approx(get(b) / get(a), abs=0.006), (key, r.stdout)


def test_plots(basic_run, tmp_path):
    _, _, h5, _ = basic_run
    out = tmp_path / "plots"
    r = subprocess.run([sys.executable, PLOT, h5, "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    from PIL import Image
    for name in ("latency_cdf.png", "ttft_over_time.png", "itl_over_time.png", "throughput_over_time.png"):
        p = out / name
        assert p.exists(), name
        assert p.read_bytes()[:8] == PNG_MAGIC, name
        with Image.open(p) as im:
            im.verify()
            assert im.size[0] >= 600 and im.size[1] >= 400
    assert "40 requests plotted" in r.stdout
