/*
 * intake: what queue/ means -- names, renames, removals that cancel -- and
 * the scan that turns complete drops into jobs; the rows and spool files
 * themselves are store/queue_rows.c's.  The scan copies the .blend into the content-addressed
 * blob store before it commits the job, so the job never depends on a file
 * the user may rewrite or remove later.
 */
#include "jobs/intake.h"
#include "core/blendfile.h"
#include "core/filecheck.h"
#include "jobs/jobs.h"
#include "core/sidecar.h"
#include "core/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
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
		      const char *sidecar_text, const char *sha, const char *facts, const char *missing)
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
	ji.facts = facts;
	ji.missing_files = missing;
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

/*
 * Copy the spool file into the blob store, hashing the bytes as they are
 * copied (one pass), and check the copy: what is checked, what is named by
 * the hash, what is read for the scene's facts and what nodes render are
 * the same bytes, whatever the user does to the file in queue/ meanwhile.
 * The copy goes to a name of its own, tmp = blobs/.in-QFILE-SEQ.blend (SEQ
 * counts copies in this process: a file renamed to another drop while its
 * first check runs may be checked twice at once, each copy its own)
 * (util_copy_file writes it through .part and fsyncs); blob_keep() renames
 * it to blobs/SHA.blend once the drop is accepted, blob_discard() removes
 * it.  Returns 0 with sha and tmp set, or -errno / -EINVAL with a reason in
 * why (the copy then removed).
 */
static atomic_ullong copy_seq;

static int blob_copy(struct store *st, const struct qfile *b, char sha[65], char *tmp, size_t tmpsz, char *why,
		     size_t whysz)
{
	char spool[4096], tag[64];
	struct blend_info bi;
	int rc, fd;

	why[0] = '\0';
	store_path_spool(st, b->id, spool, sizeof(spool));
	snprintf(tag, sizeof(tag), ".in-%lld-%llu", (long long)b->id,
		 (unsigned long long)atomic_fetch_add(&copy_seq, 1));
	store_path_blob(st, tag, tmp, tmpsz);
	rc = util_copy_file(spool, tmp, sha);
	if (rc) {
		snprintf(why, whysz, "cannot store a copy: %s", strerror(-rc));
		return rc;
	}
	fd = open(tmp, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(why, whysz, "cannot read the copy: %s", strerror(-rc));
		unlink(tmp);
		return rc;
	}
	rc = blend_check(fd, &bi, why, whysz);
	close(fd);
	if (rc)
		unlink(tmp);
	return rc;
}

static void blob_discard(const char *tmp)
{
	unlink(tmp);
}

static int blob_keep(struct store *st, const char *tmp, const char *sha)
{
	char blob[4096];
	struct stat sb;

	store_path_blob(st, sha, blob, sizeof(blob));
	if (stat(blob, &sb) == 0) {
		unlink(tmp); /* stored already: same name, same bytes */
		return 0;
	}
	return util_rename_durable(tmp, blob);
}

/* "1.2 MiB" */
static void fmt_size(char *buf, size_t sz, uint64_t n)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)n;
	size_t u = 0;

	while (v >= 1024 && u + 1 < ARRAY_SIZE(unit)) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, sz, "%llu B", (unsigned long long)n);
	else
		snprintf(buf, sz, "%.1f %s", v, unit[u]);
}

/*
 * What the .blend (the checked copy at tmp) says, for the job: the scene
 * it renders (the sidecar's `scene`, else the active one), its frame range
 * when the sidecar gave no frames, the facts status shows, and the files
 * it uses that the drop does not hold.  A single-file drop holds only the
 * .blend, so every external file it uses (not packed) is missing; cache
 * folders (point and fluid caches) are not required, as Blender bakes or
 * simulates without them.  Problems are added to err, one line each;
 * missing files go to missing (one escaped line each) and, unless the
 * sidecar says missing = ignore, to err as "missing: PATH (KIND "USER")".
 */
