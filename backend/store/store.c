/*
 * store: the connection -- opening, pragmas, the schema and its
 * migrations, transactions, the prepared-statement cache, the one
 * conversion of SQLite codes to -errno -- and the small tables every
 * module shares: the change feed, events and meta; plus the layout of the
 * state directory.  The table families live beside it: frames.c (the
 * frame machine), jobs_rows.c, queue_rows.c, usage_rows.c,
 * status_rows.c, hostkeys.c.
 */
#include "store/store.h"
#include "store/nodes.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int store_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE: return 0;
	case SQLITE_BUSY:
	case SQLITE_LOCKED: return -EBUSY;
	case SQLITE_NOMEM: return -ENOMEM;
	case SQLITE_FULL: return -ENOSPC;
	case SQLITE_READONLY: return -EROFS;
	case SQLITE_CONSTRAINT: return -EEXIST;
	case SQLITE_CANTOPEN: return -ENOENT;
	case SQLITE_PERM:
	case SQLITE_AUTH: return -EACCES;
	default: return -EIO;
	}
}

int store_prepare(struct store *st, const char *sql, sqlite3_stmt **stmt)
{
	int rc = sqlite3_prepare_v2(st->db, sql, -1, stmt, NULL);

	if (rc != SQLITE_OK) {
		fprintf(stderr, "renderfs: sql error: %s in: %.120s\n", sqlite3_errmsg(st->db), sql);
		return store_errno(rc);
	}
	return 0;
}

int store_cached(struct store *st, const char *sql, sqlite3_stmt **stmt)
{
	int free_slot = -1, rc;

	for (int i = 0; i < STORE_CACHE_SLOTS; i++) {
		if (st->cache[i].sql == sql) {
			*stmt = st->cache[i].stmt;
			return 0;
		}
		if (!st->cache[i].sql && free_slot < 0)
			free_slot = i;
	}
	rc = sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, NULL);
	if (rc != SQLITE_OK) {
		fprintf(stderr, "renderfs: sql error: %s in: %.120s\n", sqlite3_errmsg(st->db), sql);
		return store_errno(rc);
	}
	if (free_slot < 0) {
		/* Full: the oldest entry makes room (the cache is small and
		 * its users few, so this is rare). */
		sqlite3_finalize(st->cache[0].stmt);
		memmove(&st->cache[0], &st->cache[1], sizeof(st->cache[0]) * (STORE_CACHE_SLOTS - 1));
		free_slot = STORE_CACHE_SLOTS - 1;
	}
	st->cache[free_slot].sql = sql;
	st->cache[free_slot].stmt = *stmt;
	return 0;
}

void store_release(sqlite3_stmt *stmt)
{
	if (!stmt)
		return;
	sqlite3_reset(stmt);
	sqlite3_clear_bindings(stmt);
}

int store_exec(struct store *st, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(st->db, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK) {
		fprintf(stderr, "renderfs: sql error: %s\n", msg ? msg : sqlite3_errmsg(st->db));
		sqlite3_free(msg);
		return store_errno(rc);
	}
	return 0;
}

int store_begin(struct store *st)
{
	return store_exec(st, "BEGIN IMMEDIATE");
}

int store_commit(struct store *st)
{
	return store_exec(st, "COMMIT");
}

int store_in_transaction(struct store *st)
{
	return !sqlite3_get_autocommit(st->db);
}

int store_read_begin(struct store *st)
{
	return store_exec(st, "BEGIN");
}

void store_read_end(struct store *st)
{
	store_exec(st, "COMMIT");
}

