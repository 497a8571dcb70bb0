#!/usr/bin/python3
# A `blender` that is the real one on a node with a CUDA GPU, as far as
# renderfs can tell: the worker's protocol lines on stdout are passed on
# with its device report rewritten.  The real worker here finds no GPU and
# falls back to CPU; this stand-in makes its "ready" list a CUDA device and
# pick it (as device = auto would), and each "done" say the frame rendered
# on CUDA.  Frames are still rendered by the real Blender, on the CPU.
# Everything else (stdin, stderr, other lines) passes straight through.
import json
import os
import sys

REAL = os.environ.get("RFS_FAKE_GPU_REAL", "/usr/bin/blender")  # the Blender behind it
PREFIX = b"@rfs "
GPU = os.environ.get("RFS_FAKE_GPU_NAME", "NVIDIA GeForce RTX 3090")


def rewrite(line):
    if not line.startswith(PREFIX):
        return line
    try:
        msg = json.loads(line[len(PREFIX):])
    except ValueError:
        return line
    if not isinstance(msg, dict):
        return line
    if msg.get("ev") == "ready" and msg.get("device") == "CPU" and \
            not str(msg.get("why", "")).startswith("cpu requested"):
        msg["device"] = "CUDA"
        msg["device_name"] = GPU
        msg["devices"] = ["CUDA:" + GPU] + [d for d in msg.get("devices", []) if not d.startswith("CUDA:")]
        msg["why"] = "auto: CUDA is the best device type present"
    elif msg.get("ev") == "done" and msg.get("device") == "CPU":
        msg["device"] = "CUDA"
    return PREFIX + json.dumps(msg, separators=(",", ":")).encode() + b"\n"


def main():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.dup2(w, 1)
        os.close(w)
        os.execv(REAL, [REAL] + sys.argv[1:])
    os.close(w)
    out = sys.stdout.buffer
    with os.fdopen(r, "rb") as src:
        for line in src:
            try:
                out.write(rewrite(line))
                out.flush()
            except BrokenPipeError:
                break
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if status else 0


if __name__ == "__main__":
    code = main()
    sys.exit(code if code >= 0 else 128 - code)