static void read_scene(const char *tmp, const char *bname, const char *rname, struct sidecar *sc,
		       struct util_sb *err, struct util_sb *facts, struct util_sb *missing)
{
	struct blendfile *bf = NULL;
	const struct blendfile_scene *scn = NULL;
	char why[512], a[1100], b[600];
	struct stat sb;
	int rc;

	rc = blendfile_open(tmp, NULL, &bf, why, sizeof(why));
	if (rc) {
		util_clean_line(a, sizeof(a), why);
		util_sb_printf(err, "%s: cannot read the scene: %s\n", bname, a);
		return;
	}
	for (size_t i = 0; i < bf->nscenes; i++) {
		const struct blendfile_scene *s = &bf->scenes[i];

		if (sc->scene[0] ? !strcmp(s->name, sc->scene) : (s->active || !scn))
			scn = s;
		if (!sc->scene[0] && s->active)
			break;
	}
	/* A scene the file lacks is refused only when its range was to be
	 * used; with a frame list the job is made and its frames fail on the
	 * node saying so, as before. */
	if (!scn && !sc->nframes) {
		util_clean_line(a, sizeof(a), sc->scene);
		if (sc->scene[0])
			util_sb_printf(err, "%s: no frame list, and scene '%s' is not in %s to take its range from\n",
				       rname, a, bname);
		else
			util_sb_printf(err, "%s: no frame list, and %s has no scene to take a range from\n", rname,
				       bname);
		goto out;
	}
	if (scn && !sc->nframes) {
		char list[64];

		snprintf(list, sizeof(list), "%d-%dx%d", scn->frame_start, scn->frame_end,
			 scn->frame_step > 0 ? scn->frame_step : 1);
		if (scn->frame_start < 0 ||
		    sidecar_parse_frames(list, &sc->frames, &sc->nframes, why, sizeof(why))) {
			util_clean_line(a, sizeof(a), scn->name);
			util_sb_printf(err,
				       "%s: no frame list, and scene '%s' has the range %d-%d step %d, which cannot be "
				       "rendered (%s); give frames in %s\n",
				       bname, a, scn->frame_start, scn->frame_end, scn->frame_step,
				       scn->frame_start < 0 ? "negative frames" : why, rname);
		}
	}
	/* The facts: one escaped line each (status prints them as they are). */
	if (scn) {
		util_clean_line(a, sizeof(a), scn->name);
		util_sb_printf(facts, "scene: %s\n", a);
		util_clean_line(a, sizeof(a), scn->engine);
		util_sb_printf(facts, "engine: %s\n", a);
		util_sb_printf(facts, "resolution: %dx%d (%d%%)\n", scn->res_x, scn->res_y, scn->res_percent);
		if (scn->samples >= 0)
			util_sb_printf(facts, "samples: %d\n", scn->samples);
		else
			util_sb_printf(facts, "samples: default\n");
		util_sb_printf(facts, "fps: %.4g\n",
			       scn->fps_base > 0 && scn->fps > 0 ? (double)scn->fps / scn->fps_base
								 : (double)scn->fps);
	}
	util_clean_line(a, sizeof(a), bf->saved_by);
	util_sb_printf(facts, "saved_by: %s\n", a);
	fmt_size(b, sizeof(b), stat(tmp, &sb) == 0 ? (uint64_t)sb.st_size : 0);
	util_sb_printf(facts, "files: 1 (%s)\n", b);

	for (size_t i = 0; i < bf->npaths; i++) {
		const struct blendfile_path *p = &bf->paths[i];

		if (p->packed || p->source == BLENDFILE_SRC_DIR || !p->path || !p->path[0])
			continue;
		util_clean_line(a, sizeof(a), p->path);
		util_clean_line(b, sizeof(b), p->user ? p->user : "");
		util_sb_printf(missing, "%s (%s \"%s\")\n", a, blendfile_kind_name(p->kind), b);
		if (!sc->missing_ignore)
			util_sb_printf(err, "missing: %s (%s \"%s\")\n", a, blendfile_kind_name(p->kind), b);
	}
out:
	blendfile_free(bf);
}

