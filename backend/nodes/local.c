/*
 * local: the transport for this machine.  Workers are child processes in
 * their own process group, killed with the daemon (PR_SET_PDEATHSIG) so a
 * crashed renderfs leaves no Blender rendering into a dead slot.  Files
 * "on the node" are files here: put and get copy, except that get moves a
 * rendered frame out of a work directory instead of copying it.
 *
 * The process and file code here is shared (localproc.h) with the
 * transports whose processes are children of renderfs too (slurm.c: srun).
 */
#include "nodes/localproc.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>


static int local_open(struct tnode *n)
{
	n->error[0] = '\0';
	return 0;
}

static void local_close(struct tnode *n)
{
	(void)n;
}

static void track(struct local_node *ln, struct tproc *p, int add)
{
	if (add) {
		if (ln->nprocs < (int)ARRAY_SIZE(ln->procs))
			ln->procs[ln->nprocs++] = p;
		return;
	}
	for (int i = 0; i < ln->nprocs; i++) {
		if (ln->procs[i] == p) {
			ln->procs[i] = ln->procs[--ln->nprocs];
			return;
		}
	}
}

int localproc_spawn(struct tnode *n, char *const argv[], const char *cwd, struct tproc **out)
{
	struct local_node *ln = (struct local_node *)n;
	int in[2], outp[2], errp[2], rc;
	pid_t parent = getpid(), pid;
	struct tproc *p;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	if (pipe2(in, O_CLOEXEC) < 0) {
		rc = -errno;
		goto out_free;
	}
	if (pipe2(outp, O_CLOEXEC) < 0) {
		rc = -errno;
		goto out_close_in;
	}
	if (pipe2(errp, O_CLOEXEC) < 0) {
		rc = -errno;
		goto out_close_out;
	}
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		goto out_close_err;
	}
	if (pid == 0) {
		/* Only async-signal-safe calls between fork and exec. */
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		dup2(in[0], 0);
		dup2(outp[1], 1);
		dup2(errp[1], 2);
		if (cwd && chdir(cwd) < 0)
			_exit(126);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(in[0]);
	close(outp[1]);
	close(errp[1]);
	fcntl(in[1], F_SETFL, O_NONBLOCK);
	fcntl(outp[0], F_SETFL, O_NONBLOCK);
	fcntl(errp[0], F_SETFL, O_NONBLOCK);
	p->node = ln;
	p->pid = pid;
	p->in_fd = in[1];
	p->out_fd = outp[0];
	p->err_fd = errp[0];
	track(ln, p, 1);
	*out = p;
	return 0;

out_close_err:
	close(errp[0]);
	close(errp[1]);
out_close_out:
	close(outp[0]);
	close(outp[1]);
out_close_in:
	close(in[0]);
	close(in[1]);
out_free:
	free(p);
	return rc;
}

ssize_t localproc_read(struct tproc *p, enum tstream which, void *buf, size_t len)
{
	int fd = which == TS_OUT ? p->out_fd : p->err_fd;
	ssize_t n;

	if (fd < 0)
		return 0;
	n = read(fd, buf, len);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? -EAGAIN : -errno;
	return n;
}

ssize_t localproc_write(struct tproc *p, const void *buf, size_t len)
{
	ssize_t n;

	if (p->in_fd < 0)
		return -EPIPE;
	n = write(p->in_fd, buf, len);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? -EAGAIN : -errno;
	return n;
}

int localproc_exited(struct tproc *p, int *status)
{
	pid_t r;

	if (p->pid > 0) {
		r = waitpid(p->pid, &p->status, WNOHANG);
		if (r < 0)
			return -errno;
		if (r == 0)
			return 0;
		p->pid = 0;
	}
	*status = p->status;
	return 1;
}

void localproc_kill(struct tproc *p)
{
	if (p->pid > 0) {
		kill(-p->pid, SIGKILL);
		kill(p->pid, SIGKILL);
		if (waitpid(p->pid, &p->status, 0) == p->pid)
			p->pid = 0;
	}
}