void store_rollback(struct store *st)
{
	if (!sqlite3_get_autocommit(st->db))
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

/*
 * Migrations: element i takes user_version i to i+1.  Never edit a step
 * that has shipped; add one.
 */
static const char *const migrations[] = {
    /* 0 -> 1: the first schema */
    "CREATE TABLE jobs ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL,"      /* the out/ directory name */
    "  drop_name TEXT NOT NULL," /* NAME of queue/NAME.blend */
    "  state TEXT NOT NULL DEFAULT 'waiting',"
    "  blend_sha TEXT NOT NULL,"
    "  sidecar TEXT NOT NULL," /* the sidecar text as dropped */
    "  scene TEXT NOT NULL DEFAULT '',"
    "  engine TEXT NOT NULL DEFAULT '',"
    "  device TEXT NOT NULL DEFAULT 'auto',"
    "  samples INTEGER NOT NULL DEFAULT 0,"
    "  res_w INTEGER NOT NULL DEFAULT 0, res_h INTEGER NOT NULL DEFAULT 0,"
    "  res_pct INTEGER NOT NULL DEFAULT 0,"
    "  format TEXT NOT NULL DEFAULT 'png',"
    "  video INTEGER NOT NULL DEFAULT 1,"
    "  fps REAL NOT NULL DEFAULT 0,"       /* 0: the scene's */
    "  scene_fps REAL NOT NULL DEFAULT 0," /* reported by a worker */
    "  retries INTEGER NOT NULL DEFAULT 3,"
    "  timeout_ms INTEGER NOT NULL DEFAULT 0,"
    "  priority INTEGER NOT NULL DEFAULT 0,"
    "  budget REAL NOT NULL DEFAULT -1,"
    "  nframes INTEGER NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  started INTEGER, ended INTEGER,"
    "  paused_from TEXT,"
    "  error TEXT,"
    "  removed INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE UNIQUE INDEX jobs_name ON jobs(name) WHERE removed = 0;"
    "CREATE TABLE nodes ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  provider TEXT NOT NULL,"
    "  address TEXT NOT NULL DEFAULT '',"
    "  gpus INTEGER NOT NULL DEFAULT 0,"
    "  gpu_names TEXT NOT NULL DEFAULT '',"
    "  device TEXT NOT NULL DEFAULT '',"
    "  device_why TEXT NOT NULL DEFAULT '',"
    "  blender TEXT NOT NULL DEFAULT '',"
    "  slots INTEGER NOT NULL DEFAULT 1,"
    "  state TEXT NOT NULL DEFAULT 'idle',"
    "  price_h REAL NOT NULL DEFAULT 0,"
    "  done INTEGER NOT NULL DEFAULT 0,"
    "  failed INTEGER NOT NULL DEFAULT 0,"
    "  error TEXT,"
    "  removed INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE TABLE frames ("
    "  id INTEGER PRIMARY KEY,"
    "  job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
    "  frame INTEGER NOT NULL,"
    "  state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN"
    "    ('queued','leased','rendering','rendered','done','failed','cancelled')),"
    "  lease INTEGER NOT NULL DEFAULT 0,"
    "  node INTEGER REFERENCES nodes(id),"
    "  slot INTEGER,"
    "  lease_until INTEGER,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  interrupts INTEGER NOT NULL DEFAULT 0,"
    "  started INTEGER, progress_at INTEGER,"
    "  secs REAL, size INTEGER, mtime INTEGER,"
    "  error TEXT,"
    "  logged INTEGER NOT NULL DEFAULT 0," /* a log file exists */
    "  removed INTEGER NOT NULL DEFAULT 0,"
    "  UNIQUE (job, frame)"
    ");"
    "CREATE INDEX frames_by_state ON frames(state, job, frame);"
    "CREATE TABLE qfiles (" /* the files in queue/ */
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  job INTEGER REFERENCES jobs(id)," /* set once the drop became a job */
    "  writers INTEGER NOT NULL DEFAULT 0,"
    "  changed INTEGER NOT NULL," /* last create/close/rename/truncate, ms */
    "  mode INTEGER NOT NULL DEFAULT 420"
    ");"
    "CREATE TABLE drops (" /* refused drops: queue/NAME.error */
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  error TEXT NOT NULL,"
    "  sig TEXT NOT NULL," /* the inputs' state the error is about */
    "  at INTEGER NOT NULL"
    ");"
    "CREATE TABLE events ("
    "  id INTEGER PRIMARY KEY,"
    "  at INTEGER NOT NULL,"
    "  job INTEGER, node INTEGER, frame INTEGER,"
    "  kind TEXT NOT NULL,"
    "  msg TEXT NOT NULL"
    ");"
    "CREATE TABLE blocklist (" /* nodes that failed a job's frames */
    "  node INTEGER NOT NULL,"
    "  job INTEGER NOT NULL,"
    "  failures INTEGER NOT NULL DEFAULT 0,"
    "  until INTEGER NOT NULL DEFAULT 0," /* blocked before this time, ms */
    "  reason TEXT,"
    "  PRIMARY KEY (node, job)"
    ");"
    "CREATE TABLE changes ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  kind INTEGER NOT NULL,"
    "  id INTEGER NOT NULL"
    ");",
    /* 1 -> 2: SSH host keys pinned on first contact */
    "CREATE TABLE hostkeys ("
    "  node TEXT PRIMARY KEY,"
    "  fingerprint TEXT NOT NULL,"
    "  first_seen INTEGER NOT NULL"
    ");"
    "CREATE TABLE meta ("
    "  key TEXT PRIMARY KEY,"
    "  value TEXT NOT NULL"
    ");",
    /* 2 -> 3: a second slot may race the holder on a frame at the tail */
    "ALTER TABLE frames ADD COLUMN dup_node INTEGER;",
    /* 3 -> 4: rented nodes (clore), slot time per node and job, and the
     * jobs' own [clore] settings */
    "CREATE TABLE rentals ("
    "  id INTEGER PRIMARY KEY,"
    "  server INTEGER NOT NULL,"    /* the marketplace server id (si) */
    "  order_id INTEGER,"           /* NULL until found in my_orders */
    "  intent_at INTEGER NOT NULL," /* ms, written before create_order */
    "  state TEXT NOT NULL DEFAULT 'intent' CHECK (state IN"
    "    ('intent','booting','ready','releasing','ended','void')),"
    "  job INTEGER," /* the job it was rented for */
    "  spot INTEGER NOT NULL DEFAULT 0,"
    "  currency TEXT NOT NULL DEFAULT '',"
    "  price_day REAL NOT NULL DEFAULT 0," /* per day, in currency */
    "  usd_rate REAL NOT NULL DEFAULT 0,"  /* USD per unit of currency */
    "  fee REAL NOT NULL DEFAULT 0,"       /* creation fee, in currency */
    "  gpu TEXT NOT NULL DEFAULT '',"
    "  gpus INTEGER NOT NULL DEFAULT 0,"
    "  score REAL NOT NULL DEFAULT 0,"
    "  node INTEGER,"    /* nodes.id once it came up */
    "  created INTEGER," /* ms: the order's ct */
    "  online_at INTEGER, ended_at INTEGER,"
    "  settled REAL," /* the final cost in USD, from Clore's own figures */
    "  end_reason TEXT"
    ");"
    "CREATE UNIQUE INDEX rentals_order ON rentals(order_id) WHERE order_id IS NOT NULL;"
    "CREATE TABLE usage (" /* slot time a job's frames used on a node */
    "  node INTEGER NOT NULL,"
    "  job INTEGER NOT NULL,"
    "  ms INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (node, job)"
    ");"
    "ALTER TABLE nodes ADD COLUMN rental INTEGER;"
    "ALTER TABLE jobs ADD COLUMN clore_nodes INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs ADD COLUMN clore_gpu TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE jobs ADD COLUMN clore_min_vram REAL NOT NULL DEFAULT -1;"
    "ALTER TABLE jobs ADD COLUMN clore_max_price REAL NOT NULL DEFAULT -1;"
    "ALTER TABLE jobs ADD COLUMN clore_spot INTEGER NOT NULL DEFAULT -1;"
    "ALTER TABLE jobs ADD COLUMN over_budget INTEGER NOT NULL DEFAULT 0;",
    /* 4 -> 5: a job's status counts its frames from the index alone */
    "CREATE INDEX frames_counts ON frames(job, state, node, secs, interrupts, attempts);",
    /* 5 -> 6: a frame's render progress inside the frame (0..1, from the
     * worker; NULL until it reports), and the pixel size renderfs expects of
     * the job's frames, from its sidecar and its scene (0 = not worked out
     * yet, -1 = cannot be) */
    "ALTER TABLE frames ADD COLUMN progress REAL;"
    "ALTER TABLE jobs ADD COLUMN out_w INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs ADD COLUMN out_h INTEGER NOT NULL DEFAULT 0;",
    /* 6 -> 7: what intake read from the .blend (status lines "key: value",
     * each value escaped), and the files it uses that the drop lacks
     * (one per line, escaped) when the sidecar says missing = ignore */
    "ALTER TABLE jobs ADD COLUMN facts TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE jobs ADD COLUMN missing_files TEXT NOT NULL DEFAULT '';",
    /* 7 -> 8: owners on a shared mount (NULL: from before owners were
     * kept, shown as the daemon's user); when a directory last changed,
     * for its mtime (written by store_change); an ended job keeps no
     * "waiting for a node" line */
    "ALTER TABLE qfiles ADD COLUMN uid INTEGER;"
    "ALTER TABLE qfiles ADD COLUMN gid INTEGER;"
    "ALTER TABLE drops ADD COLUMN uid INTEGER;"
    "ALTER TABLE drops ADD COLUMN gid INTEGER;"
    "ALTER TABLE jobs ADD COLUMN uid INTEGER;"
    "ALTER TABLE jobs ADD COLUMN gid INTEGER;"
    "CREATE TABLE dirtimes ("
    "  kind INTEGER NOT NULL," /* enum change_kind */
    "  id INTEGER NOT NULL,"
    "  at INTEGER NOT NULL," /* ms */
    "  PRIMARY KEY (kind, id)"
    ") WITHOUT ROWID;"
    "UPDATE jobs SET error = NULL WHERE state IN ('done','failed','cancelled')"
    "  AND error LIKE 'waiting for a node%';",
    /* 8 -> 9: the cluster scheduler's job holding each slot (Slurm) */
    "CREATE TABLE slot_jobs ("
    "  node INTEGER NOT NULL,"
    "  slot INTEGER NOT NULL,"
    "  job_id TEXT NOT NULL,"
    "  PRIMARY KEY (node, slot)"
    ");",
};

static int migrate(struct store *st)
{
	sqlite3_stmt *s;
	int version = 0, rc;

	rc = store_prepare(st, "PRAGMA user_version", &s);
	if (rc)
		return rc;
	if (sqlite3_step(s) == SQLITE_ROW)
		version = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	if (version > (int)ARRAY_SIZE(migrations)) {
		fprintf(
		    stderr,
		    "renderfs: the state database is from a newer renderfs (schema %d, this one knows %zu)\n",
		    version, ARRAY_SIZE(migrations));
		return -EPROTO;
	}
	for (; version < (int)ARRAY_SIZE(migrations); version++) {
		char bump[64];

		rc = store_begin(st);
		if (rc)
			return rc;
		rc = store_exec(st, migrations[version]);
		snprintf(bump, sizeof(bump), "PRAGMA user_version = %d", version + 1);
		if (!rc)
			rc = store_exec(st, bump);
		if (rc) {
			store_rollback(st);
			return rc;
		}
		rc = store_commit(st);
		if (rc)
			return rc;
	}
	return 0;
}

int store_open(const char *dir, struct store **out)
{
	struct store *st;
	char path[4096];
	int rc;

	*out = NULL;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->dir = strdup(dir);
	if (!st->dir) {
		rc = -ENOMEM;
		goto out_free;
	}
	snprintf(path, sizeof(path), "%s/renderfs.db", dir);
	rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK) {
		rc = store_errno(rc);
		goto out_close_db;
	}
	sqlite3_busy_timeout(st->db, 10000);
	rc = store_exec(st, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
			    "PRAGMA foreign_keys = ON;");
	if (rc)
		goto out_close_db;
	rc = migrate(st);
	if (rc)
		goto out_close_db;
	*out = st;
	return 0;

out_close_db:
	sqlite3_close(st->db);
	free(st->dir);
out_free:
	free(st);
	return rc;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	for (int i = 0; i < STORE_CACHE_SLOTS; i++)
		sqlite3_finalize(st->cache[i].stmt);
	sqlite3_close(st->db);
	free(st->dir);
	free(st);
}

