/*
 * ssh: the transport for nodes reached over SSH.  A struct ssh_node owns one
 * TCP socket, one libssh2 session on it (non-blocking once open), one SFTP
 * session opened lazily for put and get, an eventfd that pollfds() uses to
 * say "libssh2 already holds data for you", and the channel of every tproc
 * started on it.  A tproc owns its channel and a small stdin buffer.
 *
 * Remote commands: sshd runs every command line through the user's login
 * shell, which must be POSIX (sh, dash, bash).  Every argv word is quoted
 * with shell_quote(), and a worker's command line is
 *
 *	cd '<cwd>' && echo rfs-pid:$$ && exec '<argv0>' '<argv1>' ...
 *
 * OpenSSH calls setsid() for each session's child (session.c,
 * do_exec_no_pty), so that shell -- and, after exec, the worker -- leads its
 * own process group; "kill -9 -- -PID" on a second channel stops it and
 * everything it started.  The pid travels as the first stdout line, which
 * spawn() waits for and consumes: stdout stays protocol-only, stderr
 * untouched, and kill or close can always reach the group.  Lines a chatty
 * shell rc file prints before it are skipped (capped).
 *
 * Host keys: check_hostkey() is called with (check_arg, n->name, "SHA256:...")
 * where the node argument points at the tnode's own name field, so a
 * callback that wants to explain a refusal may recover the tnode with
 * container-of arithmetic (offsetof(struct tnode, name)) and write one line
 * into its error[].  open() clears error[] before the call; if the callback
 * refuses and left it empty, open() writes "host key refused for NAME
 * (SHA256:...)".  Either way open() returns -EPERM.
 *
 * Waiting: process I/O never blocks (-EAGAIN).  Because libssh2 reads every
 * channel's packets off the one socket, a read on one tproc can queue data
 * for another where poll() on the socket no longer sees it; pollfds() then
 * makes the eventfd readable, so a caller that always waits on every fd
 * pollfds() gives, and reads each stream to -EAGAIN, never stalls.  put,
 * get, run and open block with poll() on the socket and deadlines.
 *
 * Errors: 0 or -errno; libssh2 and SFTP codes become errnos in ssh_errno()
 * only, which also leaves a one-line reason in n->base.error.
 */
#include "nodes/transport.h"
#include "core/util.h"

#include <libssh2.h>
#include <libssh2_sftp.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SSH_CMD_MAX          (64 * 1024)  /* one remote command line */
#define SSH_XFER_CHUNK       (256 * 1024) /* put buffer: all the memory an upload uses */
/* The get buffer.  libssh2 (1.10) asks for up to four times the length
 * given to one libssh2_sftp_read() in 30,000-byte read requests, so this
 * sets how much a fetch has in flight.  Measured (docs/benchmarks.md, 4),
 * against the old 256 KiB in the same rounds: at 40 ms of round trip 2 MiB
 * gave 1.94x and 1 MiB 1.63x; on a bare veth 0.69x and 0.74x (libssh2
 * looks each reply up in its list of the requests in flight).  Rented
 * nodes are far away: 1 MiB, still over 200 MB/s on the bare link. */
#define SSH_GET_CHUNK        (1024 * 1024)
#define SSH_PATH_MAX         4096
#define SSH_STEP_TIMEOUT_MS  30000 /* a blocking step that makes no progress this long fails */
#define SSH_KILL_TIMEOUT_MS  3000
#define SSH_CLOSE_TIMEOUT_MS 2000
#define SSH_HDR_JUNK_MAX     4096 /* rc-file noise skipped before the pid line */
#define SSH_STDIN_BUF        16384
#define SSH_ERRTAIL          200 /* stderr kept from a helper command, for error lines */
#define SSH_ORPHANS          8
#define SSH_PID_TAG          "rfs-pid:"

struct ssh_node {
	struct tnode base; /* first: the engine holds &base */
	char *identity, *identity_pub;
	int (*check_hostkey)(void *arg, const char *node, const char *fingerprint);
	void *check_arg;
	int connect_timeout_ms;
	int parse_err; /* target did not parse: open() fails with it */
	char user[64], host[256];
	int port;

	int sock;
	int wake_fd; /* eventfd, lives as long as the node */
	LIBSSH2_SESSION *session;
	LIBSSH2_SFTP *sftp;
	struct tproc *procs;
	/* Channels a helper could not close in time.  libssh2 frees them with
	 * the session; we keep them only to force the socket state at close. */
	LIBSSH2_CHANNEL *orphans[SSH_ORPHANS];
	int norphans;
};

struct tproc {
	struct ssh_node *node; /* NULL once the node is freed */
	LIBSSH2_CHANNEL *ch;   /* NULL once closed or the connection is gone */
	struct tproc *next, **pprev;
	long pid; /* remote process group, 0 until the pid line is read */
	char hdr[32];
	size_t hdr_len, hdr_seen;
	char in[SSH_STDIN_BUF]; /* stdin accepted but not yet taken by libssh2 */
	size_t in_off, in_len;
	int in_pending; /* libssh2 holds a packet of in[in_off..]: keep it in place */
	int out_eof, err_eof, exited, status;
};

static pthread_once_t ssh_once = PTHREAD_ONCE_INIT;
static int ssh_init_rc;

static void ssh_global_init(void)
{
	ssh_init_rc = libssh2_init(0);
}

static struct ssh_node *ssh_of(struct tnode *t)
{
	return (struct ssh_node *)t;
}