void localproc_free(struct tproc *p)
{
	if (!p)
		return;
	localproc_kill(p);
	if (p->in_fd >= 0)
		close(p->in_fd);
	if (p->out_fd >= 0)
		close(p->out_fd);
	if (p->err_fd >= 0)
		close(p->err_fd);
	track(p->node, p, 0);
	free(p);
}

int localproc_pollfds(struct tnode *n, struct pollfd *fds, int max)
{
	struct local_node *ln = (struct local_node *)n;
	int k = 0;

	for (int i = 0; i < ln->nprocs && k + 2 <= max; i++) {
		if (ln->procs[i]->out_fd >= 0)
			fds[k++] = (struct pollfd){.fd = ln->procs[i]->out_fd, .events = POLLIN};
		if (ln->procs[i]->err_fd >= 0)
			fds[k++] = (struct pollfd){.fd = ln->procs[i]->err_fd, .events = POLLIN};
	}
	return k;
}

int localproc_put(struct tnode *n, const char *local, const char *remote)
{
	(void)n;
	return util_copy_file(local, remote, NULL);
}

/*
 * Copy at most max bytes of the regular file open at in into a new local
 * (through local.part).  Errors as transport_ops.get says: a read failure
 * is the node's side (-EREMOTEIO), a write failure this machine's.
 */
static int local_copy_max(struct tnode *n, int in, const char *remote, const char *local, uint64_t max)
{
	char tmp[4200], *buf;
	uint64_t total = 0;
	int out, rc = 0;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.part", local) >= sizeof(tmp))
		return -EIO;
	buf = malloc(1 << 20);
	if (!buf)
		return -ENOMEM;
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out < 0) {
		rc = transport_local_errno(errno);
		snprintf(n->error, sizeof(n->error), "get: cannot create %.400s: %s", tmp, strerror(errno));
		goto out_free;
	}
	for (;;) {
		ssize_t got = read(in, buf, 1 << 20);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = -EREMOTEIO;
			snprintf(n->error, sizeof(n->error), "get: cannot read %.400s: %s", remote,
				 strerror(errno));
			goto out_unlink;
		}
		if (got == 0)
			break;
		if ((uint64_t)got > max - total) {
			rc = -EFBIG;
			snprintf(n->error, sizeof(n->error), "get: %.400s is over the limit of %llu bytes",
				 remote, (unsigned long long)max);
			goto out_unlink;
		}
		total += (uint64_t)got;
		for (ssize_t done = 0; done < got;) {
			ssize_t w = write(out, buf + done, (size_t)(got - done));

			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				rc = transport_local_errno(errno);
				snprintf(n->error, sizeof(n->error), "get: cannot write %.400s: %s", tmp,
					 strerror(errno));
				goto out_unlink;
			}
			done += w;
		}
	}
	if (fsync(out) < 0) {
		rc = transport_local_errno(errno);
		snprintf(n->error, sizeof(n->error), "get: cannot sync %.400s: %s", tmp, strerror(errno));
		goto out_unlink;
	}
	close(out);
	out = -1;
	rc = util_rename_durable(tmp, local);
	if (rc) {
		snprintf(n->error, sizeof(n->error), "get: cannot store %.400s: %s", local, strerror(-rc));
		rc = transport_local_errno(-rc);
		goto out_unlink;
	}
	free(buf);
	return 0;

out_unlink:
	if (out >= 0)
		close(out);
	unlink(tmp);
out_free:
	free(buf);
	return rc;
}