int store_one_row(struct store *st, const char *sql, const char *key, int64_t id,
		  void (*fill)(void *arg, sqlite3_stmt *row), void *arg)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, sql, &s);

	if (rc)
		return rc;
	if (key)
		sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	else
		sqlite3_bind_int64(s, 1, id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		fill(arg, s);
		rc = 0;
	} else {
		rc = rc == SQLITE_DONE ? -ENOENT : store_errno(rc);
	}
	sqlite3_finalize(s);
	return rc;
}

int store_meta_set(struct store *st, const char *key, const char *value)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st,
			       "INSERT INTO meta(key, value) VALUES (?1, ?2)"
			       " ON CONFLICT(key) DO UPDATE SET value = ?2",
			       &s);

	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	return rc;
}

int store_meta_get(struct store *st, const char *key, char *out, size_t sz)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, "SELECT value FROM meta WHERE key = ?", &s);

	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	rc = -ENOENT;
	if (sqlite3_step(s) == SQLITE_ROW) {
		snprintf(out, sz, "%s", (const char *)sqlite3_column_text(s, 0));
		rc = 0;
	}
	sqlite3_finalize(s);
	return rc;
}

int store_event(struct store *st, int64_t job, int64_t node, int64_t frame, const char *kind, const char *msg)
{
	sqlite3_stmt *s;
	int rc;

	rc = store_prepare(st,
			   "INSERT INTO events(at, job, node, frame, kind, msg) "
			   "VALUES (?, ?, ?, ?, ?, ?)",
			   &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, util_now_ms());
	if (job)
		sqlite3_bind_int64(s, 2, job);
	if (node)
		sqlite3_bind_int64(s, 3, node);
	if (frame)
		sqlite3_bind_int64(s, 4, frame);
	sqlite3_bind_text(s, 5, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, msg, -1, SQLITE_STATIC);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	return rc;
}

