/*
 * localproc: the process and file code of the local transport (local.c),
 * shared with transports whose workers are child processes of renderfs as
 * well -- slurm.c starts each worker as an `srun` child.  A node of such a
 * transport embeds struct local_node first; its processes are struct
 * tproc as defined here.
 *
 * Every function is the transport_ops entry of the same name (see
 * transport.h for what each must do); a transport puts them in its own
 * table and wraps the ones it must change.
 *
 * Threads: as transport.h -- a node and its processes belong to one thread.
 */
#ifndef RENDERFS_LOCALPROC_H
#define RENDERFS_LOCALPROC_H

#include "nodes/transport.h"

struct local_node {
	struct tnode base;       /* first: a tnode pointer is a local_node pointer */
	struct tproc *procs[64]; /* for pollfds; owned by their callers */
	int nprocs;
};

struct tproc {
	struct local_node *node;
	pid_t pid;  /* 0 once reaped */
	int status; /* valid once reaped */
	int in_fd, out_fd, err_fd;
	/* Free for the transport that started it (slurm.c: the Slurm job's
	 * name, and what srun said about the job's end). */
	char tag[64];
	int gone;
	char line[512];
	size_t line_len;
};

int localproc_spawn(struct tnode *n, char *const argv[], const char *cwd, struct tproc **out);
ssize_t localproc_read(struct tproc *p, enum tstream which, void *buf, size_t len);
ssize_t localproc_write(struct tproc *p, const void *buf, size_t len);
int localproc_exited(struct tproc *p, int *status);
void localproc_kill(struct tproc *p);
void localproc_free(struct tproc *p);
int localproc_pollfds(struct tnode *n, struct pollfd *fds, int max);
int localproc_put(struct tnode *n, const char *local, const char *remote);
int localproc_get(struct tnode *n, const char *remote, const char *local, uint64_t max_bytes);
int localproc_run(struct tnode *n, char *const argv[], char *out, size_t outsz, int *status,
		  int timeout_ms);
int localproc_keepalive(struct tnode *n);

#endif