int localproc_get(struct tnode *n, const char *remote, const char *local, uint64_t max_bytes)
{
	struct stat st;
	int in, rc;

	n->error[0] = '\0';
	/* Never blocks on a FIFO: O_NONBLOCK, and the type is checked at once. */
	in = open(remote, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (in < 0) {
		rc = errno == ENOENT ? -ENOENT : errno == EACCES ? -EACCES : -EREMOTEIO;
		snprintf(n->error, sizeof(n->error), "get: cannot open %.400s: %s", remote, strerror(errno));
		return rc;
	}
	if (fstat(in, &st) < 0) {
		rc = -EREMOTEIO;
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(n->error, sizeof(n->error), "get: %.400s is not a regular file", remote);
		rc = -EINVAL;
		goto out_close;
	}
	if ((uint64_t)st.st_size > max_bytes) {
		snprintf(n->error, sizeof(n->error), "get: %.400s has %lld bytes, over the limit of %llu",
			 remote, (long long)st.st_size, (unsigned long long)max_bytes);
		rc = -EFBIG;
		goto out_close;
	}
	/*
	 * A rendered frame is moved, not copied: the node is this machine.
	 * Only the file itself moves -- a symlink is copied through (a link
	 * in the frame store would point anywhere) -- and only when it is
	 * the one just checked.
	 */
	{
		struct stat lst;

		if (lstat(remote, &lst) == 0 && S_ISREG(lst.st_mode) && lst.st_ino == st.st_ino &&
		    lst.st_dev == st.st_dev && rename(remote, local) == 0) {
			close(in);
			return 0;
		}
	}
	if (fcntl(in, F_SETFL, 0) < 0) {
		rc = -EREMOTEIO;
		goto out_close;
	}
	rc = local_copy_max(n, in, remote, local, max_bytes);
out_close:
	close(in);
	return rc;
}

int localproc_run(struct tnode *n, char *const argv[], char *out, size_t outsz, int *status,
		     int timeout_ms)
{
	struct tproc *p;
	size_t got = 0;
	int64_t deadline = util_mono_ms() + timeout_ms;
	int rc;

	rc = localproc_spawn(n, argv, NULL, &p);
	if (rc)
		return rc;
	close(p->in_fd);
	p->in_fd = -1;
	for (;;) {
		struct pollfd fds[2] = {{.fd = p->out_fd, .events = POLLIN},
					{.fd = p->err_fd, .events = POLLIN}};
		char sink[4096];
		ssize_t r;
		int64_t left = deadline - util_mono_ms();

		if (left <= 0) {
			rc = -ETIMEDOUT;
			break;
		}
		poll(fds, 2, (int)(left > 200 ? 200 : left));
		r = localproc_read(p, TS_OUT, out ? out + got : sink,
			       out && outsz > 1 ? outsz - 1 - got : sizeof(sink));
		if (r > 0 && out)
			got += (size_t)r;
		while (localproc_read(p, TS_ERR, sink, sizeof(sink)) > 0)
			;
		if (out && got >= outsz - 1) {
			/* Output over the cap: keep reading it away. */
			while (localproc_read(p, TS_OUT, sink, sizeof(sink)) > 0)
				;
		}
		if (r == 0 && localproc_exited(p, status) == 1) {
			rc = 0;
			break;
		}
		if (r < 0 && r != -EAGAIN) {
			rc = (int)r;
			break;
		}
	}
	if (out && outsz)
		out[got] = '\0';
	localproc_free(p);
	return rc;
}

int localproc_keepalive(struct tnode *n)
{
	(void)n;
	return 0;
}

static const struct transport_ops local_ops = {
    .name = "local",
    .open = local_open,
    .close = local_close,
    .spawn = localproc_spawn,
    .proc_read = localproc_read,
    .proc_write = localproc_write,
    .proc_exited = localproc_exited,
    .proc_kill = localproc_kill,
    .proc_free = localproc_free,
    .pollfds = localproc_pollfds,
    .put = localproc_put,
    .get = localproc_get,
    .run = localproc_run,
    .keepalive = localproc_keepalive,
};

struct tnode *local_node_new(const char *state_dir)
{
	struct local_node *ln = calloc(1, sizeof(*ln));

	if (!ln)
		return NULL;
	ln->base.ops = &local_ops;
	snprintf(ln->base.name, sizeof(ln->base.name), "local");
	snprintf(ln->base.address, sizeof(ln->base.address), "localhost");
	snprintf(ln->base.home, sizeof(ln->base.home), "%s", state_dir);
	return &ln->base;
}

void local_node_free(struct tnode *n)
{
	free(n);
}
