#!/usr/bin/python3
# A `blender` that is the real one, made slow: every frame request on stdin
# reaches the real worker RFS_FAKE_DELAY seconds (default 1.5) late.  The
# setup line and everything on stdout/stderr pass straight through.
import os
import sys
import time

REAL = "/usr/bin/blender"


def main():
    delay = float(os.environ.get("RFS_FAKE_DELAY", "1.5"))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.dup2(r, 0)
        os.close(r)
        os.execv(REAL, [REAL] + sys.argv[1:])
    os.close(r)
    inp = sys.stdin.buffer
    first = True
    try:
        for line in inp:
            if not first and b'"frame"' in line:
                time.sleep(delay)
            first = False
            os.write(w, line)
    except BrokenPipeError:
        pass
    os.close(w)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if status else 0


if __name__ == "__main__":
    code = main()
    sys.exit(code if code >= 0 else 128 - code)
