# SSH test nodes: real sshd processes, each in its own network namespace with
# its own address, reached from the root namespace over a veth pair.  This
# module only builds and tears down nodes; it holds no tests.
#
#   with make_nodes(2, tmpdir, "/path/key.pub") as nodes:
#       nodes[0].target          # "root@10.231.7.2:22"
#       nodes[0].kill_sshd()     # a real fault: sshd and its sessions die
#       nodes[0].link_down()     # packets stop; TCP sees nothing at once
#       nodes[0].end_sessions()  # every session dies, the listener stays
#
# Each node N gets:
#   namespace  rfs-<tag>-N       (tag unique to this process and node set)
#   veth       rh<tag>N (root namespace, 10.231.X.1/24)
#              rn<tag>N (in the namespace, 10.231.X.2/24)
#   sshd       /usr/sbin/sshd -D -e -f <tmpdir>/sshdN/sshd_config, run with
#              `ip netns exec`, own ed25519 host key, keys from
#              <tmpdir>/authorized_keys (shared by all nodes), or with
#              authorized_pubkey_path=None from <tmpdir>/authorized_keys.N
#              (its own, initially empty: a test or the fake Clore API
#              writes it), LogLevel ERROR, log in sshdN/log
#   dir        <tmpdir>/nodeN: renderfs's directory on the node, given to
#              every session as RENDERFS_NODE_DIR by sshd's SetEnv (OpenSSH
#              >= 7.8 applies SetEnv to exec and subsystem sessions alike)
#
# X is picked under a lock file so that parallel test runs never share a
# subnet.  All nodes share this machine's file system and process table, so
# a test can look at a node's files directly.
#
# Mount namespaces: `ip netns exec` makes one per command with slave
# propagation, which is what architecture.md asks for (a private copy of a
# renderfs mount would keep the FUSE connection alive).  Nothing here makes a
# private-propagation namespace.
#
# Cleanup kills every process in each namespace, deletes the veths and the
# namespaces; it runs on context exit, on NodeSet.cleanup(), and at
# interpreter exit for anything still left.
#
# A node without Blender (make_nodes(..., hide_blender=[...])): its sshd's
# mount namespace has an empty file bind-mounted over /usr/bin/blender, so
# nothing started over SSH finds a Blender there, while the rest of the
# machine keeps its own.  The real program stays reachable inside that
# namespace at node.real_blender (bound there first), for the stand-in
# builds a test installs (a wrapper script that execs it).
#
# A Blender mirror on the test network (Mirror): an HTTP server in this
# process, on the root namespace's side of a node's veth, serving a folder
# the test fills (blender_mirror_tree() makes a stand-in build laid out like
# the official ones), and counting the requests for each path.
#
# From a command line (the fake Clore API runs this when a rented
# container goes away):
#
#   python3 sshnodes.py end-sessions NETNS PIDFILE
#
# SIGKILLs every process in network namespace NETNS except the listening
# sshd (the pid in PIDFILE; when that file is missing or stale, the sshd
# whose parent is outside the namespace), and waits for them to go.

import atexit
import fcntl
import hashlib
import http.server
import io
import tarfile
import threading
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time

SSHD = "/usr/sbin/sshd"
SUBNET = "10.231"
LOCK = "/tmp/rfs-sshnodes.lock"
READY_TIMEOUT = 10.0
DETACH_FUSE = ("awk '$3 ~ /^fuse/ {print $2}' /proc/self/mounts | "
               "while read -r m; do umount -l \"$m\" 2>/dev/null; done; ")

_live = set()      # NodeSets not yet cleaned up, for the atexit net
_counter = [0]


def _run(*argv, check=True, timeout=20):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(argv), (r.stderr or r.stdout).strip()))
    return r


def can_make_namespaces():
    """True when this machine lets us make network namespaces and has sshd.
    Callers skip (exit 77 / pytest.skip) only when this is False."""
    if not os.path.exists(SSHD) or not shutil.which("ssh-keygen") or not shutil.which("ip"):
        return False
    name = "rfs-probe-%d" % os.getpid()
    try:
        r = subprocess.run(["ip", "netns", "add", name], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if r.returncode != 0:
        return False
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
    return True


def _netns_pids(ns):
    r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10)
    return [int(p) for p in r.stdout.split()] if r.returncode == 0 else []


