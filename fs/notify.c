/*
 * notify: tells the kernel when the backend changed what a directory or a
 * status file shows.  It runs on its own thread because libfuse forbids
 * sending invalidations from inside a request handler (the kernel may be
 * waiting on the very request that would then wait on the kernel).
 */
#include "fs.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

static pthread_t notify_thread;
static atomic_int notify_stopping;
static struct fuse_session *notify_se;
static struct store *notify_st;
static int notify_running;

static void inval(uint64_t ino)
{
	/* -ENOENT: the kernel does not know this inode; nothing to do. */
	fuse_lowlevel_notify_inval_inode(notify_se, ino, 0, 0);
}

static void on_change(void *arg, int kind, int64_t id)
{
	(void)arg;
	switch (kind) {
	case CH_QUEUE: inval(I_QUEUE); break;
	case CH_OUT:
		inval(I_OUT);
		inval(I_STATUS);
		inval(I_STATUSJSON);
		break;
	case CH_JOBDIR:
		inval(INO(T_JOB, id));
		inval(INO(T_JSTATUS, id));
		inval(INO(T_JSTATUSJSON, id));
		inval(I_STATUS);
		inval(I_STATUSJSON);
		break;
	case CH_JOBLOGS: inval(INO(T_JLOGS, id)); break;
	case CH_JOBSTATE: status_cache_flush(); break;
	case CH_NODES:
		inval(I_NODES);
		inval(INO(T_NSTATUS, id));
		inval(INO(T_NSTATUSJSON, id));
		break;
	}
}

static void *notify_main(void *arg)
{
	int64_t seq = 0;

	(void)arg;
	/* Start after whatever is in the feed now: the kernel has no cache
	 * from before this mount. */
	store_changes_head(notify_st, &seq);
	while (!atomic_load(&notify_stopping)) {
		store_changes_since(notify_st, &seq, on_change, NULL);
		usleep(100 * 1000);
	}
	return NULL;
}

int notify_start(struct fuse_session *se, const char *state_dir)
{
	int rc;

	notify_se = se;
	rc = store_open(state_dir, &notify_st);
	if (rc)
		return rc;
	rc = pthread_create(&notify_thread, NULL, notify_main, NULL);
	if (rc) {
		store_close(notify_st);
		return -rc;
	}
	notify_running = 1;
	return 0;
}

void notify_stop(void)
{
	if (!notify_running)
		return;
	atomic_store(&notify_stopping, 1);
	pthread_join(notify_thread, NULL);
	store_close(notify_st);
	notify_running = 0;
}
