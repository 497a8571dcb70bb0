/*
 * test_transport: one conformance suite for every transport.  Which one is
 * chosen by the environment:
 *
 *	(nothing)			the local transport, home in a temp dir
 *	RENDERFS_TEST_SSH=user@host:port
 *	RENDERFS_TEST_SSH_KEY=/path/key	the SSH transport (public key at key.pub)
 *
 * tests/integration/test_transport_ssh.py starts a real sshd in a network
 * namespace and runs this program against it.  RENDERFS_TEST_BIG_MB sets the
 * size of the large put/get file (default 20) and prints its throughput.
 *
 * Everything the suite does goes through the ops table; argv words are
 * chosen so that the local transport's exec and the SSH transport's quoting
 * must give the same result.  Exit status 0 when every check held; one line
 * per failed check.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nodes/transport.h"
#include "core/util.h"

static int failures;
static int checks;
static char tmpdir[4096];
static char rdir[1200]; /* the suite's directory on the node */
static struct tnode *node;
static const struct transport_ops *ops;
static int is_ssh;

#define GET_ANY (1ull << 40) /* a limit no test file reaches */

#define CHECK(cond, ...)                                                        \
	do {                                                                    \
		checks++;                                                       \
		if (!(cond)) {                                                  \
			failures++;                                             \
			printf("FAIL %s:%d: ", __FILE__, __LINE__);             \
			printf(__VA_ARGS__);                                    \
			printf(" [node error: %s]\n", node ? node->error : ""); \
		}                                                               \
	} while (0)

/* ------------------------------------------------------------ helpers */

struct result {
	char out[16384], err[16384];
	size_t olen, elen;
	int status;
	int exited;
};

static void wait_node(int ms)
{
	struct pollfd fds[64];
	int n = ops->pollfds(node, fds, 64);

	poll(fds, (nfds_t)n, ms);
}

static int drain(struct tproc *p, enum tstream which, char *buf, size_t *len, size_t cap, int *eof)
{
	char tmp[4096];
	ssize_t got;

	while (!*eof) {
		got = ops->proc_read(p, which, tmp, sizeof(tmp));
		if (got == -EAGAIN)
			return 0;
		if (got < 0)
			return (int)got;
		if (got == 0) {
			*eof = 1;
			break;
		}
		if (*len + (size_t)got < cap) {
			memcpy(buf + *len, tmp, (size_t)got);
			*len += (size_t)got;
			buf[*len] = '\0';
		}
	}
	return 0;
}

/*
 * Read both streams to their end and wait for the exit, sleeping only in
 * poll() on what pollfds() gives: a transport that leaves data where poll
 * cannot see it makes this time out.
 */
static int collect(struct tproc *p, struct result *r, int timeout_ms)
{
	int64_t deadline = util_mono_ms() + timeout_ms;
	int oeof = 0, eeof = 0, rc;

	for (;;) {
		rc = drain(p, TS_OUT, r->out, &r->olen, sizeof(r->out), &oeof);
		if (rc == 0)
			rc = drain(p, TS_ERR, r->err, &r->elen, sizeof(r->err), &eeof);
		if (rc < 0)
			return rc;
		if (oeof && eeof) {
			rc = ops->proc_exited(p, &r->status);
			if (rc < 0)
				return rc;
			if (rc == 1) {
				r->exited = 1;
				return 0;
			}
		}
		if (util_mono_ms() > deadline)
			return -ETIMEDOUT;
		wait_node((int)(deadline - util_mono_ms()) + 1);
	}
}

static int write_all(struct tproc *p, const char *s, int timeout_ms)
{
	int64_t deadline = util_mono_ms() + timeout_ms;
	size_t len = strlen(s), off = 0;

	while (off < len) {
		ssize_t w = ops->proc_write(p, s + off, len - off);

		if (w == -EAGAIN) {
			if (util_mono_ms() > deadline)
				return -ETIMEDOUT;
			wait_node(50);
			continue;
		}
		if (w < 0)
			return (int)w;
		off += (size_t)w;
	}
	return 0;
}

static int spawn_collect(char *const argv[], const char *input, struct result *r, int timeout_ms)
{
	struct tproc *p;
	int rc;

	memset(r, 0, sizeof(*r));
	rc = ops->spawn(node, argv, node->home, &p);
	if (rc < 0)
		return rc;
	if (input)
		rc = write_all(p, input, timeout_ms);
	if (rc == 0)
		rc = collect(p, r, timeout_ms);
	ops->proc_free(p);
	return rc;
}

