/*
 * config: parse the INI file with inih and the -o overrides with the same
 * setter, so both are checked by one list of known keys.  Unknown sections
 * or keys are errors: a typo in a budget must not silently mean "no budget".
 */
#include "core/config.h"
#include "core/sidecar.h"
#include "core/util.h"

#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct load_ctx {
	struct config *cfg;
	char *err;
	size_t errsz;
	int failed;
};

/*
 * The line reader given to inih.  inih reads into a buffer of its own
 * fixed size (INI_MAX_LINE as the library was built, passed here as num)
 * and would take the rest of a longer line for a line of its own ("line
 * N+1: not INI syntax").  This reader counts lines itself and, at a line
 * that does not fit, stops the parse (end of input) and remembers which
 * line it was, so the error names it.
 */
struct line_reader {
	FILE *f;
	int lineno;    /* lines handed to inih so far */
	int too_long;  /* the line that did not fit, 0 if none */
	int max;       /* the most bytes a line may have, newline excluded */
	long long len; /* that line's length */
};

static char *read_line(char *str, int num, void *stream)
{
	struct line_reader *lr = stream;
	long long len = 0; /* bytes before the newline */
	int c = EOF, last = 0, got = 0;

	if (lr->too_long || num < 3)
		return NULL;
	while ((c = getc(lr->f)) != EOF) {
		got = 1;
		if (c == '\n')
			break;
		if (len < num - 1)
			str[len] = (char)c;
		len++;
		last = c;
	}
	if (!got)
		return NULL;
	if (last == '\r') /* CRLF: the CR is not part of the line */
		len--;
	if (len > num - 2) {
		lr->too_long = lr->lineno + 1;
		lr->max = num - 2;
		lr->len = len;
		return NULL;
	}
	str[len] = '\n';
	str[len + 1] = '\0';
	lr->lineno++;
	return str;
}

static int set_str(char **dst, const char *v)
{
	char *s = strdup(v);

	if (!s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

static int parse_int(const char *v, int lo, int hi, int *out)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < lo || n > hi)
		return -EINVAL;
	*out = (int)n;
	return 0;
}

static int parse_num(const char *v, double lo, double *out)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(v, &end);
	if (errno || end == v || *end || !isfinite(d) || d < lo)
		return -EINVAL;
	*out = d;
	return 0;
}

static int parse_bool(const char *v, int *out)
{
	if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "on"))
		*out = 1;
	else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "off"))
		*out = 0;
	else
		return -EINVAL;
	return 0;
}

/*
 * The mirror goes into URLs a node fetches (as one argv word, never
 * through a shell): http or https, printable ASCII without spaces, quotes
 * or backslashes, stored without trailing '/'.
 */
static int set_mirror(char **dst, const char *v)
{
	size_t n = strlen(v);
	char buf[CONFIG_VALUE_MAX + 1];

	if (strncmp(v, "https://", 8) && strncmp(v, "http://", 7))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (v[i] <= ' ' || v[i] > '~' || v[i] == '"' || v[i] == '\\' || v[i] == '\'')
			return -EINVAL;
	while (n && v[n - 1] == '/')
		n--;
	if (n <= strlen("https://") - (v[4] == ':'))
		return -EINVAL;
	memcpy(buf, v, n);
	buf[n] = '\0';
	return set_str(dst, buf);
}

