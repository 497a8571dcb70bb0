import os, time, pytest, signal, traceback, rfslib as R
@pytest.mark.deadline(3)
def test_hung(mnt):
    old = signal.getsignal(signal.SIGALRM)
    def h(s, f):
        print("HANDLER armed=", R.Watchdog.armed, time.time()-t0); traceback.print_stack(f)
        old(s, f)
    signal.signal(signal.SIGALRM, h)
    os.kill(mnt.daemon.pid, signal.SIGSTOP)
    t0=time.time()
    fd = os.open(mnt.mnt/"status", os.O_RDONLY)
    print("opened", time.time()-t0)
    print(os.read(fd, 100), time.time()-t0)