static int make_file(const char *path, size_t size)
{
	char buf[65536];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		return -errno;
	while (size) {
		size_t n = size < sizeof(buf) ? size : sizeof(buf);

		if (getrandom(buf, n, 0) != (ssize_t)n || write(fd, buf, n) != (ssize_t)n) {
			close(fd);
			return -EIO;
		}
		size -= n;
	}
	close(fd);
	return 0;
}

static int remote_exists(const char *path)
{
	char *argv[] = {"sh", "-c", "test -e \"$1\" && echo yes || echo no", "sh", (char *)path, NULL};
	char out[16] = "";
	int status = -1, rc;

	rc = ops->run(node, argv, out, sizeof(out), &status, 10000);
	if (rc < 0)
		return rc;
	return strcmp(out, "yes\n") == 0;
}

/* ------------------------------------------------------------ checks */

static void test_open(void)
{
	CHECK(node->home[0] == '/', "home is not absolute: \"%s\"", node->home);
	CHECK(ops->keepalive(node) == 0, "keepalive on a fresh node");
}

static void test_streams(void)
{
	char *argv[] = {"sh", "-c", "echo out; echo err >&2; read x; echo \"got $x\"; exit 3", NULL};
	struct result r;
	int rc;

	rc = spawn_collect(argv, "hello\n", &r, 10000);
	CHECK(rc == 0, "spawn/collect: %s", strerror(-rc));
	CHECK(strcmp(r.out, "out\ngot hello\n") == 0, "stdout was \"%s\"", r.out);
	CHECK(strcmp(r.err, "err\n") == 0, "stderr was \"%s\"", r.err);
	CHECK(r.exited && WIFEXITED(r.status) && WEXITSTATUS(r.status) == 3, "status 0x%x, want exit 3",
	      r.status);
}

static void test_cwd(void)
{
	char *argv[] = {"sh", "-c", "pwd -P", NULL};
	char want[1300];
	struct result r;
	int rc;

	rc = spawn_collect(argv, NULL, &r, 10000);
	snprintf(want, sizeof(want), "%s\n", node->home);
	CHECK(rc == 0 && strcmp(r.out, want) == 0, "cwd was \"%s\", want \"%s\"", r.out, node->home);
}

static void test_signal(void)
{
	char *argv[] = {"sh", "-c", "kill -9 $$", NULL};
	struct result r;
	int rc;

	rc = spawn_collect(argv, NULL, &r, 10000);
	CHECK(rc == 0, "spawn/collect: %s", strerror(-rc));
	CHECK(r.exited && WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGKILL, "status 0x%x, want SIGKILL",
	      r.status);
}

static void test_missing_program(void)
{
	char *argv[] = {"/nonexistent/renderfs-test-program", NULL};
	struct result r;
	int rc;

	rc = spawn_collect(argv, NULL, &r, 10000);
	/* Either refused at spawn or an exit of 127, never a success. */
	CHECK(rc < 0 || (r.exited && WIFEXITED(r.status) && WEXITSTATUS(r.status) == 127),
	      "rc %d status 0x%x, want an exit of 127", rc, r.status);
}