static void ssh_seterr(struct ssh_node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void ssh_seterr(struct ssh_node *n, const char *fmt, ...)
{
	va_list ap;
	char raw[1024];

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	/* One safe line, whatever the library or the node put in it. */
	util_clean_line(n->base.error, sizeof(n->base.error), raw);
}

static int ssh_sftp_errno(unsigned long fx)
{
	switch (fx) {
	case LIBSSH2_FX_OK: return 0;
	case LIBSSH2_FX_EOF: return -ENODATA;
	case LIBSSH2_FX_NO_SUCH_FILE:
	case LIBSSH2_FX_NO_SUCH_PATH: return -ENOENT;
	case LIBSSH2_FX_PERMISSION_DENIED:
	case LIBSSH2_FX_WRITE_PROTECT: return -EACCES;
	case LIBSSH2_FX_NO_CONNECTION:
	case LIBSSH2_FX_CONNECTION_LOST: return -ECONNRESET;
	case LIBSSH2_FX_OP_UNSUPPORTED: return -EOPNOTSUPP;
	case LIBSSH2_FX_FILE_ALREADY_EXISTS: return -EEXIST;
	case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM: return -ENOSPC;
	case LIBSSH2_FX_QUOTA_EXCEEDED: return -EDQUOT;
	case LIBSSH2_FX_DIR_NOT_EMPTY: return -ENOTEMPTY;
	case LIBSSH2_FX_NOT_A_DIRECTORY: return -ENOTDIR;
	case LIBSSH2_FX_INVALID_FILENAME: return -EINVAL;
	case LIBSSH2_FX_LINK_LOOP: return -ELOOP;
	default: return -EIO;
	}
}

/*
 * The one edge where libssh2's status codes become errnos.  "what" names the
 * operation for the error line; the library's own message follows it.
 */
static int ssh_errno(struct ssh_node *n, int rc, const char *what)
{
	char *msg = NULL;
	int e;

	switch (rc) {
	case 0: return 0;
	case LIBSSH2_ERROR_EAGAIN: return -EAGAIN;
	case LIBSSH2_ERROR_ALLOC: e = -ENOMEM; break;
	case LIBSSH2_ERROR_TIMEOUT:
	case LIBSSH2_ERROR_SOCKET_TIMEOUT: e = -ETIMEDOUT; break;
	case LIBSSH2_ERROR_BANNER_RECV:
	case LIBSSH2_ERROR_BANNER_SEND:
	case LIBSSH2_ERROR_SOCKET_SEND:
	case LIBSSH2_ERROR_SOCKET_RECV:
	case LIBSSH2_ERROR_SOCKET_DISCONNECT:
	case LIBSSH2_ERROR_SOCKET_NONE:
	case LIBSSH2_ERROR_DECRYPT:
	case LIBSSH2_ERROR_PROTO: e = -ECONNRESET; break;
	case LIBSSH2_ERROR_KEX_FAILURE:
	case LIBSSH2_ERROR_HOSTKEY_INIT:
	case LIBSSH2_ERROR_HOSTKEY_SIGN: e = -EPROTO; break;
	case LIBSSH2_ERROR_AUTHENTICATION_FAILED:
	case LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED: e = -EACCES; break;
	case LIBSSH2_ERROR_FILE: e = -ENOENT; break;
	case LIBSSH2_ERROR_CHANNEL_CLOSED:
	case LIBSSH2_ERROR_CHANNEL_EOF_SENT: e = -EPIPE; break;
	case LIBSSH2_ERROR_SFTP_PROTOCOL:
		e = n->sftp ? ssh_sftp_errno(libssh2_sftp_last_error(n->sftp)) : -EIO;
		if (e == 0)
			e = -EIO;
		break;
	default: e = -EIO; break;
	}
	if (n->session)
		libssh2_session_last_error(n->session, &msg, NULL, 0);
	if (e == -ECONNRESET && n->sock >= 0) {
		int err = 0;
		socklen_t elen = sizeof(err);

		/* libssh2 says "transport read"; the socket knows why. */
		if (getsockopt(n->sock, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || !err)
			err = ECONNRESET;
		ssh_seterr(n, "connection to %s lost (%s): %s", n->base.name, what, strerror(err));
		return e;
	}
	if (rc == LIBSSH2_ERROR_SFTP_PROTOCOL)
		ssh_seterr(n, "%s: %s", what, strerror(-e));
	else
		ssh_seterr(n, "%s: %s", what, msg && *msg ? msg : strerror(-e));
	return e;
}

int shell_quote(const char *word, char *out, size_t outsz)
{
	size_t len = 0;
	const char *c;

	/* Inside '...' nothing is special but ' itself, written '\''. */
#define PUT(ch)                               \
	do {                                  \
		if (len + 1 >= outsz)         \
			return -ENAMETOOLONG; \
		out[len++] = (ch);            \
	} while (0)
	PUT('\'');
	for (c = word; *c; c++) {
		if (*c == '\'') {
			PUT('\'');
			PUT('\\');
			PUT('\'');
			PUT('\'');
		} else {
			PUT(*c);
		}
	}
	PUT('\'');
#undef PUT
	out[len] = '\0';
	return (int)len;
}

/* Append text, or one quoted word, to a command line of at most cap bytes. */
static int cmd_add(char *buf, size_t *len, size_t cap, const char *s, int quote)
{
	int rc;

	if (quote) {
		rc = shell_quote(s, buf + *len, cap - *len);
		if (rc < 0)
			return rc;
		*len += (size_t)rc;
		return 0;
	}
	rc = snprintf(buf + *len, cap - *len, "%s", s);
	if (rc < 0 || (size_t)rc >= cap - *len)
		return -ENAMETOOLONG;
	*len += (size_t)rc;
	return 0;
}

/* ---- waiting on the socket ---- */

static int64_t ssh_deadline(int ms)
{
	return util_mono_ms() + ms;
}

/*
 * Wait until the socket can move in the direction libssh2 last blocked on.
 * libssh2 only says EAGAIN after it drained what the socket had, so this
 * never sleeps on data that is already here.
 */
static int ssh_wait(struct ssh_node *n, int64_t deadline)
{
	struct pollfd pfd = {.fd = n->sock, .events = 0};
	int dir = libssh2_session_block_directions(n->session);
	int64_t left = deadline - util_mono_ms();
	int rc;

	if (left <= 0)
		return -ETIMEDOUT;
	if (dir & LIBSSH2_SESSION_BLOCK_INBOUND)
		pfd.events |= POLLIN;
	if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
		pfd.events |= POLLOUT;
	if (!pfd.events)
		pfd.events = POLLIN; /* waiting for the peer, e.g. a channel's data */
	rc = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
	if (rc < 0)
		return errno == EINTR ? 0 : -errno;
	if (rc == 0)
		return -ETIMEDOUT;
	return 0;
}

/* Process incoming packets without taking any channel data. */
static int ssh_pump(LIBSSH2_CHANNEL *ch)
{
	char dummy;
	ssize_t rc = libssh2_channel_read_ex(ch, 0, &dummy, 0);

	return rc < 0 && rc != LIBSSH2_ERROR_EAGAIN ? (int)rc : 0;
}

/* ---- channels for helper commands ---- */

static int ssh_chan_exec(struct ssh_node *n, const char *cmd, int64_t deadline, LIBSSH2_CHANNEL **out)
{
	LIBSSH2_CHANNEL *ch;
	int rc;

	for (;;) {
		ch = libssh2_channel_open_session(n->session);
		if (ch)
			break;
		rc = libssh2_session_last_errno(n->session);
		if (rc != LIBSSH2_ERROR_EAGAIN)
			return ssh_errno(n, rc, "open channel");
		rc = ssh_wait(n, deadline);
		if (rc < 0) {
			ssh_seterr(n, "open channel on %s: %s", n->base.name, strerror(-rc));
			return rc;
		}
	}
	while ((rc = libssh2_channel_exec(ch, cmd)) == LIBSSH2_ERROR_EAGAIN) {
		rc = ssh_wait(n, deadline);
		if (rc < 0) {
			ssh_seterr(n, "exec on %s: %s", n->base.name, strerror(-rc));
			goto out_free_channel;
		}
	}
	if (rc < 0) {
		rc = ssh_errno(n, rc, "exec");
		goto out_free_channel;
	}
	*out = ch;
	return 0;

out_free_channel:
	/* A channel that failed half-way is closed with the session. */
	if (n->norphans < SSH_ORPHANS)
		n->orphans[n->norphans++] = ch;
	return rc;
}

/*
 * Close and free a channel, bounded in time.  One the peer never answers for
 * is left to libssh2_session_free() (see ssh_teardown()).
 */
static void ssh_chan_release(struct ssh_node *n, LIBSSH2_CHANNEL *ch, int timeout_ms)
{
	int64_t deadline = ssh_deadline(timeout_ms);
	int rc;

	while ((rc = libssh2_channel_free(ch)) == LIBSSH2_ERROR_EAGAIN)
		if (ssh_wait(n, deadline) < 0)
			break;
	if (rc == 0)
		return;
	if (n->norphans < SSH_ORPHANS)
		n->orphans[n->norphans++] = ch;
}

static const struct {
	const char *name;
	int sig;
} ssh_signals[] = {
    {"ABRT", SIGABRT}, {"ALRM", SIGALRM}, {"BUS", SIGBUS},   {"FPE", SIGFPE},   {"HUP", SIGHUP},
    {"ILL", SIGILL},   {"INT", SIGINT},   {"KILL", SIGKILL}, {"PIPE", SIGPIPE}, {"QUIT", SIGQUIT},
    {"SEGV", SIGSEGV}, {"TERM", SIGTERM}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TRAP", SIGTRAP},
    {"SYS", SIGSYS},   {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ},
};

/* The closed channel's exit as waitpid() encodes it. */
static int ssh_exit_status(struct ssh_node *n, LIBSSH2_CHANNEL *ch)
{
	char *sig = NULL;
	size_t siglen = 0, i;
	int status;

	libssh2_channel_get_exit_signal(ch, &sig, &siglen, NULL, NULL, NULL, NULL);
	if (!sig)
		return W_EXITCODE(libssh2_channel_get_exit_status(ch) & 0xff, 0);
	/* OpenSSH names signals without "SIG"; others it cannot name
	 * ("NAME@openssh.com") are reported as a kill. */
	status = SIGKILL;
	for (i = 0; i < ARRAY_SIZE(ssh_signals); i++)
		if (strlen(ssh_signals[i].name) == siglen && !memcmp(sig, ssh_signals[i].name, siglen))
			status = ssh_signals[i].sig;
	libssh2_free(n->session, sig);
	return status;
}

/*
 * Read one stream of a helper command until it would block: keep up to
 * bufsz-1 bytes in buf (may be NULL), drop the rest so the remote side
 * never stalls on a full window.  Sets *eof at its end and *moved when
 * anything arrived.  0 or -errno.
 */
static int ssh_capture_stream(struct ssh_node *n, LIBSSH2_CHANNEL *ch, int stream, char *buf, size_t bufsz,
			      size_t *len, int *eof, int *moved)
{
	char scratch[4096];

	while (!*eof) {
		ssize_t got = libssh2_channel_read_ex(ch, stream, scratch, sizeof(scratch));

		if (got == LIBSSH2_ERROR_EAGAIN)
			return 0;
		if (got < 0)
			return ssh_errno(n, (int)got, "read");
		if (got == 0) {
			*eof = libssh2_channel_eof(ch);
			return 0;
		}
		*moved = 1;
		if (buf && *len + 1 < bufsz) {
			size_t take = (size_t)got < bufsz - 1 - *len ? (size_t)got : bufsz - 1 - *len;

			memcpy(buf + *len, scratch, take);
			*len += take;
			buf[*len] = '\0';
		}
	}
	return 0;
}

/*
 * Run a helper command to completion: up to outsz-1 bytes of stdout into out
 * (may be NULL), the first bytes of stderr into err (for error lines), the
 * rest of both discarded as it comes so the remote never stalls.
 */
static int ssh_exec_capture(struct ssh_node *n, const char *cmd, char *out, size_t outsz, char *err,
			    size_t errsz, int *status, int timeout_ms)
{
	int64_t deadline = ssh_deadline(timeout_ms);
	LIBSSH2_CHANNEL *ch;
	size_t olen = 0, elen = 0;
	int out_eof = 0, err_eof = 0, rc;

	if (out && outsz)
		out[0] = '\0';
	if (err && errsz)
		err[0] = '\0';
	rc = ssh_chan_exec(n, cmd, deadline, &ch);
	if (rc < 0)
		return rc;
	for (;;) {
		int moved = 0;

		rc = ssh_capture_stream(n, ch, 0, out, outsz, &olen, &out_eof, &moved);
		if (rc == 0)
			rc = ssh_capture_stream(n, ch, SSH_EXTENDED_DATA_STDERR, err, errsz, &elen, &err_eof,
						&moved);
		if (rc < 0)
			goto out_release;
		if (out_eof && err_eof) {
			rc = libssh2_channel_wait_closed(ch);
			if (rc == 0)
				break;
			if (rc != LIBSSH2_ERROR_EAGAIN) {
				rc = ssh_errno(n, rc, "wait for close");
				goto out_release;
			}
		}
		if (moved)
			continue;
		rc = ssh_wait(n, deadline);
		if (rc < 0) {
			ssh_seterr(n, "command on %s: %s", n->base.name, strerror(-rc));
			goto out_release;
		}
	}
	if (status)
		*status = ssh_exit_status(n, ch);
	rc = 0;
out_release:
	ssh_chan_release(n, ch, SSH_CLOSE_TIMEOUT_MS);
	return rc;
}

/* ---- connecting ---- */

static int ssh_parse_target(struct ssh_node *n, const char *target)
{
	const char *at = strrchr(target, '@'), *hp, *port = NULL;
	size_t hlen;
	struct passwd *pw;

	n->port = 22;
	if (at) {
		if ((size_t)(at - target) >= sizeof(n->user) || at == target)
			return -EINVAL;
		memcpy(n->user, target, (size_t)(at - target));
		n->user[at - target] = '\0';
		hp = at + 1;
	} else {
		pw = getpwuid(geteuid());
		if (pw && pw->pw_name)
			snprintf(n->user, sizeof(n->user), "%s", pw->pw_name);
		else if (getenv("USER"))
			snprintf(n->user, sizeof(n->user), "%s", getenv("USER"));
		else
			return -EINVAL;
		hp = target;
	}
	if (*hp == '[') { /* [v6]:port */
		const char *close = strchr(hp, ']');

		if (!close)
			return -EINVAL;
		hlen = (size_t)(close - hp - 1);
		hp++;
		if (close[1] == ':')
			port = close + 2;
		else if (close[1])
			return -EINVAL;
	} else {
		const char *colon = strchr(hp, ':');

		/* A bare v6 address has more than one colon and no port. */
		if (colon && !strchr(colon + 1, ':')) {
			hlen = (size_t)(colon - hp);
			port = colon + 1;
		} else {
			hlen = strlen(hp);
		}
	}
	if (hlen == 0 || hlen >= sizeof(n->host))
		return -EINVAL;
	memcpy(n->host, hp, hlen);
	n->host[hlen] = '\0';
	if (port) {
		char *end;
		long p = strtol(port, &end, 10);

		if (!*port || *end || p < 1 || p > 65535)
			return -EINVAL;
		n->port = (int)p;
	}
	return 0;
}

/* "host:port", with brackets around a v6 address, for error lines. */
static const char *ssh_hostport(struct ssh_node *n, char *buf, size_t sz)
{
	snprintf(buf, sz, strchr(n->host, ':') ? "[%s]:%d" : "%s:%d", n->host, n->port);
	return buf;
}

static void ssh_tune_socket(int fd)
{
	int one = 1, idle = 15, intvl = 5, cnt = 3;
	/* A peer that stops acknowledging (link down, host gone) errors the
	 * socket after this long instead of TCP's quarter of an hour, so a
	 * keepalive or a transfer notices. */
	unsigned int user_timeout = 30000;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
}

static int ssh_connect_tcp(struct ssh_node *n)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
	int64_t deadline = ssh_deadline(n->connect_timeout_ms);
	char portstr[16], hp[300];
	int rc, fd = -1, err = 0;

	ssh_hostport(n, hp, sizeof(hp));
	snprintf(portstr, sizeof(portstr), "%d", n->port);
	/* Name lookup blocks without a deadline of its own (getaddrinfo has
	 * none); nodes are usually configured by address. */
	rc = getaddrinfo(n->host, portstr, &hints, &res);
	if (rc) {
		ssh_seterr(n, "resolve %s: %s", n->host, gai_strerror(rc));
		return rc == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		struct pollfd pfd;
		socklen_t elen = sizeof(err);
		int64_t left;

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		err = errno;
		if (err == EINPROGRESS) {
			pfd.fd = fd;
			pfd.events = POLLOUT;
			do {
				left = deadline - util_mono_ms();
				rc = left > 0 ? poll(&pfd, 1, (int)left) : 0;
			} while (rc < 0 && errno == EINTR);
			if (rc > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0)
				break;
			if (rc == 0)
				err = ETIMEDOUT;
			else if (rc < 0)
				err = errno;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		if (err == ETIMEDOUT)
			ssh_seterr(n, "connect %s: timed out after %d ms", hp, n->connect_timeout_ms);
		else
			ssh_seterr(n, "connect %s: %s", hp, strerror(err));
		return -err;
	}
	ssh_tune_socket(fd);
	n->sock = fd;
	return 0;
}

/* "SHA256:" and unpadded base64, as OpenSSH prints it. */
static void ssh_fingerprint(const unsigned char *hash, size_t len, char *out, size_t sz)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, o;

	o = (size_t)snprintf(out, sz, "SHA256:");
	for (i = 0; i < len && o + 5 < sz; i += 3) {
		unsigned v = (unsigned)hash[i] << 16;
		size_t left = len - i;

		if (left > 1)
			v |= (unsigned)hash[i + 1] << 8;
		if (left > 2)
			v |= hash[i + 2];
		out[o++] = b64[(v >> 18) & 63];
		out[o++] = b64[(v >> 12) & 63];
		if (left > 1)
			out[o++] = b64[(v >> 6) & 63];
		if (left > 2)
			out[o++] = b64[v & 63];
	}
	out[o] = '\0';
}

static int ssh_check_hostkey(struct ssh_node *n)
{
	const char *hash = libssh2_hostkey_hash(n->session, LIBSSH2_HOSTKEY_HASH_SHA256);
	char fp[64];

	if (!hash) {
		ssh_seterr(n, "no host key from %s", n->base.name);
		return -EPROTO;
	}
	ssh_fingerprint((const unsigned char *)hash, 32, fp, sizeof(fp));
	if (!n->check_hostkey)
		return 0;
	n->base.error[0] = '\0';
	if (n->check_hostkey(n->check_arg, n->base.name, fp) == 0)
		return 0;
	if (!n->base.error[0])
		ssh_seterr(n, "host key refused for %s (%s)", n->base.name, fp);
	return -EPERM;
}

static int ssh_auth(struct ssh_node *n, int64_t deadline)
{
	int rc;

	if (!n->identity) {
		ssh_seterr(n, "authentication failed for %s@%s (no key configured)", n->user, n->host);
		return -EACCES;
	}
	if (access(n->identity, R_OK) < 0) {
		rc = -errno;
		ssh_seterr(n, "cannot read key %s: %s", n->identity, strerror(-rc));
		return rc;
	}
	/* With the OpenSSL backend libssh2 derives the public half from the
	 * private key when no .pub is given. */
	while ((rc = libssh2_userauth_publickey_fromfile_ex(n->session, n->user, (unsigned)strlen(n->user),
							    n->identity_pub, n->identity, NULL)) ==
	       LIBSSH2_ERROR_EAGAIN) {
		rc = ssh_wait(n, deadline);
		if (rc < 0) {
			ssh_seterr(n, "authentication for %s@%s: %s", n->user, n->host, strerror(-rc));
			return rc;
		}
	}
	if (rc == 0)
		return 0;
	if (rc == LIBSSH2_ERROR_AUTHENTICATION_FAILED || rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED) {
		ssh_seterr(n, "authentication failed for %s@%s (key %s)", n->user, n->host, n->identity);
		return -EACCES;
	}
	return ssh_errno(n, rc, "authentication");
}

/* Find (and make) renderfs's directory on the node. */
static int ssh_find_home(struct ssh_node *n)
{
	static const char script[] = "d=\"${RENDERFS_NODE_DIR:-$HOME/.renderfs}\"; "
				     "mkdir -p \"$d\" && cd \"$d\" && pwd -P";
	char cmd[512], out[sizeof(n->base.home) + 2], err[SSH_ERRTAIL];
	size_t len = 0;
	int rc, status;

	rc = cmd_add(cmd, &len, sizeof(cmd), "sh -c ", 0);
	if (rc == 0)
		rc = cmd_add(cmd, &len, sizeof(cmd), script, 1);
	if (rc < 0)
		return rc;
	rc = ssh_exec_capture(n, cmd, out, sizeof(out), err, sizeof(err), &status,
			      n->connect_timeout_ms + 5000);
	if (rc < 0)
		return rc;
	out[strcspn(out, "\n")] = '\0';
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || out[0] != '/') {
		ssh_seterr(n, "cannot make renderfs directory on %s: %s", n->base.name,
			   err[0] ? err : "no absolute path");
		return -EIO;
	}
	if (strlen(out) >= sizeof(n->base.home)) {
		ssh_seterr(n, "renderfs directory on %s: path too long", n->base.name);
		return -ENAMETOOLONG;
	}
	memcpy(n->base.home, out, strlen(out) + 1);
	return 0;
}

