/*
 * test_runner: a runner driven through a scripted fake transport, against a
 * real store in a temporary directory; and the slot and node state tables
 * walked edge by edge.
 *
 * The fake transport (fake_ops below) is a node whose "machine" is a
 * directory here: put/get copy files, run does rm/mkdir/sha256sum itself,
 * and each spawned "Blender worker" replays a script: on its setup line it
 * plays the script's setup section, on each frame line the section for
 * that frame (the node's first, second, ... frame line, or the default
 * section).  A script can say protocol lines, write Blender log text,
 * write the frame's PNG, crash (end by a signal), or cut the link (reads
 * fail with ECONNRESET and the node refuses connections until the test
 * lets it back).
 *
 * Scenarios: (a) frames rendered and collected; (b) a worker crash (the
 * frame uses an attempt and is rendered again); (c) a lost connection (the
 * frame is interrupted, uses no attempt, and is rendered after the node
 * comes back); (d) a duplicate that wins (FE_WON; the original holder's
 * lease is fenced).
 * A plain program: one line per failed check, exit status 1 if any failed.
 */
#include "core/util.h"
#include "sched/collect.h"
#include "sched/runner.h"
#include "sched/slot.h"
#include "store/nodes.h"
#include "store/store.h"
#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NO_VALUE  INT64_MIN
#define WAIT_MS   20000
#define FRAME_W   32
#define FRAME_H   24
#define BLEND_TXT "BLENDER-v402 a scene the fake worker never reads\n"

static char tmp_root[] = "/tmp/test_runner.XXXXXX";

/* ---- the script ---- */

enum act {
	A_SETUP, /* section: the worker's setup line */
	A_FRAME, /* section: the node's n-th frame line (n = 0: any other) */
	A_SAY,   /* a protocol line: "@rfs " + text; %F frame, %S the written file's SHA-256 */
	A_LOG,   /* a line on stderr (Blender's output) */
	A_WRITE, /* write the frame's PNG to the "out" path */
	A_CRASH, /* the process ends by signal n */
	A_CUT,   /* the link breaks: reads fail, the node refuses connections */
	A_END,
};

struct step {
	enum act a;
	int n;
	const char *text;
};

#define READY_LINE                                                                                      \
	"{\"ev\":\"ready\",\"blender\":\"4.2.0\",\"scene\":\"Scene\",\"engine\":\"CYCLES\",\"device\":" \
	"\"CPU\",\"devices\":[\"CPU\"],\"why\":\"\",\"width\":32,\"height\":24,\"fps\":25}"
#define START_LINE "{\"ev\":\"start\",\"frame\":%F}"
#define DONE_LINE  "{\"ev\":\"done\",\"frame\":%F,\"secs\":0.25,\"sha256\":\"%S\",\"width\":32,\"height\":24}"

#define RENDER_OK                                                                                           \
	{A_SAY, 0, START_LINE}, {A_LOG, 0, "Fra:%F Mem:12M | Rendering 1 / 1 samples"}, {A_WRITE, 0, NULL}, \
	{                                                                                                   \
		A_SAY, 0, DONE_LINE                                                                         \
	}

static const struct step script_ok[] = {
    {A_SETUP, 0, NULL}, {A_SAY, 0, READY_LINE}, {A_FRAME, 0, NULL}, RENDER_OK, {A_END, 0, NULL},
};

/* A node that lies in its ready line: a version that would add a status
 * line, a device with a control character, a width no frame can have. */
static const struct step script_liar[] = {
    {A_SETUP, 0, NULL},
    {A_SAY, 0,
     "{\"ev\":\"ready\",\"blender\":\"4.2.0\\nstate: idle\",\"scene\":\"Scene\",\"engine\":"
     "\"CYCLES\",\"device\":\"CPU\\u0007\",\"devices\":[\"CPU\"],\"why\":\"\",\"width\":65536,"
     "\"height\":-3,\"fps\":1e300}"},
    {A_FRAME, 0, NULL},
    RENDER_OK,
    {A_END, 0, NULL},
};

static const struct step script_crash[] = {
    {A_SETUP, 0, NULL},
    {A_SAY, 0, READY_LINE},
    {A_FRAME, 1, NULL},
    {A_SAY, 0, START_LINE},
    {A_LOG, 0, "Fra:%F Mem:12M | Segfault in the fake"},
    {A_CRASH, SIGSEGV, NULL},
    {A_FRAME, 0, NULL},
    RENDER_OK,
    {A_END, 0, NULL},
};

static const struct step script_cut[] = {
    {A_SETUP, 0, NULL}, {A_SAY, 0, READY_LINE}, {A_FRAME, 1, NULL}, {A_SAY, 0, START_LINE},
    {A_CUT, 0, NULL},   {A_FRAME, 0, NULL},     RENDER_OK,          {A_END, 0, NULL},
};

/* ---- the fake node ---- */

struct fake_node {
	struct tnode base; /* first: the runner sees only this */
	const struct step *script;
	atomic_int down;      /* refuses connections */
	atomic_int opens;     /* successful opens */
	atomic_int spawns;    /* workers started (the probe included) */
	atomic_int frames;    /* frame lines received, over all workers */
	atomic_int cut;       /* the link is broken: reads fail */
	atomic_int get_errno; /* the next get_fails fetches fail with -get_errno */
	atomic_int get_fails;
	char last_argv[512];
};

struct tproc {
	struct fake_node *n;
	char in[8192];
	size_t in_len;
	char out[65536], err[65536];
	size_t out_len, out_off, err_len, err_off;
	int exited, status;
	char sha[65];
};

static struct fake_node *fake_of(struct tnode *n)
{
	return (struct fake_node *)n;
}

static void append(char *buf, size_t cap, size_t *len, const char *text)
{
	size_t l = strlen(text);

	if (*len + l + 1 > cap)
		return;
	memcpy(buf + *len, text, l);
	*len += l;
	buf[(*len)++] = '\n';
}

/* text with %F and %S replaced */
static void expand(const char *text, long frame, const char *sha, char *out, size_t sz)
{
	size_t o = 0;

	for (const char *p = text; *p && o + 80 < sz; p++) {
		if (p[0] == '%' && p[1] == 'F') {
			o += (size_t)snprintf(out + o, sz - o, "%ld", frame);
			p++;
		} else if (p[0] == '%' && p[1] == 'S') {
			o += (size_t)snprintf(out + o, sz - o, "%s", sha);
			p++;
		} else {
			out[o++] = *p;
		}
	}
	out[o] = '\0';
}

