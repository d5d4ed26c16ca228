"""A throwaway single-node SLURM cluster on localhost, for tests/runs/test_slurm.py.

Debian's slurm-wlm and munge (installed with apt-get when missing), started as root. A
temporary folder holds what they write: munge key and socket (slurm uses this munged
through `AuthInfo=socket=`), state, spool, logs. slurm.conf and gres.conf go to
/etc/slurm, the Debian build's config folder: clients get SLURM_CONF (`Cluster.env`), but
the executor's job step strips SLURM_* variables before its `srun`, which then reads
/etc/slurm/slurm.conf. An /etc/slurm/slurm.conf that this module did not write, or that
a live test cluster wrote, is never touched (the cluster is then unavailable). Partitions
`cpu` (default) and `gpu` share the one node, which carries a fake GPU (`gres.conf`:
`Name=gpu Type=fake Count=1 File=/dev/null`). `stop()` cancels jobs, stops the daemons
and any process left of the cluster's jobs, and removes the folder and the two files.

By hand, as root:

    python -m tests.runs.slurm_cluster start /tmp/vermem-slurm   # prints `export SLURM_CONF=...`
    python -m tests.runs.slurm_cluster stop /tmp/vermem-slurm
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .. import debian

PACKAGES = ("slurm-wlm", "munge")
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel",
            "sinfo", "srun")
DAEMONS = ("munged", "slurmctld", "slurmd")
ETC = Path("/etc/slurm")
# (the module's path before tests/runs/: the mark of configs that older runs left behind)
MARK = "# written by tests/slurm_cluster.py for the throwaway test cluster in "


Unavailable = debian.Unavailable


def missing_binaries() -> list[str]:
    return debian.missing(BINARIES)


def ensure_installed(timeout: float = 600) -> str:
    """Install slurm-wlm and munge with apt-get unless already there; what was done."""
    return debian.apt_install(PACKAGES, BINARIES, timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_hardware() -> dict[str, str]:
    """`slurmd -C`: NodeName, CPUs, sockets, cores, threads, RealMemory of this machine."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=60).stdout
    line = next((x for x in out.splitlines() if x.startswith("NodeName=")), None)
    if line is None:
        raise Unavailable(f"`slurmd -C` did not describe this node: {out.strip()!r}")
    return dict(kv.split("=", 1) for kv in line.split())