/* ---- teardown ---- */

static void ssh_kill_pids(struct ssh_node *n, const long *pids, size_t npids)
{
	char cmd[1024];
	size_t len = 0, i;

	if (!npids)
		return;
	cmd_add(cmd, &len, sizeof(cmd), "kill -9 --", 0);
	for (i = 0; i < npids; i++) {
		char w[32];

		snprintf(w, sizeof(w), " -%ld", pids[i]);
		if (cmd_add(cmd, &len, sizeof(cmd), w, 0) < 0)
			break;
	}
	ssh_exec_capture(n, cmd, NULL, 0, NULL, 0, NULL, SSH_KILL_TIMEOUT_MS);
}

/*
 * Free everything libssh2 holds, without hanging on a dead peer.  libssh2
 * closes each channel politely before freeing it, and its session_free loops
 * on a channel whose close fails -- so we first make libssh2 see the socket
 * as disconnected (shutdown, then one read), after which channels are freed
 * without any network I/O.
 */
static void ssh_teardown(struct ssh_node *n)
{
	LIBSSH2_CHANNEL *pump = NULL;
	struct tproc *p;
	int i;

	if (!n->session)
		goto out_close_sock;
	libssh2_session_disconnect(n->session, "renderfs closing");
	if (n->sock >= 0)
		shutdown(n->sock, SHUT_RDWR);
	for (p = n->procs; p && !pump; p = p->next)
		pump = p->ch;
	if (!pump && n->norphans)
		pump = n->orphans[0];
	if (!pump && n->sftp)
		pump = libssh2_sftp_get_channel(n->sftp);
	if (pump)
		ssh_pump(pump);
	for (p = n->procs; p; p = p->next) {
		if (p->ch)
			libssh2_channel_free(p->ch);
		p->ch = NULL;
	}
	if (n->sftp)
		libssh2_sftp_shutdown(n->sftp);
	n->sftp = NULL;
	/* Bounded: a session that still says EAGAIN here is leaked rather
	 * than hung on. */
	for (i = 0; i < 10 && libssh2_session_free(n->session) == LIBSSH2_ERROR_EAGAIN; i++)
		;
	n->session = NULL;
	n->norphans = 0;
out_close_sock:
	if (n->sock >= 0)
		close(n->sock);
	n->sock = -1;
}