static void test_eagain(void)
{
	char *argv[] = {"sh", "-c", "read x; echo \"$x\"", NULL};
	struct result r;
	struct tproc *p;
	char buf[64];
	int64_t t0, t1, deadline;
	ssize_t got;
	int rc;

	memset(&r, 0, sizeof(r));
	rc = ops->spawn(node, argv, node->home, &p);
	CHECK(rc == 0, "spawn: %s", strerror(-rc));
	if (rc)
		return;
	wait_node(200);
	t0 = util_mono_ms();
	got = ops->proc_read(p, TS_OUT, buf, sizeof(buf));
	CHECK(got == -EAGAIN, "read of an idle stdout gave %zd", got);
	got = ops->proc_read(p, TS_ERR, buf, sizeof(buf));
	CHECK(got == -EAGAIN, "read of an idle stderr gave %zd", got);
	rc = ops->proc_exited(p, &r.status);
	CHECK(rc == 0, "a process waiting on stdin reported exited: %d", rc);
	t1 = util_mono_ms();
	CHECK(t1 - t0 < 200, "non-blocking calls took %lld ms", (long long)(t1 - t0));

	/* Nothing moves: poll on the node's fds must sleep, not spin. */
	{
		struct pollfd fds[64];
		int n = ops->pollfds(node, fds, 64), ready;

		CHECK(n > 0, "pollfds gave %d fds with a process running", n);
		ready = poll(fds, (nfds_t)n, 300);
		if (ready > 0) {
			/* Allowed once (e.g. a keepalive reply), then quiet. */
			ops->proc_read(p, TS_OUT, buf, sizeof(buf));
			ops->proc_read(p, TS_ERR, buf, sizeof(buf));
			n = ops->pollfds(node, fds, 64);
			ready = poll(fds, (nfds_t)n, 300);
		}
		CHECK(ready == 0, "poll woke %d times with nothing to read", ready);
	}

	rc = write_all(p, "ping\n", 5000);
	CHECK(rc == 0, "write: %s", strerror(-rc));
	deadline = util_mono_ms() + 5000;
	while ((got = ops->proc_read(p, TS_OUT, buf, sizeof(buf) - 1)) == -EAGAIN &&
	       util_mono_ms() < deadline)
		wait_node(1000);
	CHECK(got == 5 && memcmp(buf, "ping\n", 5) == 0, "echo back gave %zd", got);
	rc = collect(p, &r, 10000);
	CHECK(rc == 0 && WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "rc %d status 0x%x", rc,
	      r.status);
	ops->proc_free(p);
}

/* Is anything still running "sleep <secs>"?  The bracket keeps pgrep's own
 * shell from matching. */
static int sleepers(const char *secs)
{
	char pat[64], out[256] = "";
	char *argv[] = {"sh", "-c", "pgrep -f \"$1\" || true", "sh", pat, NULL};
	int status, rc;

	snprintf(pat, sizeof(pat), "slee[p] %s", secs);
	rc = ops->run(node, argv, out, sizeof(out), &status, 10000);
	if (rc < 0)
		return rc;
	return out[0] != '\0';
}

static void test_kill(void)
{
	char secs[32], script[256];
	char *argv[] = {"sh", "-c", script, NULL};
	struct result r;
	struct tproc *p;
	int64_t t0, deadline;
	int rc, alive = 1;

	memset(&r, 0, sizeof(r));
	snprintf(secs, sizeof(secs), "%u", 100000u + (unsigned)getpid() % 100000u);
	snprintf(script, sizeof(script), "sleep %s & sleep %s & echo started; wait", secs, secs);
	rc = ops->spawn(node, argv, node->home, &p);
	CHECK(rc == 0, "spawn: %s", strerror(-rc));
	if (rc)
		return;
	deadline = util_mono_ms() + 10000;
	while (!strstr(r.out, "started") && util_mono_ms() < deadline) {
		int eof = 0;

		drain(p, TS_OUT, r.out, &r.olen, sizeof(r.out), &eof);
		if (!strstr(r.out, "started"))
			wait_node(500);
	}
	CHECK(strstr(r.out, "started") != NULL, "the process never started");
	CHECK(sleepers(secs) == 1, "no sleep %s running before the kill", secs);
	t0 = util_mono_ms();
	ops->proc_kill(p);
	CHECK(util_mono_ms() - t0 < 5000, "proc_kill took %lld ms", (long long)(util_mono_ms() - t0));
	/* The group dies at once; give the kernel a moment to reap. */
	for (int i = 0; i < 30 && (alive = sleepers(secs)) == 1; i++)
		usleep(100 * 1000);
	CHECK(alive == 0, "children of a killed process still run (%d)", alive);
	deadline = util_mono_ms() + 5000;
	while ((rc = ops->proc_exited(p, &r.status)) == 0 && util_mono_ms() < deadline)
		wait_node(100);
	CHECK(rc == 1 && WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGKILL,
	      "after kill: rc %d status 0x%x", rc, r.status);
	ops->proc_free(p);
}