class Cluster:
    """One node, partitions cpu and gpu, a fake GPU; everything lives under `root`."""

    def __init__(self, root: Path | str, etc: Path = ETC):
        self.root = Path(root)
        self.etc = etc
        self.conf = etc / "slurm.conf"
        # the mark of every process of this cluster: daemons, slurmstepd, jobs and steps
        self.mark = f"VERMEM_SLURM_CLUSTER={self.root}"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf),
                    "VERMEM_SLURM_CLUSTER": str(self.root)}
        self.procs: dict[str, subprocess.Popen] = {}
        self.node: dict[str, str] = {}

    # ---- configuration ------------------------------------------------------------------
    def claim_etc(self) -> None:
        """Refuse an /etc/slurm config that is not a leftover of a dead test cluster."""
        for path in (self.conf, self.etc / "gres.conf"):
            if not path.exists():
                continue
            first = path.read_text(errors="replace").partition("\n")[0]
            if not first.startswith(MARK):
                raise Unavailable(f"{path} exists and is not a test cluster's: not touching it")
            pidfile = Path(first[len(MARK):].strip()) / "slurmctld.pid"
            try:
                os.kill(int(pidfile.read_text().split()[0]), 0)
            except (OSError, ValueError, IndexError):
                continue                                # a leftover: its slurmctld is gone
            raise Unavailable(f"{path} belongs to a running test cluster ({pidfile})")

    def header(self) -> str:
        return f"{MARK}{self.root}"

    def write_config(self) -> None:
        self.claim_etc()
        hw = node_hardware()
        cpus = int(hw["CPUs"])
        # leave the OS some memory; jobs ask for scaled-down amounts (tests/runs/test_slurm.py)
        memory = max(1024, int(hw["RealMemory"]) - 2048)
        name = hw["NodeName"]
        self.node = {"name": name, "cpus": cpus, "memory_mb": memory}
        r = self.root
        for d in ("state", "spool", "log"):
            (r / d).mkdir(parents=True, exist_ok=True)
        topology = " ".join(f"{k}={hw[k]}" for k in
                            ("Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
                            if k in hw)
        self.etc.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(f"""\
{self.header()}
ClusterName=vermemtest
SlurmctldHost={name}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
MailProg=/bin/true
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={r / "munge.socket"}
CredType=cred/munge
StateSaveLocation={r / "state"}
SlurmdSpoolDir={r / "spool"}
SlurmctldPidFile={r / "slurmctld.pid"}
SlurmdPidFile={r / "slurmd.pid"}
SlurmctldLogFile={r / "log" / "slurmctld.log"}
SlurmdLogFile={r / "log" / "slurmd.log"}
PlugStackConfig={r / "plugstack.conf"}
# no cgroup plugins (so no cgroup.conf): processes tracked by /proc, tasks not bound
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
# keep finished jobs in scontrol/squeue: the executor polls squeue, the test reads them
MinJobAge=3600
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName={name} NodeAddr=127.0.0.1 CPUs={cpus} {topology} RealMemory={memory} \
Gres=gpu:fake:1 State=UNKNOWN
PartitionName=cpu Nodes={name} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={name} MaxTime=INFINITE State=UP
""")
        (self.etc / "gres.conf").write_text(
            f"{self.header()}\nNodeName={name} Name=gpu Type=fake Count=1 File=/dev/null\n")
        (r / "plugstack.conf").write_text("")
        key = r / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)

    # ---- daemons ------------------------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "wb")  # noqa: SIM115 (lives with proc)
        self.procs[name] = subprocess.Popen(cmd, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise Unavailable(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, n: int = 15) -> str:
        lines = []
        for path in (self.root / "log" / f"{name}.out", self.root / "log" / f"{name}.log"):
            if path.is_file():
                lines += path.read_text(errors="replace").splitlines()[-n:]
        return "\n".join(lines)

    def run(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def start(self, timeout: float = 90) -> None:
        """Write the config, start munged, slurmctld and slurmd, wait for an idle node."""
        if os.geteuid() != 0:
            raise Unavailable("not root: slurmd must run as root to start jobs")
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)      # munged checks that its socket folder is not writable
        self.write_config()
        r = self.root
        self._spawn("munged", ["munged", "--foreground", "--force",
                               f"--socket={r / 'munge.socket'}", f"--key-file={r / 'munge.key'}",
                               f"--pid-file={r / 'munged.pid'}", f"--seed-file={r / 'munge.seed'}",
                               f"--log-file={r / 'log' / 'munged.log'}"])
        self._wait(lambda: (r / "munge.socket").exists(), 20, "munged socket")
        self._spawn("slurmctld", ["slurmctld", "-D", "-i"])
        self._wait(lambda: self.run("scontrol", "ping").returncode == 0, timeout,
                   "slurmctld answering `scontrol ping`")
        self._spawn("slurmd", ["slurmd", "-D"])
        self._wait(self._node_idle, timeout, f"node {self.node['name']} idle in `sinfo`")

    def _node_idle(self) -> bool:
        out = self.run("sinfo", "-h", "-N", "-o", "%t").stdout.split()
        return bool(out) and all(s == "idle" for s in out)

    def _wait(self, ready, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self._check_alive()
            if ready():
                return
            time.sleep(0.5)
        logs = "\n".join(f"--- {d}\n{self.log_tail(d)}" for d in self.procs)
        raise Unavailable(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")

    # ---- what ran -----------------------------------------------------------------------
    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld knows (MinJobAge keeps finished ones), as the fields of
        `scontrol -d show job`: Partition, TresPerJob (request), JOB_GRES (allocated)..."""
        out = self.run("scontrol", "-d", "-o", "show", "job").stdout
        jobs = []
        for line in out.splitlines():
            if not line.startswith("JobId="):
                continue
            fields, key = {}, None
            for token in line.split(" "):
                k, eq, v = token.partition("=")
                if eq and k and k[0].isupper():
                    key, fields[k] = k, v
                elif key:                         # a value with spaces (e.g. a comment)
                    fields[key] += " " + token
            jobs.append({k: v.strip() for k, v in fields.items()})
        return jobs

    # ---- teardown -----------------------------------------------------------------------
    def stop(self) -> None:
        """Cancel jobs, stop the daemons and everything of this cluster, remove the folder."""
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--full", "--user", "root", timeout=30)
            end = time.monotonic() + 20
            while time.monotonic() < end and self.run(
                    "squeue", "-h", "-t", "RUNNING,COMPLETING", "-o", "%i").stdout.strip():
                time.sleep(0.5)
        for name in reversed(DAEMONS):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        self.cleanup()

    def cleanup(self) -> None:
        """Kill what is left of the cluster's jobs; remove its folder and /etc/slurm files."""
        for pid in self.leftover_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)
        for path in (self.conf, self.etc / "gres.conf"):
            if path.is_file() and path.read_text(errors="replace").startswith(
                    self.header() + "\n"):
                path.unlink()

    def leftover_pids(self) -> list[int]:
        """Processes whose environment carries this cluster's mark (the executor's job
        step strips SLURM_* variables, not this one)."""
        mark = self.mark.encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if mark in environ:
                pids.append(int(entry.name))
        return pids


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print(__doc__, file=sys.stderr)
        return 2
    cluster = Cluster(argv[1])
    if argv[0] == "start":
        print(ensure_installed(), file=sys.stderr)
        cluster.start()
        print(f"export SLURM_CONF={cluster.conf}")
        for name, proc in cluster.procs.items():
            print(f"# {name} pid {proc.pid}")
        return 0
    # stop: daemons started by another process are found by their pid files
    for name in reversed(DAEMONS):
        pidfile = cluster.root / f"{name}.pid"
        if pidfile.is_file():
            try:
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
            time.sleep(1)
    cluster.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