static void ssh_close(struct tnode *t)
{
	struct ssh_node *n = ssh_of(t);
	long pids[64];
	size_t npids = 0;
	struct tproc *p;

	if (!n->session)
		return;
	/* Best effort: a connection that is already gone cannot kill, and
	 * sshd then leaves the workers with stdin at EOF, which they obey. */
	for (p = n->procs; p; p = p->next)
		if (p->ch && p->pid > 0 && !p->exited && npids < ARRAY_SIZE(pids))
			pids[npids++] = p->pid;
	ssh_kill_pids(n, pids, npids);
	ssh_teardown(n);
}

static int ssh_open(struct tnode *t)
{
	struct ssh_node *n = ssh_of(t);
	int64_t deadline;
	int rc;

	pthread_once(&ssh_once, ssh_global_init);
	if (ssh_init_rc) {
		ssh_seterr(n, "libssh2_init failed");
		return -EIO;
	}
	if (n->parse_err) {
		ssh_seterr(n, "bad ssh target \"%s\" (want [user@]host[:port])", n->base.address);
		return n->parse_err;
	}
	ssh_close(t);
	n->base.error[0] = '\0';
	rc = ssh_connect_tcp(n);
	if (rc < 0)
		return rc;
	n->session = libssh2_session_init();
	if (!n->session) {
		ssh_seterr(n, "libssh2_session_init failed");
		rc = -ENOMEM;
		goto out_teardown;
	}
	libssh2_session_set_blocking(n->session, 0);
	deadline = ssh_deadline(n->connect_timeout_ms);
	while ((rc = libssh2_session_handshake(n->session, n->sock)) == LIBSSH2_ERROR_EAGAIN) {
		rc = ssh_wait(n, deadline);
		if (rc < 0) {
			ssh_seterr(n, "ssh handshake with %s: %s", n->base.name, strerror(-rc));
			goto out_teardown;
		}
	}
	if (rc < 0) {
		rc = ssh_errno(n, rc, "ssh handshake");
		goto out_teardown;
	}
	rc = ssh_check_hostkey(n);
	if (rc < 0)
		goto out_teardown;
	rc = ssh_auth(n, deadline);
	if (rc < 0)
		goto out_teardown;
	libssh2_keepalive_config(n->session, 1, 15);
	rc = ssh_find_home(n);
	if (rc < 0)
		goto out_teardown;
	return 0;

out_teardown:
	ssh_teardown(n);
	return rc;
}

