# Fixtures for the renderfs end-to-end tests.
#
# Every test gets its own directory with a mount point, a state dir and a
# config file (fixture `rfs` makes mounts, `mnt` is one already mounted), a
# deadline (`@pytest.mark.deadline(SECONDS)`, default 120), and always
# unmounts: the teardown fails the test when the daemon did not exit 0, was
# killed by a signal, printed a sanitizer report, or left Blender running.
#
# Scenes are generated once per session with contrib/make_scene.py.
#
# Run:  RENDERFS_BIN=build/fs/renderfs /usr/bin/python3 -m pytest -q tests/integration

import gzip
import os
import shutil
import subprocess

import pytest

import rfslib as R

DEFAULT_DEADLINE = 120


def pytest_configure(config):
    config.addinivalue_line("markers", "deadline(seconds): time limit for one test")


@pytest.fixture(scope="session", autouse=True)
def _environment():
    # The only reasons to skip: the machine cannot mount FUSE or has no Blender.
    if not os.path.exists("/dev/fuse"):
        pytest.skip("/dev/fuse is missing: cannot mount FUSE here")
    if not shutil.which("blender"):
        pytest.skip("blender is not installed")
    R.set_child_subreaper()
    R.Watchdog.install()


@pytest.fixture(autouse=True)
def _deadline(request):
    m = request.node.get_closest_marker("deadline")
    secs = m.args[0] if m else DEFAULT_DEADLINE
    with R.Watchdog(secs):
        yield
    if R.Watchdog.fired:
        pytest.fail("test exceeded its %ss deadline" % secs, pytrace=False)


SCENE_SPECS = {
    # 12 frames of 32x24 at 2 samples: each frame renders in well under 1 s.
    "plain": ["--frames", "12", "--size", "32x24", "--samples", "2"],
    "compressed": ["--frames", "12", "--size", "32x24", "--samples", "2", "--compress"],
    "denoise": ["--frames", "12", "--size", "32x24", "--samples", "2", "--denoise"],
    # About 0.5 s a frame on 2 cores: for jobs that must still be running
    # when the test acts on them.
    "slow": ["--frames", "60", "--size", "320x240", "--samples", "24"],
}


class Scenes:
    def __init__(self, paths):
        self._paths = paths
        self._cache = {}

    def path(self, name):
        return self._paths[name]

    def bytes(self, name):
        if name not in self._cache:
            if name == "gzip":
                self._cache[name] = gzip.compress(self.bytes("plain"))
            else:
                self._cache[name] = R.get(self._paths[name])
        return self._cache[name]

    @property
    def plain(self):
        return self.bytes("plain")


@pytest.fixture(scope="session")
def scenes(tmp_path_factory, _environment):
    try:
        return Scenes(R.make_scenes(tmp_path_factory.mktemp("scenes"), SCENE_SPECS))
    except AssertionError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="session")
def blender_version():
    out = subprocess.run(["blender", "--version"], capture_output=True, text=True,
                         timeout=60).stdout
    first = out.strip().splitlines()[0]       # "Blender 3.4.1"
    return first.split()[1]


@pytest.fixture
def rfs(tmp_path):
    """Factory: rfs(config=None, opts=(), start=True, name="m") -> Mount."""
    made = []
    binary = R.renderfs_bin()

    def make(config=None, opts=(), start=True, name="m"):
        if not os.access(binary, os.X_OK):
            pytest.fail("renderfs binary not found or not executable: %s "
                        "(set RENDERFS_BIN)" % binary)
        m = R.Mount(tmp_path / name, binary, config, opts)
        made.append(m)
        if start:
            m.start()
        return m

    yield make
    R.Watchdog.armed = False      # never interrupt the cleanup itself
    problems = []
    for m in made:
        problems += m.teardown()
    for m in made:
        print(m.log_tail(150))
    if problems:
        pytest.fail("teardown: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def mnt(rfs):
    return rfs()
