/*
 * intake: queue/ as rows plus spool files, and the scan that turns complete
 * drops into jobs.  The scan copies the .blend into the content-addressed
 * blob store before it commits the job, so the job never depends on a file
 * the user may rewrite or remove later.
 */
#include "jobs/intake.h"
#include "core/filecheck.h"
#include "jobs/jobs.h"
#include "core/sidecar.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#define RENAME_EXCHANGE  (1 << 1)
#endif

static void row_to_qfile(sqlite3_stmt *s, struct qfile *q)
{
	q->id = sqlite3_column_int64(s, 0);
	snprintf(q->name, sizeof(q->name), "%s", (const char *)sqlite3_column_text(s, 1));
	q->job = sqlite3_column_int64(s, 2);
	q->writers = sqlite3_column_int(s, 3);
	q->changed = sqlite3_column_int64(s, 4);
	q->mode = (uint32_t)sqlite3_column_int(s, 5);
}

#define QCOLS "id, name, coalesce(job, 0), writers, changed, mode"

static void fill_qfile(void *arg, sqlite3_stmt *row)
{
	row_to_qfile(row, arg);
}

static int queue_one(struct store *st, const char *sql, const char *name, int64_t id, struct qfile *out)
{
	return store_one_row(st, sql, name, id, fill_qfile, out);
}

int queue_lookup(struct store *st, const char *name, struct qfile *out)
{
	return queue_one(st, "SELECT " QCOLS " FROM qfiles WHERE name = ?", name, 0, out);
}

int queue_get(struct store *st, int64_t id, struct qfile *out)
{
	return queue_one(st, "SELECT " QCOLS " FROM qfiles WHERE id = ?", NULL, id, out);
}

int queue_list(struct store *st, int (*fn)(void *arg, const struct qfile *q), void *arg)
{
	sqlite3_stmt *s;
	struct qfile q;
	int rc = store_prepare(st, "SELECT " QCOLS " FROM qfiles ORDER BY id", &s);

	if (rc)
		return rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		row_to_qfile(s, &q);
		if (fn(arg, &q))
			break;
	}
	sqlite3_finalize(s);
	return 0;
}

static int name_ok(const char *name)
{
	size_t n = strlen(name);

	return n > 0 && n <= QUEUE_NAME_MAX && !strchr(name, '/') && strcmp(name, ".") && strcmp(name, "..");
}

int queue_create(struct store *st, const char *name, uint32_t mode, struct qfile *out)
{
	char path[4096];
	sqlite3_stmt *s;
	int64_t id;
	int rc, fd;

	if (!name_ok(name))
		return strlen(name) > QUEUE_NAME_MAX ? -ENAMETOOLONG : -EINVAL;
	rc = store_begin(st);
	if (rc)
		return rc;
	rc = store_prepare(st, "INSERT INTO qfiles(name, changed, mode) VALUES (?, ?, ?)", &s);
	if (rc)
		goto out_rollback;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, util_now_ms());
	sqlite3_bind_int(s, 3, (int)(mode & 07777));
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		rc = (rc & 0xff) == SQLITE_CONSTRAINT ? -EEXIST : store_errno(rc);
		goto out_rollback;
	}
	id = sqlite3_last_insert_rowid(st->db);
	store_path_spool(st, id, path, sizeof(path));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto out_rollback;
	}
	close(fd);
	store_change(st, CH_QUEUE, 0);
	rc = store_commit(st);
	if (rc) {
		unlink(path);
		goto out_rollback;
	}
	return queue_get(st, id, out);

out_rollback:
	store_rollback(st);
	return rc;
}

static int queue_update(struct store *st, const char *sql, int64_t id, int64_t v)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, sql, &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, v);
	sqlite3_bind_int64(s, 2, util_now_ms());
	sqlite3_bind_int64(s, 3, id);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	if (!rc && sqlite3_changes(st->db) == 0)
		rc = -ENOENT;
	return rc;
}

int queue_writer(struct store *st, int64_t id, int delta)
{
	/* Closing a writer counts as the latest change: the last write came
	 * before it, so quiet time measured from here is never too short. */
	/* Opening a job's input for writing starts a new version of it: the
	 * job keeps its own copy, and the file becomes a new drop (so the
	 * end of the job does not take the new version away with it). */
	return queue_update(st,
			    "UPDATE qfiles SET writers = max(0, writers + ?1), changed = ?2,"
			    " job = CASE WHEN ?1 > 0 THEN NULL ELSE job END WHERE id = ?3",
			    id, delta);
}

