/*
 * queue_rows: see queue_rows.h.
 */
#include "store/queue_rows.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n > m && !strcmp(s + n - m, suffix);
}

static void row_to_qfile(sqlite3_stmt *s, struct qfile *q)
{
	q->id = sqlite3_column_int64(s, 0);
	snprintf(q->name, sizeof(q->name), "%s", (const char *)sqlite3_column_text(s, 1));
	q->job = sqlite3_column_int64(s, 2);
	q->writers = sqlite3_column_int(s, 3);
	q->changed = sqlite3_column_int64(s, 4);
	q->mode = (uint32_t)sqlite3_column_int(s, 5);
	q->uid = sqlite3_column_int64(s, 6);
	q->gid = sqlite3_column_int64(s, 7);
}

#define QCOLS "id, name, coalesce(job, 0), writers, changed, mode, coalesce(uid, -1), coalesce(gid, -1)"

static void fill_qfile(void *arg, sqlite3_stmt *row)
{
	row_to_qfile(row, arg);
}

static int queue_one(struct store *st, const char *sql, const char *name, int64_t id, struct qfile *out)
{
	return store_one_row(st, sql, name, id, fill_qfile, out);
}

/* Step an UPDATE or DELETE of one row and finalize it: 0, -ENOENT when it
 * touched no row, or -errno; with announce, a change of queue/ is
 * recorded for the notifier. */
static int step_one_row(struct store *st, sqlite3_stmt *s, int announce)
{
	int rc = store_errno(sqlite3_step(s));

	sqlite3_finalize(s);
	if (!rc && sqlite3_changes(st->db) == 0)
		rc = -ENOENT;
	if (!rc && announce)
		store_change(st, CH_QUEUE, 0);
	return rc;
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

static int queue_update(struct store *st, const char *sql, int64_t id, int64_t v)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, sql, &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, v);
	sqlite3_bind_int64(s, 2, util_now_ms());
	sqlite3_bind_int64(s, 3, id);
	return step_one_row(st, s, 0);
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

int queue_chown(struct store *st, int64_t id, int64_t uid, int64_t gid)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st,
			       "UPDATE qfiles SET uid = CASE WHEN ?1 < 0 THEN uid ELSE ?1 END,"
			       " gid = CASE WHEN ?2 < 0 THEN gid ELSE ?2 END WHERE id = ?3",
			       &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, uid);
	sqlite3_bind_int64(s, 2, gid);
	sqlite3_bind_int64(s, 3, id);
	return step_one_row(st, s, 1);
}

static void fill_qerror(void *arg, sqlite3_stmt *row)
{
	struct qerror *out = arg;

	out->id = sqlite3_column_int64(row, 0);
	snprintf(out->name, sizeof(out->name), "%s.error", (const char *)sqlite3_column_text(row, 1));
	out->at = sqlite3_column_int64(row, 2);
	out->len = (size_t)sqlite3_column_int64(row, 3);
	out->uid = sqlite3_column_int64(row, 4);
	out->gid = sqlite3_column_int64(row, 5);
}

#define ECOLS "id, name, at, length(CAST(error AS BLOB)), coalesce(uid, -1), coalesce(gid, -1)"

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
	return qerror_one(st, "SELECT " ECOLS " FROM drops WHERE name = ?", base, 0, out);
}

int queue_error_get(struct store *st, int64_t id, struct qerror *out)
{
	return qerror_one(st, "SELECT " ECOLS " FROM drops WHERE id = ?", NULL, id, out);
}