static void test_quoting(void)
{
	static const char word[] = "a b  'c' \"d\" $(touch PWNED1) `touch PWNED2` ; touch PWNED3 | &\n"
				   "line2 \\ * ? ~ $HOME ${x} !! '\\''";
	char *argv[] = {"sh", "-c", "printf %s \"$1\"", "sh", (char *)word, NULL};
	char *argv2[] = {"sh", "-c", "printf '%s|' \"$@\"", "sh", "a", "", "b c", NULL};
	char path[1300];
	struct result r;
	int rc;

	rc = spawn_collect(argv, NULL, &r, 10000);
	CHECK(rc == 0 && r.olen == strlen(word) && memcmp(r.out, word, r.olen) == 0,
	      "argv word came back as \"%s\"", r.out);
	for (int i = 1; i <= 3; i++) {
		snprintf(path, sizeof(path), "%s/PWNED%d", node->home, i);
		CHECK(remote_exists(path) == 0, "a command inside an argv word ran (%s)", path);
	}
	rc = spawn_collect(argv2, NULL, &r, 10000);
	CHECK(rc == 0 && strcmp(r.out, "a||b c|") == 0, "empty and spaced words came back as \"%s\"", r.out);
}

static void test_shell_quote(void)
{
	char out[64];

	CHECK(shell_quote("abc", out, sizeof(out)) == 5 && !strcmp(out, "'abc'"), "plain: %s", out);
	CHECK(shell_quote("", out, sizeof(out)) == 2 && !strcmp(out, "''"), "empty: %s", out);
	CHECK(shell_quote("it's", out, sizeof(out)) == 9 && !strcmp(out, "'it'\\''s'"), "quote: %s", out);
	CHECK(shell_quote("abcdef", out, 8) == -ENAMETOOLONG, "overflow not refused");
	CHECK(shell_quote("abcde", out, 8) == 7, "exact fit refused");
}

static int same_file(const char *a, const char *b)
{
	char ha[65], hb[65];

	if (util_sha256_file(a, ha) < 0 || util_sha256_file(b, hb) < 0)
		return 0;
	return strcmp(ha, hb) == 0;
}

static void roundtrip(const char *tag, size_t size)
{
	char src[4200], dst[4200], remote[1400];
	int64_t t0, t1, t2;
	int rc;

	snprintf(src, sizeof(src), "%s/%s.src", tmpdir, tag);
	snprintf(dst, sizeof(dst), "%s/%s.dst", tmpdir, tag);
	snprintf(remote, sizeof(remote), "%s/%s", rdir, tag);
	CHECK(make_file(src, size) == 0, "make %s", src);
	t0 = util_mono_ms();
	rc = ops->put(node, src, remote);
	t1 = util_mono_ms();
	CHECK(rc == 0, "put %s (%zu bytes): %s", tag, size, strerror(-rc));
	rc = ops->get(node, remote, dst, GET_ANY);
	t2 = util_mono_ms();
	CHECK(rc == 0, "get %s: %s", tag, strerror(-rc));
	CHECK(same_file(src, dst), "%s changed on the way (%zu bytes)", tag, size);
	if (size >= (1 << 20)) {
		struct rusage ru;

		getrusage(RUSAGE_SELF, &ru);
		printf("# %s %s: %zu MB put %.1f MB/s, get %.1f MB/s, max rss %ld MB\n", ops->name, tag,
		       size >> 20, (double)size / 1048576.0 / ((double)(t1 - t0 + 1) / 1000.0),
		       (double)size / 1048576.0 / ((double)(t2 - t1 + 1) / 1000.0), ru.ru_maxrss / 1024);
	}
	unlink(src);
	unlink(dst);
}

static void test_files(void)
{
	char src[4200], dst[4200], remote[1400];
	const char *big = getenv("RENDERFS_TEST_BIG_MB");
	size_t big_mb = big ? strtoul(big, NULL, 10) : 20;
	int rc;

	roundtrip("zero", 0);
	roundtrip("one", 1);
	roundtrip("odd", 256 * 1024 + 7);
	roundtrip("big", big_mb << 20);

	/* Over an existing file: the new content wins. */
	snprintf(src, sizeof(src), "%s/over.src", tmpdir);
	snprintf(dst, sizeof(dst), "%s/over.dst", tmpdir);
	snprintf(remote, sizeof(remote), "%s/over", rdir);
	CHECK(make_file(src, 1000) == 0, "make");
	CHECK(ops->put(node, src, remote) == 0, "first put");
	CHECK(make_file(src, 3000) == 0, "make");
	rc = ops->put(node, src, remote);
	CHECK(rc == 0, "put over an existing file: %s", strerror(-rc));
	rc = ops->get(node, remote, dst, GET_ANY);
	CHECK(rc == 0 && same_file(src, dst), "put over an existing file kept the old content");
	snprintf(remote, sizeof(remote), "%s/over.part", rdir);
	CHECK(remote_exists(remote) == 0, "a .part file was left behind");

	snprintf(remote, sizeof(remote), "%s/missing", rdir);
	rc = ops->get(node, remote, dst, GET_ANY);
	CHECK(rc == -ENOENT, "get of a missing file gave %d, want -ENOENT", rc);
	snprintf(src, sizeof(src), "%s/missing.part", tmpdir);
	CHECK(access(src, F_OK) < 0, "a failed get left %s", src);
	snprintf(src, sizeof(src), "%s/no-such-local", tmpdir);
	rc = ops->put(node, src, remote);
	CHECK(rc == -ENOENT, "put of a missing local file gave %d", rc);
}