/* A complete PNG of FRAME_W x FRAME_H as far as the frame checks go:
 * signature, IHDR, an IDAT and IEND (the CRCs are not checked). */
static const unsigned char png_frame[] = {
    0x89, 'P', 'N', 'G',     '\r', '\n', 0x1a, '\n',    0,   0,    0,    13,   'I',  'H', 'D', 'R',
    0,    0,   0,   FRAME_W, 0,    0,    0,    FRAME_H, 8,   6,    0,    0,    0,    0,   0,   0,
    0,    0,   0,   0,       4,    'I',  'D',  'A',     'T', 1,    2,    3,    4,    0,   0,   0,
    0,    0,   0,   0,       0,    'I',  'E',  'N',     'D', 0xae, 0x42, 0x60, 0x82,
};

static int write_png(const char *path)
{
	return util_write_file_atomic(path, png_frame, sizeof(png_frame));
}

static void play(struct tproc *p, enum act section, int nth, long frame, const char *out)
{
	const struct step *s = p->n->script, *start = NULL;
	char line[1024];

	for (const struct step *k = s; k->a != A_END; k++)
		if (k->a == section && (section == A_SETUP || k->n == nth)) {
			start = k + 1;
			break;
		}
	if (!start && section == A_FRAME)
		for (const struct step *k = s; k->a != A_END; k++)
			if (k->a == A_FRAME && k->n == 0) {
				start = k + 1;
				break;
			}
	for (const struct step *k = start; k && k->a != A_END && k->a != A_SETUP && k->a != A_FRAME; k++) {
		switch (k->a) {
		case A_SAY:
			expand(k->text, frame, p->sha, line + 5, sizeof(line) - 5);
			memcpy(line, "@rfs ", 5);
			append(p->out, sizeof(p->out), &p->out_len, line);
			break;
		case A_LOG:
			expand(k->text, frame, p->sha, line, sizeof(line));
			append(p->err, sizeof(p->err), &p->err_len, line);
			break;
		case A_WRITE:
			if (write_png(out) || util_sha256_file(out, p->sha))
				snprintf(p->sha, sizeof(p->sha), "unwritten");
			break;
		case A_CRASH:
			p->exited = 1;
			p->status = k->n; /* as waitpid encodes a signal */
			return;
		case A_CUT:
			atomic_store(&p->n->down, 1);
			atomic_store(&p->n->cut, 1);
			return;
		default: break;
		}
	}
}

/* One whole stdin line: the setup (the first), a frame, or anything else. */
static void on_line(struct tproc *p, char *line)
{
	const char *f = strstr(line, "\"frame\":");
	const char *o = strstr(line, "\"out\":\"");

	if (strstr(line, "\"scene\":")) {
		play(p, A_SETUP, 0, 0, NULL);
	} else if (f && o) {
		char out[4096];
		const char *end = strchr(o + 7, '"');
		size_t l = end ? (size_t)(end - (o + 7)) : 0;

		snprintf(out, sizeof(out), "%.*s", (int)l, o + 7);
		play(p, A_FRAME, atomic_fetch_add(&p->n->frames, 1) + 1, strtol(f + 8, NULL, 10), out);
	}
}

static int fake_open(struct tnode *n)
{
	if (atomic_load(&fake_of(n)->down)) {
		snprintf(n->error, sizeof(n->error), "connection refused (the fake node is down)");
		return -ECONNREFUSED;
	}
	n->error[0] = '\0';
	atomic_store(&fake_of(n)->cut, 0);
	atomic_fetch_add(&fake_of(n)->opens, 1);
	return 0;
}

static void fake_close(struct tnode *n)
{
	(void)n;
}

static int fake_spawn(struct tnode *n, char *const argv[], const char *cwd, struct tproc **out)
{
	struct fake_node *fn = fake_of(n);
	struct tproc *p;
	size_t l = 0;

	(void)cwd;
	if (atomic_load(&fn->cut))
		return -ECONNRESET;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->n = fn;
	fn->last_argv[0] = '\0';
	for (int i = 0; argv[i] && l < sizeof(fn->last_argv); i++)
		l += (size_t)snprintf(fn->last_argv + l, sizeof(fn->last_argv) - l, "%s%s", i ? " " : "",
				      argv[i]);
	atomic_fetch_add(&fn->spawns, 1);
	*out = p;
	return 0;
}

static ssize_t fake_read(struct tproc *p, enum tstream which, void *buf, size_t len)
{
	char *src = which == TS_OUT ? p->out : p->err;
	size_t *off = which == TS_OUT ? &p->out_off : &p->err_off;
	size_t have = (which == TS_OUT ? p->out_len : p->err_len) - *off;

	if (atomic_load(&p->n->cut))
		return -ECONNRESET;
	if (!have)
		return p->exited ? 0 : -EAGAIN;
	if (len > have)
		len = have;
	memcpy(buf, src + *off, len);
	*off += len;
	return (ssize_t)len;
}

static ssize_t fake_write(struct tproc *p, const void *buf, size_t len)
{
	const char *b = buf;

	if (atomic_load(&p->n->cut))
		return -ECONNRESET;
	if (p->exited)
		return -EPIPE;
	for (size_t i = 0; i < len; i++) {
		if (b[i] != '\n') {
			if (p->in_len + 1 < sizeof(p->in))
				p->in[p->in_len++] = b[i];
			continue;
		}
		p->in[p->in_len] = '\0';
		p->in_len = 0;
		on_line(p, p->in);
	}
	return (ssize_t)len;
}

static int fake_exited(struct tproc *p, int *status)
{
	if (!p->exited)
		return 0;
	*status = p->status;
	return 1;
}

static void fake_kill(struct tproc *p)
{
	p->exited = 1;
	p->status = SIGKILL;
}

static void fake_free(struct tproc *p)
{
	free(p);
}

static int fake_pollfds(struct tnode *n, struct pollfd *fds, int max)
{
	(void)n, (void)fds, (void)max;
	return 0; /* the runner's poll() then only waits out its timeout */
}