/* The directory a change touched, as dirtimes keys it: a job's new state
 * is a change of out/JOB; a node's change is one of nodes/ as well. */
static int dirtime_touch(struct store *st, int kind, int64_t id, int64_t now)
{
	sqlite3_stmt *s;
	int rc;

	rc = store_prepare(st,
			   "INSERT INTO dirtimes(kind, id, at) VALUES (?1, ?2, ?3)"
			   " ON CONFLICT(kind, id) DO UPDATE SET at = max(at, ?3)",
			   &s);
	if (rc)
		return rc;
	sqlite3_bind_int(s, 1, kind);
	sqlite3_bind_int64(s, 2, id);
	sqlite3_bind_int64(s, 3, now);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	return rc;
}

int store_change(struct store *st, enum change_kind kind, int64_t id)
{
	int64_t now = util_now_ms();
	sqlite3_stmt *s;
	int rc;

	rc = store_prepare(st, "INSERT INTO changes(kind, id) VALUES (?, ?)", &s);
	if (rc)
		return rc;
	sqlite3_bind_int(s, 1, kind);
	sqlite3_bind_int64(s, 2, id);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	if (rc)
		return rc;
	rc = dirtime_touch(st, kind == CH_JOBSTATE ? CH_JOBDIR : (int)kind, id, now);
	if (!rc && kind == CH_NODES && id)
		rc = dirtime_touch(st, CH_NODES, 0, now);
	return rc;
}