def _comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def _kill_and_wait(pids, timeout=5.0):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                # Our own children must be reaped; others vanish by themselves.
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:
                pass
            if not os.path.exists("/proc/%d" % pid) or _state(pid) == "Z":
                break
            time.sleep(0.02)


def _state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def _listener_pid(ns, pidfile, pids):
    """The listening sshd of namespace ns: the pid in pidfile when that is
    an sshd in the namespace, else the sshd whose parent is outside it."""
    try:
        with open(pidfile) as f:
            pid = int(f.read().split()[0])
        if pid in pids and _comm(pid) == "sshd":
            return pid
    except (OSError, ValueError, IndexError):
        pass
    inside = set(pids)
    for pid in pids:
        if _comm(pid) == "sshd" and _ppid(pid) not in inside:
            return pid
    return None


def _ppid(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def end_sessions(ns, pidfile, timeout=5.0):
    """SIGKILL every process in network namespace ns except its listening
    sshd, and wait (up to timeout) for them to go.  Returns the pids killed.
    A namespace with nothing in it, or no listener, is fine."""
    pids = _netns_pids(ns)
    keep = _listener_pid(ns, pidfile, pids)
    victims = [p for p in pids if p != keep and p != os.getpid()]
    _kill_and_wait(victims, timeout)
    return victims


def _pick_subnets(count):
    """Third octets of 10.231.X.0/24 not in use by any interface here.
    Called with LOCK held, and the addresses are assigned before release."""
    used = set()
    out = _run("ip", "-o", "-4", "addr", "show").stdout
    for word in out.split():
        if word.startswith(SUBNET + "."):
            used.add(int(word.split(".")[2]))
    free = [x for x in range(1, 255) if x not in used]
    if len(free) < count:
        raise RuntimeError("no free %s.X.0/24 subnets left" % SUBNET)
    return free[:count]


class Node:
    """One sshd in its own network namespace."""

    def __init__(self, tag, idx, octet, tmpdir, authorized_keys, env=None, hide_blender=False):
        self.idx = idx
        self.hide_blender = hide_blender
        # Extra NAME=value pairs for every session (sshd's SetEnv), e.g. a
        # PATH with a fake `blender` first.  Values must not hold spaces.
        self.env = dict(env or {})
        self.name = "node%d" % idx
        self.ns = "rfs-%s-%d" % (tag, idx)
        self.host_if = "rh%s%d" % (tag, idx)
        self.node_if = "rn%s%d" % (tag, idx)
        self.host_ip = "%s.%d.1" % (SUBNET, octet)
        self.ip = "%s.%d.2" % (SUBNET, octet)
        self.port = 22
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.target = "%s@%s:%d" % (self.user, self.ip, self.port)
        self.dir = os.path.join(tmpdir, "node%d" % idx)
        self.sshd_dir = os.path.join(tmpdir, "sshd%d" % idx)
        self.host_key = os.path.join(self.sshd_dir, "ssh_host_ed25519_key")
        self.config = os.path.join(self.sshd_dir, "sshd_config")
        self.pidfile = os.path.join(self.sshd_dir, "sshd.pid")
        self.log = os.path.join(self.sshd_dir, "log")
        # With hide_blender: where the real Blender is, inside the node.
        self.real_blender = os.path.join(self.sshd_dir, "real-blender")
        self.authorized_keys = authorized_keys
        self.proc = None
        self.made_ns = False
        self.made_link = False

    # -- building

    def _make_network(self):
        _run("ip", "netns", "add", self.ns)
        self.made_ns = True
        _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.node_if)
        self.made_link = True
        _run("ip", "link", "set", self.node_if, "netns", self.ns)
        _run("ip", "addr", "add", self.host_ip + "/24", "dev", self.host_if)
        _run("ip", "link", "set", self.host_if, "up")
        _run("ip", "netns", "exec", self.ns, "ip", "addr", "add", self.ip + "/24", "dev", self.node_if)
        _run("ip", "netns", "exec", self.ns, "ip", "link", "set", self.node_if, "up")
        _run("ip", "netns", "exec", self.ns, "ip", "link", "set", "lo", "up")

    def _write_config(self):
        # self.dir is not made here: the transport's mkdir -p makes it,
        # which shows that SetEnv reached the session.
        os.makedirs(self.sshd_dir, exist_ok=True)
        with open(self.config, "w") as f:
            f.write("\n".join([
                "ListenAddress %s" % self.ip,
                "Port %d" % self.port,
                "HostKey %s" % self.host_key,
                "PidFile %s" % self.pidfile,
                "AuthorizedKeysFile %s" % self.authorized_keys,
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "UseDNS no",
                "PrintMotd no",
                # renderfs keeps one connection per node with a channel
                # per worker, plus SFTP and short commands.
                "MaxSessions 64",
                # sshd keeps only the first SetEnv line: one line, many words.
                "SetEnv " + " ".join(
                    ["RENDERFS_NODE_DIR=%s" % self.dir]
                    + ["%s=%s" % (k, v) for k, v in sorted(self.env.items())]),
                "Subsystem sftp internal-sftp",
                "LogLevel ERROR",
                "",
            ]))

    def _make_host_key(self):
        for path in (self.host_key, self.host_key + ".pub"):
            if os.path.exists(path):
                os.unlink(path)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.name, "-f", self.host_key)

    def host_key_fingerprint(self):
        """"SHA256:..." as OpenSSH (and renderfs) print it."""
        out = _run("ssh-keygen", "-l", "-E", "sha256", "-f", self.host_key + ".pub").stdout
        return out.split()[1]

    # -- sshd

    def start_sshd(self):
        """Start sshd and wait until it accepts TCP connections."""
        if self.proc and self.proc.poll() is None:
            return
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation dir
        prefix = DETACH_FUSE
        if self.hide_blender:
            prefix += self._hide_blender_script()
        log = open(self.log, "ab")
        try:
            # `ip netns exec` gives sshd a new mount namespace holding a
            # copy of every mount, renderfs's included; on a machine whose
            # root mount is private that copy would keep the FUSE
            # connection alive after fusermount3 -u, and the daemon would
            # never exit.  Detach FUSE mounts in the copy before sshd starts.
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, "sh", "-c", prefix + 'exec "$0" "$@"',
                 SSHD, "-D", "-e", "-f", self.config],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("sshd for %s exited %s: %s" % (self.name, self.proc.returncode,
                                                                 self.read_log()))
            try:
                with socket.create_connection((self.ip, self.port), timeout=0.5) as s:
                    # Ready means talking: the banner, not just a listen().
                    s.settimeout(2.0)
                    if s.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("sshd for %s not ready after %ss: %s" % (self.name, READY_TIMEOUT,
                                                                           self.read_log()))
            time.sleep(0.05)

    def _hide_blender_script(self):
        """Shell words run in sshd's own mount namespace before sshd: the
        real Blender bound at real_blender, an empty file over
        /usr/bin/blender.  Both mount points are files of this node."""
        blender = shutil.which("blender") or "/usr/bin/blender"
        empty = os.path.join(self.sshd_dir, "no-blender")
        for path in (self.real_blender, empty):
            with open(path, "a"):
                pass
        return ("mount --bind %s %s && mount --bind %s %s || exit 1; "
                % (blender, self.real_blender, empty, blender))

    def sshd_pids(self):
        """The listener and every per-session sshd in the namespace."""
        return [p for p in _netns_pids(self.ns) if _comm(p) == "sshd"]

    def kill_sshd(self):
        """SIGKILL the sshd listener and its session processes, as a crash
        would.  What the sessions ran (workers) is left alone: it loses its
        connection, not its life."""
        pids = self.sshd_pids()
        if self.proc and self.proc.poll() is None and self.proc.pid not in pids:
            pids.append(self.proc.pid)
        _kill_and_wait(pids)
        if self.proc:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None

    def end_sessions(self):
        """SIGKILL every process in the namespace but the listening sshd:
        sessions and what they ran die, new connections are still taken
        (as when a rented container goes away and its port stays open).
        Returns the pids killed."""
        return end_sessions(self.ns, self.pidfile)

    def end_sessions_argv(self):
        """The command line doing end_sessions() from another process."""
        return [sys.executable, os.path.abspath(__file__), "end-sessions", self.ns, self.pidfile]

    def kill_all(self):
        """SIGKILL everything running in the namespace."""
        pids = _netns_pids(self.ns) if self.made_ns else []
        if self.proc and self.proc.poll() is None and self.proc.pid not in pids:
            pids.append(self.proc.pid)
        _kill_and_wait(pids)
        if self.proc:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None

    def new_host_key(self):
        """Regenerate the host key and restart sshd with it."""
        self.kill_sshd()
        self._make_host_key()
        self.start_sshd()

    def read_log(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    # -- faults on the link

    def link_down(self):
        _run("ip", "link", "set", "dev", self.host_if, "down")

    def link_up(self):
        _run("ip", "link", "set", "dev", self.host_if, "up")

    # -- teardown

    def cleanup(self):
        errors = []
        try:
            self.kill_all()
        except Exception as e:  # keep going: the namespace must go
            errors.append(e)
        if self.made_link:
            r = subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=10)
            # Gone already when the namespace took the peer with it.
            self.made_link = False
            del r
        if self.made_ns:
            r = subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, text=True, timeout=10)
            if r.returncode != 0 and os.path.exists("/run/netns/" + self.ns):
                errors.append(RuntimeError("ip netns del %s: %s" % (self.ns, r.stderr.strip())))
            self.made_ns = False
        return errors

    def __repr__(self):
        return "<Node %s %s ns=%s>" % (self.name, self.target, self.ns)


