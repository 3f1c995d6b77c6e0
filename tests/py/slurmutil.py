"""A private Slurm cluster on this machine, for the Slurm tests.

`PrivateSlurm` starts munged (its own key and socket), slurmctld and one slurmd
per node (Debian's slurm-wlm is built with multiple-slurmd support, so one
machine can pose as several nodes) with everything in a temporary folder:
slurm.conf, topology.conf, state, spool, logs. Addresses are 127.0.0.1 and
ports are picked free. Nodes declare more CPUs than the machine has and the
partition oversubscribes, so `srun -n 4` on a 2-core machine starts instead
of waiting forever. Nodes hang off two leaf switches (topology/tree) so jobs
see SLURM_TOPOLOGY_ADDR as on a real fabric.

Heterogeneous jobs need one node per component here: the backfill scheduler
(the only one that starts hetjobs) reserves whole nodes, so components asked
for on one node are planned one after another and never start together.

Every daemon runs in the foreground as a child of the test process; every
wait has a timeout; stop() cancels the jobs, stops the daemons and then ends
any process still carrying this cluster's marker in its environment (job
steps started by slurmstepd are not our children), and removes the folder.
It is safe to call stop() twice and after a failed start().

The nodes are one machine under one hostname, so Open MPI's shared-memory
transport (vader) names its segments alike on every "node" and ranks of two
nodes trample each other's: `cluster.env` turns vader off and keeps Open MPI's
TCP transport on the loopback interface. A real cluster needs neither.

Tools that talk to this cluster need SLURM_CONF: use `cluster.env` (a copy of
os.environ with SLURM_CONF, the Open MPI settings above and the marker) for
subprocesses; sbatch passes it on to the job.
"""
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

SLURM_DAEMONS = ("slurmctld", "slurmd", "munged", "sbatch", "srun")


def missing_tools():
    """Names of the Slurm/munge programs that are not installed ([] if all are)."""
    return [t for t in SLURM_DAEMONS if not shutil.which(t)]


