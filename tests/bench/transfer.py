# Benchmark 4: downloading frames of 5 MB each from an SSH node (a real
# sshd in its own network namespace, tests/integration/sshnodes.py) with
# renderfs's transport (tests/bench/xfer.c: ssh_node_new + ops->get, one
# session, one file after another) against OpenSSH's sftp client fetching
# the same files in one session (`sftp -b` with one `get` per file): 100
# files on the bare veth link, then 20 files with 40 ms of round trip added
# by a delay line (delayproxy.py), where scp (one invocation for all the
# files) is measured too.  Interleaved, best of ROUNDS; connecting is not
# counted (sftp's connection is timed with an empty batch, scp's with one
# tiny file, and subtracted).
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import benchlib as B
from delayproxy import DelayProxy

sys.path.insert(0, str(B.REPO / "tests" / "integration"))
import sshnodes  # noqa: E402

COUNT = 100
SIZE = 5 * 1024 * 1024
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
XFER = B.REPO / "build" / "tests" / "bench_xfer"
# BENCH_XFER_BASE=path/to/another/bench_xfer: that build's transport is
# measured in the same rounds (an A/B of a transport change in one run).
BASE = os.environ.get("BENCH_XFER_BASE")


RTT_COUNT = 20        # files at 40 ms RTT (each costs OpenSSH a few round trips)
ONE_WAY = 0.020       # seconds added each way by the delay line: 40 ms RTT


def ssh_opts(key, port):
    return ["-q", "-i", str(key), "-P", str(port), "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]


def sftp(user, ip, port, key, batch):
    t0 = B.now()
    subprocess.run(["sftp", "-b", str(batch)] + ssh_opts(key, port) + ["%s@%s" % (user, ip)],
                   check=True, stdout=subprocess.DEVNULL)
    return B.now() - t0


def scp(user, ip, port, key, src, names, dst):
    t0 = B.now()
    subprocess.run(["scp"] + ssh_opts(key, port) + ["%s@%s:%s/%s" % (user, ip, src, n) for n in names]
                   + [str(dst)], check=True, stdout=subprocess.DEVNULL)
    return B.now() - t0


def measure(tmp, user, ip, port, key, src, count, with_scp):
    """Best of ROUNDS, interleaved: renderfs's transport, sftp, scp (their
    connection time, an empty sftp batch / a first scp of one tiny file,
    subtracted)."""
    empty = tmp / "empty.batch"
    empty.write_text("")
    names = ["f%03d" % i for i in range(count)]
    best = {"rfs": 1e9, "sftp": 1e9, "scp": 1e9}
    for r in range(ROUNDS):
        dst = tmp / ("rfs%d" % r)
        dst.mkdir()
        out = subprocess.run([str(XFER), "%s@%s:%d" % (user, ip, port), str(key), str(src), str(dst),
                              str(count)], check=True, capture_output=True, text=True).stdout
        best["rfs"] = min(best["rfs"], float(out.split("get ")[1].split()[0]))
        assert len(os.listdir(dst)) == count, dst
        shutil.rmtree(dst)
        if BASE:
            dst.mkdir()
            out = subprocess.run([BASE, "%s@%s:%d" % (user, ip, port), str(key), str(src), str(dst),
                                  str(count)], check=True, capture_output=True, text=True).stdout
            best["base"] = min(best.get("base", 1e9), float(out.split("get ")[1].split()[0]))
            assert len(os.listdir(dst)) == count, dst
            shutil.rmtree(dst)
        dst2 = tmp / ("sftp%d" % r)
        dst2.mkdir()
        batch = tmp / "get.batch"
        batch.write_text("".join("get %s/%s %s/%s\n" % (src, n, dst2, n) for n in names))
        conn = sftp(user, ip, port, key, empty)
        best["sftp"] = min(best["sftp"], sftp(user, ip, port, key, batch) - conn)
        dirs = [dst2]
        if with_scp:
            dst3 = tmp / ("scp%d" % r)
            dst3.mkdir()
            conn = scp(user, ip, port, key, src, ["tiny"], dst3)
            os.unlink(dst3 / "tiny")
            best["scp"] = min(best["scp"], scp(user, ip, port, key, src, names, dst3) - conn)
            dirs.append(dst3)
        for d in dirs:
            assert len(os.listdir(d)) == count, d
            shutil.rmtree(d)
    return best


def main():
    if not sshnodes.can_make_namespaces():
        print("  transfer: cannot make network namespaces here; skipped")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="rfs-bench-xfer-", dir="/var/tmp"))
    try:
        key = tmp / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        src = tmp / "src"
        src.mkdir()
        for i in range(COUNT):
            (src / ("f%03d" % i)).write_bytes(os.urandom(SIZE))
        (src / "tiny").write_bytes(b"x")
        with sshnodes.make_nodes(1, str(tmp), str(key) + ".pub") as nodes:
            node = nodes[0]
            best = measure(tmp, node.user, node.ip, node.port, key, src, COUNT, False)
            mb = COUNT * SIZE / 1e6
            print("  %d x 5 MB over SSH (loopback veth): renderfs transport %.2fs (%.0f MB/s),"
                  " OpenSSH sftp %.2fs (%.0f MB/s), best of %d"
                  % (COUNT, best["rfs"], mb / best["rfs"], best["sftp"], mb / best["sftp"], ROUNDS))
            B.ratio_line("transfer: renderfs / sftp speed", best["sftp"] / best["rfs"], 0.8, le=False)
            if BASE:
                print("  (BENCH_XFER_BASE on the bare link: %.2fs, %.0f MB/s; this build / that one: %.2f)"
                      % (best["base"], mb / best["base"], best["base"] / best["rfs"]))
            # The same link with 40 ms of round trip (a rented node across
            # the internet), through a user-space delay line
            # (delayproxy.py: the kernel here has no netem).
            proxy = DelayProxy(node.ip, node.port, ONE_WAY)
            try:
                best = measure(tmp, node.user, "127.0.0.1", proxy.port, key, src, RTT_COUNT, True)
            finally:
                proxy.close()
            mb = RTT_COUNT * SIZE / 1e6
            print("  %d x 5 MB over SSH at 40 ms RTT: renderfs transport %.2fs (%.1f MB/s),"
                  " sftp %.2fs (%.1f MB/s), scp %.2fs (%.1f MB/s), best of %d"
                  % (RTT_COUNT, best["rfs"], mb / best["rfs"], best["sftp"], mb / best["sftp"],
                     best["scp"], mb / best["scp"], ROUNDS))
            B.ratio_line("transfer 40ms RTT: renderfs / sftp speed", best["sftp"] / best["rfs"], 0.9, le=False)
            B.ratio_line("transfer 40ms RTT: renderfs / scp speed", best["scp"] / best["rfs"], 0.9, le=False)
            if BASE:
                print("  (BENCH_XFER_BASE at 40 ms RTT: %.2fs, %.1f MB/s; this build / that one: %.2f)"
                      % (best["base"], mb / best["base"], best["base"] / best["rfs"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