class NodeSet:
    """A list of Nodes that always cleans up: use it with `with`, or call
    cleanup() from a fixture's teardown."""

    def __init__(self, nodes):
        self.nodes = nodes
        _live.add(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self):
        return len(self.nodes)

    def __getitem__(self, i):
        return self.nodes[i]

    def cleanup(self):
        errors = []
        for node in self.nodes:
            errors += node.cleanup()
        _live.discard(self)
        if errors:
            raise errors[0]


_MY_NET = os.readlink("/proc/self/ns/net")


def in_node_namespace(pid):
    """Whether pid runs in another network namespace than the tests (a
    node's sshd or its sessions: not a process the daemon left behind)."""
    try:
        return os.readlink("/proc/%d/ns/net" % pid) != _MY_NET
    except OSError:
        return False


def make_key(path, comment="rfs-test"):
    """An ed25519 key pair without passphrase at path and path.pub."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, timeout=30)


def make_nodes(n, tmpdir, authorized_pubkey_path, env=None, hide_blender=None):
    """Make n nodes under tmpdir, each running sshd that accepts the given
    public key, from one shared <tmpdir>/authorized_keys.  With
    authorized_pubkey_path=None each node N gets its own, initially empty,
    <tmpdir>/authorized_keys.N instead (node.authorized_keys): it accepts no
    key until somebody writes one there.  `env`, when given, is a list of n
    dicts (or None) of extra environment for each node's sessions, set with
    sshd's SetEnv (PATH included).  `hide_blender`, when given, is a list
    of n booleans: True makes that node one without Blender (see the top of
    this file).  Returns a NodeSet (a context manager); on
    any failure while building, what was made is removed before the error
    propagates."""
    env = list(env) if env is not None else [None] * n
    if len(env) != n:
        raise ValueError("make_nodes: env needs one entry per node")
    hide = list(hide_blender) if hide_blender is not None else [False] * n
    if len(hide) != n:
        raise ValueError("make_nodes: hide_blender needs one entry per node")
    _counter[0] += 1
    # Interface names are at most 15 bytes: "rh" + tag + index.
    tag = "%x%x" % (os.getpid() % 0x10000, _counter[0] % 0x100)
    if authorized_pubkey_path is None:
        keyfiles = []
        for i in range(n):
            path = os.path.join(tmpdir, "authorized_keys.%d" % i)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.close(fd)
            keyfiles.append(path)
    else:
        authorized_keys = os.path.join(tmpdir, "authorized_keys")
        shutil.copyfile(authorized_pubkey_path, authorized_keys)
        keyfiles = [authorized_keys] * n
    nodes = []
    nodeset = NodeSet(nodes)
    try:
        with open(LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            octets = _pick_subnets(n)
            for i in range(n):
                node = Node(tag, i, octets[i], tmpdir, keyfiles[i], env[i], hide[i])
                nodes.append(node)
                node._make_network()
        for node in nodes:
            node._write_config()
            node._make_host_key()
            node.start_sshd()
    except BaseException:
        try:
            nodeset.cleanup()
        except Exception:
            pass
        raise
    return nodeset


RELEASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "backend", "sched",
                        "blender-releases.txt")


def known_blender_release(series):
    """(version, tarball name) that renderfs installs for a series ("3.4"),
    from the release table the daemon compiles in."""
    with open(RELEASES) as f:
        for line in f:
            words = line.split()
            if words and not line.startswith("#") and words[0] == series:
                return words[1], (words[2] if len(words) > 2
                                  else "blender-%s-linux-x64.tar.xz" % words[1])
    raise AssertionError("%s names no release of series %s" % (RELEASES, series))


def blender_series(version):
    return ".".join(version.split(".")[:2])


def blender_mirror_tree(root, version, tarball, real_blender, good=True):
    """Fill root like Blender's release site for one version:
    BlenderX.Y/TARBALL, holding TOP/blender (TOP is TARBALL without
    .tar.xz; the program a wrapper that execs real_blender) and a readme,
    and BlenderX.Y/blender-V.sha256 listing the tarball among other files.
    good=False lists a wrong sum for the tarball.  Returns the tarball's
    path under root's URL ("/BlenderX.Y/TARBALL") and the list's."""
    folder = "Blender" + blender_series(version)
    d = os.path.join(str(root), folder)
    os.makedirs(d, exist_ok=True)
    top = tarball[:-len(".tar.xz")]
    wrapper = ("#!/bin/sh\n# a stand-in for Blender %s: the real one, hidden on the node\n"
               "exec %s \"$@\"\n" % (version, real_blender)).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as t:
        info = tarfile.TarInfo(top)
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        t.addfile(info)
        for name, data, mode in ((top + "/blender", wrapper, 0o755),
                                 (top + "/readme.html", b"<p>stand-in</p>\n", 0o644)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            t.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    with open(os.path.join(d, tarball), "wb") as f:
        f.write(data)
    digest = hashlib.sha256(data).hexdigest()
    if not good:
        digest = digest[::-1]
    other = hashlib.sha256(b"another file").hexdigest()
    sums = "blender-%s.sha256" % version
    with open(os.path.join(d, sums), "w") as f:
        f.write("%s  blender-%s-macos-arm64.dmg\n%s  %s\n%s  blender-%s-windows-x64.zip\n"
                % (other, version, digest, tarball, other, version))
    return "/%s/%s" % (folder, tarball), "/%s/%s" % (folder, sums)


class Mirror:
    """A static HTTP server for a node: on the node's veth address in the
    root namespace (node.host_ip, which the node reaches directly), serving
    the folder root.  `url` is its base; `hits(path)` counts GET requests
    for one path (like "/Blender3.4/blender-3.4.1.sha256"), `requests` lists
    them all.  Use it with `with`, or call close()."""

    def __init__(self, root, node):
        self.root = str(root)
        self.requests = []
        self._lock = threading.Lock()
        mirror = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=mirror.root, **kw)

            def do_GET(self):
                with mirror._lock:
                    mirror.requests.append(self.path)
                super().do_GET()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer((node.host_ip, 0), Handler)
        self.url = "http://%s:%d" % (node.host_ip, self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def hits(self, path):
        with self._lock:
            return self.requests.count(path)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def main(argv):
    if len(argv) == 3 and argv[0] == "end-sessions":
        end_sessions(argv[1], argv[2])
        return 0
    sys.stderr.write("usage: sshnodes.py end-sessions NETNS PIDFILE\n")
    return 2


@atexit.register
def _cleanup_leftovers():
    for nodeset in list(_live):
        try:
            nodeset.cleanup()
        except Exception:
            pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