static int copy_made(const char *from, const char *to)
{
	char dir[4096], *slash;

	snprintf(dir, sizeof(dir), "%s", to);
	slash = strrchr(dir, '/');
	if (slash) {
		*slash = '\0';
		util_mkdirs(dir);
	}
	return util_copy_file(from, to, NULL);
}

static int fake_put(struct tnode *n, const char *local, const char *remote)
{
	if (atomic_load(&fake_of(n)->cut))
		return -ECONNRESET;
	return copy_made(local, remote);
}

static int fake_get(struct tnode *n, const char *remote, const char *local, uint64_t max_bytes)
{
	struct fake_node *fn = fake_of(n);

	if (atomic_load(&fn->cut))
		return -ECONNRESET;
	if (atomic_load(&fn->get_fails) > 0) {
		atomic_fetch_sub(&fn->get_fails, 1);
		return -atomic_load(&fn->get_errno);
	}
	if (max_bytes < sizeof(png_frame))
		return -EFBIG;
	if (access(remote, F_OK) < 0)
		return -ENOENT;
	return copy_made(remote, local);
}

static int fake_run(struct tnode *n, char *const argv[], char *out, size_t outsz, int *status, int timeout_ms)
{
	char hex[65];

	(void)timeout_ms;
	if (atomic_load(&fake_of(n)->cut))
		return -ECONNRESET;
	*status = 0;
	if (out && outsz)
		out[0] = '\0';
	if (!strcmp(argv[0], "rm")) {
		util_rmtree(argv[3]);
	} else if (!strcmp(argv[0], "mkdir")) {
		if (util_mkdirs(argv[3]))
			*status = 1 << 8;
	} else if (!strcmp(argv[0], "sha256sum")) {
		if (util_sha256_file(argv[2], hex))
			*status = 1 << 8;
		else if (out)
			snprintf(out, outsz, "%s  %s\n", hex, argv[2]);
	} else {
		*status = 127 << 8;
	}
	return 0;
}

static int fake_keepalive(struct tnode *n)
{
	return atomic_load(&fake_of(n)->cut) ? -ECONNRESET : 0;
}

static const struct transport_ops fake_ops = {
    .name = "fake",
    .open = fake_open,
    .close = fake_close,
    .spawn = fake_spawn,
    .proc_read = fake_read,
    .proc_write = fake_write,
    .proc_exited = fake_exited,
    .proc_kill = fake_kill,
    .proc_free = fake_free,
    .pollfds = fake_pollfds,
    .put = fake_put,
    .get = fake_get,
    .run = fake_run,
    .keepalive = fake_keepalive,
};

/* ---- the store side ---- */

struct world {
	char dir[4096];
	char worker[4200];
	char sha[65];
	struct store *st;
	struct config cfg;
	struct fake_node node;
};

