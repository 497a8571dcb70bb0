import os, time, pytest, signal, rfslib as R
@pytest.mark.deadline(3)
def test_hung(mnt):
    os.kill(mnt.daemon.pid, signal.SIGSTOP)
    R.get(mnt.mnt/"status")