/* A job's own input that is changed is no longer that job's input: the job
 * renders the copy it took, and the changed file is a new drop. */
int queue_touch(struct store *st, int64_t id)
{
	return queue_update(st, "UPDATE qfiles SET changed = ?2, job = NULL WHERE id = ?3 AND ?1 = ?1", id,
			    0);
}

int queue_chmod(struct store *st, int64_t id, uint32_t mode)
{
	return queue_update(st, "UPDATE qfiles SET mode = ?1 WHERE id = ?3 AND ?2 = ?2", id, mode & 07777);
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n > m && !strcmp(s + n - m, suffix);
}

/* Remove a row and its spool file; if it is the .blend of an active job,
 * that job is cancelled (product.md: removing NAME.blend cancels). */
static int drop_row(struct store *st, const struct qfile *q, int cancel)
{
	char path[4096];
	sqlite3_stmt *s;
	int rc;

	if (cancel && q->job && ends_with(q->name, ".blend")) {
		struct job_row j;

		if (!job_get(st, q->job, &j) && job_state_active(j.state)) {
			rc = job_cancel(st, q->job, "cancelled: its .blend was removed from queue/");
			if (rc && rc != -ESTALE)
				return rc;
		}
	}
	rc = store_prepare(st, "DELETE FROM qfiles WHERE id = ?", &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, q->id);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	if (rc)
		return rc;
	store_path_spool(st, q->id, path, sizeof(path));
	unlink(path);
	return 0;
}

int queue_unlink(struct store *st, const char *name)
{
	struct qfile q;
	int rc;

	rc = store_begin(st);
	if (rc)
		return rc;
	rc = queue_lookup(st, name, &q);
	if (rc)
		goto out_rollback;
	rc = drop_row(st, &q, 1);
	if (rc)
		goto out_rollback;
	store_change(st, CH_QUEUE, 0);
	return store_commit(st);

out_rollback:
	store_rollback(st);
	return rc;
}

int queue_rename(struct store *st, const char *from, const char *to, unsigned flags)
{
	struct qfile src, dst;
	sqlite3_stmt *s;
	int rc, have_dst;

	if (!name_ok(to))
		return strlen(to) > QUEUE_NAME_MAX ? -ENAMETOOLONG : -EINVAL;
	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	rc = store_begin(st);
	if (rc)
		return rc;
	rc = queue_lookup(st, from, &src);
	if (rc)
		goto out_rollback;
	have_dst = queue_lookup(st, to, &dst) == 0;
	if (have_dst && dst.id == src.id) {
		rc = 0;
		goto out_commit;
	}
	if (have_dst && (flags & RENAME_NOREPLACE)) {
		rc = -EEXIST;
		goto out_rollback;
	}
	if (!have_dst && (flags & RENAME_EXCHANGE)) {
		rc = -ENOENT;
		goto out_rollback;
	}
	if (flags & RENAME_EXCHANGE) {
		/* A UNIQUE column cannot swap in one statement on every SQLite:
		 * go through a name no file can have ('/' is never in a name). */
		rc = store_prepare(st, "UPDATE qfiles SET name = '/' || id WHERE id IN (?1, ?2)", &s);
		if (rc)
			goto out_rollback;
		sqlite3_bind_int64(s, 1, src.id);
		sqlite3_bind_int64(s, 2, dst.id);
		rc = store_errno(sqlite3_step(s));
		sqlite3_finalize(s);
		if (rc)
			goto out_rollback;
		rc = store_prepare(st,
				   "UPDATE qfiles SET name = CASE id WHEN ?1 THEN ?3 ELSE ?4 END,"
				   " changed = ?5, job = NULL WHERE id IN (?1, ?2)",
				   &s);
		if (rc)
			goto out_rollback;
		sqlite3_bind_int64(s, 1, src.id);
		sqlite3_bind_int64(s, 2, dst.id);
		sqlite3_bind_text(s, 3, to, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 4, from, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 5, util_now_ms());
		rc = store_errno(sqlite3_step(s));
		sqlite3_finalize(s);
		if (rc)
			goto out_rollback;
		goto out_commit;
	}
	if (have_dst) {
		/* Replacing a job's .blend by rename is saving a new version:
		 * the job keeps its copy, the new file is a new drop. */
		rc = drop_row(st, &dst, 0);
		if (rc)
			goto out_rollback;
	}
	rc = store_prepare(st, "UPDATE qfiles SET name = ?, changed = ?, job = NULL WHERE id = ?", &s);
	if (rc)
		goto out_rollback;
	sqlite3_bind_text(s, 1, to, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, util_now_ms());
	sqlite3_bind_int64(s, 3, src.id);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	if (rc)
		goto out_rollback;
out_commit:
	store_change(st, CH_QUEUE, 0);
	return store_commit(st);

out_rollback:
	store_rollback(st);
	return rc;
}

