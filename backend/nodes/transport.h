/*
 * transport: how a node is driven.  The engine never talks to a node in any
 * other way: every node is a struct tnode with a const ops table, and the
 * same code schedules, feeds and collects from local processes and from
 * libssh2 sessions alike.
 *
 * A worker is a process on the node with one stream in (stdin) and two out:
 * stdout carries only worker-protocol lines, stderr everything else.  All
 * process I/O is non-blocking (-EAGAIN when nothing can move); the caller
 * waits with poll() on the descriptors pollfds() gives.  File transfers and
 * short commands block, and are made only from the node's own thread.
 *
 * Threads: a tnode and its tprocs belong to one thread at a time (libssh2
 * sessions are not thread-safe).  No call here is ever made from a FUSE
 * request thread.
 *
 * Safety: argv elements are handed to the node as separate words.  The
 * local transport execs them directly; the SSH transport quotes each one for
 * the remote shell.  Callers still build argv only from their own constants,
 * ids and hashes -- never from names a user chose.
 */
#ifndef RENDERFS_TRANSPORT_H
#define RENDERFS_TRANSPORT_H

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct tnode;
struct tproc;

enum tstream { TS_OUT = 1, TS_ERR = 2 };

struct transport_ops {
	const char *name; /* "local", "ssh" */
	/* Connect (or reconnect) and check the node; blocking.  On failure a
	 * one-line reason is left in tnode_error(). */
	int (*open)(struct tnode *n);
	/* Drop the connection and every process started on it. */
	void (*close)(struct tnode *n);
	/* Start argv[0] with argv in directory cwd (absolute, on the node).
	 * *out is owned by the caller and released with proc_free(). */
	int (*spawn)(struct tnode *n, char *const argv[], const char *cwd, struct tproc **out);
	/* Read from stdout or stderr: bytes read, 0 at end of stream,
	 * -EAGAIN when nothing is there now, or -errno. */
	ssize_t (*proc_read)(struct tproc *p, enum tstream which, void *buf, size_t len);
	/* Write to stdin: bytes written (possibly fewer), -EAGAIN or -errno. */
	ssize_t (*proc_write)(struct tproc *p, const void *buf, size_t len);
	/* 1 when the process has ended (*status as waitpid() encodes it: exit
	 * code or signal), 0 while it runs, -errno on a transport failure.
	 * -ECANCELED: it ended because the node's scheduler took it away
	 * (Slurm cancelled, preempted or lost its job), through no fault of
	 * what it ran; error[] says how.  The caller gives its frame back as
	 * interrupted and frees it. */
	int (*proc_exited)(struct tproc *p, int *status);
	/* Stop the process and everything it started, at once. */
	void (*proc_kill)(struct tproc *p);
	/* Release the handle (kills the process if it still runs). */
	void (*proc_free)(struct tproc *p);
	/* Fill fds with what to wait on for any progress of this node's
	 * processes; returns how many (<= max). */
	int (*pollfds)(struct tnode *n, struct pollfd *fds, int max);
	/* Copy a local file to the node: written under a temporary name and
	 * renamed into place, so a cut transfer never leaves a whole-looking
	 * file.  Streams in bounded memory. */
	int (*put)(struct tnode *n, const char *local, const char *remote);
	/* Copy a file from the node to a local path (the same way round), at
	 * most max_bytes of it: a larger file (or one that grows past the
	 * limit while it is read) stops the transfer at the limit and fails
	 * with -EFBIG.  There is no "unlimited"; 0 admits only an empty file.
	 * Only regular files are fetched (a symlink is followed to one).  On
	 * any error neither local nor local.part is left behind.  What the
	 * error means, by whose fault (transport_get_fault() sorts them):
	 *
	 *   the remote file is bad -- the node's fault, not the link's:
	 *	-ENOENT	 it is not there
	 *	-EFBIG	 it is larger than max_bytes
	 *	-EINVAL	 it is not a regular file (a FIFO, a device, a dir)
	 *	-EACCES	 the node will not let us read it
	 *   the local disk -- renderfs's own problem, nobody else's:
	 *	-ENOSPC	 no space left where local is written
	 *	-EDQUOT	 over quota there
	 *	-EIO	 any other failure creating, writing, syncing or
	 *		 renaming the local copy (EIO, EROFS, EACCES, ...;
	 *		 error[] names the real cause)
	 *	-ENOMEM	 this process is out of memory
	 *   the link broke -- everything else, among them:
	 *	-ENOTCONN, -ECONNRESET, -ETIMEDOUT, -EPIPE, -EPROTO, and
	 *	-EREMOTEIO for any other failure on the node's side.
	 */
	int (*get)(struct tnode *n, const char *remote, const char *local, uint64_t max_bytes);
	/* Run a short command to completion, capturing up to outsz-1 bytes of
	 * its stdout (NUL-terminated); *status as waitpid().  Blocking, with
	 * the given timeout in milliseconds. */
	int (*run)(struct tnode *n, char *const argv[], char *out, size_t outsz, int *status, int timeout_ms);
	/* Keep an idle connection alive; 0, or -errno when it is lost. */
	int (*keepalive)(struct tnode *n);
};

