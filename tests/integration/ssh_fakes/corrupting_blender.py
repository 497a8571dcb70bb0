#!/usr/bin/python3
# A `blender` that is the real one, except that the first frame any worker
# reports done (once per installation: a flag file beside this script) is
# damaged on disk after the worker computed its SHA-256 and before the
# "done" line reaches renderfs.  Everything else passes straight through.
import json
import os
import subprocess
import sys

REAL = "/usr/bin/blender"
FLAG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corrupted")


def damage(path):
    try:
        fd = os.open(FLAG, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return
    with open(path, "r+b") as f:
        data = f.read()
        i = len(data) // 2
        f.seek(i)
        f.write(bytes([data[i] ^ 0xFF]))
    os.write(fd, ("%s byte %d\n" % (path, i)).encode())
    os.close(fd)


def main():
    p = subprocess.Popen([REAL] + sys.argv[1:], stdout=subprocess.PIPE)
    out = sys.stdout.buffer
    for line in p.stdout:
        if line.startswith(b"@rfs "):
            try:
                ev = json.loads(line[5:])
            except ValueError:
                ev = {}
            if ev.get("ev") == "done" and ev.get("path"):
                damage(ev["path"])
        try:
            out.write(line)
            out.flush()
        except BrokenPipeError:
            p.kill()
            break
    return p.wait()


if __name__ == "__main__":
    code = main()
    sys.exit(code if code >= 0 else 128 - code)
