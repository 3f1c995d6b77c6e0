"""rotor under a real Slurm: a private cluster on this machine (slurmctld,
three slurmd posing as nodes n1-n3 under two switches, munge, PMIx; see
slurmutil.py) runs the real job scripts in jobs/.

Checked: the nodes come up idle with their topology addresses; srun starts
rotor on every task and `srun --mpi=pmix` makes them one MPI job; rotor.sbatch
serves a chat completion through the endpoint file, across two nodes, and
shuts down cleanly both on `scancel` (state CANCELLED) and on SIGTERM to the
batch script (what --signal=B:TERM sends before the time limit; state
COMPLETED), every rank exiting 0 and the HDF5 log closed; rotor-hetjob.sbatch
serves with roles from its components; bench.sbatch refuses to run without
rotor-bench.

Skipped, saying why, where Slurm or munge is not installed (`make deps`
installs them; CI has them). Every wait has a timeout.
"""
import json
import os
import re
import urllib.error
import urllib.request

import pytest

from conftest import BUILD, ROOT, ROTOR, gen_model
from slurmutil import PrivateSlurm, missing_tools, wait_for

pytestmark = [
    pytest.mark.skipif(bool(missing_tools()),
                       reason="Slurm/munge not installed (missing: %s); `make deps` installs slurm-wlm, munge "
                              "and libpmix-dev" % ", ".join(missing_tools())),
    pytest.mark.skipif(os.geteuid() != 0, reason="the private Slurm runs slurmd as root (as on the CI machine)"),
]

START_S = 120   # a job to start serving (queue + MPI start + model load)
STOP_S = 90     # a job to end after the stop signal
HTTP_S = 60     # one HTTP request

MODEL_NAME = "fe-tiny"
CONFIG = """\
; written by tests/py/test_slurm.py
[roles]
router = 0
worker = 1-

[model]
threads = 1

[engine]
kv_cache_bytes = 16777216
max_num_seqs = 8

[sampling]
temperature = 1.0
max_tokens = 8

[job]
shutdown_grace_s = 5

[log]
level = info
hdf5 = true
flush_interval_s = 0.2
"""


@pytest.fixture(scope="module")
def cluster():
    c = PrivateSlurm(nodes=("n1", "n2", "n3"), switches={"s0": ["n1", "n2"], "s1": ["n3"]})
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def model():
    return gen_model(MODEL_NAME, "--tokenizer", "bpe", "--n-vocab", "2000", "--n-ctx", "256", "--seed", "3")


@pytest.fixture
def submit_dir(tmp_path):
    """A submit folder with the test config; jobs write logs/ and output here."""
    with open(tmp_path / "job.ini", "w") as f:
        f.write(CONFIG)
    return tmp_path


def job_env(cluster, model, **extra):
    env = dict(cluster.env)
    env.update(ROTOR_HOME=ROOT, ROTOR_BUILD=BUILD, ROTOR_MODEL_PATH=model,
               ROTOR_SERVER_HOST="127.0.0.1")  # tests keep to the loopback interface
    env.update(extra)
    return env


def output(submit_dir, jobid):
    p = submit_dir / f"rotor-{jobid}.out"
    return p.read_text(errors="replace") if p.exists() else "(no output file)"


def job_logs(submit_dir, jobid, lines=30):
    """The last lines of every text file the job wrote under logs/<jobid>
    (per-rank logs), for a job that did not come up."""
    d = submit_dir / "logs" / jobid
    if not d.is_dir():
        return f"(no {d})"
    parts = []
    for f in sorted(d.iterdir()):
        if f.is_file() and f.suffix not in (".h5", ".hdf5"):
            text = f.read_text(errors="replace").splitlines()
            parts.append(f"--- {f.name} ({len(text)} lines)\n" + "\n".join(text[-lines:]))
    return "\n".join(parts) or f"({d} is empty)"


