# Real file servers in front of a renderfs mount, for test_samba.py,
# test_nfs.py and tests/bench/samba.py: a private smbd (its own smb.conf,
# state, lock, pid and log directories, a high port on 127.0.0.1), Samba
# users made with useradd and smbpasswd, smbclient runs, and a private
# nfs-ganesha (FSAL_VFS) with libnfs's userspace client tools.
#
# Nothing here touches the system's own Samba or Ganesha configuration: the
# servers read only the files written under the test's directory.  Every
# wait polls a condition with a deadline.

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMBA_SNIPPET = REPO / "contrib" / "samba-renderfs.conf"
GANESHA_SNIPPET = REPO / "contrib" / "ganesha-renderfs.conf"


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout, what, log=None):
    end = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError("%s exited with %s before it listened:\n%s"
                                 % (what, proc.returncode, tail(log)))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        if time.monotonic() > end:
            raise AssertionError("%s not listening on %d after %ss:\n%s"
                                 % (what, port, timeout, tail(log)))
        time.sleep(0.05)


def tail(path, n=40):
    if path is None:
        return ""
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return "(no log at %s)" % path
    return "--- %s (last %d lines) ---\n%s" % (path, n, "\n".join(lines[-n:]))


def snippet_sections(path, share_path, name):
    """The [global] lines and the [renderfs] share of a shipped Samba
    snippet, the share renamed and pointed at share_path (comments
    dropped): (global_text, share_text)."""
    parts, cur = {}, None
    for line in Path(path).read_text().splitlines():
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            cur = parts.setdefault(s[1:-1], [])
            continue
        if cur is None or not s or s.startswith(("#", ";")):
            continue
        if s.split("=", 1)[0].strip().lower() == "path":
            s = "path = %s" % share_path
        cur.append("   " + s)
    assert "renderfs" in parts, "no [renderfs] share in %s" % path
    return ("\n".join(parts.get("global", [])) + "\n",
            "[%s]\n%s\n" % (name, "\n".join(parts["renderfs"])))


# ---- users ----

def ensure_user(name):
    """A local user for a Samba login (made once, kept: useradd is slow and
    the names are the tests' own).  Returns (uid, gid)."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        "--user-group", name], check=True, capture_output=True, timeout=60)
        pw = pwd.getpwnam(name)
    return pw.pw_uid, pw.pw_gid


# ---- Samba ----

class Samba:
    """One private smbd serving shares = {name: (path, extra lines)}."""

    def __init__(self, base, shares, users=(), password="rfs-Test-1", global_extra=""):
        self.base = Path(base)
        self.port = free_port()
        self.password = password
        self.users = list(users)
        self.proc = None
        for d in ("state", "lock", "pid", "cache", "private", "ncalrpc", "log"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        self.conf = self.base / "smb.conf"
        self.log = self.base / "log" / "smbd.log"
        b = self.base
        text = ("[global]\n"
                "   server role = standalone server\n"
                "   workgroup = RFSTEST\n"
                "   netbios name = RFSTEST\n"
                "   smb ports = %d\n"
                "   interfaces = 127.0.0.1\n"
                "   bind interfaces only = yes\n"
                "   disable netbios = yes\n"
                "   server min protocol = SMB2_10\n"
                "   state directory = %s/state\n"
                "   lock directory = %s/lock\n"
                "   pid directory = %s/pid\n"
                "   cache directory = %s/cache\n"
                "   private dir = %s/private\n"
                "   ncalrpc dir = %s/ncalrpc\n"
                "   passdb backend = tdbsam:%s/private/passdb.tdb\n"
                "   log file = %s\n"
                "   log level = 1\n"
                "   max log size = 0\n"
                "   load printers = no\n"
                "   printing = bsd\n"
                "   printcap name = /dev/null\n"
                "   disable spoolss = yes\n"
                "   map to guest = never\n"
                "%s"
                % (self.port, b, b, b, b, b, b, b, self.log, global_extra))
        for name, (path, extra) in shares.items():
            text += extra if extra.lstrip().startswith("[") else (
                "[%s]\n   path = %s\n%s" % (name, path, extra))
        self.conf.write_text(text)

    def start(self):
        for u in self.users:
            ensure_user(u)
            r = subprocess.run(["smbpasswd", "-c", str(self.conf), "-s", "-a", u],
                               input="%s\n%s\n" % (self.password, self.password),
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, "smbpasswd -a %s: %s%s" % (u, r.stdout, r.stderr)
        self.proc = subprocess.Popen(
            ["smbd", "--foreground", "--no-process-group", "-s", str(self.conf)],
            stdin=subprocess.DEVNULL, stdout=open(self.base / "log" / "smbd.out", "wb"),
            stderr=subprocess.STDOUT, start_new_session=True)
        wait_port(self.port, self.proc, 30, "smbd", self.log)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            # smbd's children (one per client) go with their process group.
            try:
                os.killpg(self.proc.pid, 15)
            except OSError:
                pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(20)

    def client(self, share, user, commands, timeout=60, check=True, cwd=None):
        """Run smbclient with commands (a list, joined with ';').  Returns
        the CompletedProcess; with check, fails on a non-zero exit or an
        NT_STATUS error in the output."""
        cmd = ["smbclient", "//127.0.0.1/%s" % share, "-p", str(self.port),
               "-U", "%s%%%s" % (user, self.password), "-m", "SMB3",
               "--option=client min protocol=SMB2_10", "-c", "; ".join(commands)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
        out = r.stdout + r.stderr
        if check:
            assert r.returncode == 0 and "NT_STATUS_" not in out, \
                "smbclient %s failed (exit %d):\n%s\n%s" % (commands, r.returncode, out,
                                                             tail(self.log))
        return r


def smb_error(r):
    """The NT_STATUS_... code in an smbclient run's output, else None."""
    for word in (r.stdout + r.stderr).split():
        if word.startswith("NT_STATUS_"):
            return word
    return None