static int local_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* get's byte limit: the transfer stops at it, nothing is left behind. */
static void test_get_limits(void)
{
	char src[4200], dst[4200], part[4300], remote[1400], fifo[1400];
	char *mkfifo_argv[] = {"mkfifo", fifo, NULL};
	int rc, status;
	int64_t t0;

	snprintf(src, sizeof(src), "%s/limit.src", tmpdir);
	snprintf(dst, sizeof(dst), "%s/limit.dst", tmpdir);
	snprintf(part, sizeof(part), "%s.part", dst);
	snprintf(remote, sizeof(remote), "%s/limit", rdir);
	CHECK(make_file(src, 100000) == 0, "make");
	CHECK(ops->put(node, src, remote) == 0, "put");

	rc = ops->get(node, remote, dst, 99999);
	CHECK(rc == -EFBIG, "get of 100000 bytes with a limit of 99999 gave %d, want -EFBIG", rc);
	CHECK(transport_get_fault(rc) == TF_REMOTE_FILE, "-EFBIG is not the remote file's fault");
	CHECK(!local_exists(dst) && !local_exists(part), "an over-limit get left a file behind");
	rc = ops->get(node, remote, dst, 100000);
	CHECK(rc == 0 && same_file(src, dst), "get at exactly the limit: %d", rc);
	unlink(dst);

	/* A file whose size says 0 but whose content runs on: the count
	 * while copying, not the size, stops it. */
	rc = ops->get(node, "/proc/self/maps", dst, 16);
	CHECK(rc == -EFBIG, "get of /proc/self/maps with a 16-byte limit gave %d, want -EFBIG", rc);
	CHECK(!local_exists(dst) && !local_exists(part), "a get stopped at its limit left a file behind");

	/* Not regular files: refused at once, never read (a FIFO would block). */
	rc = ops->get(node, "/dev/zero", dst, GET_ANY);
	CHECK(rc == -EINVAL, "get of /dev/zero gave %d, want -EINVAL", rc);
	CHECK(!local_exists(dst) && !local_exists(part), "a get of /dev/zero left a file behind");
	rc = ops->get(node, rdir, dst, GET_ANY);
	CHECK(rc == -EINVAL, "get of a directory gave %d, want -EINVAL", rc);
	snprintf(fifo, sizeof(fifo), "%s/fifo", rdir);
	rc = ops->run(node, mkfifo_argv, NULL, 0, &status, 10000);
	CHECK(rc == 0 && status == 0, "mkfifo on the node: %d", rc);
	t0 = util_mono_ms();
	rc = ops->get(node, fifo, dst, GET_ANY);
	CHECK(rc == -EINVAL, "get of a FIFO gave %d, want -EINVAL", rc);
	CHECK(util_mono_ms() - t0 < 5000, "get of a FIFO took %lld ms", (long long)(util_mono_ms() - t0));
	CHECK(!local_exists(dst) && !local_exists(part), "a get of a FIFO left a file behind");

	rc = ops->get(node, "/no/such/file/here", dst, GET_ANY);
	CHECK(rc == -ENOENT && transport_get_fault(rc) == TF_REMOTE_FILE, "missing: %d", rc);
	unlink(src);
}

/*
 * A full local disk is this machine's fault, not the link's: get into a
 * 1 MB tmpfs of a 3 MB file says -ENOSPC (TF_LOCAL), never an errno the
 * link could give, and leaves nothing.  Needs root (a private mount
 * namespace); skipped otherwise.
 */
