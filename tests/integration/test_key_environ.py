# Issue 10, item 9: the Clore API key, given in CLORE_API_KEY, must not stay
# readable in the daemon's own environment block (/proc/PID/environ) after
# it was read -- unsetenv() alone leaves the bytes there.  Mounts with
# backend = clore against the fake API (tests/clore_fake.py), no rentals.
#
# The fixtures are test_clore.py's: its fake, its teardown checks.

import pytest

from test_clore import _clore_fakes, _clore_nodes, _need_namespaces, clore  # noqa: F401


@pytest.mark.deadline(60)
def test_key_not_in_daemon_environ(clore):  # noqa: F811
    clore.start_fake([])
    mnt = clore.mount(key="env", nodes=1)
    pid = mnt.daemon.pid
    with open("/proc/%d/environ" % pid, "rb") as f:
        env = f.read()
    assert clore.key.encode() not in env, "the API key is readable in /proc/%d/environ" % pid
    # Not even a part of it.
    assert clore.key[-16:].encode() not in env, "part of the API key is in /proc/%d/environ" % pid
    # The rest of the environment is intact (the wipe touched only the key).
    assert b"RENDERFS_CLORE_RATE_SCALE=" in env, env[:400]
    mnt.stop()
