# Benchmark 4: downloading 100 frames of 5 MB each from an SSH node (a real
# sshd in its own network namespace, tests/integration/sshnodes.py) with
# renderfs's transport (tests/bench/xfer.c: ssh_node_new + ops->get, one
# session, one file after another) against OpenSSH's sftp client fetching
# the same files in one session (`sftp -b` with one `get` per file).
# Interleaved, best of ROUNDS; connecting is not counted for either
# (sftp's connection is timed with an empty batch and subtracted).
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import benchlib as B

sys.path.insert(0, str(B.REPO / "tests" / "integration"))
import sshnodes  # noqa: E402

COUNT = 100
SIZE = 5 * 1024 * 1024
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
XFER = B.REPO / "build" / "tests" / "bench_xfer"


def sftp(node, key, batch):
    t0 = B.now()
    subprocess.run(["sftp", "-q", "-b", str(batch), "-i", str(key), "-P", str(node.port),
                    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                    "-o", "LogLevel=ERROR", "%s@%s" % (node.user, node.ip)],
                   check=True, stdout=subprocess.DEVNULL)
    return B.now() - t0


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
        with sshnodes.make_nodes(1, str(tmp), str(key) + ".pub") as nodes:
            node = nodes[0]
            empty = tmp / "empty.batch"
            empty.write_text("")
            best = {"rfs": 1e9, "sftp": 1e9}
            for r in range(ROUNDS):
                dst = tmp / ("rfs%d" % r)
                dst.mkdir()
                out = subprocess.run([str(XFER), node.target, str(key), str(src), str(dst), str(COUNT)],
                                     check=True, capture_output=True, text=True).stdout
                t = float(out.split("get ")[1].split()[0])
                best["rfs"] = min(best["rfs"], t)
                dst2 = tmp / ("sftp%d" % r)
                dst2.mkdir()
                batch = tmp / "get.batch"
                batch.write_text("".join("get %s/f%03d %s/f%03d\n" % (src, i, dst2, i) for i in range(COUNT)))
                conn = sftp(node, key, empty)
                t2 = sftp(node, key, batch) - conn
                best["sftp"] = min(best["sftp"], t2)
                for d in (dst, dst2):
                    assert len(os.listdir(d)) == COUNT
                    shutil.rmtree(d)
            mb = COUNT * SIZE / 1e6
            print("  %d x 5 MB over SSH (loopback veth): renderfs transport %.2fs (%.0f MB/s),"
                  " OpenSSH sftp %.2fs (%.0f MB/s), best of %d"
                  % (COUNT, best["rfs"], mb / best["rfs"], best["sftp"], mb / best["sftp"], ROUNDS))
            B.ratio_line("transfer: renderfs / sftp speed", best["sftp"] / best["rfs"], 0.8, le=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