static void fill_qerror(void *arg, sqlite3_stmt *row)
{
	struct qerror *out = arg;

	out->id = sqlite3_column_int64(row, 0);
	snprintf(out->name, sizeof(out->name), "%s.error", (const char *)sqlite3_column_text(row, 1));
	out->at = sqlite3_column_int64(row, 2);
	out->len = (size_t)sqlite3_column_int64(row, 3);
}

static int qerror_one(struct store *st, const char *sql, const char *name, int64_t id, struct qerror *out)
{
	return store_one_row(st, sql, name, id, fill_qerror, out);
}

int queue_error_lookup(struct store *st, const char *name, struct qerror *out)
{
	char base[QUEUE_NAME_MAX + 1];

	if (!ends_with(name, ".error"))
		return -ENOENT;
	snprintf(base, sizeof(base), "%.*s", (int)(strlen(name) - 6), name);
	return qerror_one(st, "SELECT id, name, at, length(CAST(error AS BLOB)) FROM drops WHERE name = ?",
			  base, 0, out);
}

int queue_error_get(struct store *st, int64_t id, struct qerror *out)
{
	return qerror_one(st, "SELECT id, name, at, length(CAST(error AS BLOB)) FROM drops WHERE id = ?",
			  NULL, id, out);
}

int queue_error_list(struct store *st, int (*fn)(void *arg, const struct qerror *e), void *arg)
{
	sqlite3_stmt *s;
	struct qerror e;
	int rc =
	    store_prepare(st, "SELECT id, name, at, length(CAST(error AS BLOB)) FROM drops ORDER BY id", &s);

	if (rc)
		return rc;
	while (sqlite3_step(s) == SQLITE_ROW) {
		fill_qerror(&e, s);
		if (fn(arg, &e))
			break;
	}
	sqlite3_finalize(s);
	return 0;
}

int queue_error_remove(struct store *st, int64_t id)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, "DELETE FROM drops WHERE id = ?", &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, id);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	if (!rc && sqlite3_changes(st->db) == 0)
		rc = -ENOENT;
	if (!rc)
		store_change(st, CH_QUEUE, 0);
	return rc;
}

int queue_error_text(struct store *st, int64_t id, char **text, size_t *len)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, "SELECT error FROM drops WHERE id = ?", &s);

	*text = NULL;
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, id);
	rc = -ENOENT;
	if (sqlite3_step(s) == SQLITE_ROW) {
		int n = sqlite3_column_bytes(s, 0);

		*text = malloc((size_t)n + 1);
		if (*text) {
			memcpy(*text, sqlite3_column_text(s, 0), (size_t)n);
			(*text)[n] = '\0';
			*len = (size_t)n;
			rc = 0;
		} else {
			rc = -ENOMEM;
		}
	}
	sqlite3_finalize(s);
	return rc;
}

int intake_is_candidate(const char *name)
{
	size_t n = strlen(name);

	if (n <= 6 || !ends_with(name, ".blend"))
		return 0;
	/* Hidden files (also ._* resource forks), editor and office temps. */
	if (name[0] == '.' || name[0] == '~' || name[0] == '#')
		return 0;
	return 1;
}

/* ---- the scan ---- */

struct drop {
	struct qfile blend, range;
	int64_t blend_size, range_size;
};

struct scan_ctx {
	struct store *st;
	struct qfile *files;
	size_t n, cap;
};