/* ---- processes ---- */

static void ssh_proc_unlink(struct tproc *p)
{
	if (!p->pprev)
		return;
	*p->pprev = p->next;
	if (p->next)
		p->next->pprev = p->pprev;
	p->next = NULL;
	p->pprev = NULL;
}

static int ssh_read_header(struct tproc *p);

static int ssh_spawn(struct tnode *t, char *const argv[], const char *cwd, struct tproc **out)
{
	struct ssh_node *n = ssh_of(t);
	int64_t deadline;
	struct tproc *p;
	size_t len = 0;
	char *cmd;
	int rc, i;

	if (!n->session)
		return -ENOTCONN;
	if (!argv || !argv[0])
		return -EINVAL;
	cmd = malloc(SSH_CMD_MAX);
	if (!cmd)
		return -ENOMEM;
	p = calloc(1, sizeof(*p));
	if (!p) {
		rc = -ENOMEM;
		goto out_free_cmd;
	}
	rc = 0;
	if (cwd) {
		rc = cmd_add(cmd, &len, SSH_CMD_MAX, "cd ", 0);
		if (rc == 0)
			rc = cmd_add(cmd, &len, SSH_CMD_MAX, cwd, 1);
		if (rc == 0)
			rc = cmd_add(cmd, &len, SSH_CMD_MAX, " && ", 0);
	}
	if (rc == 0)
		rc = cmd_add(cmd, &len, SSH_CMD_MAX, "echo " SSH_PID_TAG "$$ && exec", 0);
	for (i = 0; rc == 0 && argv[i]; i++) {
		rc = cmd_add(cmd, &len, SSH_CMD_MAX, " ", 0);
		if (rc == 0)
			rc = cmd_add(cmd, &len, SSH_CMD_MAX, argv[i], 1);
	}
	if (rc < 0) {
		ssh_seterr(n, "command line for %s too long", argv[0]);
		goto out_free_proc;
	}
	deadline = ssh_deadline(SSH_STEP_TIMEOUT_MS);
	rc = ssh_chan_exec(n, cmd, deadline, &p->ch);
	if (rc < 0)
		goto out_free_proc;
	p->node = n;
	/* Wait for the pid line here, so that kill and close can always reach
	 * the process group, whether or not the caller ever reads stdout. */
	while ((rc = ssh_read_header(p)) == -EAGAIN) {
		int w = ssh_wait(n, deadline);

		if (w < 0) {
			rc = w;
			ssh_seterr(n, "no pid line from %s on %s: %s", argv[0], n->base.name, strerror(-w));
			break;
		}
	}
	if (rc < 0)
		goto out_release_channel;
	if (rc == 0)
		p->out_eof = 1; /* the shell ended before exec (cd failed); its status says why */
	p->next = n->procs;
	if (p->next)
		p->next->pprev = &p->next;
	p->pprev = &n->procs;
	n->procs = p;
	free(cmd);
	*out = p;
	return 0;

out_release_channel:
	ssh_chan_release(n, p->ch, SSH_CLOSE_TIMEOUT_MS);
out_free_proc:
	free(p);
out_free_cmd:
	free(cmd);
	return rc;
}

/*
 * Consume the pid line (and any rc-file noise before it) from stdout.
 * 1 when the pid is known, 0 when stdout ended first, -EAGAIN or -errno.
 */
static int ssh_read_header(struct tproc *p)
{
	struct ssh_node *n = p->node;
	const size_t tag = sizeof(SSH_PID_TAG) - 1;

	while (p->pid <= 0) {
		char c;
		ssize_t rc = libssh2_channel_read_ex(p->ch, 0, &c, 1);

		if (rc == LIBSSH2_ERROR_EAGAIN)
			return -EAGAIN;
		if (rc < 0)
			return ssh_errno(n, (int)rc, "read");
		if (rc == 0)
			return libssh2_channel_eof(p->ch) ? 0 : -EAGAIN;
		if (++p->hdr_seen > SSH_HDR_JUNK_MAX) {
			ssh_seterr(n, "no pid line from a process on %s", n->base.name);
			return -EPROTO;
		}
		if (c != '\n') {
			if (p->hdr_len < sizeof(p->hdr) - 1)
				p->hdr[p->hdr_len++] = c;
			continue;
		}
		p->hdr[p->hdr_len] = '\0';
		if (p->hdr_len > tag && !strncmp(p->hdr, SSH_PID_TAG, tag)) {
			char *end;
			long pid = strtol(p->hdr + tag, &end, 10);

			if (!*end && pid > 1)
				p->pid = pid;
		}
		p->hdr_len = 0;
	}
	return 1;
}

/* Hand buffered stdin to libssh2.  0 or -errno (-EAGAIN is not an error). */
static int ssh_flush_stdin(struct tproc *p)
{
	while (p->in_off < p->in_len) {
		ssize_t rc = libssh2_channel_write_ex(p->ch, 0, p->in + p->in_off, p->in_len - p->in_off);

		if (rc == LIBSSH2_ERROR_EAGAIN) {
			/* libssh2 keeps a packet built from these bytes and
			 * must be called again with the same pointer. */
			p->in_pending = 1;
			return 0;
		}
		p->in_pending = 0;
		if (rc < 0)
			return ssh_errno(p->node, (int)rc, "write");
		if (rc == 0)
			return 0; /* the remote window is shut */
		p->in_off += (size_t)rc;
	}
	p->in_off = p->in_len = 0;
	return 0;
}

static ssize_t ssh_proc_read(struct tproc *p, enum tstream which, void *buf, size_t len)
{
	ssize_t rc;
	int hr;

	if (!p->ch)
		return p->exited ? 0 : -ENOTCONN;
	if (ssh_flush_stdin(p) < 0)
		return -ECONNRESET;
	if (which == TS_OUT) {
		if (p->out_eof)
			return 0;
		hr = ssh_read_header(p);
		if (hr < 0)
			return hr;
		if (hr == 0) {
			p->out_eof = 1;
			return 0;
		}
	} else if (p->err_eof) {
		return 0;
	}
	rc = libssh2_channel_read_ex(p->ch, which == TS_OUT ? 0 : SSH_EXTENDED_DATA_STDERR, buf, len);
	if (rc > 0)
		return rc;
	if (rc == LIBSSH2_ERROR_EAGAIN)
		return -EAGAIN;
	if (rc < 0)
		return ssh_errno(p->node, (int)rc, "read");
	if (len && !libssh2_channel_eof(p->ch))
		return -EAGAIN;
	if (which == TS_OUT)
		p->out_eof = 1;
	else
		p->err_eof = 1;
	return 0;
}

