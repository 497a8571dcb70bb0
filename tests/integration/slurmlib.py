# A real single-host Slurm cluster for the tests, made of Debian's packages:
# munged with a private key and socket, slurmctld and slurmd with a private
# slurm.conf (this machine as the one node, CPU-only, no cgroups), every
# state and spool directory under the test's own temporary folder.  The
# daemons run in the foreground as children of the test, which stops them
# at the end.  Clients (srun, squeue, sbatch, scancel, and renderfs) find
# the cluster through $SLURM_CONF.

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import rfslib as R

DAEMONS = ("munged", "slurmctld", "slurmd")
CPUS = 4


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def missing_tools():
    need = ("munged", "mungekey", "slurmctld", "slurmd", "srun", "sbatch", "squeue", "scancel",
            "sinfo")
    return [t for t in need if not shutil.which(t)]


class Cluster:
    def __init__(self, base):
        self.base = Path(base)
        self.procs = {}
        self.conf = self.base / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def _write_conf(self):
        b = self.base
        for d in ("munge", "state", "spool", "log"):
            (b / d).mkdir(parents=True, exist_ok=True)
        os.chmod(b / "munge", 0o700)
        ctld, d = free_port(), free_port()
        R.put(self.conf, "\n".join([
            "ClusterName=rfstest",
            "SlurmctldHost=localhost",
            "SlurmctldPort=%d" % ctld,
            "SlurmdPort=%d" % d,
            "AuthType=auth/munge",
            "CredType=cred/munge",
            "AuthInfo=socket=%s" % (b / "munge" / "sock"),
            "SlurmUser=root",
            "SlurmdUser=root",
            "StateSaveLocation=%s" % (b / "state"),
            "SlurmdSpoolDir=%s" % (b / "spool"),
            "SlurmctldPidFile=%s" % (b / "slurmctld.pid"),
            "SlurmdPidFile=%s" % (b / "slurmd.pid"),
            "SlurmctldLogFile=%s" % (b / "log" / "slurmctld.log"),
            "SlurmdLogFile=%s" % (b / "log" / "slurmd.log"),
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SlurmdParameters=config_overrides",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "MpiDefault=none",
            "ReturnToService=2",
            "MinJobAge=600",
            "KillWait=2",
            "NodeName=localhost CPUs=%d State=UNKNOWN" % CPUS,
            "PartitionName=rfs Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
            ""]))

    def start(self):
        """Start the cluster; returns None, or why it cannot run here."""
        gone = missing_tools()
        if gone:
            return "Slurm is not installed (missing %s)" % ", ".join(gone)
        self._write_conf()
        b = self.base
        key = b / "munge" / "munge.key"
        r = subprocess.run(["mungekey", "--create", "--keyfile", str(key), "--force"],
                           capture_output=True, text=True, timeout=30)
        if r.returncode:
            return "mungekey failed: %s" % r.stderr.strip()
        os.chmod(key, 0o600)
        logs = open(b / "log" / "daemons.log", "ab")
        self.procs["munged"] = subprocess.Popen(
            ["munged", "--foreground", "--force", "--key-file", str(key),
             "--socket", str(b / "munge" / "sock"), "--pid-file", str(b / "munge" / "pid"),
             "--log-file", str(b / "munge" / "log"), "--seed-file", str(b / "munge" / "seed")],
            stdin=subprocess.DEVNULL, stdout=logs, stderr=logs, start_new_session=True)
        try:
            R.wait_for(lambda: (b / "munge" / "sock").exists(), 15, "munged's socket")
        except AssertionError:
            return "munged did not start: %s" % self.log_tail()
        self.procs["slurmctld"] = subprocess.Popen(
            ["slurmctld", "-D", "-c", "-i", "-f", str(self.conf)], env=self.env,
            stdin=subprocess.DEVNULL, stdout=logs, stderr=logs, start_new_session=True)
        self.procs["slurmd"] = subprocess.Popen(
            ["slurmd", "-D", "-c", "-N", "localhost", "-f", str(self.conf)], env=self.env,
            stdin=subprocess.DEVNULL, stdout=logs, stderr=logs, start_new_session=True)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    return "%s exited with %s: %s" % (name, p.returncode, self.log_tail())
            r = self.run(["sinfo", "--noheader", "--Node", "--format=%N %T"], check=False)
            if r.returncode == 0 and "localhost idle" in r.stdout:
                return None
            time.sleep(0.2)
        return "the Slurm node did not come up within 30s: %s" % self.log_tail()

    def log_tail(self, n=20):
        out = []
        for f in ("log/daemons.log", "log/slurmctld.log", "log/slurmd.log", "munge/log"):
            try:
                lines = R.get(self.base / f).decode("utf-8", "replace").splitlines()
            except OSError:
                continue
            out.append("== %s\n%s" % (f, "\n".join(lines[-n:])))
        return "\n".join(out)

    def run(self, argv, check=True, timeout=30):
        r = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode:
            raise AssertionError("%s failed (%d): %s" % (" ".join(argv), r.returncode, r.stderr))
        return r

    def jobs(self, states="all"):
        """[(id, name, comment, state)] of every job slurmctld knows."""
        r = self.run(["squeue", "--noheader", "--states=%s" % states, "--format=%i|%j|%k|%T"])
        out = []
        for line in r.stdout.splitlines():
            f = line.strip().split("|")
            if len(f) == 4:
                out.append((int(f[0]), f[1], f[2], f[3]))
        return out

    def renderfs_jobs(self, states="all"):
        return [j for j in self.jobs(states) if j[1].startswith("renderfs-")]

    def active(self, jobs):
        """The jobs that hold or wait for resources and have not been told
        to end (COMPLETING: cancelled or done, its processes being ended)."""
        return [j for j in jobs if j[3] in ("PENDING", "RUNNING", "CONFIGURING", "SUSPENDED")]

    def settle(self, timeout=30):
        """Wait until no job is COMPLETING, so one test's ends do not spill
        into the next."""
        R.wait_for(lambda: not [j for j in self.jobs() if j[3] == "COMPLETING"], timeout,
                   "Slurm jobs to finish completing")

    def owns(self, pid):
        """Whether pid is one of the cluster's daemons or runs under a job
        step (slurmstepd and what it started), not a renderfs child."""
        t = R.proc_table()
        roots = {p.pid for p in self.procs.values() if p.poll() is None}
        seen = 0
        while pid in t and seen < 64:
            if pid in roots or t[pid][2] == "slurmstepd":
                return True
            pid = t[pid][0]
            seen += 1
        return False

    def stop(self):
        # Whatever jobs are left go first, then the daemons.
        self.run(["scancel", "--quiet", "--user=root"], check=False)
        for name in reversed(DAEMONS):
            p = self.procs.get(name)
            if p and p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(10)
        # slurmstepd and job processes outlive slurmd: reap what is ours.
        t = R.proc_table()
        for pid in R.descendants(os.getpid(), t):
            if t[pid][2] in ("slurmstepd", "sleep") and t[pid][1] != "Z":
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