/* Set one key; returns 0, -ENOENT for an unknown key, -EINVAL for a bad value. */
static int config_set(struct config *c, const char *sec, const char *key, const char *v)
{
#define IS(s, k) (!strcmp(sec, s) && !strcmp(key, k))
	if (IS("renderfs", "backend")) {
		/* Which names exist is the provider table's business
		 * (engine/provider.c); here only that it is a plain name. */
		if (!*v || strlen(v) > 32 || strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(v))
			return -EINVAL;
		return set_str(&c->backend, v);
	}
	if (IS("renderfs", "quiet"))
		return parse_duration_ms(v, &c->quiet_ms);
	if (IS("renderfs", "lease")) {
		int rc = parse_duration_ms(v, &c->lease_ms);
		return rc ? rc : (c->lease_ms < 1000 ? -EINVAL : 0);
	}
	if (IS("renderfs", "stall")) {
		int rc = parse_duration_ms(v, &c->stall_ms);
		return rc ? rc : (c->stall_ms < 1000 ? -EINVAL : 0);
	}
	if (IS("renderfs", "blender_mirror"))
		return set_mirror(&c->blender_mirror, v);
	if (IS("local", "blender"))
		return *v ? set_str(&c->blender, v) : -EINVAL;
	if (IS("local", "workers"))
		return parse_int(v, 1, 64, &c->workers);
	if (IS("ssh", "node")) {
		if (c->n_ssh_nodes >= CONFIG_MAX_SSH_NODES || !*v)
			return -EINVAL;
		c->ssh_nodes[c->n_ssh_nodes] = NULL;
		if (set_str(&c->ssh_nodes[c->n_ssh_nodes], v))
			return -ENOMEM;
		c->n_ssh_nodes++;
		return 0;
	}
	if (IS("ssh", "slots")) {
		if (!strcmp(v, "auto")) {
			c->ssh_slots = 0;
			return 0;
		}
		return parse_int(v, 1, 64, &c->ssh_slots);
	}
	if (IS("ssh", "identity"))
		return set_str(&c->ssh_identity, v);
	if (IS("ssh", "blender"))
		return *v ? set_str(&c->ssh_blender, v) : -EINVAL;
	if (IS("clore", "api_url"))
		return set_str(&c->clore_api_url, v);
	if (IS("clore", "api_key_file"))
		return set_str(&c->clore_api_key_file, v);
	if (IS("clore", "image"))
		return set_str(&c->clore_image, v);
	if (IS("clore", "blender"))
		return *v ? set_str(&c->clore_blender, v) : -EINVAL;
	if (IS("clore", "nodes"))
		return parse_int(v, 1, 1000, &c->clore_nodes);
	if (IS("clore", "gpu"))
		return set_str(&c->clore_gpu, v);
	if (IS("clore", "min_vram"))
		return parse_num(v, 0, &c->clore_min_vram);
	if (IS("clore", "max_price"))
		return parse_num(v, 0, &c->clore_max_price);
	if (IS("clore", "spot"))
		return parse_bool(v, &c->clore_spot);
	if (IS("clore", "currency"))
		return set_str(&c->clore_currency, v);
	if (IS("clore", "budget"))
		return parse_num(v, 0, &c->clore_budget);
	if (IS("clore", "spot_margin")) {
		char num[64];
		size_t n = strlen(v);
		int rc;

		/* "15%" or "15": a percentage either way. */
		if (n == 0 || n >= sizeof(num))
			return -EINVAL;
		snprintf(num, sizeof(num), "%.*s", (int)(v[n - 1] == '%' ? n - 1 : n), v);
		rc = parse_num(num, 0, &c->clore_spot_margin);
		if (rc || c->clore_spot_margin > 1000)
			return -EINVAL;
		c->clore_spot_margin /= 100;
		return 0;
	}
	if (IS("clore", "poll")) {
		int rc = parse_duration_ms(v, &c->clore_poll_ms);
		return rc ? rc : (c->clore_poll_ms < 100 ? -EINVAL : 0);
	}
	if (IS("clore", "boot_timeout")) {
		int rc = parse_duration_ms(v, &c->clore_boot_timeout_ms);
		return rc ? rc : (c->clore_boot_timeout_ms < 1000 ? -EINVAL : 0);
	}
	if (IS("clore", "idle"))
		return parse_duration_ms(v, &c->clore_idle_ms);
	if (IS("clore", "keep_at_unmount"))
		return parse_bool(v, &c->clore_keep_at_unmount);
	if (IS("clore", "min_reliability")) {
		int rc = parse_num(v, 0, &c->clore_min_reliability);
		return rc ? rc : (c->clore_min_reliability > 1 ? -EINVAL : 0);
	}
#undef IS
	return -ENOENT;
}

/* Values longer than any setting can use are refused whole, never cut:
 * paths and URLs up to PATH_MAX, everything else far less. */
static int config_check_len(const char *sec, const char *key, const char *v)
{
	(void)sec;
	(void)key;
	return strlen(v) > CONFIG_VALUE_MAX ? -E2BIG : 0;
}

static void report(struct load_ctx *lc, const char *where, const char *sec, const char *key, const char *v,
		   int rc)
{
	/* The names and the value are the user's text, cleaned so that the
	 * message stays one line (an -o value may hold any byte). */
	char csec[64 * 4 + 4], ckey[64 * 4 + 4], cv[84];

	if (lc->failed)
		return;
	lc->failed = 1;
	util_clean_line(csec, sizeof(csec), sec);
	util_clean_line(ckey, sizeof(ckey), key);
	sec = csec;
	key = ckey;
	if (rc == -E2BIG)
		snprintf(lc->err, lc->errsz, "%svalue for %s.%s is too long (%zu bytes, max %d)", where, sec,
			 key, strlen(v), CONFIG_VALUE_MAX);
	else if (rc == -ENOENT)
		snprintf(lc->err, lc->errsz, "%sunknown setting %s.%s", where, sec, key);
	else
		snprintf(lc->err, lc->errsz, "%sbad value '%s' for %s.%s", where,
			 util_clean_line(cv, sizeof(cv), v), sec, key);
}

static int ini_cb(void *user, const char *sec, const char *key, const char *v)
{
	struct load_ctx *lc = user;
	char *val;
	int rc;
	char *hash;
	size_t n;

	if (!key) /* a section header alone */
		return 1;
	/* The whole value, however long: nothing is cut silently. */
	val = strdup(v);
	if (!val) {
		if (!lc->failed)
			snprintf(lc->err, lc->errsz, "out of memory");
		lc->failed = 1;
		return 0;
	}
	/* inih strips ';' comments only; product.md also allows "# ..." after
	 * a value, so cut at a '#' that follows white space. */
	for (hash = val; (hash = strchr(hash, '#')); hash++) {
		if (hash == val || hash[-1] == ' ' || hash[-1] == '\t') {
			*hash = '\0';
			break;
		}
	}
	n = strlen(val);
	while (n && (val[n - 1] == ' ' || val[n - 1] == '\t'))
		val[--n] = '\0';
	v = val;
	rc = config_check_len(sec, key, v);
	if (!rc)
		rc = config_set(lc->cfg, sec, key, v);
	if (rc) {
		/* inih reports the line: ini_parse_stream() returns it. */
		report(lc, "", sec, key, v, rc);
		free(val);
		return 0;
	}
	free(val);
	return 1;
}