int store_dir_time(struct store *st, enum change_kind kind, int64_t id, int64_t *at)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, "SELECT at FROM dirtimes WHERE kind = ? AND id = ?", &s);

	*at = 0;
	if (rc)
		return rc;
	sqlite3_bind_int(s, 1, kind);
	sqlite3_bind_int64(s, 2, id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*at = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : store_errno(rc);
}

int store_changes_head(struct store *st, int64_t *seq)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, "SELECT coalesce(max(seq), 0) FROM changes", &s);

	if (rc)
		return rc;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*seq = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return rc == SQLITE_ROW ? 0 : store_errno(rc);
}

int store_changes_since(struct store *st, int64_t *seq, void (*fn)(void *arg, int kind, int64_t id),
			void *arg)
{
	sqlite3_stmt *s;
	int rc;

	rc = store_prepare(st, "SELECT seq, kind, id FROM changes WHERE seq > ? ORDER BY seq LIMIT 1000", &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, *seq);
	while (sqlite3_step(s) == SQLITE_ROW) {
		*seq = sqlite3_column_int64(s, 0);
		fn(arg, sqlite3_column_int(s, 1), sqlite3_column_int64(s, 2));
	}
	sqlite3_finalize(s);
	/* The feed only needs to reach readers that are running now. */
	rc = store_prepare(st, "DELETE FROM changes WHERE seq < ? - 10000", &s);
	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, *seq);
	sqlite3_step(s);
	sqlite3_finalize(s);
	return 0;
}