int queue_error_list(struct store *st, int (*fn)(void *arg, const struct qerror *e), void *arg)
{
	sqlite3_stmt *s;
	struct qerror e;
	int rc = store_prepare(st, "SELECT " ECOLS " FROM drops ORDER BY id", &s);

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
	return step_one_row(st, s, 1);
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

/* ---- the primitives intake builds on ---- */

int store_qfile_create(struct store *st, const char *name, uint32_t mode, int64_t uid, int64_t gid,
		       int64_t now, struct qfile *out)
{
	char path[4096];
	sqlite3_stmt *s;
	int64_t id;
	int rc, fd;

	rc = store_begin(st);
	if (rc)
		return rc;
	rc = store_prepare(
	    st,
	    "INSERT INTO qfiles(name, changed, mode, uid, gid) VALUES"
	    " (?, ?, ?, CASE WHEN ?4 < 0 THEN NULL ELSE ?4 END, CASE WHEN ?5 < 0 THEN NULL ELSE ?5 END)",
	    &s);
	if (rc)
		goto out_rollback;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, now);
	sqlite3_bind_int(s, 3, (int)(mode & 07777));
	sqlite3_bind_int64(s, 4, uid);
	sqlite3_bind_int64(s, 5, gid);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		rc = store_errno(rc); /* a name taken is SQLITE_CONSTRAINT: -EEXIST */
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

int store_qfile_delete(struct store *st, int64_t id)
{
	char path[4096];
	sqlite3_stmt *s;
	int rc = store_prepare(st, "DELETE FROM qfiles WHERE id = ?", &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, id);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	if (rc)
		return rc;
	store_path_spool(st, id, path, sizeof(path));
	unlink(path);
	return 0;
}

int store_qfile_rename(struct store *st, int64_t id, const char *to, int64_t now)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, "UPDATE qfiles SET name = ?, changed = ?, job = NULL WHERE id = ?", &s);

	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, to, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, now);
	sqlite3_bind_int64(s, 3, id);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	return rc;
}

int store_qfile_exchange(struct store *st, int64_t a, const char *a_to, int64_t b, const char *b_to,
			 int64_t now)
{
	sqlite3_stmt *s;
	int rc;

	/* A UNIQUE column cannot swap in one statement on every SQLite:
	 * go through a name no file can have ('/' is never in a name). */
	rc = store_prepare(st, "UPDATE qfiles SET name = '/' || id WHERE id IN (?1, ?2)", &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, a);
	sqlite3_bind_int64(s, 2, b);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	if (rc)
		return rc;
	rc = store_prepare(st,
			   "UPDATE qfiles SET name = CASE id WHEN ?1 THEN ?3 ELSE ?4 END,"
			   " changed = ?5, job = NULL WHERE id IN (?1, ?2)",
			   &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, a);
	sqlite3_bind_int64(s, 2, b);
	sqlite3_bind_text(s, 3, a_to, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, b_to, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, now);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	return rc;
}

int store_qfile_claim(struct store *st, int64_t job, int64_t blend, int64_t range)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, "UPDATE qfiles SET job = ?1 WHERE id IN (?2, ?3)", &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	sqlite3_bind_int64(s, 2, blend);
	sqlite3_bind_int64(s, 3, range);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	if (rc)
		return rc;
	/* The job belongs to whoever dropped its .blend. */
	rc = store_prepare(st,
			   "UPDATE jobs SET (uid, gid) = (SELECT uid, gid FROM qfiles WHERE id = ?2)"
			   " WHERE id = ?1",
			   &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, job);
	sqlite3_bind_int64(s, 2, blend);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	return rc;
}

int store_release_inputs(struct store *st, int64_t job)
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
		rc = store_qfile_delete(st, ids[i]);
		if (rc)
			return rc;
	}
	if (n)
		store_change(st, CH_QUEUE, 0);
	return 0;
}

int store_drop_set(struct store *st, const char *name, const char *text, const char *sig, int64_t now)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st,
			       "INSERT INTO drops(name, error, sig, at, uid, gid) SELECT ?1, ?2, ?3, ?4,"
			       " (SELECT uid FROM qfiles WHERE name = ?1 || '.blend'),"
			       " (SELECT gid FROM qfiles WHERE name = ?1 || '.blend') WHERE 1"
			       " ON CONFLICT(name) DO UPDATE SET error = ?2, sig = ?3, at = ?4,"
			       " uid = excluded.uid, gid = excluded.gid",
			       &s);

	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, text, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, sig, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, now);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	store_change(st, CH_QUEUE, 0);
	return rc;
}

int store_drop_sig(struct store *st, const char *name, char *sig, size_t sz)
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

int store_drop_clear(struct store *st, const char *name)
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

int store_drops_prune(struct store *st)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st,
			       "DELETE FROM drops WHERE NOT EXISTS (SELECT 1 FROM qfiles q"
			       " WHERE q.name = drops.name || '.blend' AND q.job IS NULL)"
			       " OR NOT EXISTS (SELECT 1 FROM qfiles q"
			       " WHERE q.name = drops.name || '.range' AND q.job IS NULL)",
			       &s);

	if (rc)
		return rc;
	sqlite3_step(s);
	if (sqlite3_changes(st->db))
		store_change(st, CH_QUEUE, 0);
	sqlite3_finalize(s);
	return 0;
}