static ssize_t ssh_proc_write(struct tproc *p, const void *buf, size_t len)
{
	size_t take;
	int rc;

	if (!p->ch)
		return -ENOTCONN;
	rc = ssh_flush_stdin(p);
	if (rc < 0)
		return rc;
	if (!p->in_pending && p->in_off) {
		memmove(p->in, p->in + p->in_off, p->in_len - p->in_off);
		p->in_len -= p->in_off;
		p->in_off = 0;
	}
	take = sizeof(p->in) - p->in_len;
	if (take > len)
		take = len;
	if (take == 0)
		return len ? -EAGAIN : 0;
	memcpy(p->in + p->in_len, buf, take);
	p->in_len += take;
	rc = ssh_flush_stdin(p);
	if (rc < 0)
		return rc;
	return (ssize_t)take;
}

static int ssh_proc_exited(struct tproc *p, int *status)
{
	int rc;

	if (p->exited) {
		*status = p->status;
		return 1;
	}
	if (!p->ch)
		return -ENOTCONN;
	rc = ssh_flush_stdin(p);
	if (rc < 0)
		return rc;
	rc = ssh_pump(p->ch);
	if (rc < 0)
		return ssh_errno(p->node, rc, "read");
	/* Ended means closed with everything read: the exit status comes
	 * before the close, and output still queued masks the EOF. */
	if (!libssh2_channel_eof(p->ch))
		return 0;
	rc = libssh2_channel_wait_closed(p->ch);
	if (rc == LIBSSH2_ERROR_EAGAIN)
		return 0;
	if (rc < 0)
		return ssh_errno(p->node, rc, "wait for close");
	p->status = ssh_exit_status(p->node, p->ch);
	p->exited = 1;
	*status = p->status;
	return 1;
}

static void ssh_proc_kill(struct tproc *p)
{
	struct ssh_node *n = p->node;
	int64_t deadline;

	if (!n || !p->ch || p->exited)
		return;
	/* The pid line is the first thing the process writes; a caller that
	 * has not read stdout yet still has it queued. */
	deadline = ssh_deadline(SSH_KILL_TIMEOUT_MS);
	while (p->pid <= 0 && !p->out_eof) {
		int rc = ssh_read_header(p);

		if (rc == 0)
			p->out_eof = 1;
		if (rc != -EAGAIN || ssh_wait(n, deadline) < 0)
			break;
	}
	if (p->pid > 0)
		ssh_kill_pids(n, &p->pid, 1);
	ssh_chan_release(n, p->ch, SSH_CLOSE_TIMEOUT_MS);
	p->ch = NULL;
	p->exited = 1;
	p->status = SIGKILL;
	p->out_eof = p->err_eof = 1;
}

static void ssh_proc_free(struct tproc *p)
{
	if (!p)
		return;
	if (p->node && p->ch) {
		if (!p->exited)
			ssh_proc_kill(p);
		else
			ssh_chan_release(p->node, p->ch, SSH_CLOSE_TIMEOUT_MS);
	}
	ssh_proc_unlink(p);
	free(p);
}

/* Does libssh2 hold anything for this process that poll() cannot see? */
static int ssh_proc_ready(struct tproc *p)
{
	unsigned long avail = 0;

	if (!p->ch || p->exited)
		return 0;
	libssh2_channel_window_read_ex(p->ch, &avail, NULL);
	if (avail)
		return 1;
	return libssh2_channel_eof(p->ch) && !(p->out_eof && p->err_eof);
}

