# backend = slurm (product.md "Slurm clusters") against a real single-host
# Slurm cluster started by the test (slurmlib.py): a job renders through
# srun workers into the shared folder and gets its video; a slot's Slurm
# job cancelled mid-frame gives the frame back without using an attempt;
# the user's own Slurm jobs are never touched; a SIGKILLed renderfs leaves
# nothing behind once it is mounted again and unmounted.

import os

import pytest

import rfslib as R
import slurmlib

pytestmark = pytest.mark.deadline(150)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the test's Slurm cluster runs as root (SlurmUser=root)")
    c = slurmlib.Cluster(tmp_path_factory.mktemp("slurm"))
    why = c.start()
    if why:
        c.stop()
        pytest.skip("cannot start slurmctld/slurmd here: %s" % why)
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(c.conf)      # the daemon inherits it
    yield c
    if old is None:
        del os.environ["SLURM_CONF"]
    else:
        os.environ["SLURM_CONF"] = old
    c.stop()


@pytest.fixture
def slurm_mount(monkeypatch, cluster, rfs, tmp_path):
    # monkeypatch first: its undo comes after rfs's teardown, which checks
    # for leftover processes and must know the cluster's own.
    monkeypatch.setattr(R, "not_the_daemons", cluster.owns)
    shared = tmp_path / "shared"
    shared.mkdir()

    def make(slots=2, start=True):
        conf = ("[renderfs]\nbackend = slurm\nquiet = %s\n"
                "[slurm]\npartition = rfs\nslots = %d\ngres =\nshared = %s\nblender = blender\n"
                % (R.QUIET_OPT, slots, shared))
        return rfs(config=conf, start=start)
    make.shared = shared
    return make


def own_active(cluster):
    return cluster.active(cluster.renderfs_jobs())


def stop_and_check(mnt, cluster):
    """Unmount: renderfs's own jobs are cancelled at once, and end."""
    mnt.stop()
    assert own_active(cluster) == [], cluster.jobs()
    cluster.settle()


def check_video(mnt, job, n):
    v = R.ffprobe(mnt.job_dir(job) / (job + ".mp4"))
    assert v == {"codec_name": "h264", "pix_fmt": "yuv420p", "nb_read_frames": n}, v


def test_job_renders_on_slurm(slurm_mount, cluster, scenes):
    mnt = slurm_mount()
    before = {j[0] for j in cluster.renderfs_jobs()}
    mnt.drop("shot", scenes.plain, "1-6\n")
    s = mnt.wait_done("shot", timeout=120)
    assert int(s["done"]) == 6 and int(s["failed"]) == 0, s
    assert mnt.frame_numbers("shot") == list(range(1, 7))
    for f in mnt.frames("shot"):
        assert R.image_size(mnt.job_dir("shot") / f) == (32, 24)
    check_video(mnt, "shot", 6)
    # The node is the compute host, seen through Slurm.
    ns = R.parse_status(R.get(mnt.mnt / "nodes" / "slurm-localhost" / "status").decode())
    assert ns["provider"] == "slurm" and ns["address"] == "localhost", ns
    assert int(ns["done"]) == 6, ns
    # The frames were rendered by srun jobs marked as renderfs's own.
    mine = [j for j in cluster.renderfs_jobs() if j[0] not in before]
    assert mine, cluster.jobs()
    assert all(j[2].startswith("renderfs:") for j in mine), mine
    # The scene went to the shared folder once, by content.
    blobs = list((slurm_mount.shared / ".renderfs" / "blobs").iterdir())
    assert [b.name for b in blobs] == [R.sha(scenes.plain) + ".blend"], blobs
    stop_and_check(mnt, cluster)


def test_scancel_mid_frame(slurm_mount, cluster, scenes):
    mnt = slurm_mount(slots=1)
    mnt.drop("long", scenes.bytes("slow"), "1-8\n")

    def rendering_job():
        s = mnt.status("long")
        run = [j for j in own_active(cluster) if j[3] == "RUNNING"]
        return run if int(R.leading_number(s["rendering"])) >= 1 and int(s["done"]) >= 1 else None
    victim = R.wait_for(rendering_job, 90, "a frame rendering in a Slurm job")[0]
    # The node's status names the Slurm job that holds its slot.
    ns = R.parse_status(R.get(mnt.mnt / "nodes" / "slurm-localhost" / "status").decode())
    assert ns["slurm_jobs"] == "%d (slot 0)" % victim[0], (ns, victim)
    cluster.run(["scancel", str(victim[0])])
    s = mnt.wait_done("long", timeout=120)
    assert int(s["done"]) == 8 and int(s["failed"]) == 0, s
    assert int(s["interrupted"]) >= 1, s      # the frame came back as interrupted ...
    assert int(s["retried"]) == 0, s          # ... using no attempt
    assert mnt.frame_numbers("long") == list(range(1, 9))
    states = {j[0]: j[3] for j in cluster.jobs()}
    assert states[victim[0]] == "CANCELLED", states
    stop_and_check(mnt, cluster)


def test_foreign_job_left_alone(slurm_mount, cluster, scenes, tmp_path):
    r = cluster.run(["sbatch", "--parsable", "--job-name=users-own", "--output=/dev/null",
                     "--wrap", "sleep 300"])
    foreign = int(r.stdout.strip().split(";")[0])
    try:
        R.wait_for(lambda: dict((j[0], j[3]) for j in cluster.jobs()).get(foreign) == "RUNNING",
                   30, "the user's own job to run")
        mnt = slurm_mount()
        mnt.drop("shot", scenes.plain, "1-4\n")
        mnt.wait_done("shot", timeout=120)
        stop_and_check(mnt, cluster)
        states = dict((j[0], j[3]) for j in cluster.jobs())
        assert states[foreign] == "RUNNING", states
    finally:
        cluster.run(["scancel", str(foreign)], check=False)


def test_sigkill_then_remount(slurm_mount, cluster, scenes):
    mnt = slurm_mount(slots=2)
    mnt.drop("long", scenes.bytes("slow"), "1-12\n")
    R.wait_for(lambda: int(mnt.status("long")["done"]) >= 2 and own_active(cluster), 90,
               "frames done and workers running")
    before = mnt.snapshot("long")
    mnt.crash()
    # The dead renderfs's srun workers are gone with it, but Slurm may
    # still hold their jobs: the next mount must end them.
    mnt.start()
    s = mnt.wait_done("long", timeout=120)
    assert int(s["done"]) == 12 and int(s["failed"]) == 0, s
    after = mnt.snapshot("long")
    for n, v in before.items():
        assert after[n] == v, "%s changed across the crash" % n
    check_video(mnt, "long", 12)
    stop_and_check(mnt, cluster)