static void test_get_disk_full(void)
{
	char src[4200], full[4200], dst[4300], part[4400], remote[1400];
	int rc;

	snprintf(full, sizeof(full), "%s/full", tmpdir);
	if (geteuid() != 0 || unshare(CLONE_NEWNS) < 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 || mkdir(full, 0700) < 0 ||
	    mount("tmpfs", full, "tmpfs", 0, "size=1m") < 0) {
		printf("# SKIP disk-full get: needs root and a mount namespace (%s)\n", strerror(errno));
		return;
	}
	snprintf(src, sizeof(src), "%s/full.src", tmpdir);
	snprintf(dst, sizeof(dst), "%s/frame.png", full);
	snprintf(part, sizeof(part), "%s.part", dst);
	snprintf(remote, sizeof(remote), "%s/full", rdir);
	CHECK(make_file(src, 3 << 20) == 0, "make");
	CHECK(ops->put(node, src, remote) == 0, "put");
	rc = ops->get(node, remote, dst, GET_ANY);
	CHECK(rc == -ENOSPC, "get into a full disk gave %d (%s), want -ENOSPC", rc, strerror(-rc));
	CHECK(transport_get_fault(rc) == TF_LOCAL, "a full local disk is not sorted as local");
	CHECK(!local_exists(dst) && !local_exists(part), "a get into a full disk left a file behind");
	/* The node's file is untouched, and a later get with room works. */
	snprintf(dst, sizeof(dst), "%s/full.dst", tmpdir);
	rc = ops->get(node, remote, dst, GET_ANY);
	CHECK(rc == 0 && same_file(src, dst), "get after the full disk: %d", rc);
	unlink(dst);
	unlink(src);
	umount2(full, MNT_DETACH);
}

static void test_run(void)
{
	char *argv[] = {"sh", "-c", "echo hello; echo noise >&2; exit 4", NULL};
	char *argv_big[] = {"sh", "-c", "i=0; while [ $i -lt 2000 ]; do echo 0123456789; i=$((i+1)); done",
			    NULL};
	char *argv_sleep[] = {"sleep", "5", NULL};
	char out[128];
	int64_t t0;
	int rc, status = -1;

	rc = ops->run(node, argv, out, sizeof(out), &status, 10000);
	CHECK(rc == 0 && !strcmp(out, "hello\n"), "run: rc %d out \"%s\"", rc, out);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 4, "run status 0x%x, want exit 4", status);
	rc = ops->run(node, argv_big, out, sizeof(out), &status, 10000);
	CHECK(rc == 0 && strlen(out) == sizeof(out) - 1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "capped run: rc %d len %zu status 0x%x", rc, strlen(out), status);
	t0 = util_mono_ms();
	rc = ops->run(node, argv_sleep, out, sizeof(out), &status, 500);
	CHECK(rc == -ETIMEDOUT, "run past its timeout gave %d", rc);
	CHECK(util_mono_ms() - t0 < 3000, "timed out run took %lld ms", (long long)(util_mono_ms() - t0));
}

/* ------------------------------------------------------------ ssh only */

static int refuse_key(void *arg, const char *name, const char *fp)
{
	(void)arg;
	(void)name;
	(void)fp;
	return -EPERM;
}

static char seen_fp[128];

static int accept_key(void *arg, const char *name, const char *fp)
{
	(void)arg;
	(void)name;
	snprintf(seen_fp, sizeof(seen_fp), "%s", fp);
	return 0;
}

static void test_ssh_errors(const char *target, const char *key, const char *pub)
{
	struct ssh_opts o = {.target = target,
			     .identity = key,
			     .identity_pub = pub,
			     .check_hostkey = refuse_key,
			     .connect_timeout_ms = 5000};
	char bad[300], host[256];
	struct tnode *n;
	int rc;

	n = ssh_node_new(&o);
	rc = n->ops->open(n);
	CHECK(rc == -EPERM && strstr(n->error, "SHA256:"), "refused host key: rc %d, \"%s\"", rc, n->error);
	ssh_node_free(n);

	/* A port nobody listens on. */
	snprintf(host, sizeof(host), "%s", strchr(target, '@') ? strchr(target, '@') + 1 : target);
	*strrchr(host, ':') = '\0';
	snprintf(bad, sizeof(bad), "root@%s:1", host);
	o.target = bad;
	o.check_hostkey = accept_key;
	n = ssh_node_new(&o);
	rc = n->ops->open(n);
	CHECK(rc == -ECONNREFUSED && strstr(n->error, "connect ") && strstr(n->error, ":1: "),
	      "closed port: rc %d, \"%s\"", rc, n->error);
	ssh_node_free(n);

	/* The wrong key. */
	snprintf(bad, sizeof(bad), "%s/wrong_key", tmpdir);
	{
		char cmd[4400];

		snprintf(cmd, sizeof(cmd), "ssh-keygen -q -t ed25519 -N '' -f %s", bad);
		if (system(cmd) == 0) {
			o.target = target;
			o.identity = bad;
			o.identity_pub = NULL;
			n = ssh_node_new(&o);
			rc = n->ops->open(n);
			CHECK(rc == -EACCES && strstr(n->error, "authentication failed for"),
			      "wrong key: rc %d, \"%s\"", rc, n->error);
			ssh_node_free(n);
		}
	}
	CHECK(strncmp(seen_fp, "SHA256:", 7) == 0 && strlen(seen_fp) == 7 + 43, "fingerprint \"%s\"",
	      seen_fp);
}