static int ssh_pollfds(struct tnode *t, struct pollfd *fds, int max)
{
	struct ssh_node *n = ssh_of(t);
	uint64_t v = 1;
	struct tproc *p;
	int ready = 0, dir;

	if (!n->session || max < 1)
		return 0;
	for (p = n->procs; p; p = p->next) {
		if (p->ch && p->in_len > p->in_off)
			ssh_flush_stdin(p);
		ready |= ssh_proc_ready(p);
	}
	dir = libssh2_session_block_directions(n->session);
	fds[0].fd = n->sock;
	fds[0].events = POLLIN | (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND ? POLLOUT : 0);
	fds[0].revents = 0;
	if (max < 2)
		return 1;
	/* Level-triggered: set while something waits, drained otherwise. */
	if (ready) {
		if (write(n->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			ready = 0;
	} else {
		if (read(n->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			v = 0;
	}
	fds[1].fd = n->wake_fd;
	fds[1].events = POLLIN;
	fds[1].revents = 0;
	return 2;
}

static int ssh_run(struct tnode *t, char *const argv[], char *out, size_t outsz, int *status, int timeout_ms)
{
	struct ssh_node *n = ssh_of(t);
	int64_t deadline = ssh_deadline(timeout_ms);
	size_t olen = 0;
	char scratch[4096];
	struct tproc *p;
	ssize_t got;
	int rc, st = 0;

	if (out && outsz)
		out[0] = '\0';
	rc = ssh_spawn(t, argv, n->base.home[0] ? n->base.home : NULL, &p);
	if (rc < 0)
		return rc;
	for (;;) {
		int moved = 0;
		unsigned long avail = 0;

		while ((got = ssh_proc_read(p, TS_OUT, scratch, sizeof(scratch))) > 0) {
			moved = 1;
			if (out && olen + 1 < outsz) {
				size_t take = (size_t)got < outsz - 1 - olen ? (size_t)got : outsz - 1 - olen;

				memcpy(out + olen, scratch, take);
				olen += take;
				out[olen] = '\0';
			}
		}
		if (got < 0 && got != -EAGAIN) {
			rc = (int)got;
			goto out_free;
		}
		while ((got = ssh_proc_read(p, TS_ERR, scratch, sizeof(scratch))) > 0)
			moved = 1;
		if (got < 0 && got != -EAGAIN) {
			rc = (int)got;
			goto out_free;
		}
		rc = ssh_proc_exited(p, &st);
		if (rc < 0)
			goto out_free;
		if (rc == 1)
			break;
		libssh2_channel_window_read_ex(p->ch, &avail, NULL);
		if (moved || avail)
			continue;
		rc = ssh_wait(n, deadline);
		if (rc == -ETIMEDOUT) {
			ssh_proc_kill(p);
			ssh_seterr(n, "%s on %s: timed out after %d ms", argv[0], n->base.name, timeout_ms);
			goto out_free;
		}
		if (rc < 0)
			goto out_free;
	}
	if (status)
		*status = st;
	rc = 0;
out_free:
	ssh_proc_free(p);
	return rc;
}

static int ssh_keepalive(struct tnode *t)
{
	struct ssh_node *n = ssh_of(t);
	struct pollfd pfd;
	int next, rc, err = 0;
	socklen_t elen = sizeof(err);

	if (!n->session)
		return -ENOTCONN;
	rc = libssh2_keepalive_send(n->session, &next);
	if (rc < 0 && rc != LIBSSH2_ERROR_EAGAIN) {
		ssh_errno(n, rc, "keepalive");
		return -ECONNRESET;
	}
	/* The send only fails once TCP gave up (TCP_USER_TIMEOUT); a peer
	 * that closed or reset shows on the socket at once. */
	pfd.fd = n->sock;
	pfd.events = POLLRDHUP;
	if (poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
		if (getsockopt(n->sock, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || !err)
			err = ECONNRESET;
		ssh_seterr(n, "connection to %s lost: %s", n->base.name, strerror(err));
		return -ECONNRESET;
	}
	return 0;
}

/* ---- files ---- */

static int ssh_sftp_session(struct ssh_node *n, int64_t deadline)
{
	int rc;

	while (!n->sftp) {
		n->sftp = libssh2_sftp_init(n->session);
		if (n->sftp)
			break;
		rc = libssh2_session_last_errno(n->session);
		if (rc != LIBSSH2_ERROR_EAGAIN)
			return ssh_errno(n, rc, "sftp");
		rc = ssh_wait(n, deadline);
		if (rc < 0) {
			ssh_seterr(n, "sftp on %s: %s", n->base.name, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

/* A relative remote path is taken under the node's renderfs directory. */
static int ssh_remote_path(struct ssh_node *n, const char *path, char *out, size_t sz)
{
	int rc;

	if (path[0] == '/')
		rc = snprintf(out, sz, "%s", path);
	else
		rc = snprintf(out, sz, "%s/%s", n->base.home, path);
	return rc < 0 || (size_t)rc >= sz ? -ENAMETOOLONG : 0;
}

/* Wrap a blocking SFTP call: retry on EAGAIN until the deadline.  The
 * expression must return an int status or a handle (NULL = see errno). */
#define SSH_SFTP_RETRY_RC(n, deadline, rcvar, expr)                  \
	do {                                                         \
		while (((rcvar) = (expr)) == LIBSSH2_ERROR_EAGAIN) { \
			int w_ = ssh_wait((n), (deadline));          \
			if (w_ < 0) {                                \
				(rcvar) = LIBSSH2_ERROR_TIMEOUT;     \
				break;                               \
			}                                            \
		}                                                    \
	} while (0)

static LIBSSH2_SFTP_HANDLE *ssh_sftp_open(struct ssh_node *n, const char *path, unsigned long flags,
					  long mode, int64_t deadline, int *err)
{
	LIBSSH2_SFTP_HANDLE *h;
	int rc;

	for (;;) {
		h = libssh2_sftp_open_ex(n->sftp, path, (unsigned)strlen(path), flags, mode,
					 LIBSSH2_SFTP_OPENFILE);
		if (h)
			return h;
		rc = libssh2_session_last_errno(n->session);
		if (rc != LIBSSH2_ERROR_EAGAIN)
			break;
		if (ssh_wait(n, deadline) < 0) {
			rc = LIBSSH2_ERROR_TIMEOUT;
			break;
		}
	}
	*err = ssh_errno(n, rc, path);
	return NULL;
}

static void ssh_sftp_close(struct ssh_node *n, LIBSSH2_SFTP_HANDLE *h)
{
	int64_t deadline = ssh_deadline(SSH_CLOSE_TIMEOUT_MS);
	int rc;

	SSH_SFTP_RETRY_RC(n, deadline, rc, libssh2_sftp_close_handle(h));
	(void)rc;
}

/* mkdir -p for the directory holding path; errors show at the open. */
static void ssh_sftp_mkparents(struct ssh_node *n, const char *path, int64_t deadline)
{
	char dir[SSH_PATH_MAX];
	size_t home = strlen(n->base.home);
	char *s, *end;
	int rc;

	snprintf(dir, sizeof(dir), "%s", path);
	end = strrchr(dir, '/');
	if (!end || end == dir)
		return;
	*end = '\0';
	/* Components of the home exist already. */
	s = dir + (home && strncmp(dir, n->base.home, home) == 0 && dir[home] == '/' ? home : 0);
	for (;;) {
		s = strchr(s + 1, '/');
		if (s)
			*s = '\0';
		SSH_SFTP_RETRY_RC(n, deadline, rc,
				  libssh2_sftp_mkdir_ex(n->sftp, dir, (unsigned)strlen(dir), 0700));
		(void)rc; /* "exists" is the usual answer */
		if (!s)
			break;
		*s = '/';
	}
}

static int ssh_rename_into_place(struct ssh_node *n, const char *tmp, const char *dst, int64_t deadline)
{
	char cmd[3 * SSH_PATH_MAX], err[SSH_ERRTAIL];
	size_t len = 0;
	int rc, status;

	SSH_SFTP_RETRY_RC(n, deadline, rc,
			  libssh2_sftp_rename_ex(n->sftp, tmp, (unsigned)strlen(tmp), dst,
						 (unsigned)strlen(dst),
						 LIBSSH2_SFTP_RENAME_OVERWRITE | LIBSSH2_SFTP_RENAME_ATOMIC |
						     LIBSSH2_SFTP_RENAME_NATIVE));
	if (rc == 0)
		return 0;
	/* SFTP v3 (OpenSSH) ignores the flags and will not replace a file;
	 * mv is one rename(2), so readers never see the name missing. */
	rc = cmd_add(cmd, &len, sizeof(cmd), "mv -f -- ", 0);
	if (rc == 0)
		rc = cmd_add(cmd, &len, sizeof(cmd), tmp, 1);
	if (rc == 0)
		rc = cmd_add(cmd, &len, sizeof(cmd), " ", 0);
	if (rc == 0)
		rc = cmd_add(cmd, &len, sizeof(cmd), dst, 1);
	if (rc == 0)
		rc = ssh_exec_capture(n, cmd, NULL, 0, err, sizeof(err), &status, SSH_STEP_TIMEOUT_MS);
	if (rc == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	/* Last resort, not atomic: unlink then rename. */
	SSH_SFTP_RETRY_RC(n, deadline, rc, libssh2_sftp_unlink_ex(n->sftp, dst, (unsigned)strlen(dst)));
	SSH_SFTP_RETRY_RC(n, deadline, rc,
			  libssh2_sftp_rename_ex(n->sftp, tmp, (unsigned)strlen(tmp), dst,
						 (unsigned)strlen(dst),
						 LIBSSH2_SFTP_RENAME_OVERWRITE | LIBSSH2_SFTP_RENAME_ATOMIC |
						     LIBSSH2_SFTP_RENAME_NATIVE));
	return rc == 0 ? 0 : ssh_errno(n, rc, dst);
}

static int ssh_put(struct tnode *t, const char *local, const char *remote)
{
	struct ssh_node *n = ssh_of(t);
	char dst[SSH_PATH_MAX], tmp[SSH_PATH_MAX + 8];
	LIBSSH2_SFTP_HANDLE *h;
	int64_t deadline = ssh_deadline(SSH_STEP_TIMEOUT_MS);
	char *buf;
	int fd, rc;

	if (!n->session)
		return -ENOTCONN;
	rc = ssh_remote_path(n, remote, dst, sizeof(dst));
	if (rc < 0)
		return rc;
	snprintf(tmp, sizeof(tmp), "%s.part", dst);
	fd = open(local, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		ssh_seterr(n, "put %s: %s", local, strerror(-rc));
		return rc;
	}
	buf = malloc(SSH_XFER_CHUNK);
	if (!buf) {
		rc = -ENOMEM;
		goto out_close_fd;
	}
	rc = ssh_sftp_session(n, deadline);
	if (rc < 0)
		goto out_free_buf;
	h = ssh_sftp_open(n, tmp, LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_TRUNC, 0600, deadline,
			  &rc);
	if (!h && rc == -ENOENT) {
		ssh_sftp_mkparents(n, tmp, deadline);
		h = ssh_sftp_open(n, tmp, LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_TRUNC, 0600,
				  deadline, &rc);
	}
	if (!h)
		goto out_free_buf;
	for (;;) {
		ssize_t got = read(fd, buf, SSH_XFER_CHUNK), off = 0;

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = -errno;
			ssh_seterr(n, "put %s: %s", local, strerror(-rc));
			goto out_close_handle;
		}
		if (got == 0)
			break;
		while (off < got) {
			ssize_t w = libssh2_sftp_write(h, buf + off, (size_t)(got - off));

			if (w == LIBSSH2_ERROR_EAGAIN) {
				rc = ssh_wait(n, deadline);
				if (rc < 0) {
					ssh_seterr(n, "put %s: %s", dst, strerror(-rc));
					goto out_close_handle;
				}
				continue;
			}
			if (w < 0) {
				rc = ssh_errno(n, (int)w, dst);
				goto out_close_handle;
			}
			off += w;
			deadline = ssh_deadline(SSH_STEP_TIMEOUT_MS); /* progress */
		}
	}
	/* fsync@openssh.com; a server without it still gets the rename. */
	SSH_SFTP_RETRY_RC(n, deadline, rc, libssh2_sftp_fsync(h));
	ssh_sftp_close(n, h);
	free(buf);
	close(fd);
	return ssh_rename_into_place(n, tmp, dst, ssh_deadline(SSH_STEP_TIMEOUT_MS));

out_close_handle:
	ssh_sftp_close(n, h);
	{
		int urc;

		SSH_SFTP_RETRY_RC(n, ssh_deadline(SSH_CLOSE_TIMEOUT_MS), urc,
				  libssh2_sftp_unlink_ex(n->sftp, tmp, (unsigned)strlen(tmp)));
		(void)urc;
	}
out_free_buf:
	free(buf);
out_close_fd:
	close(fd);
	return rc;
}

/* A failure on the node's side of a get, as transport_ops.get sorts them:
 * never one of the local-disk errnos. */
static int ssh_get_remote_err(int e)
{
	switch (e) {
	case -ENOTDIR: return -ENOENT;
	case -ELOOP: return -EINVAL;
	case -EIO:
	case -ENOSPC:
	case -EDQUOT:
	case -ENODATA: return -EREMOTEIO;
	default: return e;
	}
}

static int ssh_get(struct tnode *t, const char *remote, const char *local, uint64_t max_bytes)
{
	struct ssh_node *n = ssh_of(t);
	char src[SSH_PATH_MAX], tmp[SSH_PATH_MAX + 8];
	LIBSSH2_SFTP_ATTRIBUTES attrs;
	LIBSSH2_SFTP_HANDLE *h;
	int64_t deadline = ssh_deadline(SSH_STEP_TIMEOUT_MS);
	uint64_t total = 0;
	char *buf;
	int fd, rc;

	if (!n->session)
		return -ENOTCONN;
	rc = ssh_remote_path(n, remote, src, sizeof(src));
	if (rc < 0)
		return -EINVAL;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.part", local) >= sizeof(tmp))
		return -EIO;
	buf = malloc(SSH_GET_CHUNK);
	if (!buf)
		return -ENOMEM;
	rc = ssh_sftp_session(n, deadline);
	if (rc < 0) {
		rc = ssh_get_remote_err(rc);
		goto out_free_buf;
	}
	/*
	 * Only a regular file: sftp-server's open() of a FIFO would block
	 * until our deadline, and a device never ends.  stat follows links,
	 * so a link to a device is refused too; a file that grows past the
	 * limit after this is stopped by the count below.
	 */
	SSH_SFTP_RETRY_RC(
	    n, deadline, rc,
	    libssh2_sftp_stat_ex(n->sftp, src, (unsigned)strlen(src), LIBSSH2_SFTP_STAT, &attrs));
	if (rc < 0) {
		rc = ssh_get_remote_err(ssh_errno(n, rc, src));
		goto out_free_buf;
	}
	if ((attrs.flags & LIBSSH2_SFTP_ATTR_PERMISSIONS) && !LIBSSH2_SFTP_S_ISREG(attrs.permissions)) {
		ssh_seterr(n, "get %s: not a regular file", src);
		rc = -EINVAL;
		goto out_free_buf;
	}
	if ((attrs.flags & LIBSSH2_SFTP_ATTR_SIZE) && attrs.filesize > max_bytes) {
		ssh_seterr(n, "get %s: %llu bytes, over the limit of %llu", src,
			   (unsigned long long)attrs.filesize, (unsigned long long)max_bytes);
		rc = -EFBIG;
		goto out_free_buf;
	}
	h = ssh_sftp_open(n, src, LIBSSH2_FXF_READ, 0, deadline, &rc);
	if (!h) {
		rc = ssh_get_remote_err(rc);
		goto out_free_buf;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = transport_local_errno(errno);
		ssh_seterr(n, "get %s: %s", tmp, strerror(errno));
		goto out_close_handle;
	}
	for (;;) {
		ssize_t got = libssh2_sftp_read(h, buf, SSH_GET_CHUNK), off = 0;

		if (got == LIBSSH2_ERROR_EAGAIN) {
			rc = ssh_wait(n, deadline);
			if (rc < 0) {
				ssh_seterr(n, "get %s: %s", src, strerror(-rc));
				rc = ssh_get_remote_err(rc);
				goto out_unlink;
			}
			continue;
		}
		if (got < 0) {
			rc = ssh_get_remote_err(ssh_errno(n, (int)got, src));
			goto out_unlink;
		}
		if (got == 0)
			break;
		if ((uint64_t)got > max_bytes - total) {
			/* Nothing past the limit reaches the disk. */
			ssh_seterr(n, "get %s: over the limit of %llu bytes", src,
				   (unsigned long long)max_bytes);
			rc = -EFBIG;
			goto out_unlink;
		}
		total += (uint64_t)got;
		deadline = ssh_deadline(SSH_STEP_TIMEOUT_MS); /* progress */
		while (off < got) {
			ssize_t w = write(fd, buf + off, (size_t)(got - off));

			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				rc = transport_local_errno(errno);
				ssh_seterr(n, "get %s: %s", tmp, strerror(errno));
				goto out_unlink;
			}
			off += w;
		}
	}
	if (fsync(fd) < 0) {
		rc = transport_local_errno(errno);
		ssh_seterr(n, "get %s: %s", tmp, strerror(errno));
		goto out_unlink;
	}
	close(fd);
	fd = -1;
	rc = util_rename_durable(tmp, local);
	if (rc < 0) {
		ssh_seterr(n, "get %s: %s", local, strerror(-rc));
		rc = transport_local_errno(-rc);
		goto out_unlink;
	}
	ssh_sftp_close(n, h);
	free(buf);
	return 0;

out_unlink:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
out_close_handle:
	ssh_sftp_close(n, h);
out_free_buf:
	free(buf);
	return rc;
}

static const struct transport_ops ssh_ops = {
    .name = "ssh",
    .open = ssh_open,
    .close = ssh_close,
    .spawn = ssh_spawn,
    .proc_read = ssh_proc_read,
    .proc_write = ssh_proc_write,
    .proc_exited = ssh_proc_exited,
    .proc_kill = ssh_proc_kill,
    .proc_free = ssh_proc_free,
    .pollfds = ssh_pollfds,
    .put = ssh_put,
    .get = ssh_get,
    .run = ssh_run,
    .keepalive = ssh_keepalive,
};

static char *ssh_strdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

struct tnode *ssh_node_new(const struct ssh_opts *o)
{
	struct ssh_node *n;

	if (!o || !o->target)
		return NULL;
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->base.ops = &ssh_ops;
	n->sock = -1;
	n->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (n->wake_fd < 0)
		goto out_free;
	n->identity = ssh_strdup(o->identity);
	n->identity_pub = ssh_strdup(o->identity_pub);
	if ((o->identity && !n->identity) || (o->identity_pub && !n->identity_pub))
		goto out_free_strings;
	n->check_hostkey = o->check_hostkey;
	n->check_arg = o->check_arg;
	n->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000;
	snprintf(n->base.address, sizeof(n->base.address), "%s", o->target);
	n->parse_err = ssh_parse_target(n, o->target);
	if (o->name)
		snprintf(n->base.name, sizeof(n->base.name), "%.100s", o->name);
	else if (n->port == 22)
		snprintf(n->base.name, sizeof(n->base.name), "%.100s", n->host);
	else
		snprintf(n->base.name, sizeof(n->base.name),
			 strchr(n->host, ':') ? "[%.100s]:%d" : "%.100s:%d", n->host, n->port);
	return &n->base;

out_free_strings:
	free(n->identity);
	free(n->identity_pub);
	close(n->wake_fd);
out_free:
	free(n);
	return NULL;
}

void ssh_node_free(struct tnode *t)
{
	struct ssh_node *n = ssh_of(t);
	struct tproc *p;

	if (!t)
		return;
	ssh_close(t);
	/* Handles the caller still holds outlive the node, inert. */
	while ((p = n->procs)) {
		ssh_proc_unlink(p);
		p->node = NULL;
	}
	free(n->identity);
	free(n->identity_pub);
	close(n->wake_fd);
	free(n);
}
