/*
 * local: the transport for this machine.  Workers are child processes in
 * their own process group, killed with the daemon (PR_SET_PDEATHSIG) so a
 * crashed renderfs leaves no Blender rendering into a dead slot.
 */
#include "transport.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static int local_spawn(void *ctx, char *const argv[], const char *cwd, struct tproc *out)
{
	int in[2], outp[2], errp[2], rc;
	pid_t parent = getpid(), pid;

	(void)ctx;
	if (pipe2(in, O_CLOEXEC) < 0)
		return -errno;
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
	out->pid = pid;
	out->in_fd = in[1];
	out->out_fd = outp[0];
	out->err_fd = errp[0];
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
	return rc;
}

static void local_kill(void *ctx, struct tproc *p)
{
	(void)ctx;
	if (p->pid > 0) {
		kill(-p->pid, SIGKILL);
		kill(p->pid, SIGKILL);
	}
}

static int local_reap(void *ctx, struct tproc *p, int *status)
{
	pid_t r;

	(void)ctx;
	if (p->pid <= 0)
		return 1;
	r = waitpid(p->pid, status, WNOHANG);
	if (r < 0)
		return -errno;
	if (r == 0)
		return 0;
	p->pid = 0;
	return 1;
}

static int local_copy(void *ctx, const char *src, const char *dst)
{
	(void)ctx;
	return util_copy_file(src, dst, NULL);
}

const struct transport_ops local_transport = {
    .name = "local",
    .spawn = local_spawn,
    .kill = local_kill,
    .reap = local_reap,
    .put = local_copy,
    .get = local_copy,
};