static int collect_pending(void *arg, const struct qfile *q)
{
	struct scan_ctx *c = arg;

	if (q->job)
		return 0;
	if (c->n == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 64;
		struct qfile *nf = realloc(c->files, ncap * sizeof(*nf));

		if (!nf)
			return 1;
		c->files = nf;
		c->cap = ncap;
	}
	c->files[c->n++] = *q;
	return 0;
}

static const struct qfile *find_file(const struct scan_ctx *c, const char *name)
{
	for (size_t i = 0; i < c->n; i++)
		if (!strcmp(c->files[i].name, name))
			return &c->files[i];
	return NULL;
}

static int64_t spool_size(struct store *st, int64_t id)
{
	char path[4096];
	struct stat sb;

	store_path_spool(st, id, path, sizeof(path));
	return stat(path, &sb) < 0 ? -1 : (int64_t)sb.st_size;
}

static int set_drop_error(struct store *st, const char *name, const char *text, const char *sig)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st,
			       "INSERT INTO drops(name, error, sig, at) VALUES (?1, ?2, ?3, ?4)"
			       " ON CONFLICT(name) DO UPDATE SET error = ?2, sig = ?3, at = ?4",
			       &s);

	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, text, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, sig, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, util_now_ms());
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	store_change(st, CH_QUEUE, 0);
	return rc;
}

static int drop_error_sig(struct store *st, const char *name, char *sig, size_t sz)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, "SELECT sig FROM drops WHERE name = ?", &s);

	sig[0] = '\0';
	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	rc = -ENOENT;
	if (sqlite3_step(s) == SQLITE_ROW) {
		snprintf(sig, sz, "%s", (const char *)sqlite3_column_text(s, 0));
		rc = 0;
	}
	sqlite3_finalize(s);
	return rc;
}

static int clear_drop_error(struct store *st, const char *name)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, "DELETE FROM drops WHERE name = ?", &s);

	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	if (!rc && sqlite3_changes(st->db))
		store_change(st, CH_QUEUE, 0);
	return rc;
}

/* Pick the job's name: NAME, else NAME-2, NAME-3 ... (never overwrite out/NAME). */
static int pick_job_name(struct store *st, const char *base, char *out, size_t sz)
{
	struct job_row j;

	for (int k = 1; k < 100000; k++) {
		char name[QUEUE_NAME_MAX + 16];

		if (k == 1)
			snprintf(name, sizeof(name), "%s", base);
		else
			snprintf(name, sizeof(name), "%s-%d", base, k);
		if (strlen(name) >= sz)
			return -ENAMETOOLONG;
		if (job_by_name(st, name, &j) == -ENOENT) {
			memcpy(out, name, strlen(name) + 1);
			return 0;
		}
	}
	return -EEXIST;
}