static void config_defaults(struct config *c)
{
	memset(c, 0, sizeof(*c));
	c->backend = strdup("local");
	c->quiet_ms = 2000;
	c->stall_ms = 10 * 60 * 1000;
	c->lease_ms = 60 * 1000;
	c->blender = strdup("blender");
	c->workers = 1;
	c->ssh_blender = strdup("blender");
	c->blender_mirror = strdup(CONFIG_BLENDER_MIRROR);
	c->clore_blender = strdup(CONFIG_BLENDER_AUTO);
	c->clore_api_url = strdup("https://api.clore.ai/v1");
	c->clore_nodes = 3;
	c->clore_max_price = 0;
	c->clore_spot = 1;
	c->clore_currency = strdup("CLORE-Blockchain");
	c->clore_budget = -1;
	c->clore_spot_margin = 0.15;
	c->clore_poll_ms = 15000;
	c->clore_boot_timeout_ms = 10 * 60 * 1000;
	c->clore_idle_ms = 2 * 60 * 1000;
	c->clore_min_reliability = 0.9;
}

int config_load(struct config *cfg, const char *file, int explicit_file, char **overrides, int n_overrides,
		char *err, size_t errsz)
{
	struct load_ctx lc = {.cfg = cfg, .err = err, .errsz = errsz};
	int rc;

	config_defaults(cfg);
	if (!cfg->backend || !cfg->blender || !cfg->ssh_blender || !cfg->clore_api_url ||
	    !cfg->clore_currency || !cfg->blender_mirror || !cfg->clore_blender) {
		snprintf(err, errsz, "out of memory");
		return -ENOMEM;
	}
	if (file) {
		FILE *f = fopen(file, "r");

		if (!f) {
			if (errno == ENOENT && !explicit_file)
				goto overrides;
			rc = -errno;
			snprintf(err, errsz, "cannot read config %s: %s", file, strerror(errno));
			return rc;
		}
		struct line_reader lr = {.f = f};

		rc = ini_parse_stream(read_line, &lr, ini_cb, &lc);
		fclose(f);
		/* Errors before the long line come first: inih stopped there. */
		if (lc.failed) {
			char tmp[512];

			snprintf(tmp, sizeof(tmp), "%s: line %d: %s", file, rc, err);
			snprintf(err, errsz, "%s", tmp);
			return -EINVAL;
		}
		if (rc > 0) {
			snprintf(err, errsz, "%s: line %d: not INI syntax", file, rc);
			return -EINVAL;
		}
		if (rc < 0) {
			snprintf(err, errsz, "%s: %s", file, rc == -2 ? "out of memory" : "cannot read");
			return rc == -2 ? -ENOMEM : -EIO;
		}
		if (lr.too_long) {
			snprintf(err, errsz, "%s: line %d: too long (%lld bytes, max %d)", file, lr.too_long,
				 lr.len, lr.max);
			return -EINVAL;
		}
	}
overrides:
	for (int i = 0; i < n_overrides; i++) {
		char sec[64], key[64];
		const char *dot = strchr(overrides[i], '.');
		const char *eq = strchr(overrides[i], '=');

		if (!dot || !eq || dot > eq || dot - overrides[i] >= (long)sizeof(sec) ||
		    eq - dot - 1 >= (long)sizeof(key)) {
			char shown[84];

			snprintf(err, errsz, "bad option '%s': expected section.key=value",
				 util_clean_line(shown, sizeof(shown), overrides[i]));
			return -EINVAL;
		}
		snprintf(sec, sizeof(sec), "%.*s", (int)(dot - overrides[i]), overrides[i]);
		snprintf(key, sizeof(key), "%.*s", (int)(eq - dot - 1), dot + 1);
		rc = config_check_len(sec, key, eq + 1);
		if (!rc)
			rc = config_set(cfg, sec, key, eq + 1);
		if (rc) {
			report(&lc, "option -o: ", sec, key, eq + 1, rc);
			return -EINVAL;
		}
	}
	return 0;
}

void config_free(struct config *c)
{
	free(c->backend);
	free(c->blender);
	for (int i = 0; i < c->n_ssh_nodes; i++)
		free(c->ssh_nodes[i]);
	free(c->ssh_identity);
	free(c->ssh_blender);
	free(c->clore_api_url);
	free(c->clore_api_key_file);
	free(c->clore_image);
	free(c->clore_blender);
	free(c->blender_mirror);
	free(c->clore_gpu);
	free(c->clore_currency);
	memset(c, 0, sizeof(*c));
}