int store_recover(struct store *st, int64_t now)
{
	int rc, n;

	rc = store_begin(st);
	if (rc)
		return rc;
	n = store_frames_requeue_inflight(st);
	if (n < 0) {
		rc = n;
		goto out_rollback;
	}
	rc = store_nodes_all_offline(st); /* the node machine's edge: any -> offline */
	if (rc)
		goto out_rollback;
	rc = store_exec(st, "UPDATE qfiles SET writers = 0;"
			    "DELETE FROM changes;");
	if (rc)
		goto out_rollback;
	if (n > 0) {
		char msg[96];

		snprintf(msg, sizeof(msg), "%d frames in flight at the last stop were queued again", n);
		store_event(st, 0, 0, 0, "recover", msg);
	}
	(void)now;
	rc = store_commit(st);
	return rc ? rc : n;

out_rollback:
	store_rollback(st);
	return rc;
}

void store_path_job(const struct store *st, int64_t job, char *buf, size_t sz)
{
	snprintf(buf, sz, "%s/jobs/%lld", st->dir, (long long)job);
}

void frame_file_name(uint32_t frame, const char *ext, char *buf, size_t sz)
{
	snprintf(buf, sz, "frame_%04u%s", frame, ext);
}

void store_path_frame(const struct store *st, int64_t job, uint32_t frame, const char *ext, char *buf,
		      size_t sz)
{
	snprintf(buf, sz, "%s/jobs/%lld/frames/frame_%04u%s", st->dir, (long long)job, frame, ext);
}

void store_path_log(const struct store *st, int64_t job, uint32_t frame, char *buf, size_t sz)
{
	snprintf(buf, sz, "%s/jobs/%lld/logs/frame_%04u.log", st->dir, (long long)job, frame);
}

void store_path_video(const struct store *st, int64_t job, char *buf, size_t sz)
{
	snprintf(buf, sz, "%s/jobs/%lld/video.mp4", st->dir, (long long)job);
}

void store_path_spool(const struct store *st, int64_t qfile, char *buf, size_t sz)
{
	snprintf(buf, sz, "%s/spool/%lld", st->dir, (long long)qfile);
}

void store_path_blob(const struct store *st, const char *sha, char *buf, size_t sz)
{
	snprintf(buf, sz, "%s/blobs/%s.blend", st->dir, sha);
}
