/*
 * intake: what queue/ means -- names, renames, removals that cancel -- and
 * the scan that turns complete drops into jobs; the rows and spool files
 * themselves are store/queue_rows.c's.  The scan copies the .blend into the content-addressed
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

static int name_ok(const char *name)
{
	size_t n = strlen(name);

	return n > 0 && n <= QUEUE_NAME_MAX && !strchr(name, '/') && strcmp(name, ".") && strcmp(name, "..");
}

int queue_create_as(struct store *st, const char *name, uint32_t mode, int64_t uid, int64_t gid,
		    struct qfile *out)
{
	if (!name_ok(name))
		return strlen(name) > QUEUE_NAME_MAX ? -ENAMETOOLONG : -EINVAL;
	return store_qfile_create(st, name, mode, uid, gid, util_now_ms(), out);
}

int queue_create(struct store *st, const char *name, uint32_t mode, struct qfile *out)
{
	return queue_create_as(st, name, mode, -1, -1, out);
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
	int rc;

	if (cancel && q->job && ends_with(q->name, ".blend")) {
		struct job_row j;

		if (!job_get(st, q->job, &j) && job_state_active(j.state)) {
			rc = job_cancel(st, q->job, "cancelled: its .blend was removed from queue/");
			if (rc && rc != -ESTALE)
				return rc;
		}
	}
	return store_qfile_delete(st, q->id);
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
		rc = store_qfile_exchange(st, src.id, to, dst.id, from, util_now_ms());
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
	rc = store_qfile_rename(st, src.id, to, util_now_ms());
	if (rc)
		goto out_rollback;
out_commit:
	store_change(st, CH_QUEUE, 0);
	return store_commit(st);

out_rollback:
	store_rollback(st);
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
	struct job_insert ji;
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
	ji.name = name;
	ji.drop_name = base;
	ji.blend_sha = sha;
	ji.sidecar_text = sidecar_text;
	ji.sc = sc;
	ji.video = sc->video < 0 ? sc->nframes >= 2 : sc->video;
	ji.now = now;
	rc = store_job_insert(st, &ji, &job);
	if (!rc)
		rc = store_qfile_claim(st, job, d->blend.id, d->range.id);
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
	store_drop_clear(st, base);
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
	/* The names as NAME.error shows them: a name holding a newline must
	 * not forge a line there. */
	char rname[4 * QUEUE_NAME_MAX + 8], bname[4 * QUEUE_NAME_MAX + 8];

	util_clean_line(rname, sizeof(rname), d->range.name);
	util_clean_line(bname, sizeof(bname), d->blend.name);

	store_path_spool(st, d->range.id, path, sizeof(path));
	rc = util_read_file(path, SIDECAR_MAX_BYTES, &text, &len);
	if (rc == -EFBIG) {
		util_sb_printf(&err, "%s: the sidecar is larger than %d KiB\n", rname,
			       SIDECAR_MAX_BYTES / 1024);
	} else if (rc) {
		util_sb_printf(&err, "%s: cannot read: %s\n", rname, strerror(-rc));
	} else if (sidecar_parse(text, len, d->range.name, &sc, &perr)) {
		util_sb_printf(&err, "%s", perr ? perr : "sidecar: out of memory\n");
	}

	store_path_spool(st, d->blend.id, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		util_sb_printf(&err, "%s: cannot read: %s\n", bname, strerror(errno));
	} else {
		struct blend_info bi;

		if (blend_check(fd, &bi, why, sizeof(why)))
			util_sb_printf(&err, "%s: %s\n", bname, why);
		close(fd);
	}

	if (err.len || err.oom) {
		store_drop_set(st, base, err.oom ? "out of memory\n" : err.buf, sig, util_now_ms());
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
		snprintf(why, sizeof(why), "%s: cannot store a copy: %s\n", bname, strerror(-rc));
		store_drop_set(st, base, why, sig, util_now_ms());
		goto out;
	}
	rc = create_job(st, d, base, &sc, text, sha);
	created = rc == 0;
	if (rc && rc != -EAGAIN) {
		snprintf(why, sizeof(why), "%s: cannot create the job: %s\n", bname, strerror(-rc));
		store_drop_set(st, base, why, sig, util_now_ms());
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
		if (!store_drop_sig(st, base, old, sizeof(old)) && !strcmp(old, sig))
			continue; /* refused already, and unchanged since */
		created += check_drop(st, &d, base, sig);
	}
	/* An explanation outlives neither of the files it explains. */
	rc = store_drops_prune(st);
out:
	free(c.files);
	return rc ? rc : created;
}