/* close() kills what runs on the node; open() again reconnects. */
static void test_ssh_close(void)
{
	char secs[32];
	char *argv[] = {"sleep", secs, NULL};
	struct tproc *p;
	int rc, status, alive = 1;

	snprintf(secs, sizeof(secs), "%u", 200000u + (unsigned)getpid() % 100000u);
	rc = ops->spawn(node, argv, node->home, &p);
	CHECK(rc == 0, "spawn: %s", strerror(-rc));
	if (rc)
		return;
	for (int i = 0; i < 50 && sleepers(secs) != 1; i++)
		usleep(100 * 1000);
	ops->close(node);
	rc = ops->proc_exited(p, &status);
	CHECK(rc != 0, "a process on a closed node still runs by its handle");
	ops->proc_free(p);
	rc = ops->open(node);
	CHECK(rc == 0, "reopen: %s", strerror(-rc));
	for (int i = 0; i < 30 && (alive = sleepers(secs)) == 1; i++)
		usleep(100 * 1000);
	CHECK(alive == 0, "close left the process running");
}

/* ------------------------------------------------------------ main */

int main(void)
{
	const char *target = getenv("RENDERFS_TEST_SSH");
	const char *key = getenv("RENDERFS_TEST_SSH_KEY");
	char home[4200], pub[4200];
	char *mk[] = {"mkdir", "-p", rdir, NULL};
	char *rm[] = {"rm", "-rf", rdir, NULL};
	int rc, status;

	signal(SIGPIPE, SIG_IGN);
	alarm(300); /* a hang is a failure, not a stuck CI job */
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/rfs-transport-XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	if (target && *target) {
		struct ssh_opts o = {.target = target,
				     .identity = key,
				     .identity_pub = pub,
				     .check_hostkey = accept_key,
				     .connect_timeout_ms = 10000};

		if (!key) {
			fprintf(stderr, "RENDERFS_TEST_SSH needs RENDERFS_TEST_SSH_KEY\n");
			return 1;
		}
		snprintf(pub, sizeof(pub), "%s.pub", key);
		node = ssh_node_new(&o);
		is_ssh = 1;
	} else {
		snprintf(home, sizeof(home), "%s/node", tmpdir);
		mkdir(home, 0700);
		node = local_node_new(home);
	}
	if (!node) {
		fprintf(stderr, "cannot make a node\n");
		return 1;
	}
	ops = node->ops;
	printf("# transport %s\n", ops->name);
	rc = ops->open(node);
	CHECK(rc == 0, "open: %s", strerror(-rc));
	if (rc)
		goto out;
	snprintf(rdir, sizeof(rdir), "%s/t-%d", node->home, (int)getpid());
	rc = ops->run(node, mk, NULL, 0, &status, 10000);
	CHECK(rc == 0 && status == 0, "mkdir on the node: rc %d status 0x%x", rc, status);

	test_open();
	test_shell_quote();
	test_streams();
	test_cwd();
	test_signal();
	test_missing_program();
	test_eagain();
	test_kill();
	test_quoting();
	test_files();
	test_get_limits();
	test_get_disk_full();
	test_run();
	if (is_ssh) {
		test_ssh_errors(target, key, pub);
		test_ssh_close();
	}
	ops->run(node, rm, NULL, 0, &status, 10000);
	ops->close(node);
out:
	if (is_ssh)
		ssh_node_free(node);
	else
		local_node_free(node);
	util_rmtree(tmpdir);
	printf("# %d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
