"""Start and stop `rotor serve` for integration tests.

    with start_job(model, tmp_path, np=1, overrides={"server:api_key": "k"}) as job:
        requests.get(job.url + "/health")

One rank runs the front end with an in-process engine; np > 1 runs the MPI
job under mpirun (rank 0 front end, the other ranks workers). The job binds
an ephemeral port (server:port=0) and writes LOG_DIR/endpoint when ready;
start_job waits for that file and for /health to answer 200, and on exit
sends SIGINT to rank 0 and asserts that the job exits 0 (it is killed, and
the test fails, if it does not exit in time).
"""
import contextlib
import dataclasses
import os
import signal
import subprocess
import time

import requests

from conftest import ROOT, ROTOR

MPIRUN = os.environ.get("MPIRUN", "mpirun")

# Environment of every job process. Under `make asan`, LeakSanitizer cannot
# scan an MPI process (Open MPI's threads crash its tracer, and libmpi keeps
# allocations to exit), so leak checks are off for the job; ASan and UBSan
# still check every access. The C unit tests keep leak detection on.
JOB_ENV = dict(os.environ, ASAN_OPTIONS=":".join(filter(None, [os.environ.get("ASAN_OPTIONS", ""),
                                                               "detect_leaks=0"])),
               OMPI_MCA_btl_vader_single_copy_mechanism="none")

BASE_CONFIG = """\
; written by tests/py/jobutil.py
[roles]
router = 0
worker = 1-

[model]
threads = 1

[engine]
kv_cache_bytes = 67108864
max_num_seqs = 16

[sampling]
temperature = 1.0
max_tokens = 16

[job]
shutdown_grace_s = 5

[log]
level = info
hdf5 = true
flush_interval_s = 0.2
"""


def gen_model_in(build, name, *args):
    """BUILD/models/NAME.gguf written by rotor-model gen ARGS unless it exists (for the
    benchmarks; the tests' conftest.gen_model also notices changed ARGS)."""
    path = os.path.join(build, "models", name + ".gguf")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        subprocess.run([os.path.join(build, "bin", "rotor-model"), "gen", "--out", path, *args], check=True,
                       stdout=subprocess.DEVNULL)
    return path


def rotor_bench(build, job, model, seed, args):
    """rotor-bench profile against the job's completions endpoint with the
    model's own tokenizer (model: a GGUF path; its name without .gguf is the
    served id), more ARGS for the workload; returns its JSON summary."""
    import json
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rb.json")
        model_id = os.path.basename(model)[:-5] if model.endswith(".gguf") else os.path.basename(model)
        subprocess.run([os.path.join(build, "bin", "rotor-bench"), "profile", "--url", job.url, "--model", model_id,
                        "--endpoint", "completions", "--tokenizer-gguf", model, "--seed", str(seed),
                        "--json", out, "--no-progress", *map(str, args)], check=True, stdout=subprocess.DEVNULL)
        with open(out) as f:
            return json.load(f)


def greedy_completions(job, prompts, max_tokens=12, concurrent=False, timeout=120):
    """Greedy completions of prompts (ignore_eos) through the openai client, one
    at a time or all at once (one thread each); the texts in prompt order."""
    import threading
    from openai import OpenAI
    model = requests.get(job.url + "/v1/models", timeout=10).json()["data"][0]["id"]
    c = OpenAI(base_url=job.url + "/v1", api_key="x", max_retries=0, timeout=timeout)
    out = [None] * len(prompts)

    def one(i):
        out[i] = c.completions.create(model=model, prompt=prompts[i], max_tokens=max_tokens, temperature=0,
                                      extra_body={"ignore_eos": True}).choices[0].text
    if not concurrent:
        for i in range(len(prompts)):
            one(i)
        return out
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return out


def stream_and_drop(job, body, keep_lines, timeout=120):
    """POST a streaming completion (body: its JSON, stream set here), read
    keep_lines lines of the SSE stream (None: all of it) and close the
    connection, as a client that goes away does. The HTTP status, or None if
    the connection failed."""
    try:
        with requests.post(job.url + "/v1/completions", stream=True, timeout=timeout,
                           json=dict(body, stream=True)) as r:
            for n, _ in enumerate(r.iter_lines()):
                if keep_lines is not None and n >= keep_lines:
                    break
            return r.status_code
    except requests.RequestException:
        return None