static void die(const char *what, int rc)
{
	fprintf(stderr, "test_runner: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
	exit(2);
}

static int sql_exec(struct store *st, const char *fmt, ...)
{
	va_list ap;
	char *sql, *msg = NULL;
	int rc;

	va_start(ap, fmt);
	sql = sqlite3_vmprintf(fmt, ap);
	va_end(ap);
	if (!sql)
		die("sqlite3_vmprintf", ENOMEM);
	rc = sqlite3_exec(st->db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		fprintf(stderr, "test_runner: sql error: %s in: %s\n", msg ? msg : "?", sql);
	sqlite3_free(msg);
	sqlite3_free(sql);
	return rc;
}

/* The first column of the first row: an integer (NO_VALUE for none or
 * NULL), or text into buf ("" for none, "NULL" for NULL). */
static int64_t sql_row(struct store *st, char *buf, size_t sz, const char *fmt, ...)
{
	va_list ap;
	sqlite3_stmt *s;
	int64_t v = NO_VALUE;
	char *sql;

	va_start(ap, fmt);
	sql = sqlite3_vmprintf(fmt, ap);
	va_end(ap);
	if (buf)
		buf[0] = '\0';
	if (!sql || sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
		fprintf(stderr, "test_runner: sql error: %s in: %s\n", sqlite3_errmsg(st->db), sql);
		sqlite3_free(sql);
		return NO_VALUE;
	}
	if (sqlite3_step(s) == SQLITE_ROW) {
		if (sqlite3_column_type(s, 0) != SQLITE_NULL)
			v = sqlite3_column_int64(s, 0);
		if (buf) {
			const unsigned char *t = sqlite3_column_text(s, 0);

			snprintf(buf, sz, "%s", t ? (const char *)t : "NULL");
		}
	}
	sqlite3_finalize(s);
	sqlite3_free(sql);
	return v;
}

#define SQL_INT(st, ...) sql_row(st, NULL, 0, __VA_ARGS__)

/* Wait (up to WAIT_MS) until the query's integer is want.  The runner's
 * thread commits a frame before it counts it on the node or records an
 * event, so every check of what it wrote waits. */
static int wait_for(struct store *st, int64_t want, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int wait_for(struct store *st, int64_t want, const char *fmt, ...)
{
	int64_t end = util_mono_ms() + WAIT_MS;
	char *sql;
	va_list ap;
	int ok = 0;

	va_start(ap, fmt);
	sql = sqlite3_vmprintf(fmt, ap);
	va_end(ap);
	if (!sql)
		die("sqlite3_vmprintf", ENOMEM);
	while (!ok && util_mono_ms() < end) {
		ok = SQL_INT(st, "%s", sql) == want;
		if (!ok)
			usleep(20 * 1000);
	}
	sqlite3_free(sql);
	return ok;
}

static void world_open(struct world *w, const char *name, const struct step *script)
{
	static const char *const subs[] = {"", "/spool", "/blobs", "/jobs", "/node"};
	char path[4300], tmp[4300];
	int rc;

	memset(w, 0, sizeof(*w));
	snprintf(w->dir, sizeof(w->dir), "%s/%s", tmp_root, name);
	for (size_t i = 0; i < ARRAY_SIZE(subs); i++) {
		snprintf(path, sizeof(path), "%s%s", w->dir, subs[i]);
		if (mkdir(path, 0700) < 0)
			die(path, errno);
	}
	rc = store_open(w->dir, &w->st);
	if (rc)
		die("store_open", rc);
	/* the job's scene, named by its hash as intake names it */
	snprintf(tmp, sizeof(tmp), "%s/blobs/incoming", w->dir);
	if (util_write_file_atomic(tmp, BLEND_TXT, strlen(BLEND_TXT)) || util_sha256_file(tmp, w->sha))
		die("blob", EIO);
	store_path_blob(w->st, w->sha, path, sizeof(path));
	if (rename(tmp, path) < 0)
		die("rename blob", errno);
	snprintf(w->worker, sizeof(w->worker), "%s/worker.py", w->dir);
	if (util_write_file_atomic(w->worker, "# the fake's worker\n", 20))
		die("worker", EIO);
	w->cfg.lease_ms = 60000;
	w->cfg.stall_ms = 60000;
	w->node.base.ops = &fake_ops;
	w->node.script = script;
	snprintf(w->node.base.name, sizeof(w->node.base.name), "fake1");
	snprintf(w->node.base.address, sizeof(w->node.base.address), "fake1:22");
	snprintf(w->node.base.home, sizeof(w->node.base.home), "%s/node", w->dir);
}

static void world_close(struct world *w)
{
	store_close(w->st);
}

/* A job (with its directories) of nframes queued frames, numbered 1.. */
static int64_t add_job(struct world *w, const char *name, const char *state, int retries, int nframes,
		       const char *frame_state)
{
	char path[4300];
	int64_t job;

	if (sql_exec(w->st,
		     "INSERT INTO jobs(name, drop_name, state, blend_sha, sidecar, retries, nframes, created)"
		     " VALUES (%Q, %Q, %Q, %Q, '1-%d', %d, %d, 1)",
		     name, name, state, w->sha, nframes, retries, nframes))
		die("insert job", EIO);
	job = sqlite3_last_insert_rowid(w->st->db);
	for (int i = 1; i <= nframes; i++)
		if (sql_exec(w->st, "INSERT INTO frames(job, frame, state) VALUES (%lld, %d, %Q)",
			     (long long)job, i, frame_state))
			die("insert frame", EIO);
	store_path_job(w->st, job, path, sizeof(path));
	util_mkdirs(path);
	snprintf(path + strlen(path), sizeof(path) - strlen(path), "/frames");
	util_mkdirs(path);
	store_path_job(w->st, job, path, sizeof(path));
	snprintf(path + strlen(path), sizeof(path) - strlen(path), "/logs");
	util_mkdirs(path);
	return job;
}

static struct runner *start(struct world *w)
{
	struct runner *r = NULL;
	int rc = runner_start(w->dir, &w->cfg, &w->node.base, 1, "/opt/fake-blender/blender", w->worker, &r);

	if (rc)
		die("runner_start", rc);
	return r;
}

static int frame_file_ok(struct world *w, int64_t job, uint32_t frame)
{
	char path[4300], *data = NULL;
	size_t len = 0;
	int same;

	store_path_frame(w->st, job, frame, ".png", path, sizeof(path));
	if (util_read_file(path, 4096, &data, &len))
		return 0;
	same = len == sizeof(png_frame) && !memcmp(data, png_frame, len);
	free(data);
	return same;
}

/* ---- (a) frames rendered and collected ---- */

static void test_done(void)
{
	struct world w;
	struct runner *r;
	char buf[512], logp[4300], *log = NULL;
	size_t loglen = 0;
	int64_t job, node;

	world_open(&w, "done", script_ok);
	job = add_job(&w, "two", "waiting", 3, 2, "queued");
	r = start(&w);
	node = runner_node_id(r);
	CHECK(node > 0, "the node has a row: %lld", (long long)node);
	CHECK(wait_for(w.st, 2, "SELECT count(*) FROM frames WHERE state = 'done'"), "both frames done: %lld",
	      (long long)SQL_INT(w.st, "SELECT count(*) FROM frames WHERE state = 'done'"));
	CHECK(frame_file_ok(&w, job, 1) && frame_file_ok(&w, job, 2),
	      "both frame files are in the frame store");
	CHECK(SQL_INT(w.st,
		      "SELECT count(*) FROM frames WHERE node = %lld AND attempts = 0 AND interrupts = 0",
		      (long long)node) == 2,
	      "each frame rendered once, on this node");
	CHECK(wait_for(w.st, 2, "SELECT done FROM nodes WHERE id = %lld", (long long)node), "nodes.done = 2");
	CHECK(wait_for(w.st, 1, "SELECT state = 'rendering' FROM jobs"), "the job went waiting -> rendering");
	sql_row(w.st, buf, sizeof(buf),
		"SELECT blender || '|' || device || '|' || gpus FROM nodes WHERE id = %lld", (long long)node);
	CHECK(!strcmp(buf, "4.2.0 (on node)|CPU|0"), "the ready line is recorded on the node: '%s'", buf);
	CHECK(SQL_INT(w.st, "SELECT scene_fps = 25 FROM jobs WHERE id = %lld", (long long)job) == 1,
	      "the scene's fps is recorded");
	CHECK(wait_for(w.st, 1, "SELECT state = 'idle' FROM nodes"),
	      "the node shows idle with nothing to do");
	CHECK(strstr(w.node.last_argv, " -b -Y --factory-startup ") != NULL, "Blender runs with -Y: '%s'",
	      w.node.last_argv);
	/* probe + one worker that rendered both frames */
	CHECK(atomic_load(&w.node.spawns) == 2, "one worker rendered both frames (%d spawns)",
	      atomic_load(&w.node.spawns));
	store_path_log(w.st, job, 2, logp, sizeof(logp));
	CHECK(util_read_file(logp, 4096, &log, &loglen) == 0 && log && strstr(log, "Fra:2 Mem:12M"),
	      "frame 2's log holds Blender's output");
	free(log);
	runner_stop(r);
	CHECK(SQL_INT(w.st, "SELECT state = 'offline' FROM nodes WHERE id = %lld", (long long)node) == 1,
	      "a stopped runner leaves its node offline");
	world_close(&w);
}

/* ---- (b) a worker crash ---- */

static void test_crash(void)
{
	struct world w;
	struct runner *r;
	char buf[1024];
	int64_t job, node;

	world_open(&w, "crash", script_crash);
	job = add_job(&w, "crash", "waiting", 1, 1, "queued");
	r = start(&w);
	node = runner_node_id(r);
	CHECK(wait_for(w.st, 1, "SELECT count(*) FROM frames WHERE state = 'done'"),
	      "the frame is done after the crash");
	/* A crash is the frame's (Blender's) failure, not the link's: it uses
	 * an attempt (FE_FAIL: queued again while attempts < 1 + retries) and
	 * is not an interruption. */
	CHECK(SQL_INT(w.st, "SELECT attempts FROM frames WHERE job = %lld", (long long)job) == 1,
	      "the crash used one attempt: %lld",
	      (long long)SQL_INT(w.st, "SELECT attempts FROM frames WHERE job = %lld", (long long)job));
	CHECK(SQL_INT(w.st, "SELECT interrupts FROM frames WHERE job = %lld", (long long)job) == 0,
	      "a crash is not an interruption");
	CHECK(frame_file_ok(&w, job, 1), "the frame file is in the frame store");
	sql_row(w.st, buf, sizeof(buf), "SELECT msg FROM events WHERE kind = 'error' AND job = %lld",
		(long long)job);
	CHECK(strstr(buf, "frame 1 failed on fake1: Blender died (signal 11)") &&
		  strstr(buf, "Segfault in the fake"),
	      "the crash is reported with the signal and the log's last line: '%s'", buf);
	CHECK(wait_for(w.st, 1, "SELECT failed = 1 AND done = 1 FROM nodes WHERE id = %lld", (long long)node),
	      "the node counts one failed and one done frame");
	CHECK(SQL_INT(w.st, "SELECT failures FROM blocklist WHERE node = %lld AND job = %lld",
		      (long long)node, (long long)job) == 1,
	      "the failure counts against the node for the job");
	CHECK(atomic_load(&w.node.spawns) == 3, "probe, the crashed worker and a new one: %d spawns",
	      atomic_load(&w.node.spawns));
	runner_stop(r);
	world_close(&w);
}

/* ---- (c) a lost connection ---- */

static void test_lost(void)
{
	struct world w;
	struct runner *r;
	char buf[512];
	int64_t job, node;

	world_open(&w, "lost", script_cut);
	job = add_job(&w, "lost", "waiting", 0, 1, "queued");
	r = start(&w);
	node = runner_node_id(r);
	CHECK(wait_for(w.st, 1, "SELECT interrupts FROM frames"), "the frame was interrupted");
	CHECK(wait_for(w.st, 1, "SELECT state = 'offline' FROM nodes WHERE name = 'fake1'"),
	      "the node shows offline while it refuses connections");
	sql_row(w.st, buf, sizeof(buf),
		"SELECT state || '|' || attempts || '|' || coalesce(node, 'none') FROM frames");
	CHECK(!strcmp(buf, "queued|0|none"), "the frame is back in the queue, no attempt used: '%s'", buf);
	CHECK(SQL_INT(w.st, "SELECT failed FROM nodes WHERE id = %lld", (long long)node) == 0,
	      "a lost link counts no failure against the node");
	CHECK(SQL_INT(w.st, "SELECT count(*) FROM blocklist") == 0, "nor blocks it for the job");
	/* retries = 0: had it used an attempt, the frame would be failed */
	atomic_store(&w.node.down, 0);
	CHECK(wait_for(w.st, 1, "SELECT count(*) FROM frames WHERE state = 'done'"),
	      "the node came back and rendered the frame");
	sql_row(w.st, buf, sizeof(buf), "SELECT attempts || '|' || interrupts FROM frames");
	CHECK(!strcmp(buf, "0|1"), "attempts|interrupts after it: '%s', want 0|1", buf);
	CHECK(frame_file_ok(&w, job, 1), "the frame file is in the frame store");
	CHECK(atomic_load(&w.node.opens) == 2, "connected twice: %d", atomic_load(&w.node.opens));
	runner_stop(r);
	world_close(&w);
}

/* ---- (e) a returned file the node got wrong, (f) this side's disk full ---- */

static void test_bad_fetch(void)
{
	struct world w;
	struct runner *r;
	char buf[512];
	int64_t node;

	world_open(&w, "efbig", script_ok);
	atomic_store(&w.node.get_errno, EFBIG);
	atomic_store(&w.node.get_fails, 1);
	add_job(&w, "big", "waiting", 1, 1, "queued");
	r = start(&w);
	node = runner_node_id(r);
	CHECK(wait_for(w.st, 1, "SELECT count(*) FROM frames WHERE state = 'done'"),
	      "the frame is done after the oversized one");
	sql_row(w.st, buf, sizeof(buf), "SELECT attempts || '|' || interrupts FROM frames");
	CHECK(!strcmp(buf, "1|0"), "an oversized frame uses an attempt, not an interruption: '%s'", buf);
	CHECK(SQL_INT(w.st, "SELECT failures FROM blocklist WHERE node = %lld", (long long)node) == 1,
	      "and counts against the node");
	runner_stop(r);
	world_close(&w);
}

static void test_disk_full(void)
{
	struct world w;
	struct runner *r;
	char buf[512];
	int64_t job, node;

	world_open(&w, "enospc", script_ok);
	atomic_store(&w.node.get_errno, ENOSPC);
	atomic_store(&w.node.get_fails, 2);
	job = add_job(&w, "full", "waiting", 0, 1, "queued");
	r = start(&w);
	node = runner_node_id(r);
	CHECK(
	    wait_for(w.st, 1, "SELECT error LIKE 'disk full: %%' FROM jobs WHERE id = %lld", (long long)job),
	    "the job says the disk is full");
	CHECK(wait_for(w.st, 1, "SELECT count(*) FROM frames WHERE state = 'done'"),
	      "the frame is done once the disk has room (retries = 0: no attempt was used)");
	sql_row(w.st, buf, sizeof(buf), "SELECT attempts || '|' || interrupts FROM frames");
	CHECK(!strcmp(buf, "0|2"), "attempts|interrupts: '%s', want 0|2", buf);
	CHECK(SQL_INT(w.st, "SELECT count(*) FROM blocklist WHERE node = %lld", (long long)node) == 0,
	      "a full disk here is not the node's fault");
	CHECK(SQL_INT(w.st, "SELECT error IS NULL FROM jobs WHERE id = %lld", (long long)job) == 1,
	      "the disk-full line goes once a frame lands");
	runner_stop(r);
	world_close(&w);
}

/* ---- (g) what a node says is data, bounded and made one line ---- */

static void test_liar(void)
{
	struct world w;
	struct runner *r;
	char buf[512];
	int64_t job, node;

	world_open(&w, "liar", script_liar);
	job = add_job(&w, "liar", "waiting", 0, 1, "queued");
	r = start(&w);
	node = runner_node_id(r);
	CHECK(wait_for(w.st, 1, "SELECT count(*) FROM frames WHERE state = 'done'"),
	      "the frame is done (its size checked against the hard caps only)");
	sql_row(w.st, buf, sizeof(buf), "SELECT blender || '|' || device FROM nodes WHERE id = %lld",
		(long long)node);
	CHECK(!strcmp(buf, "4.2.0\\nstate: idle (on node)|CPU\\x07"),
	      "the node's words are stored escaped: '%s'", buf);
	CHECK(SQL_INT(w.st, "SELECT scene_fps IS NULL OR scene_fps != 1e300 FROM jobs WHERE id = %lld",
		      (long long)job) == 1,
	      "an fps of 1e300 is not taken");
	runner_stop(r);
	world_close(&w);
}

/* ---- (d) a duplicate that wins ---- */

static void test_duplicate(void)
{
	struct world w;
	struct runner *r;
	struct frame_move m = {0};
	char buf[512];
	int64_t job, node, other, fid;

	world_open(&w, "dup", script_ok);
	sql_exec(w.st, "INSERT INTO nodes(name, provider, state) VALUES ('slowpoke', 'ssh', 'rendering')");
	other = sqlite3_last_insert_rowid(w.st->db);
	job = add_job(&w, "tail", "rendering", 3, 1, "rendering");
	fid = SQL_INT(w.st, "SELECT id FROM frames WHERE job = %lld", (long long)job);
	/* slowpoke holds the frame under lease 1 and has rendered it for a minute */
	sql_exec(w.st,
		 "UPDATE frames SET lease = 1, node = %lld, slot = 0, started = %lld, lease_until = %lld",
		 (long long)other, (long long)(util_now_ms() - 60000), (long long)(util_now_ms() + 60000));
	r = start(&w);
	node = runner_node_id(r);
	CHECK(wait_for(w.st, 1, "SELECT count(*) FROM frames WHERE state = 'done'"),
	      "the duplicate finished");
	sql_row(w.st, buf, sizeof(buf),
		"SELECT node || '|' || lease || '|' || coalesce(dup_node, 'none') || '|' || attempts FROM "
		"frames");
	{
		char want[64];

		snprintf(want, sizeof(want), "%lld|2|none|0", (long long)node);
		CHECK(!strcmp(buf, want), "node|lease|dup_node|attempts: '%s', want '%s' (FE_WON)", buf,
		      want);
	}
	CHECK(frame_file_ok(&w, job, 1), "the duplicate's file is in the frame store");
	/* the original holder's result and renewals come under lease 1: fenced */
	m.now = util_now_ms();
	m.lease_until = m.now + 60000;
	CHECK(store_frame_transition(w.st, fid, 1, FE_HEARTBEAT, &m) == -ESTALE,
	      "the holder's lease renewal is refused");
	m.secs = 1;
	CHECK(store_frame_transition(w.st, fid, 1, FE_RENDERED, &m) == -ESTALE,
	      "the holder's result is refused");
	CHECK(wait_for(
		  w.st, 1,
		  "SELECT count(*) FROM events WHERE kind = 'duplicate' AND msg LIKE '%%finished first%%'"),
	      "the win is recorded");
	CHECK(wait_for(w.st, 1, "SELECT done FROM nodes WHERE id = %lld", (long long)node), "nodes.done = 1");
	runner_stop(r);
	world_close(&w);
}

/* A node's filter on jobs (dispatch_set_accept): the pick skips what it refuses. */
static int64_t refused_job;
static int refuse_one(void *arg, struct store *st, int64_t job)
{
	(void)st;
	++*(int *)arg;
	return job != refused_job;
}
static int refuse_all(void *arg, struct store *st, int64_t job)
{
	(void)arg;
	(void)st;
	(void)job;
	return 0;
}

static void test_filter(void)
{
	struct world w;
	int64_t node, a, b, now = util_now_ms();
	int calls = 0;

	world_open(&w, "filter", script_ok);
	sql_exec(w.st, "INSERT INTO nodes(name, provider, state) VALUES ('rented', 'clore', 'idle')");
	node = sqlite3_last_insert_rowid(w.st->db);
	a = add_job(&w, "first", "waiting", 3, 2, "queued");
	b = add_job(&w, "second", "waiting", 3, 2, "queued");
	sql_exec(w.st, "UPDATE jobs SET priority = 5 WHERE id = %lld", (long long)a);
	CHECK(runner_pick_job(w.st, node, now) == a, "no filter: the top job");
	refused_job = a;
	CHECK(dispatch_set_accept(node, refuse_one, &calls) == 0, "filter set");
	CHECK(runner_pick_job(w.st, node, now) == b, "the refused top job is skipped");
	CHECK(calls == 2, "the filter saw both jobs (%d calls)", calls);
	CHECK(runner_pick_job(w.st, node + 1, now) == a, "another node is not filtered");
	CHECK(dispatch_set_accept(node, refuse_all, NULL) == 0, "filter replaced");
	CHECK(runner_pick_job(w.st, node, now) == 0, "every job refused: none picked");
	CHECK(dispatch_set_accept(node, NULL, NULL) == 0, "filter removed");
	CHECK(runner_pick_job(w.st, node, now) == a, "removed: the top job again");
	world_close(&w);
}

/* ---- the slot table ---- */

static void test_slot_table(void)
{
	/* expect[from][event]: the state after, -1 when refused */
	static const int expect[SLOT__COUNT][SE__COUNT] = {
	    /*             spawn          ready       send        finish      kill */
	    [SLOT_EMPTY] = {SLOT_STARTING, -1, -1, -1, SLOT_EMPTY},
	    [SLOT_STARTING] = {-1, SLOT_READY, -1, -1, SLOT_EMPTY},
	    [SLOT_READY] = {-1, -1, SLOT_BUSY, -1, SLOT_EMPTY},
	    [SLOT_BUSY] = {-1, -1, -1, SLOT_READY, SLOT_EMPTY},
	};
	int legal = 0, refused = 0;

	for (int from = 0; from < SLOT__COUNT; from++) {
		for (int ev = 0; ev < SE__COUNT; ev++) {
			struct slot sl;
			int pure = slot_next_state((enum slot_state)from, (enum slot_event)ev);
			int rc;

			memset(&sl, 0, sizeof(sl));
			sl.state = (enum slot_state)from;
			rc = slot_transition(&sl, (enum slot_event)ev);
			if (expect[from][ev] >= 0) {
				legal++;
				CHECK(pure == expect[from][ev] && rc == expect[from][ev] &&
					  (int)sl.state == expect[from][ev],
				      "slot %s --%s--> %s: pure %d, transition %d, state %s",
				      slot_state_name((enum slot_state)from),
				      slot_event_name((enum slot_event)ev),
				      slot_state_name((enum slot_state)expect[from][ev]), pure, rc,
				      slot_state_name(sl.state));
			} else {
				refused++;
				CHECK(pure == -EINVAL && rc == -ESTALE && (int)sl.state == from,
				      "slot %s --%s--> refused: pure %d, transition %d, state %s",
				      slot_state_name((enum slot_state)from),
				      slot_event_name((enum slot_event)ev), pure, rc,
				      slot_state_name(sl.state));
			}
		}
	}
	CHECK(legal == 8 && refused == 12, "slot table: %d legal, %d refused", legal, refused);
	CHECK(slot_next_state(SLOT__COUNT, SE_KILL) == -EINVAL &&
		  slot_next_state(SLOT_EMPTY, SE__COUNT) == -EINVAL,
	      "out-of-range states and events are refused");
}

/* ---- the node table ---- */

static void test_node_table(void)
{
	/* expect[from][to]: 1 when the edge is in the table (nodes.h) */
	static const int expect[NS__COUNT][NS__COUNT] = {
	    /*                 starting conn idle rend error offline */
	    [NS_STARTING] = {0, 1, 0, 0, 0, 1}, [NS_CONNECTING] = {1, 0, 1, 0, 1, 1},
	    [NS_IDLE] = {1, 0, 0, 1, 0, 1},     [NS_RENDERING] = {1, 0, 1, 0, 0, 1},
	    [NS_ERROR] = {1, 1, 1, 0, 0, 1},    [NS_OFFLINE] = {1, 1, 0, 0, 0, 0},
	};
	struct world w;
	char buf[64];
	int64_t id, other, id2;
	int legal = 0, refused = 0, rc;

	world_open(&w, "nodes", script_ok);
	rc = store_node_register(w.st, "n1", "ssh", "n1:22", 2, &id);
	CHECK(rc == 0 && id > 0, "register a new node: %d", rc);
	sql_row(w.st, buf, sizeof(buf), "SELECT state FROM nodes WHERE id = %lld", (long long)id);
	CHECK(!strcmp(buf, "starting") && store_node_state(w.st, id) == NS_STARTING,
	      "a new row is starting: %s", buf);
	for (int from = 0; from < NS__COUNT; from++) {
		CHECK(node_state_parse(node_state_name((enum node_state)from)) == from,
		      "state name %s parses back", node_state_name((enum node_state)from));
		for (int to = 0; to < NS__COUNT; to++) {
			sql_exec(w.st, "UPDATE nodes SET state = %Q WHERE id = %lld",
				 node_state_name((enum node_state)from), (long long)id);
			rc = store_node_transition(w.st, id, (enum node_state)from, (enum node_state)to);
			if (expect[from][to]) {
				legal++;
				CHECK(node_check_edge((enum node_state)from, (enum node_state)to) == 0 &&
					  rc == 0 && store_node_state(w.st, id) == to,
				      "node %s -> %s: accepted (rc %d, now %s)",
				      node_state_name((enum node_state)from),
				      node_state_name((enum node_state)to), rc,
				      node_state_name((enum node_state)store_node_state(w.st, id)));
			} else {
				refused++;
				CHECK(node_check_edge((enum node_state)from, (enum node_state)to) ==
					      -EINVAL &&
					  rc == -ESTALE && store_node_state(w.st, id) == from,
				      "node %s -> %s: refused (rc %d, now %s)",
				      node_state_name((enum node_state)from),
				      node_state_name((enum node_state)to), rc,
				      node_state_name((enum node_state)store_node_state(w.st, id)));
			}
		}
	}
	CHECK(legal == 18 && refused == 18, "node table: %d legal, %d refused", legal, refused);
	/* a lost race: a legal edge from a state the row is not in */
	sql_exec(w.st, "UPDATE nodes SET state = 'offline' WHERE id = %lld", (long long)id);
	CHECK(store_node_transition(w.st, id, NS_IDLE, NS_RENDERING) == -ESTALE &&
		  store_node_state(w.st, id) == NS_OFFLINE,
	      "idle -> rendering on an offline row: -ESTALE, row unchanged");
	/* registering again takes the row back to starting, error cleared */
	sql_exec(w.st, "UPDATE nodes SET state = 'error', error = 'no blender', removed = 1 WHERE id = %lld",
		 (long long)id);
	rc = store_node_register(w.st, "n1", "ssh", "n1:2222", 4, &id2);
	sql_row(w.st, buf, sizeof(buf),
		"SELECT state || '|' || coalesce(error, 'none') || '|' || removed || '|' || slots || '|' || "
		"address"
		" FROM nodes WHERE id = %lld",
		(long long)id);
	CHECK(rc == 0 && id2 == id && !strcmp(buf, "starting|none|0|4|n1:2222"), "register again: %d, '%s'",
	      rc, buf);
	/* a rental ended: its nodes removed and offline, the others left alone */
	sql_exec(w.st,
		 "INSERT INTO nodes(name, provider, state, rental) VALUES ('c1', 'clore', 'rendering', 7)");
	other = sqlite3_last_insert_rowid(w.st->db);
	CHECK(store_nodes_end_rental(w.st, 7) == 0, "end rental 7");
	sql_row(w.st, buf, sizeof(buf), "SELECT state || '|' || removed FROM nodes WHERE id = %lld",
		(long long)other);
	CHECK(!strcmp(buf, "offline|1"), "the rental's node: '%s'", buf);
	CHECK(store_node_state(w.st, id) == NS_STARTING, "another node is not touched by the rental's end");
	/* mount start: every node offline, the machine's states and others */
	sql_exec(w.st, "INSERT INTO nodes(name, provider, state) VALUES ('old', 'ssh', 'busy')");
	CHECK(store_recover(w.st, util_now_ms()) >= 0, "store_recover");
	CHECK(SQL_INT(w.st, "SELECT count(*) FROM nodes WHERE state != 'offline'") == 0,
	      "after recovery every node is offline");
	CHECK(SQL_INT(w.st, "SELECT count(*) FROM changes") == 0, "recovery leaves no change rows");
	world_close(&w);
}

/* ---- (h) the frame choice: the spread first, then heavy frames first ---- */

static void test_lease_order(void)
{
	static const uint32_t spread[] = {1, 100, 50, 25, 75};
	struct world w;
	struct lease_grant g;
	int64_t job, node;
	char buf[64];

	world_open(&w, "order", script_ok);
	if (store_node_register(w.st, "n1", "ssh", "n1:22", 2, &node))
		die("node", EIO);
	job = add_job(&w, "spread", "waiting", 2, 100, "queued");
	for (size_t i = 0; i < ARRAY_SIZE(spread); i++) {
		int rc = runner_lease_frame(w.st, node, 0, job, 60000, util_now_ms(), &g);

		CHECK(rc == 0, "lease %zu of a fresh job: rc %d", i, rc);
		/* the middle of 1..100 may be 50 or 51 */
		CHECK(g.frame_no == spread[i] || (i == 2 && g.frame_no == 51), "lease %zu is frame %u (want %u)",
		      i, g.frame_no, spread[i]);
	}
	sql_row(w.st, buf, sizeof(buf), "SELECT state FROM jobs WHERE id = %lld", (long long)job);
	CHECK(!strcmp(buf, "rendering"),
	      "the job is rendering after its first lease: %s", buf);

	/* Frames 1-100 done but three; 41-60 took ten times as long: of the
	 * three, the one among the heavy frames goes first, then by weight. */
	job = add_job(&w, "weights", "rendering", 2, 100, "done");
	sql_exec(w.st, "UPDATE frames SET secs = CASE WHEN frame BETWEEN 41 AND 60 THEN 10.0 ELSE 1.0 END,"
		       " node = %lld WHERE job = %lld", (long long)node, (long long)job);
	sql_exec(w.st, "UPDATE frames SET state = 'queued', secs = NULL, node = NULL"
		       " WHERE job = %lld AND frame IN (20, 50, 90)", (long long)job);
	/* the spread's frames (1, 100, 50, ...) are a rule for a fresh job:
	 * here 50 is also the heaviest */
	for (int i = 0; i < 3; i++) {
		int rc = runner_lease_frame(w.st, node, 0, job, 60000, util_now_ms(), &g);

		CHECK(rc == 0, "lease %d by weight: rc %d", i, rc);
		if (i == 0)
			CHECK(g.frame_no == 50, "the heavy frame first: got %u", g.frame_no);
		else
			CHECK(g.frame_no == 20 || g.frame_no == 90, "then a light one: got %u", g.frame_no);
	}
	CHECK(runner_lease_frame(w.st, node, 0, job, 60000, util_now_ms(), &g) == -ENOENT,
	      "nothing left to lease");
	world_close(&w);
}

/* The size a job's frames must have: the sidecar over the scene. */
static void test_expected_size(void)
{
	int w = -1, h = -1;

	CHECK(collect_expected_size(0, 0, 0, 1920, 1080, 50, &w, &h) == 0 && w == 960 && h == 540,
	      "scene at 50%%: %dx%d", w, h);
	CHECK(collect_expected_size(64, 64, 0, 1920, 1080, 50, &w, &h) == 0 && w == 64 && h == 64,
	      "absolute sidecar size is 100%%: %dx%d", w, h);
	CHECK(collect_expected_size(64, 48, 50, 0, 0, 0, &w, &h) == 0 && w == 32 && h == 24,
	      "sidecar size with its percentage, scene unknown: %dx%d", w, h);
	CHECK(collect_expected_size(0, 0, 25, 1921, 1081, 100, &w, &h) == 0 && w == 480 && h == 270,
	      "percentage only, rounded down as Blender does: %dx%d", w, h);
	CHECK(collect_expected_size(0, 0, 50, 0, 0, 0, &w, &h) == -ENOENT, "percentage without a scene");
	CHECK(collect_expected_size(0, 0, 0, 0, 0, 0, &w, &h) == -ENOENT, "nothing known");
	CHECK(collect_expected_size(0, 0, 1000, 32768, 32768, 100, &w, &h) == -ENOENT, "over IMAGE_MAX_DIM");
	CHECK(collect_expected_size(0, 0, 0, 1, 1, 1, &w, &h) == -ENOENT, "under one pixel");
	CHECK(collect_expected_size(0, 0, 0, -5, 10, 100, &w, &h) == -ENOENT, "negative scene side");
	CHECK(collect_scene_resolution("/nonexistent/x.blend", NULL, &w, &h, &w) < 0, "unreadable blob");
}

/* The default per-frame timeout: 2 h, or 10x the job's mean when longer. */
static void test_default_timeout(void)
{
	CHECK(slot_timeout_default_ms(0) == SLOT_DEFAULT_TIMEOUT_MS, "no average: 2 h");
	CHECK(slot_timeout_default_ms(60) == SLOT_DEFAULT_TIMEOUT_MS, "1 min frames: 2 h floor");
	CHECK(slot_timeout_default_ms(3600) == 10 * 3600 * 1000LL, "1 h frames: 10 h");
	CHECK(slot_timeout_default_ms(1e300) == 30LL * 86400 * 1000, "capped at 30 days");
	CHECK(slot_timeout_default_ms(-5) == SLOT_DEFAULT_TIMEOUT_MS, "negative: the floor");
}

int main(void)
{
	test_expected_size();
	test_default_timeout();
	if (!mkdtemp(tmp_root))
		die("mkdtemp", errno);
	test_slot_table();
	test_node_table();
	test_done();
	test_crash();
	test_lost();
	test_duplicate();
	test_filter();
	test_bad_fetch();
	test_disk_full();
	test_liar();
	test_lease_order();
	if (!failures)
		util_rmtree(tmp_root);
	else
		printf("test_runner: kept %s\n", tmp_root);
	return check_summary("test_runner");
}
