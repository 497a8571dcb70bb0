# A TCP delay line for the transfer benchmark: this machine's kernel has no
# netem (CONFIG_NET_SCH_NETEM is not set), so latency is added in user
# space.  Every byte read from one side is written to the other DELAY
# seconds after it arrived, in order; bandwidth is whatever the two
# threads of a direction can move (hundreds of MB/s here), and TCP's own
# flow control still works end to end because a side that stops reading
# stops the proxy's writes and, through its bounded queue, its reads.
import collections
import socket
import threading
import time

CHUNK = 256 * 1024
QUEUE_BYTES = 64 * 1024 * 1024  # most bytes held in flight per direction


class Line:
    def __init__(self, delay):
        self.delay = delay
        self.q = collections.deque()
        self.held = 0
        self.cv = threading.Condition()
        self.closed = False

    def put(self, data):
        with self.cv:
            while self.held > QUEUE_BYTES and not self.closed:
                self.cv.wait()
            self.q.append((time.monotonic() + self.delay, data))
            self.held += len(data)
            self.cv.notify_all()

    def close(self):
        with self.cv:
            self.closed = True
            self.cv.notify_all()

    def get(self):
        with self.cv:
            while not self.q and not self.closed:
                self.cv.wait()
            if not self.q:
                return None
            due, data = self.q.popleft()
            self.held -= len(data)
            self.cv.notify_all()
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        return data


def _pump(src, dst, delay):
    line = Line(delay)

    def reader():
        try:
            while True:
                data = src.recv(CHUNK)
                if not data:
                    break
                line.put(data)
        except OSError:
            pass
        line.close()

    def writer():
        try:
            while True:
                data = line.get()
                if data is None:
                    break
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    for f in (reader, writer):
        threading.Thread(target=f, daemon=True).start()


class DelayProxy:
    """Listens on 127.0.0.1:port; each connection goes to target with
    `one_way` seconds added in each direction (RTT = 2 x one_way)."""

    def __init__(self, target_ip, target_port, one_way):
        self.target = (target_ip, target_port)
        self.one_way = one_way
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.target, timeout=10)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _pump(c, u, self.one_way)
            _pump(u, c, self.one_way)

    def close(self):
        self.srv.close()