def wait_idle(job, timeout=120):
    """Wait until no request is in flight, neither in the front end nor on
    any engine (what dropped clients leave must end); the last /metrics text."""
    deadline = time.monotonic() + timeout
    while True:
        m = requests.get(job.url + "/metrics", timeout=10).text
        if metric(m, "rotor_http_active_requests") == 0 and metric(m, "vllm:num_requests_running") == 0:
            return m
        assert time.monotonic() < deadline, m
        time.sleep(0.1)


def assert_error(resp, status, param=None, code=None):
    """resp is OpenAI's JSON error with this status (and param, code); the error object."""
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    if param is not None:
        assert err["param"] == param, err
    if code is not None:
        assert err["code"] == code, err
    return err


def metric(text, name):
    """Sum of the samples of one metric family in Prometheus text (/metrics)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


@dataclasses.dataclass
class Job:
    url: str            # http://host:port
    endpoint: str       # host:port
    log_dir: str
    proc: subprocess.Popen
    stdout_path: str
    stderr_path: str

    @property
    def host(self):
        return self.endpoint.rsplit(":", 1)[0]

    @property
    def port(self):
        return int(self.endpoint.rsplit(":", 1)[1])

    def output(self):
        """What the job printed so far (stdout and stderr)."""
        out = []
        for p in (self.stdout_path, self.stderr_path):
            with open(p, errors="replace") as f:
                out.append(f.read())
        return "\n".join(out)

    def h5_logs(self):
        return sorted(os.path.join(self.log_dir, f) for f in os.listdir(self.log_dir) if f.endswith(".h5"))


def _rank0_pid(log_dir, proc, np):
    if np == 1:
        return proc.pid
    try:
        with open(os.path.join(log_dir, "rank0.pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return proc.pid


@contextlib.contextmanager
def start_job(model, tmp_path, np=1, overrides=None, config=None, ready_timeout=120.0, stop_timeout=60.0,
              wait_healthy=True):
    """Run the job on model; yield a Job once it serves. tmp_path: a folder
    for the config and the log folder (pytest's tmp_path)."""
    tmp_path = str(tmp_path)
    log_dir = os.path.join(tmp_path, "log")
    os.makedirs(log_dir, exist_ok=True)
    ini = os.path.join(tmp_path, "job.ini")
    with open(ini, "w") as f:
        f.write(config if config is not None else BASE_CONFIG)
    sets = {"model:path": model, "server:port": "0", "server:host": "127.0.0.1", "log:dir": log_dir}
    sets.update(overrides or {})
    cmd = [ROTOR, "serve", ini]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    if np > 1:
        cmd = [MPIRUN, "--oversubscribe", "--allow-run-as-root", "--bind-to", "none", "-np", str(np)] + cmd
    stdout_path = os.path.join(tmp_path, "job.stdout")
    stderr_path = os.path.join(tmp_path, "job.stderr")
    endpoint_file = os.path.join(log_dir, "endpoint")
    with open(stdout_path, "w") as out, open(stderr_path, "w") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT, env=JOB_ENV)
    job = None
    failed = False
    try:
        deadline = time.monotonic() + ready_timeout
        endpoint = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if os.path.exists(endpoint_file):
                with open(endpoint_file) as f:
                    endpoint = f.read().strip()
                if endpoint:
                    break
            time.sleep(0.05)
        if not endpoint:
            raise AssertionError(f"the job did not write {endpoint_file} (exit code {proc.poll()}):\n"
                                 + open(stderr_path, errors="replace").read())
        job = Job(url=f"http://{endpoint}", endpoint=endpoint, log_dir=log_dir, proc=proc,
                  stdout_path=stdout_path, stderr_path=stderr_path)
        if wait_healthy:
            while True:
                try:
                    if requests.get(job.url + "/health", timeout=5).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("the job never became healthy:\n" + job.output())
                time.sleep(0.05)
        yield job
    except BaseException:
        failed = True  # the test's own failure says more than the exit code
        raise
    finally:
        if proc.poll() is None:
            pid = _rank0_pid(log_dir, proc, np)
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                rc = proc.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                if failed:
                    return
                raise AssertionError("the job did not stop within %.0f s of SIGINT:\n%s"
                                     % (stop_timeout, open(stderr_path, errors="replace").read()))
        else:
            rc = proc.returncode
        if job is not None and not failed:
            assert rc == 0, f"the job exited {rc}:\n" + open(stderr_path, errors="replace").read()