# ---- NFS (nfs-ganesha, FSAL_VFS) ----

class Ganesha:
    """One private ganesha.nfsd exporting export_path as /renderfs, NFSv4
    only, on a free port of 127.0.0.1."""

    def __init__(self, base, export_path):
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = self.base / "ganesha.conf"
        self.log = self.base / "ganesha.log"
        self.pid = self.base / "ganesha.pid"
        self.recov = self.base / "recovery"
        self.recov.mkdir(exist_ok=True)
        # The snippet's own NFSv4 block is merged into the test's.
        snippet = Path(GANESHA_SNIPPET).read_text().replace("/srv/renderfs", str(export_path))
        v4 = snippet[snippet.index("NFSv4 {"):]
        v4_body = v4[len("NFSv4 {"):v4.index("}")]
        export = snippet.replace(v4[:v4.index("}") + 1], "")
        self.conf.write_text(
            "NFS_CORE_PARAM {\n"
            "    NFS_Port = %d;\n"
            "    Bind_addr = 127.0.0.1;\n"
            "    Protocols = 4;\n"
            "    Enable_NLM = false;\n"
            "    Enable_RQUOTA = false;\n"
            "    Enable_UDP = false;\n"
            "}\n"
            "NFSv4 {\n"
            "    Graceless = true;\n"
            "    RecoveryBackend = fs;\n"
            "    RecoveryRoot = %s;\n"
            "%s"
            "}\n"
            "NFS_KRB5 { Active_krb5 = false; }\n"
            "%s" % (self.port, self.recov, v4_body, export))
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["ganesha.nfsd", "-F", "-f", str(self.conf), "-L", str(self.log), "-p", str(self.pid),
             "-N", "NIV_EVENT"],
            stdin=subprocess.DEVNULL, stdout=open(self.base / "ganesha.out", "wb"),
            stderr=subprocess.STDOUT, start_new_session=True)
        wait_port(self.port, self.proc, 60, "ganesha.nfsd", self.log)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)

    def put_tool(self):
        """tests' nfs_put (libnfs's nfs-cp cannot write over NFSv4)."""
        b = os.environ.get("RENDERFS_BUILD")
        p = Path(b) / "tests" / "nfs_put" if b else REPO / "build" / "tests" / "nfs_put"
        return str(p) if os.access(p, os.X_OK) else None

    def url(self, path=""):
        return "nfs://127.0.0.1/renderfs/%s?version=4&nfsport=%d" % (path.lstrip("/"), self.port)

    def tool(self, args, timeout=60, check=True, input=None):
        r = subprocess.run(args, capture_output=True, timeout=timeout, input=input)
        if check:
            assert r.returncode == 0, "%s failed (exit %d): %s\n%s" % (
                args, r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace"), tail(self.log))
        return r


def have(*tools):
    return all(shutil.which(t) for t in tools)