static int create_job(struct store *st, const struct drop *d, const char *base, const struct sidecar *sc,
		      const char *sidecar_text, const char *sha)
{
	char name[JOB_NAME_MAX + 1], dir[4096], sub[4200];
	sqlite3_stmt *s;
	int64_t job, now = util_now_ms();
	struct qfile b2, r2;
	int rc;

	rc = store_begin(st);
	if (rc)
		return rc;
	/* The files must be the ones that were checked: a write since then
	 * means the drop is checked again on a later scan. */
	if (queue_get(st, d->blend.id, &b2) || queue_get(st, d->range.id, &r2) ||
	    b2.changed != d->blend.changed || r2.changed != d->range.changed || b2.writers || r2.writers ||
	    b2.job || r2.job || strcmp(b2.name, d->blend.name) || strcmp(r2.name, d->range.name)) {
		rc = -EAGAIN;
		goto out_rollback;
	}
	rc = pick_job_name(st, base, name, sizeof(name));
	if (rc)
		goto out_rollback;
	rc = store_prepare(
	    st,
	    "INSERT INTO jobs(name, drop_name, blend_sha, sidecar, scene, engine, device, samples,"
	    " res_w, res_h, res_pct, format, video, fps, retries, timeout_ms, priority, budget,"
	    " nframes, created, clore_nodes, clore_gpu, clore_min_vram, clore_max_price, clore_spot)"
	    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
	    &s);
	if (rc)
		goto out_rollback;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, base, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, sha, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, sidecar_text, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, sc->scene, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, sc_engine_name(sc->engine), -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 7, sc_device_name(sc->device), -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 8, sc->samples);
	sqlite3_bind_int(s, 9, sc->res_w);
	sqlite3_bind_int(s, 10, sc->res_h);
	sqlite3_bind_int(s, 11, sc->res_pct);
	sqlite3_bind_text(s, 12, sc_format_name(sc->format), -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 13, sc->video < 0 ? sc->nframes >= 2 : sc->video);
	sqlite3_bind_double(s, 14, sc->fps);
	sqlite3_bind_int(s, 15, sc->retries);
	sqlite3_bind_int64(s, 16, sc->timeout_s * 1000);
	sqlite3_bind_int(s, 17, sc->priority);
	sqlite3_bind_double(s, 18, sc->budget);
	sqlite3_bind_int64(s, 19, (int64_t)sc->nframes);
	sqlite3_bind_int64(s, 20, now);
	sqlite3_bind_int(s, 21, sc->nodes);
	sqlite3_bind_text(s, 22, sc->gpu, -1, SQLITE_STATIC);
	sqlite3_bind_double(s, 23, sc->min_vram);
	sqlite3_bind_double(s, 24, sc->max_price);
	sqlite3_bind_int(s, 25, sc->spot);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	if (rc)
		goto out_rollback;
	job = sqlite3_last_insert_rowid(st->db);

	rc = store_prepare(st, "INSERT INTO frames(job, frame) VALUES (?, ?)", &s);
	if (rc)
		goto out_rollback;
	for (size_t i = 0; i < sc->nframes && !rc; i++) {
		sqlite3_bind_int64(s, 1, job);
		sqlite3_bind_int64(s, 2, sc->frames[i]);
		rc = store_errno(sqlite3_step(s));
		sqlite3_reset(s);
	}
	sqlite3_finalize(s);
	if (rc)
		goto out_rollback;
	rc = store_prepare(st, "UPDATE qfiles SET job = ? WHERE id IN (?, ?)", &s);
	if (rc)
		goto out_rollback;
	sqlite3_bind_int64(s, 1, job);
	sqlite3_bind_int64(s, 2, d->blend.id);
	sqlite3_bind_int64(s, 3, d->range.id);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	if (rc)
		goto out_rollback;
	store_path_job(st, job, dir, sizeof(dir));
	snprintf(sub, sizeof(sub), "%s/frames", dir);
	rc = util_mkdirs(sub);
	snprintf(sub, sizeof(sub), "%s/logs", dir);
	if (!rc)
		rc = util_mkdirs(sub);
	if (rc)
		goto out_rollback;
	clear_drop_error(st, base);
	store_event(st, job, 0, 0, "job", "accepted from queue/");
	store_change(st, CH_OUT, 0);
	store_change(st, CH_QUEUE, 0);
	return store_commit(st);

out_rollback:
	store_rollback(st);
	return rc;
}

/* Check one complete drop; returns 1 when a job was created. */
static int check_drop(struct store *st, const struct drop *d, const char *base, const char *sig)
{
	struct util_sb err = {0};
	char path[4096], blob[4096], why[512], sha[65];
	struct sidecar sc = {0};
	char *text = NULL, *perr = NULL;
	size_t len = 0;
	int rc, fd, created = 0;

	store_path_spool(st, d->range.id, path, sizeof(path));
	rc = util_read_file(path, SIDECAR_MAX_BYTES, &text, &len);
	if (rc == -EFBIG) {
		util_sb_printf(&err, "%s: the sidecar is larger than %d KiB\n", d->range.name,
			       SIDECAR_MAX_BYTES / 1024);
	} else if (rc) {
		util_sb_printf(&err, "%s: cannot read: %s\n", d->range.name, strerror(-rc));
	} else if (sidecar_parse(text, len, d->range.name, &sc, &perr)) {
		util_sb_printf(&err, "%s", perr ? perr : "sidecar: out of memory\n");
	}

	store_path_spool(st, d->blend.id, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		util_sb_printf(&err, "%s: cannot read: %s\n", d->blend.name, strerror(errno));
	} else {
		struct blend_info bi;

		if (blend_check(fd, &bi, why, sizeof(why)))
			util_sb_printf(&err, "%s: %s\n", d->blend.name, why);
		close(fd);
	}

	if (err.len || err.oom) {
		set_drop_error(st, base, err.oom ? "out of memory\n" : err.buf, sig);
		goto out;
	}
	/* Content-addressed copy: the job renders this, whatever happens to
	 * the file in queue/ later. */
	rc = util_sha256_file(path, sha);
	if (!rc) {
		struct stat sb;

		store_path_blob(st, sha, blob, sizeof(blob));
		if (stat(blob, &sb) < 0)
			rc = util_copy_file(path, blob, NULL);
	}
	if (rc) {
		snprintf(why, sizeof(why), "%s: cannot store a copy: %s\n", d->blend.name, strerror(-rc));
		set_drop_error(st, base, why, sig);
		goto out;
	}
	rc = create_job(st, d, base, &sc, text, sha);
	created = rc == 0;
	if (rc && rc != -EAGAIN) {
		snprintf(why, sizeof(why), "%s: cannot create the job: %s\n", d->blend.name, strerror(-rc));
		set_drop_error(st, base, why, sig);
	}
out:
	util_sb_free(&err);
	free(perr);
	free(text);
	sidecar_free(&sc);
	return created;
}