def _free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (held open together, then freed)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def wait_for(pred, timeout, what, interval=0.2):
    """Poll pred() until it returns something true; raise TimeoutError naming what."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class PrivateSlurm:
    """A single-machine Slurm cluster; see the module docstring.

    nodes: node names; switches: leaf switch name -> list of its nodes (all
    leaf switches hang off one top switch); cpus: CPUs each node declares.
    """

    def __init__(self, nodes=("n1", "n2", "n3"), switches=None, cpus=8, kill_wait=30):
        self.nodes = list(nodes)
        self.switches = switches or {"s0": self.nodes[:2], "s1": self.nodes[2:]}
        self.cpus = cpus
        self.kill_wait = kill_wait
        self.dir = None
        self.procs = {}  # name -> Popen
        self.marker = "ROTOR_TEST_SLURM=" + uuid.uuid4().hex
        self.env = None

    # ---------------------------------------------------------------- start

    def start(self, timeout=60):
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout):
        self.dir = tempfile.mkdtemp(prefix="rotor-slurm-")
        os.chmod(self.dir, 0o755)  # munged wants the socket's folder traversable
        d = self.dir
        for sub in ("state", "spool", "log"):
            os.makedirs(os.path.join(d, sub))
        key, _, value = self.marker.partition("=")
        self.env = dict(os.environ)
        self.env["SLURM_CONF"] = os.path.join(d, "slurm.conf")
        # under `make asan` LeakSanitizer cannot scan MPI processes (see jobutil.JOB_ENV)
        self.env["ASAN_OPTIONS"] = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS", ""), "detect_leaks=0"]))
        self.env[key] = value
        self.env.update(OMPI_MCA_btl="self,tcp", OMPI_MCA_btl_tcp_if_include="lo",
                        OMPI_MCA_oob_tcp_if_include="lo")
        # jobs' temporary files (Open MPI's session folders among them) stay
        # in this cluster's folder, apart from another test run's cluster
        self.env["TMPDIR"] = os.path.join(d, "tmp", "jobs")
        os.makedirs(self.env["TMPDIR"])

        # munge: its own key, socket, pid, seed and log
        self.munge_socket = os.path.join(d, "munge.socket")
        keyfile = os.path.join(d, "munge.key")
        with open(keyfile, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(keyfile, 0o400)
        self._spawn("munged", ["munged", "-F", "-f", "--num-threads=4",
                               f"--socket={self.munge_socket}", f"--key-file={keyfile}",
                               f"--pid-file={d}/munged.pid", f"--log-file={d}/log/munged.log",
                               f"--seed-file={d}/munged.seed"])
        wait_for(lambda: os.path.exists(self.munge_socket) or self._died("munged"), 15, "munged's socket")
        self._check_alive("munged")

        ports = _free_ports(1 + len(self.nodes))
        self._write_conf(ports[0], ports[1:])
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", self.env["SLURM_CONF"]])
        for n in self.nodes:
            self._spawn("slurmd-" + n, ["slurmd", "-D", "-N", n, "-f", self.env["SLURM_CONF"]])

        def all_idle():
            for name in self.procs:
                self._check_alive(name)
            r = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], env=self.env,
                               capture_output=True, text=True, timeout=15)
            if r.returncode != 0:
                return False
            states = dict(line.split() for line in r.stdout.splitlines() if line.strip())
            return all(states.get(n) == "idle" for n in self.nodes)
        wait_for(all_idle, timeout, "every node idle in sinfo", interval=0.5)

    def _write_conf(self, ctld_port, node_ports):
        d = self.dir
        lines = [
            "# written by tests/py/slurmutil.py: a private test cluster",
            "ClusterName=rotortest",
            "SlurmctldHost=localhost(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={d}/state",
            f"SlurmdSpoolDir={d}/spool/%n",
            f"SlurmctldPidFile={d}/slurmctld.pid",
            f"SlurmdPidFile={d}/slurmd-%n.pid",
            f"SlurmctldLogFile={d}/log/slurmctld.log",
            f"SlurmdLogFile={d}/log/slurmd-%n.log",
            # per node: the PMIx plugin makes its client folders under TmpFS
            f"TmpFS={d}/tmp/%n",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            # the machine has fewer CPUs than the nodes declare: trust slurm.conf
            "SlurmdParameters=config_overrides",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "MpiDefault=pmix",
            "TopologyPlugin=topology/tree",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=bf_interval=2,bf_hetjob_immediate",
            "ReturnToService=2",
            f"KillWait={self.kill_wait}",
            "MailProg=/bin/true",
            # job ids (and so PMIx namespaces) unlike a concurrent test cluster's
            f"FirstJobId={random.randrange(1000, 1000000)}",
        ]
        for n, port in zip(self.nodes, node_ports):
            lines.append(f"NodeName={n} NodeAddr=127.0.0.1 NodeHostname=localhost Port={port} "
                         f"CPUs={self.cpus} RealMemory=1000 State=UNKNOWN")
        lines.append(f"PartitionName=debug Nodes={','.join(self.nodes)} Default=YES "
                     "MaxTime=INFINITE State=UP OverSubscribe=FORCE:4")
        with open(os.path.join(d, "slurm.conf"), "w") as f:
            f.write("\n".join(lines) + "\n")
        topo = [f"SwitchName={s} Nodes={','.join(ns)}" for s, ns in self.switches.items()]
        topo.append(f"SwitchName=top Switches={','.join(self.switches)}")
        with open(os.path.join(d, "topology.conf"), "w") as f:
            f.write("\n".join(topo) + "\n")
        for n in self.nodes:
            os.makedirs(os.path.join(d, "spool", n))
            os.makedirs(os.path.join(d, "tmp", n))

    def _spawn(self, name, argv):
        out = open(os.path.join(self.dir, "log", name + ".out"), "wb")
        try:
            self.procs[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                                stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            out.close()

    def _died(self, name):
        return self.procs[name].poll() is not None

    def _check_alive(self, name):
        p = self.procs[name]
        if p.poll() is not None:
            raise RuntimeError(f"{name} exited with {p.returncode} at start:\n{self.tail(name + '.out')}")

    def tail(self, logname, n=40):
        """Last n lines of a log in the cluster's log folder ('' if none)."""
        try:
            with open(os.path.join(self.dir, "log", logname), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    # ---------------------------------------------------------------- use

    def run(self, argv, timeout=60, check=True, **kw):
        """Run a Slurm client command against this cluster."""
        r = subprocess.run(argv, env=kw.pop("env", self.env), capture_output=True, text=True,
                           timeout=timeout, **kw)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
        return r

    def sbatch(self, argv, cwd, env=None, timeout=60):
        """Submit a batch job; returns its job id (str)."""
        r = self.run(["sbatch", "--parsable", *argv], cwd=cwd, env=env or self.env, timeout=timeout)
        return r.stdout.strip().split(";")[0]

    def job_state(self, jobid):
        """State of a job ('PENDING', 'RUNNING', 'COMPLETED', ...); for a hetjob
        the state of its first component. None once the controller forgot it."""
        r = self.run(["scontrol", "-o", "show", "job", jobid], check=False, timeout=15)
        if r.returncode != 0:
            return None
        for tok in r.stdout.split():
            if tok.startswith("JobState="):
                return tok.split("=", 1)[1]
        return None

    def wait_state(self, jobid, states, timeout):
        states = set(states)
        return wait_for(lambda: (self.job_state(jobid) in states) and self.job_state(jobid),
                        timeout, f"job {jobid} to reach {sorted(states)}", interval=0.5)

    def diagnostics(self):
        """Text to attach to a failed assertion: queue and daemon logs."""
        parts = []
        try:
            parts.append(self.run(["squeue", "-a"], check=False, timeout=10).stdout)
        except Exception as e:  # noqa: BLE001 - diagnostics must not raise
            parts.append(f"squeue: {e}")
        parts.append("--- slurmctld.log\n" + self.tail("slurmctld.log"))
        for n in self.nodes:
            parts.append(f"--- slurmd-{n}.log\n" + self.tail(f"slurmd-{n}.log", 20))
        parts.append("--- this cluster's processes (pid state wchan cpu-seconds command)\n" + self.process_table())
        return "\n".join(parts)

    def process_table(self):
        """One line per process of this cluster (daemons, slurmstepd, tasks):
        where a job that hangs is waiting (kernel wait channel) and whether it
        runs at all (state, CPU time)."""
        lines = []
        for pid in sorted(self._marked_pids()):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    st = f.read()
                fields = st[st.rindex(")") + 2:].split()
                cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                with open(f"/proc/{pid}/wchan") as f:
                    wchan = f.read().strip() or "-"
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:160]
                threads = len(os.listdir(f"/proc/{pid}/task"))
                lines.append(f"{pid} {fields[0]} {wchan} {cpu_s:.1f}s {threads}thr {cmd}")
            except (OSError, ValueError, IndexError):
                continue
        return "\n".join(lines) or "(none)"

    # ---------------------------------------------------------------- stop

    def _marked_pids(self):
        """Pids of processes (other than this one) whose environment carries
        this cluster's marker: the daemons, slurmstepd and every job task."""
        want = self.marker.encode()
        pids = []
        for e in os.listdir("/proc"):
            if not e.isdigit() or int(e) == os.getpid():
                continue
            try:
                with open(f"/proc/{e}/environ", "rb") as f:
                    if want in f.read().split(b"\0"):
                        pids.append(int(e))
            except OSError:
                pass
        return pids

    def stop(self):
        if self.env is None:
            return
        # cancel jobs while the daemons can still end them
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                r = self.run(["squeue", "-h", "-o", "%A"], check=False, timeout=10)
                jobs = r.stdout.split()
                if jobs:
                    self.run(["scancel", *jobs], check=False, timeout=10)
                    wait_for(lambda: not self.run(["squeue", "-h", "-o", "%A"], check=False,
                                                  timeout=10).stdout.split(), self.kill_wait + 15,
                             "jobs to end after scancel", interval=0.5)
            except Exception:  # noqa: BLE001 - go on stopping whatever happens
                pass
        order = [n for n in self.procs if n.startswith("slurmd-")] + ["slurmctld", "munged"]
        for name in order:
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=15)
        # anything left: slurmstepd and job tasks (not our children)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self._marked_pids()
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            if pids and sig == signal.SIGTERM:
                try:
                    wait_for(lambda: not self._marked_pids(), 10, "job processes to exit")
                except TimeoutError:
                    pass
        self.procs.clear()
        self.env = None
        if self.dir and not os.environ.get("ROTOR_KEEP_SLURM"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