/* Check one complete drop; returns 1 when a job was created. */
static int check_drop(struct store *st, const struct drop *d, const char *base, const char *sig)
{
	struct util_sb err = {0}, facts = {0}, missing = {0};
	char path[4096], tmp[4096], why[512], sha[65];
	struct sidecar sc = {0};
	char *text = NULL, *perr = NULL;
	size_t len = 0;
	int rc, created = 0, have_copy = 0, sidecar_ok = 0;
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
	} else {
		sidecar_ok = 1;
	}

	/* The copy is made (and checked) even when the sidecar is wrong, so
	 * that one .error names every problem. */
	rc = blob_copy(st, &d->blend, sha, tmp, sizeof(tmp), why, sizeof(why));
	if (rc)
		util_sb_printf(&err, "%s: %s\n", bname, why);
	else
		have_copy = 1;
	/* What the scene needs is read from the copy, with the sidecar's
	 * scene and frames (so only when the sidecar parsed). */
	if (have_copy && sidecar_ok)
		read_scene(tmp, bname, rname, &sc, &err, &facts, &missing);

	if (err.len || err.oom || facts.oom || missing.oom) {
		store_drop_set(st, base, err.len && !err.oom ? err.buf : "out of memory\n", sig, util_now_ms());
		goto out;
	}
	rc = blob_keep(st, tmp, sha);
	have_copy = 0;
	if (!rc)
		rc = create_job(st, d, base, &sc, text, sha, facts.buf, missing.buf);
	created = rc == 0;
	if (rc && rc != -EAGAIN) {
		snprintf(why, sizeof(why), "%s: cannot create the job: %s\n", bname, strerror(-rc));
		store_drop_set(st, base, why, sig, util_now_ms());
	}
out:
	if (have_copy)
		blob_discard(tmp);
	util_sb_free(&err);
	util_sb_free(&facts);
	util_sb_free(&missing);
	free(perr);
	free(text);
	sidecar_free(&sc);
	return created;
}

/*
 * The drops ready to be checked: both halves exist, neither has a writer,
 * `quiet` has passed, and the pair is not one refused already unchanged.
 * fn(arg, drop, base, sig) is called for each; a nonzero return stops.
 */
typedef int (*drop_fn)(void *arg, const struct drop *d, const char *base, const char *sig);

static int find_drops(struct store *st, int64_t quiet_ms, int64_t now, drop_fn fn, void *arg)
{
	struct scan_ctx c = {.st = st};
	int rc;

	rc = queue_list(st, collect_pending, &c);
	for (size_t i = 0; !rc && i < c.n; i++) {
		const struct qfile *b = &c.files[i], *r;
		char base[QUEUE_NAME_MAX + 1], rname[QUEUE_NAME_MAX + 8], sig[INTAKE_SIG_MAX], old[INTAKE_SIG_MAX];
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
		if (fn(arg, &d, base, sig))
			break;
	}
	free(c.files);
	return rc;
}

static int check_now(void *arg, const struct drop *d, const char *base, const char *sig)
{
	struct scan_ctx *c = arg; /* only st and n are used: n counts jobs */

	c->n += (size_t)check_drop(c->st, d, base, sig);
	return 0;
}

int intake_scan(struct store *st, int64_t quiet_ms, int64_t now)
{
	struct scan_ctx c = {.st = st};
	int rc;

	rc = find_drops(st, quiet_ms, now, check_now, &c);
	/* An explanation outlives neither of the files it explains. */
	if (!rc)
		rc = store_drops_prune(st);
	return rc ? rc : (int)c.n;
}

/* ---- the intake threads ---- */

/*
 * A drop handed to the pool.  `busy` marks a slot in use from the moment
 * the scan queues it until a worker has written its outcome (job or
 * .error), so one drop is never checked twice at once and the next scan
 * does not queue it again meanwhile.
 */
struct task {
	int busy, taken;
	struct drop d;
	char base[QUEUE_NAME_MAX + 1];
	char sig[INTAKE_SIG_MAX];
};