/* The common part of every node; transports embed it first. */
struct tnode {
	const struct transport_ops *ops;
	char name[128];    /* "local", "render1", "render1:2222" */
	char address[256]; /* what the user configured */
	char error[512];   /* last failure, one line */
	char home[1024];   /* renderfs's directory on the node, absolute */
};

/* Whose fault a get() error is; see transport_ops.get. */
enum transport_fault { TF_LINK = 0, TF_REMOTE_FILE, TF_LOCAL };

static inline enum transport_fault transport_get_fault(int rc)
{
	switch (rc) {
	case -ENOENT:
	case -EFBIG:
	case -EINVAL:
	case -EACCES: return TF_REMOTE_FILE;
	case -ENOSPC:
	case -EDQUOT:
	case -EIO:
	case -ENOMEM: return TF_LOCAL;
	default: return TF_LINK;
	}
}

/* A failure of this machine's side of a get (errno e, positive) as get()
 * returns it: -ENOSPC, -EDQUOT and -ENOMEM as they are, all else -EIO. */
static inline int transport_local_errno(int e)
{
	return e == ENOSPC || e == EDQUOT || e == ENOMEM ? -e : -EIO;
}

struct tnode *local_node_new(const char *state_dir);
void local_node_free(struct tnode *n);

struct ssh_opts {
	const char *target;       /* "host", "host:port", "user@host:port" */
	const char *identity;     /* private key file */
	const char *identity_pub; /* its public half (path) */
	/* Host key pinning: called with the key's SHA-256 fingerprint
	 * ("SHA256:base64"); returns 0 to accept, -EPERM to refuse. */
	int (*check_hostkey)(void *arg, const char *node, const char *fingerprint);
	void *check_arg;
	int connect_timeout_ms;
	const char *name; /* the node's name; NULL: from the target ("host", "host:port") */
};
struct tnode *ssh_node_new(const struct ssh_opts *o);
void ssh_node_free(struct tnode *n);

/* One compute host of a Slurm cluster (slurm.c): workers are srun jobs
 * pinned to it, files live in shared (seen at the same path here and on
 * every compute host).  Every string must be a plain word
 * (slurm_word_ok); NULL or "" leaves the srun option out. */
struct slurm_opts {
	const char *host;   /* the Slurm node name */
	const char *sid;    /* names renderfs's jobs: renderfs-SID-N, comment renderfs:SID */
	const char *shared; /* absolute */
	const char *partition, *gres, *account, *qos, *time;
};
struct tnode *slurm_node_new(const struct slurm_opts *o); /* NULL: bad options or no memory */
void slurm_node_free(struct tnode *n);
/* Letters, digits and _.:,- only, not starting with '-', under 128 bytes. */
int slurm_word_ok(const char *w);
/* The responding hosts of partition (NULL: all), at most max, into hosts;
 * returns how many, or -errno with a line in err. */
int slurm_hosts(const char *partition, char hosts[][128], int max, char *err, size_t errsz);
/* scancel every job that is renderfs's for sid (its name renderfs-SID-N
 * and its comment renderfs:SID, both); returns how many, or -errno. */
int slurm_cancel_own(const char *sid);

/* Quote one word for a POSIX shell ('...' with ' as '\''); used by the SSH
 * transport.  Returns the length written, or -ENAMETOOLONG. */
int shell_quote(const char *word, char *out, size_t outsz);

#endif