def wait_endpoint(cluster, submit_dir, jobid):
    path = submit_dir / "logs" / jobid / "endpoint"

    def ready():
        # the endpoint file appears when rank 0 serves; /health says 200 once
        # every worker has said hello (before that a request gets a 503)
        if path.exists() and path.read_text().strip():
            endpoint = path.read_text().strip()
            try:
                with urllib.request.urlopen(f"http://{endpoint}/health", timeout=5) as r:
                    if r.status == 200:
                        return endpoint
            except (urllib.error.URLError, OSError):
                pass
        state = cluster.job_state(jobid)
        if state not in (None, "PENDING", "RUNNING", "CONFIGURING"):
            raise AssertionError(f"job {jobid} is {state} before serving:\n{output(submit_dir, jobid)}")
        return None
    try:
        return wait_for(ready, START_S, f"job {jobid}'s endpoint file", interval=0.5)
    except TimeoutError as e:
        raise AssertionError(f"{e}\n{output(submit_dir, jobid)}\n{job_logs(submit_dir, jobid)}\n"
                             f"{cluster.diagnostics()}") from None


def chat(endpoint, text="Hello there"):
    body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": text}], "max_tokens": 4}
    req = urllib.request.Request(f"http://{endpoint}/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=HTTP_S) as r:
        assert r.status == 200
        return json.loads(r.read())


def wait_end(cluster, submit_dir, jobid):
    try:
        return cluster.wait_state(jobid, ["COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL",
                                          "OUT_OF_MEMORY"], STOP_S)
    except TimeoutError as e:
        raise AssertionError(f"{e}\n{output(submit_dir, jobid)}\n{job_logs(submit_dir, jobid)}\n"
                             f"{cluster.diagnostics()}") from None


def check_clean_exit(submit_dir, jobid, script, n_workers, script_ends=True):
    """Every rank shut down in order: each worker logged "worker stopped"
    (its last line before MPI_Finalize and exit 0), rank 0 logged "stopped"
    after every worker's BYE, and srun reported no task failing. When the
    batch script outlives the step (not under a plain scancel, where Slurm
    kills it as the step ends), srun's own status, the worst of every task's,
    is 0 too."""
    out = output(submit_dir, jobid)
    assert not re.search(r"srun: error: .*(Exited with exit code|Killed|Segmentation|Aborted)", out), out
    assert "MPI_ABORT" not in out, out
    assert re.search(r"r0 router\] stopped", out), out
    stopped = set(re.findall(r" r(\d+) \w+\] worker stopped", out))
    assert len(stopped) == n_workers, (stopped, out)
    if script_ends:  # or srun missed its tasks' end (rotor-hetjob.sbatch ends it, rank 0's code counts)
        assert (f"{script}: srun exited with code 0" in out or
                f"{script}: srun had to be ended; rank 0 exited with code 0" in out), out
    return out


def check_h5(submit_dir, jobid, n_requests, roles):
    import h5py
    path = submit_dir / "logs" / jobid / f"rotor-{jobid}.h5"
    assert path.exists(), os.listdir(path.parent)
    with h5py.File(path, "r") as f:
        meta = dict(f["meta"].attrs)
        assert meta["end_time"] > 0, "the HDF5 log was not closed cleanly"
        assert meta["dropped_records"] == 0
        got_roles = meta["roles"].decode() if isinstance(meta["roles"], bytes) else meta["roles"]
        got_roles, _, placement = got_roles.partition("; placement: ")
        assert got_roles == roles
        if ":prefill" in roles:  # prefill ranks are paired with decode ranks, recorded with the roles
            assert "->" in placement, placement
        req = f["requests"][:]
        assert len(req) == n_requests
        assert all(r["http_status"] == 200 for r in req)
        assert all(r["worker"] >= 1 for r in req)


def test_cluster_up(cluster):
    r = cluster.run(["sinfo", "-h", "-N", "-o", "%N %t %c"])
    rows = sorted(line.split() for line in r.stdout.splitlines())
    assert rows == [["n1", "idle", "8"], ["n2", "idle", "8"], ["n3", "idle", "8"]], r.stdout
    # the topology plugin gives every task its place, as rotor's placement reads it
    r = cluster.run(["srun", "-N", "3", "-n", "3", "--mpi=none", "printenv", "SLURMD_NODENAME",
                     "SLURM_TOPOLOGY_ADDR"], timeout=60)
    pairs = r.stdout.split()
    got = sorted(zip(pairs[0::2], pairs[1::2]))
    assert got == [("n1", "top.s0.n1"), ("n2", "top.s0.n2"), ("n3", "top.s1.n3")], r.stdout


def test_srun_starts_rotor(cluster):
    # more tasks than the machine has cores: the nodes declare 8 CPUs each
    r = cluster.run(["srun", "-N", "1", "-n", "4", "--mpi=none", ROTOR, "--version"], timeout=60)
    assert r.stdout.split("\n").count("rotor 0.1.0") == 4, r.stdout + r.stderr


def test_srun_pmix_is_one_mpi_job(cluster, model, tmp_path):
    # every rank sees a world of 3 across two nodes: the role map names rank
    # 3 but "the job has 3 ranks"; all ranks refuse it, rank 0 says why
    ini = tmp_path / "bad.ini"
    ini.write_text("[roles]\nrouter = 0\nworker = 1-5\n")
    r = cluster.run(["srun", "-N", "2", "-n", "3", "--mpi=pmix", ROTOR, "serve", str(ini),
                     "--set", f"model:path={model}", "--set", f"log:dir={tmp_path}/log"],
                    timeout=120, check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "names rank 3 but the job has 3 ranks" in r.stderr, r.stdout + r.stderr
    assert r.stderr.count("rotor serve:") == 1, r.stderr  # rank 0 alone explains


def test_rotor_sbatch_scancel(cluster, model, submit_dir):
    """rotor.sbatch on two nodes: serve, then plain scancel (every task gets
    SIGTERM; workers wait for rank 0): CANCELLED, all ranks exit 0, log closed."""
    jobid = cluster.sbatch(["--nodes=2", "--ntasks=3", os.path.join(ROOT, "jobs", "rotor.sbatch"), "job.ini"],
                           cwd=submit_dir, env=job_env(cluster, model))
    endpoint = wait_endpoint(cluster, submit_dir, jobid)
    reply = chat(endpoint)
    assert reply["object"] == "chat.completion" and reply["model"] == MODEL_NAME
    assert reply["choices"][0]["message"]["role"] == "assistant"
    assert reply["usage"]["completion_tokens"] >= 1
    assert (submit_dir / "logs" / jobid / "rank0.pid").exists()

    cluster.run(["scancel", jobid])
    assert wait_end(cluster, submit_dir, jobid) == "CANCELLED"
    out = check_clean_exit(submit_dir, jobid, "rotor.sbatch", n_workers=2, script_ends=False)
    assert re.search(r"job \d+: 3 ranks on n\[\d[-,]\d\]", out), out  # two nodes
    check_h5(submit_dir, jobid, 1, "0:router,1:worker,2:worker")
    assert not (submit_dir / "logs" / jobid / "endpoint").exists()  # removed at shutdown


def test_rotor_sbatch_signal_before_time_limit(cluster, model, submit_dir):
    """SIGTERM to the batch script alone (what `--signal=B:TERM@60` sends
    before the time limit): the script forwards it to rank 0, the job drains
    and ends COMPLETED with exit code 0."""
    jobid = cluster.sbatch([os.path.join(ROOT, "jobs", "rotor.sbatch"), "job.ini"],
                           cwd=submit_dir, env=job_env(cluster, model))
    endpoint = wait_endpoint(cluster, submit_dir, jobid)
    assert chat(endpoint)["usage"]["completion_tokens"] >= 1
    assert chat(endpoint, "Once more")["usage"]["completion_tokens"] >= 1
    cluster.run(["scancel", "--batch", "--signal=TERM", jobid])
    assert wait_end(cluster, submit_dir, jobid) == "COMPLETED"
    out = check_clean_exit(submit_dir, jobid, "rotor.sbatch", n_workers=2)
    assert "rotor.sbatch: SIGTERM: asking rank 0 to shut down" in out
    assert "rank 0 is not running here" not in out  # it found rank 0 by its pid
    r = cluster.run(["scontrol", "-o", "show", "job", jobid], check=False)
    assert "ExitCode=0:0" in r.stdout, r.stdout
    check_h5(submit_dir, jobid, 2, "0:router,1:worker,2:worker")


def test_hetjob(cluster, model, submit_dir):
    """rotor-hetjob.sbatch: router, prefill and decode components, each on
    its own node (1 + 2 + 2 tasks), launched as one MPI job of 5 ranks with
    roles from the components."""
    jobid = cluster.sbatch([os.path.join(ROOT, "jobs", "rotor-hetjob.sbatch"), "job.ini"],
                           cwd=submit_dir, env=job_env(cluster, model))
    endpoint = wait_endpoint(cluster, submit_dir, jobid)
    assert chat(endpoint)["usage"]["completion_tokens"] >= 1
    cluster.run(["scancel", "--batch", "--signal=TERM", jobid])
    assert wait_end(cluster, submit_dir, jobid) == "COMPLETED"
    out = check_clean_exit(submit_dir, jobid, "rotor-hetjob.sbatch", n_workers=4)
    assert "prefill ranks 1-2" in out and "decode ranks 3-4" in out, out
    check_h5(submit_dir, jobid, 1, "0:router,1:prefill,2:prefill,3:decode,4:decode")


def test_bench_sbatch_runs_bench_against_the_job(cluster, model, submit_dir):
    """bench.sbatch serves the model, runs the real rotor-bench against the
    job's own endpoint once it is up, leaves its HDF5 and JSON results beside
    the job's log, then stops the server and the job completes."""
    env = job_env(cluster, model, ROTOR_BENCH_ARGS="--requests 6 --concurrency 2 --input-tokens 16 "
                                                   "--output-tokens 4 --seed 1")
    jobid = cluster.sbatch([os.path.join(ROOT, "jobs", "bench.sbatch"), "job.ini"], cwd=submit_dir, env=env)
    assert wait_end(cluster, submit_dir, jobid) == "COMPLETED", output(submit_dir, jobid)
    out = check_clean_exit(submit_dir, jobid, "bench.sbatch", n_workers=2)
    assert "bench.sbatch: rotor-bench exited with code 0" in out, out
    result = json.loads((submit_dir / "logs" / jobid / f"bench-{jobid}.json").read_text())
    assert result["requests"]["completed"] == 6 and result["requests"]["errors"] == 0, result["requests"]
    import h5py
    with h5py.File(submit_dir / "logs" / jobid / f"bench-{jobid}.h5", "r") as f:
        assert len(f["requests"]) == 6
    check_h5(submit_dir, jobid, 6, "0:router,1:worker,2:worker")


def test_bench_sbatch_needs_rotor_bench(cluster, model, submit_dir):
    env = job_env(cluster, model, ROTOR_BENCH_BIN=str(submit_dir / "no-rotor-bench"))
    jobid = cluster.sbatch([os.path.join(ROOT, "jobs", "bench.sbatch"), "job.ini"], cwd=submit_dir, env=env)
    assert wait_end(cluster, submit_dir, jobid) == "FAILED"
    out = output(submit_dir, jobid)
    assert "rotor-bench is not built yet" in out, out
    r = cluster.run(["scontrol", "-o", "show", "job", jobid], check=False)
    assert "ExitCode=2:0" in r.stdout, r.stdout
