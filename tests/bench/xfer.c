/*
 * xfer: download files from an SSH node with renderfs's own transport
 * (backend/transport.h: ssh_node_new, then ops->get for each file, on one
 * session, one file after another -- what the runner does for each frame).
 *
 *   build/tests/bench_xfer TARGET KEY REMOTE_DIR LOCAL_DIR COUNT
 *
 * Fetches REMOTE_DIR/f000 .. f(COUNT-1) to LOCAL_DIR and prints the time of
 * the transfers alone (connecting is timed apart).
 */
#include "nodes/transport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int accept_key(void *arg, const char *node, const char *fp)
{
	return 0;
}

int main(int argc, char **argv)
{
	char pub[4200], remote[4200], local[4200];
	struct tnode *n;
	double t0, t1;
	int count, rc;

	if (argc != 6) {
		fprintf(stderr, "usage: bench_xfer TARGET KEY REMOTE_DIR LOCAL_DIR COUNT\n");
		return 2;
	}
	count = atoi(argv[5]);
	snprintf(pub, sizeof(pub), "%s.pub", argv[2]);
	struct ssh_opts o = {.target = argv[1],
			     .identity = argv[2],
			     .identity_pub = pub,
			     .check_hostkey = accept_key,
			     .connect_timeout_ms = 10000};
	n = ssh_node_new(&o);
	if (!n)
		return 1;
	t0 = mono();
	rc = n->ops->open(n);
	if (rc) {
		fprintf(stderr, "xfer: open: %s\n", n->error);
		return 1;
	}
	t1 = mono();
	for (int i = 0; i < count; i++) {
		snprintf(remote, sizeof(remote), "%s/f%03d", argv[3], i);
		snprintf(local, sizeof(local), "%s/f%03d", argv[4], i);
		rc = n->ops->get(n, remote, local, 64ull << 30);
		if (rc) {
			fprintf(stderr, "xfer: get %s: %s\n", remote, n->error);
			return 1;
		}
	}
	printf("connect %.3f\nget %.3f\n", t1 - t0, mono() - t1);
	n->ops->close(n);
	ssh_node_free(n);
	return 0;
}