struct intake_pool {
	char *dir;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	int nthreads, started;
	pthread_t threads[INTAKE_THREADS_MAX];
	struct task tasks[INTAKE_QUEUE_MAX];
	atomic_int jobs; /* jobs created, for the caller's curiosity */
};

static struct task *take_task(struct intake_pool *p)
{
	for (size_t i = 0; i < ARRAY_SIZE(p->tasks); i++)
		if (p->tasks[i].busy && !p->tasks[i].taken) {
			p->tasks[i].taken = 1;
			return &p->tasks[i];
		}
	return NULL;
}

static void *pool_main(void *arg)
{
	struct intake_pool *p = arg;
	struct store *st = NULL;

	int rc;

	/* One store connection per thread (store.md).  Without one this
	 * thread takes no drops; the others still do. */
	rc = store_open(p->dir, &st);
	if (rc) {
		fprintf(stderr, "renderfs: an intake thread cannot open the store: %s\n", strerror(-rc));
		return NULL;
	}
	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct task *t;

		while (!p->stop && !(t = take_task(p)))
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->stop)
			break;
		pthread_mutex_unlock(&p->mu);
		if (check_drop(st, &t->d, t->base, t->sig))
			atomic_fetch_add(&p->jobs, 1);
		pthread_mutex_lock(&p->mu);
		t->busy = t->taken = 0;
	}
	pthread_mutex_unlock(&p->mu);
	store_close(st);
	return NULL;
}

/* Stale copies a crash left behind (blobs/.in-*). */
static void clean_partial_copies(const char *dir)
{
	char path[4096];
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "%s/blobs", dir);
	d = opendir(path);
	if (!d)
		return;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, ".in-", 4))
			continue;
		snprintf(path, sizeof(path), "%s/blobs/%s", dir, de->d_name);
		unlink(path);
	}
	closedir(d);
}

int intake_pool_start(const char *state_dir, int nthreads, struct intake_pool **out)
{
	struct intake_pool *p;
	int rc = 0;

	if (nthreads < 1)
		nthreads = 1;
	if (nthreads > INTAKE_THREADS_MAX)
		nthreads = INTAKE_THREADS_MAX;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->dir = strdup(state_dir);
	if (!p->dir) {
		free(p);
		return -ENOMEM;
	}
	clean_partial_copies(state_dir);
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	for (p->nthreads = nthreads; p->started < nthreads; p->started++) {
		rc = pthread_create(&p->threads[p->started], NULL, pool_main, p);
		if (rc)
			break;
	}
	if (!p->started) {
		intake_pool_stop(p);
		return -rc;
	}
	*out = p;
	return 0;
}

void intake_pool_stop(struct intake_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->started; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p->dir);
	free(p);
}

static int queue_task(void *arg, const struct drop *d, const char *base, const char *sig)
{
	struct intake_pool *p = arg;
	struct task *free_slot = NULL;

	/* The caller holds p->mu. */
	for (size_t i = 0; i < ARRAY_SIZE(p->tasks); i++) {
		struct task *t = &p->tasks[i];

		if (t->busy && !strcmp(t->base, base))
			return 0; /* being checked: its outcome decides */
		if (!t->busy && !free_slot)
			free_slot = t;
	}
	if (!free_slot)
		return 1; /* full: the next scan queues the rest */
	free_slot->d = *d;
	snprintf(free_slot->base, sizeof(free_slot->base), "%s", base);
	snprintf(free_slot->sig, sizeof(free_slot->sig), "%s", sig);
	free_slot->busy = 1;
	free_slot->taken = 0;
	pthread_cond_signal(&p->cv);
	return 0;
}

int intake_pool_scan(struct intake_pool *p, struct store *st, int64_t quiet_ms, int64_t now)
{
	int rc;

	pthread_mutex_lock(&p->mu);
	rc = find_drops(st, quiet_ms, now, queue_task, p);
	pthread_mutex_unlock(&p->mu);
	if (!rc)
		rc = store_drops_prune(st);
	return rc;
}
