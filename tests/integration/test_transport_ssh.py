# The transport conformance suite (tests/unit/test_transport.c) against a
# real sshd in its own network namespace, and against the local transport.
# Skips only when this machine cannot make network namespaces.

import os
import subprocess
from pathlib import Path

import pytest

import sshnodes

REPO = Path(__file__).resolve().parents[2]


def _suite_binary():
    build = Path(os.environ.get("RENDERFS_BUILD", REPO / "build"))
    exe = build / "tests" / "test_transport"
    if not exe.exists():
        pytest.fail("%s is missing: build first (ninja -C %s)" % (exe, build))
    return str(exe)


def _run_suite(env, timeout=240):
    r = subprocess.run([_suite_binary()], env=env, capture_output=True, text=True, timeout=timeout)
    out = r.stdout + r.stderr
    print(out)
    return r.returncode, out


@pytest.fixture
def ssh_key(tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


@pytest.mark.deadline(300)
def test_transport_ssh(tmp_path, ssh_key):
    if not sshnodes.can_make_namespaces():
        pytest.skip("cannot make network namespaces here")
    with sshnodes.make_nodes(1, str(tmp_path), str(ssh_key) + ".pub") as nodes:
        node = nodes[0]
        env = dict(os.environ, RENDERFS_TEST_SSH=node.target, RENDERFS_TEST_SSH_KEY=str(ssh_key))
        rc, out = _run_suite(env)
        assert rc == 0, "conformance suite failed over ssh:\n" + out + "\nsshd log:\n" + node.read_log()
        # The node's renderfs directory came from sshd's SetEnv.
        assert os.path.isdir(node.dir), "RENDERFS_NODE_DIR was not used: %s missing" % node.dir


@pytest.mark.deadline(120)
def test_transport_local():
    env = dict(os.environ)
    env.pop("RENDERFS_TEST_SSH", None)
    rc, out = _run_suite(env, timeout=100)
    assert rc == 0, "conformance suite failed locally:\n" + out