int intake_scan(struct store *st, int64_t quiet_ms, int64_t now)
{
	struct scan_ctx c = {.st = st};
	int created = 0, rc;
	sqlite3_stmt *s;

	rc = queue_list(st, collect_pending, &c);
	if (rc)
		goto out;
	for (size_t i = 0; i < c.n; i++) {
		const struct qfile *b = &c.files[i], *r;
		char base[QUEUE_NAME_MAX + 1], rname[QUEUE_NAME_MAX + 8], sig[160], old[160];
		struct drop d;

		if (!intake_is_candidate(b->name))
			continue;
		snprintf(base, sizeof(base), "%.*s", (int)(strlen(b->name) - 6), b->name);
		snprintf(rname, sizeof(rname), "%s.range", base);
		r = find_file(&c, rname);
		if (!r || b->writers || r->writers)
			continue;
		if (now - (b->changed > r->changed ? b->changed : r->changed) < quiet_ms)
			continue;
		d.blend = *b;
		d.range = *r;
		d.blend_size = spool_size(st, b->id);
		d.range_size = spool_size(st, r->id);
		snprintf(sig, sizeof(sig), "%lld:%lld:%lld|%lld:%lld:%lld", (long long)b->id,
			 (long long)b->changed, (long long)d.blend_size, (long long)r->id,
			 (long long)r->changed, (long long)d.range_size);
		if (!drop_error_sig(st, base, old, sizeof(old)) && !strcmp(old, sig))
			continue; /* refused already, and unchanged since */
		created += check_drop(st, &d, base, sig);
	}
	/* An explanation outlives neither of the files it explains. */
	rc = store_prepare(st,
			   "DELETE FROM drops WHERE NOT EXISTS (SELECT 1 FROM qfiles q"
			   " WHERE q.name = drops.name || '.blend' AND q.job IS NULL)"
			   " OR NOT EXISTS (SELECT 1 FROM qfiles q"
			   " WHERE q.name = drops.name || '.range' AND q.job IS NULL)",
			   &s);
	if (!rc) {
		sqlite3_step(s);
		if (sqlite3_changes(st->db))
			store_change(st, CH_QUEUE, 0);
		sqlite3_finalize(s);
	}
out:
	free(c.files);
	return rc ? rc : created;
}

int intake_release_inputs(struct store *st, int64_t job)
{
	sqlite3_stmt *s;
	int64_t ids[2];
	int n = 0, rc;

	rc = store_prepare(st, "SELECT id FROM qfiles WHERE job = ? LIMIT 2", &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	while (n < 2 && sqlite3_step(s) == SQLITE_ROW)
		ids[n++] = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	for (int i = 0; i < n; i++) {
		char path[4096];

		rc = store_prepare(st, "DELETE FROM qfiles WHERE id = ?", &s);
		if (rc)
			return rc;
		sqlite3_bind_int64(s, 1, ids[i]);
		sqlite3_step(s);
		sqlite3_finalize(s);
		store_path_spool(st, ids[i], path, sizeof(path));
		unlink(path);
	}
	if (n)
		store_change(st, CH_QUEUE, 0);
	return 0;
}
