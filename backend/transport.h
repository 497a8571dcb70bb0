/*
 * transport: how a node is driven.  A worker is a process on the node with
 * a byte stream in (its stdin) and a byte stream out (stdout and stderr
 * together); files move with put and get.  The local transport uses
 * processes and files on this machine; the SSH transport (later) a
 * libssh2 session.  The engine drives every node through this table only.
 */
#ifndef RENDERFS_TRANSPORT_H
#define RENDERFS_TRANSPORT_H

#include <sys/types.h>

struct tproc {
	pid_t pid;  /* local: the process (group leader) */
	int in_fd;  /* write end of the worker's stdin, non-blocking */
	int out_fd; /* read end of its stdout: protocol lines only */
	int err_fd; /* read end of its stderr: everything Blender says */
};

struct transport_ops {
	const char *name;
	/* Start argv[0] (looked up on PATH) with argv, in cwd.  No shell is
	 * involved: argv elements travel as they are. */
	int (*spawn)(void *ctx, char *const argv[], const char *cwd, struct tproc *out);
	/* Stop the process and everything it started (SIGKILL). */
	void (*kill)(void *ctx, struct tproc *p);
	/* Non-blocking: 1 and *status when exited, 0 while running, -errno. */
	int (*reap)(void *ctx, struct tproc *p, int *status);
	/* Copy a file to / from the node (same paths locally). */
	int (*put)(void *ctx, const char *local, const char *remote);
	int (*get)(void *ctx, const char *remote, const char *local);
};

extern const struct transport_ops local_transport;

#endif
