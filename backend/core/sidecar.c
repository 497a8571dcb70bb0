/*
 * sidecar: parsing NAME.range, the per-job settings file dropped beside a
 * .blend.  The grammar and the limits are product.md's; this file owns
 * only the wording of the messages the user reads when a sidecar is wrong.
 *
 * The user sees every problem at once, one line each, so the parser never
 * stops at the first error: each line is checked on its own and the
 * problems are collected into one growing text.  Values echoed back are
 * escaped and capped, so a stray control byte or a 10 KiB line cannot
 * break the one-problem-per-line promise.
 *
 * Scratch memory (a copy of the text, the frame bitmap) lives only for the
 * duration of a call; what survives is the frame array and the error text.
 */
#include "core/sidecar.h"
#include "core/util.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SC_ECHO_MAX     60                    /* bytes of a user's value echoed in a message */
#define SC_QUOTE_BUF    (SC_ECHO_MAX * 4 + 8) /* worst case: every byte \xHH */
#define SC_FNAME_MAX    255                   /* bytes of the file name echoed */
#define SC_WHY_MAX      512
#define SC_SAMPLES_MAX  (1 << 24)
#define SC_DUR_MAX_MS   (30LL * 24 * 3600 * 1000)
#define SC_BITMAP_WORDS ((SIDECAR_MAX_FRAME + 1 + 63) / 64)

_Static_assert(SIDECAR_MAX_FRAME < UINT32_MAX, "frames must fit uint32_t");
_Static_assert(SIDECAR_MAX_FRAMES <= SIDECAR_MAX_FRAME + 1,
	       "the job limit cannot exceed the number of distinct frames");

/* ---- text helpers ---------------------------------------------------- */

/*
 * Escape s[0..n) into dst so it stays on one line: control bytes are
 * escaped (and, when it goes inside '...', the quote and the backslash),
 * bytes that are not UTF-8 become \xHH, and more than cap bytes of input
 * end in "...".  Always terminates.
 */
static void sc_escape(char *dst, size_t dstsz, const char *s, size_t n, size_t cap, int quoted)
{
	static const char hex[] = "0123456789abcdef";
	size_t i = 0, o = 0;

	if (!dstsz)
		return;
	while (i < n && i < cap) {
		unsigned char c = (unsigned char)s[i];
		char esc[8];
		size_t elen, slen = 1;

		if (c == '\n' || c == '\r' || c == '\t') {
			esc[0] = '\\';
			esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
			elen = 2;
		} else if (quoted && (c == '\\' || c == '\'')) {
			esc[0] = '\\';
			esc[1] = (char)c;
			elen = 2;
		} else if (c < 0x20 || c == 0x7f ||
			   (c >= 0x80 && !util_utf8_seq((const unsigned char *)s + i, n - i, NULL))) {
			esc[0] = '\\';
			esc[1] = 'x';
			esc[2] = hex[c >> 4];
			esc[3] = hex[c & 15];
			elen = 4;
		} else {
			slen = util_utf8_seq((const unsigned char *)s + i, n - i, NULL);
			memcpy(esc, s + i, slen);
			elen = slen;
		}
		/* keep room for "..." and the NUL whatever happens */
		if (o + elen + 4 > dstsz)
			break;
		memcpy(dst + o, esc, elen);
		o += elen;
		i += slen;
	}
	if (i < n && o + 4 <= dstsz) {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	dst[o] = '\0';
}

static void sc_quote(char *dst, size_t dstsz, const char *s, size_t n)
{
	sc_escape(dst, dstsz, s, n, SC_ECHO_MAX, 1);
}

static int sc_is_space(char c)
{
	return c == ' ' || c == '\t';
}

/* Trim spaces and tabs from both ends of s[0..*n); returns the new start. */
static const char *sc_trim(const char *s, size_t *n)
{
	while (*n && sc_is_space(s[0])) {
		s++;
		(*n)--;
	}
	while (*n && sc_is_space(s[*n - 1]))
		(*n)--;
	return s;
}

/* ---- numbers --------------------------------------------------------- */

/*
 * A decimal integer, optionally signed, filling all of s[0..n).  Values
 * past the long long range saturate instead of failing, so every caller's
 * own range check reports "over the limit" for them rather than "not a
 * number".  Returns 0 or -EINVAL.
 */
static int sc_parse_int(const char *s, size_t n, long long *v)
{
	long long acc = 0;
	size_t i = 0;
	int neg = 0;

	if (i < n && (s[i] == '+' || s[i] == '-')) {
		neg = s[i] == '-';
		i++;
	}
	if (i == n)
		return -EINVAL;
	for (; i < n; i++) {
		int d = s[i] - '0';

		if (d < 0 || d > 9)
			return -EINVAL;
		if (acc > (LLONG_MAX - d) / 10)
			acc = LLONG_MAX;
		else
			acc = acc * 10 + d;
	}
	*v = neg ? -acc : acc;
	return 0;
}

/*
 * A plain decimal number: [+-] digits [. digits] [e [+-] digits].  The
 * shape is checked before strtod so that "nan", "inf", hex floats and
 * trailing junk can never slip through.  Overflow gives HUGE_VAL, which
 * every caller's upper limit then refuses.  strtod follows LC_NUMERIC; the
 * daemon stays in the C locale, and in any other the full-length check
 * below fails loudly rather than misreading "6.00".
 */
static int sc_parse_num(const char *s, double *v)
{
	const char *p = s;
	char *end;
	int digits = 0;

	if (*p == '+' || *p == '-')
		p++;
	for (; *p >= '0' && *p <= '9'; p++)
		digits++;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			digits++;
	if (!digits)
		return -EINVAL;
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!(*p >= '0' && *p <= '9'))
			return -EINVAL;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p)
		return -EINVAL;
	*v = strtod(s, &end);
	if (*end)
		return -EINVAL;
	return 0;
}

/* ---- durations ------------------------------------------------------- */

/* "ms" comes before "m" so that the longer name is matched first; rank
 * orders units by size, since components must go from large to small. */
static const struct {
	const char *unit;
	int64_t ms;
	int rank;
} sc_units[] = {
    {"d", 86400000, 4}, {"h", 3600000, 3}, {"ms", 1, 0}, {"m", 60000, 2}, {"s", 1000, 1},
};

/*
 * The duration grammar: one or more NUMBER UNIT, units from largest to
 * smallest each at most once, or a lone NUMBER meaning seconds.  NUMBER may
 * have a fraction; the result is rounded up to whole milliseconds so that
 * no positive duration becomes zero.  Returns -ERANGE past 30 days so the
 * sidecar can say so; the public wrapper folds that into -EINVAL.
 */
static int sc_duration(const char *s, int64_t *out)
{
	const char *p = s;
	int64_t total = 0;
	int last_rank = 5, parts = 0;

	if (!s || !*s)
		return -EINVAL;
	while (*p) {
		int64_t ip = 0, frac = 0, unit = 0, scale = 1, part;
		int digits = 0, tail = 0, rank = 1;
		size_t k, ulen = 0;

		for (; *p >= '0' && *p <= '9'; p++, digits++)
			ip = ip > SC_DUR_MAX_MS ? ip : ip * 10 + (*p - '0');
		if (*p == '.') {
			for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
				if (scale < 1000000000) {
					frac = frac * 10 + (*p - '0');
					scale *= 10;
				} else if (*p != '0') {
					tail = 1; /* beyond nanoseconds: only rounds up */
				}
			}
		}
		if (!digits)
			return -EINVAL;
		for (k = 0; k < sizeof(sc_units) / sizeof(sc_units[0]); k++) {
			ulen = strlen(sc_units[k].unit);
			if (!strncmp(p, sc_units[k].unit, ulen)) {
				unit = sc_units[k].ms;
				rank = sc_units[k].rank;
				break;
			}
		}
		if (!unit) {
			/* a bare number is seconds, but only on its own: "1h30"
			 * could mean minutes or seconds, so it is refused */
			if (*p || parts)
				return -EINVAL;
			unit = 1000;
			ulen = 0;
		}
		p += ulen;
		if (rank >= last_rank)
			return -EINVAL;
		last_rank = rank;
		parts++;
		if (ip > SC_DUR_MAX_MS / unit)
			return -ERANGE;
		/* frac < 1e9 and unit <= 8.64e7: the product fits easily */
		part = ip * unit + (frac * unit + scale - 1) / scale;
		if (tail && (frac * unit) % scale == 0)
			part++;
		total += part;
		if (total > SC_DUR_MAX_MS)
			return -ERANGE;
	}
	*out = total;
	return 0;
}

int parse_duration_ms(const char *s, int64_t *ms)
{
	int64_t v;
	int rc = sc_duration(s, &v);

	if (rc)
		return -EINVAL;
	*ms = v;
	return 0;
}

/* ---- frame lists ----------------------------------------------------- */

struct sc_item {
	uint32_t a, b, s; /* frames a, a+s, ... up to b; b is hit exactly */
};

static void sc_why(char *why, size_t whysz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void sc_why(char *why, size_t whysz, const char *fmt, ...)
{
	va_list ap;

	if (!why || !whysz)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whysz, fmt, ap);
	va_end(ap);
}

/* Digits at *p (before end), saturating well above any frame number. */
static int sc_frame_num(const char **p, const char *end, uint64_t *v, const char **txt, size_t *txtlen)
{
	const char *q = *p;

	*v = 0;
	*txt = q;
	while (q < end && *q >= '0' && *q <= '9') {
		if (*v <= UINT32_MAX)
			*v = *v * 10 + (uint64_t)(*q - '0');
		q++;
	}
	*txtlen = (size_t)(q - *txt);
	if (q == *p)
		return -EINVAL;
	*p = q;
	return 0;
}

static const char *sc_skip_space(const char *p, const char *end)
{
	while (p < end && sc_is_space(*p))
		p++;
	return p;
}

/* One item "N", "A-B" or "A-BxS" in it[0..n), already trimmed. */
static int sc_frame_item(const char *it, size_t n, struct sc_item *out, char *why, size_t whysz)
{
	const char *p = it, *end = it + n, *txt[3];
	size_t txtlen[3];
	uint64_t v[3] = {0, 0, 1};
	char q[SC_QUOTE_BUF];
	int nums = 1, i;

	sc_quote(q, sizeof(q), it, n);
	if (*p == '-') {
		sc_why(why, whysz, "bad frame list item '%s': frames can't be negative", q);
		return -EINVAL;
	}
	if (sc_frame_num(&p, end, &v[0], &txt[0], &txtlen[0]))
		goto syntax;
	p = sc_skip_space(p, end);
	if (p < end && *p == '-') {
		p = sc_skip_space(p + 1, end);
		if (sc_frame_num(&p, end, &v[1], &txt[1], &txtlen[1]))
			goto syntax;
		nums = 2;
		p = sc_skip_space(p, end);
		if (p < end && (*p == 'x' || *p == 'X')) {
			p = sc_skip_space(p + 1, end);
			if (sc_frame_num(&p, end, &v[2], &txt[2], &txtlen[2]))
				goto syntax;
			nums = 3;
			p = sc_skip_space(p, end);
		}
	}
	if (p != end)
		goto syntax;
	for (i = 0; i < nums && i < 2; i++) {
		if (v[i] > SIDECAR_MAX_FRAME) {
			char num[SC_QUOTE_BUF];

			sc_escape(num, sizeof(num), txt[i], txtlen[i], 20, 0);
			sc_why(why, whysz, "frame %s is over Blender's limit of %u", num, SIDECAR_MAX_FRAME);
			return -EINVAL;
		}
	}
	if (nums == 1)
		v[1] = v[0];
	if (v[0] > v[1]) {
		sc_why(why, whysz, "range %llu-%llu runs backwards", (unsigned long long)v[0],
		       (unsigned long long)v[1]);
		return -EINVAL;
	}
	if (v[2] == 0) {
		sc_why(why, whysz, "step 0 in '%s'", q);
		return -EINVAL;
	}
	/* any step past the range's length gives just its first frame */
	if (v[2] > SIDECAR_MAX_FRAME + 1)
		v[2] = SIDECAR_MAX_FRAME + 1;
	out->a = (uint32_t)v[0];
	out->s = (uint32_t)v[2];
	/* end on a frame actually hit, so items of one lattice can merge */
	out->b = out->a + (uint32_t)((v[1] - v[0]) / v[2]) * out->s;
	if (out->a == out->b)
		out->s = 1;
	return 0;
syntax:
	sc_why(why, whysz, "bad frame list item '%s': expected N, A-B or A-BxS", q);
	return -EINVAL;
}

static int sc_item_cmp(const void *x, const void *y)
{
	const struct sc_item *a = x, *b = y;
	uint32_t ra = a->a % a->s, rb = b->a % b->s;

	if (a->s != b->s)
		return a->s < b->s ? -1 : 1;
	if (ra != rb)
		return ra < rb ? -1 : 1;
	if (a->a != b->a)
		return a->a < b->a ? -1 : 1;
	return (a->b > b->b) - (a->b < b->b);
}

/*
 * Merge overlapping items of the same step and phase, in place; returns
 * the new count and sets *groups to the number of (step, phase) lattices.
 * After this, items within a lattice are disjoint, which bounds the bitmap
 * work below by the number of lattices rather than by how often the user
 * repeated a huge range.
 */
static size_t sc_merge_items(struct sc_item *it, size_t n, size_t *groups)
{
	size_t i, o = 0;

	*groups = 0;
	if (!n)
		return 0;
	qsort(it, n, sizeof(*it), sc_item_cmp);
	*groups = 1;
	for (i = 1; i < n; i++) {
		struct sc_item *cur = &it[o];

		if (it[i].s == cur->s && it[i].a % it[i].s == cur->a % cur->s) {
			if ((uint64_t)it[i].a <= (uint64_t)cur->b + cur->s) {
				if (it[i].b > cur->b)
					cur->b = it[i].b;
				continue;
			}
		} else {
			(*groups)++;
		}
		it[++o] = it[i];
	}
	return o + 1;
}

static uint64_t sc_item_count(const struct sc_item *it)
{
	return (uint64_t)(it->b - it->a) / it->s + 1;
}

static void sc_bitmap_set(uint64_t *bm, const struct sc_item *it)
{
	uint32_t f;

	if (it->s != 1) {
		for (f = it->a;; f += it->s) {
			bm[f / 64] |= 1ull << (f % 64);
			if (f == it->b)
				break;
		}
		return;
	}
	/* a plain range: whole words at a time */
	for (f = it->a; f <= it->b && f % 64; f++)
		bm[f / 64] |= 1ull << (f % 64);
	for (; f <= it->b && it->b - f >= 63; f += 64)
		bm[f / 64] = ~0ull;
	for (; f <= it->b; f++)
		bm[f / 64] |= 1ull << (f % 64);
}

int sidecar_parse_frames(const char *s, uint32_t **frames, size_t *n, char *why, size_t whysz)
{
	struct sc_item *items = NULL;
	size_t nitems = 0, cap = 0, groups, i, len, total = 0;
	const char *p, *end;
	uint64_t *bm = NULL, sum = 0;
	uint32_t *res;
	int rc = -EINVAL;

	*frames = NULL;
	*n = 0;
	if (why && whysz)
		why[0] = '\0';
	len = s ? strlen(s) : 0;
	p = sc_trim(s ? s : "", &len);
	if (!len) {
		sc_why(why, whysz, "empty frame list");
		return -EINVAL;
	}
	end = p + len;
	for (;;) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *ie = comma ? comma : end;
		size_t ilen = (size_t)(ie - p);
		const char *item = sc_trim(p, &ilen);

		if (!ilen) {
			char q[SC_QUOTE_BUF];

			sc_quote(q, sizeof(q), s, strlen(s));
			sc_why(why, whysz, "empty item in frame list '%s'", q);
			goto out;
		}
		if (nitems == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct sc_item *ni = realloc(items, ncap * sizeof(*ni));

			if (!ni) {
				rc = -ENOMEM;
				sc_why(why, whysz, "out of memory");
				goto out;
			}
			items = ni;
			cap = ncap;
		}
		if (sc_frame_item(item, ilen, &items[nitems], why, whysz))
			goto out;
		nitems++;
		if (!comma)
			break;
		p = comma + 1;
	}

	nitems = sc_merge_items(items, nitems, &groups);
	for (i = 0; i < nitems; i++)
		sum += sc_item_count(&items[i]);
	/* One lattice means disjoint items: the count is exact without
	 * touching a single frame, so absurd ranges are refused right here. */
	if (groups == 1 && sum > SIDECAR_MAX_FRAMES) {
		sc_why(why, whysz, "%llu frames is over the limit of %u per job", (unsigned long long)sum,
		       SIDECAR_MAX_FRAMES);
		goto out;
	}
	/* Several lattices may overlap (x2 and x3 share every 6th frame);
	 * a fixed 128 KiB bitmap of all legal frames dedups them exactly. */
	bm = calloc(SC_BITMAP_WORDS, sizeof(*bm));
	if (!bm) {
		rc = -ENOMEM;
		sc_why(why, whysz, "out of memory");
		goto out;
	}
	for (i = 0; i < nitems; i++)
		sc_bitmap_set(bm, &items[i]);
	for (i = 0; i < SC_BITMAP_WORDS; i++)
		total += (size_t)__builtin_popcountll(bm[i]);
	if (total > SIDECAR_MAX_FRAMES) {
		sc_why(why, whysz, "%zu frames is over the limit of %u per job", total, SIDECAR_MAX_FRAMES);
		goto out;
	}
	res = malloc(total * sizeof(*res));
	if (!res) {
		rc = -ENOMEM;
		sc_why(why, whysz, "out of memory");
		goto out;
	}
	*n = 0;
	for (i = 0; i < SC_BITMAP_WORDS; i++) {
		uint64_t w = bm[i];

		while (w) {
			res[(*n)++] = (uint32_t)(i * 64 + (size_t)__builtin_ctzll(w));
			w &= w - 1;
		}
	}
	*frames = res;
	rc = 0;
out:
	free(bm);
	free(items);
	return rc;
}

/* ---- names ----------------------------------------------------------- */

static const char *const sc_engines[] = {"", "cycles", "eevee", "workbench"};
static const char *const sc_devices[] = {"auto", "optix", "cuda", "hip", "cpu"};
static const char *const sc_formats[] = {"png", "exr", "jpeg", "tiff"};
static const char *const sc_exts[] = {".png", ".exr", ".jpg", ".tif"};

#define SC_NAME(tab, i) ((unsigned)(i) < sizeof(tab) / sizeof((tab)[0]) ? (tab)[(unsigned)(i)] : "")

const char *sc_engine_name(enum sc_engine e)
{
	return SC_NAME(sc_engines, e);
}

const char *sc_device_name(enum sc_device d)
{
	return SC_NAME(sc_devices, d);
}

const char *sc_format_name(enum sc_format f)
{
	return SC_NAME(sc_formats, f);
}

const char *sc_format_ext(enum sc_format f)
{
	return SC_NAME(sc_exts, f);
}

/* ---- keys ------------------------------------------------------------ */

/* Each setter gets a trimmed, non-empty, NUL-terminated, valid UTF-8 value
 * and, on a bad one, writes the whole message (without "file:line: "). */
typedef int (*sc_setter)(struct sidecar *sc, const char *v, char *why, size_t whysz);

static int sc_bad(char *why, size_t whysz, const char *key, const char *v, const char *expect)
{
	char q[SC_QUOTE_BUF];

	sc_quote(q, sizeof(q), v, strlen(v));
	sc_why(why, whysz, "bad %s '%s': %s", key, q, expect);
	return -EINVAL;
}

static int sc_over(char *why, size_t whysz, const char *key, const char *v, const char *limit)
{
	char q[SC_QUOTE_BUF];

	sc_quote(q, sizeof(q), v, strlen(v));
	sc_why(why, whysz, "%s %s is over the limit of %s", key, q, limit);
	return -EINVAL;
}

/* An enum value by name, ignoring case; -1 when none matches. */
static int sc_lookup(const char *v, const char *const *names, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (names[i][0] && !strcasecmp(v, names[i]))
			return i;
	return -1;
}

static int sc_bool(const char *v)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};

	if (sc_lookup(v, yes, 4) >= 0)
		return 1;
	if (sc_lookup(v, no, 4) >= 0)
		return 0;
	return -1;
}

static int sc_set_text(char *dst, size_t dstsz, const char *key, const char *v, char *why, size_t whysz)
{
	size_t n = strlen(v), i;

	if (n >= dstsz) {
		sc_why(why, whysz, "%s is %zu bytes, over the limit of %zu", key, n, dstsz - 1);
		return -EINVAL;
	}
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c < 0x20 || c == 0x7f)
			return sc_bad(why, whysz, key, v, "control characters are not allowed");
	}
	memcpy(dst, v, n + 1);
	return 0;
}

/*
 * An integer key.  Values under lo (or not integers at all) get "bad KEY
 * 'V': expect"; values over hi get "KEY V is over the limit of HI" when
 * over_msg, since "expected a positive integer" would puzzle someone who
 * wrote a positive integer.
 */
static int sc_int_key(const char *key, const char *v, long long lo, long long hi, const char *expect,
		      int over_msg, int *out, char *why, size_t whysz)
{
	long long x;
	char lim[32];

	if (sc_parse_int(v, strlen(v), &x) || x < lo || (x > hi && !over_msg))
		return sc_bad(why, whysz, key, v, expect);
	if (x > hi) {
		snprintf(lim, sizeof(lim), "%lld", hi);
		return sc_over(why, whysz, key, v, lim);
	}
	*out = (int)x;
	return 0;
}

/* A number key: > lo (lo_open) or >= lo, and <= hi. */
static int sc_num_key(const char *key, const char *v, double lo, int lo_open, double hi, const char *hi_text,
		      const char *expect, double *out, char *why, size_t whysz)
{
	double x;

	if (sc_parse_num(v, &x) || x < lo || (lo_open && x == lo))
		return sc_bad(why, whysz, key, v, expect);
	if (x > hi)
		return sc_over(why, whysz, key, v, hi_text);
	*out = x;
	return 0;
}

static int sc_set_frames(struct sidecar *sc, const char *v, char *why, size_t whysz)
{
	return sidecar_parse_frames(v, &sc->frames, &sc->nframes, why, whysz);
}

static int sc_set_scene(struct sidecar *sc, const char *v, char *why, size_t whysz)
{
	return sc_set_text(sc->scene, sizeof(sc->scene), "scene", v, why, whysz);
}

static int sc_set_engine(struct sidecar *sc, const char *v, char *why, size_t whysz)
{
	int i = sc_lookup(v, sc_engines, 4);

	if (i < 0)
		return sc_bad(why, whysz, "engine", v, "expected cycles, eevee or workbench");
	sc->engine = (enum sc_engine)i;
	return 0;
}

static int sc_set_device(struct sidecar *sc, const char *v, char *why, size_t whysz)
{
	int i = sc_lookup(v, sc_devices, 5);

	if (i < 0)
		return sc_bad(why, whysz, "device", v, "expected auto, optix, cuda, hip or cpu");
	sc->device = (enum sc_device)i;
	return 0;
}

static int sc_set_samples(struct sidecar *sc, const char *v, char *why, size_t whysz)
{
	return sc_int_key("samples", v, 1, SC_SAMPLES_MAX, "expected a positive integer", 1, &sc->samples,
			  why, whysz);
}

static int sc_set_resolution(struct sidecar *sc, const char *v, char *why, size_t whysz)
{
	static const char expect[] = "expected WxH (like 1920x1080) or N% (like 50%)";
	size_t n = strlen(v);
	const char *x;
	long long w, h;

	if (v[n - 1] == '%') {
		size_t pn = n - 1;
		const char *num = sc_trim(v, &pn);

		if (sc_parse_int(num, pn, &w) || num[0] == '+' || num[0] == '-')
			return sc_bad(why, whysz, "resolution", v, expect);
		if (w < 1 || w > 1000)
			return sc_bad(why, whysz, "resolution", v, "the percentage must be 1 to 1000");
		sc->res_pct = (int)w;
		return 0;
	}
	x = strpbrk(v, "xX");
	if (!x)
		return sc_bad(why, whysz, "resolution", v, expect);
	{
		size_t wn = (size_t)(x - v), hn = n - wn - 1;
		const char *ws = sc_trim(v, &wn), *hs = sc_trim(x + 1, &hn);

		if (sc_parse_int(ws, wn, &w) || sc_parse_int(hs, hn, &h) || !wn || !hn || ws[0] == '+' ||
		    ws[0] == '-' || hs[0] == '+' || hs[0] == '-')
			return sc_bad(why, whysz, "resolution", v, expect);
		if (w < 1 || w > SIDECAR_RES_MAX || h < 1 || h > SIDECAR_RES_MAX)
			return sc_bad(why, whysz, "resolution", v, "width and height must be 1 to 32768");
	}
	sc->res_w = (int)w;
	sc->res_h = (int)h;
	return 0;
}

static int sc_set_format(struct sidecar *sc, const char *v, char *why, size_t whysz)
{
	/* the common short spellings, as in file extensions */
	static const char *const alias[] = {"png", "exr", "jpg", "tif"};
	int i = sc_lookup(v, sc_formats, 4);

	if (i < 0)
		i = sc_lookup(v, alias, 4);
	if (i < 0)
		return sc_bad(why, whysz, "format", v, "expected png, exr, jpeg or tiff");
	sc->format = (enum sc_format)i;
	return 0;
}

static int sc_set_video(struct sidecar *sc, const char *v, char *why, size_t whysz)
{
	int b = sc_bool(v);

	if (b < 0)
		return sc_bad(why, whysz, "video", v, "expected yes or no");
	sc->video = b;
	return 0;
}

/* missing = ignore: render although files the scene uses are not in the
 * drop (intake lists them in status as missing_files:); refuse is the
 * default. */
static int sc_set_missing(struct sidecar *sc, const char *v, char *why, size_t whysz)
{
	if (!strcmp(v, "ignore"))
		sc->missing_ignore = 1;
	else if (!strcmp(v, "refuse"))
		sc->missing_ignore = 0;
	else
		return sc_bad(why, whysz, "missing", v, "expected ignore or refuse");
	return 0;
}

static int sc_set_fps(struct sidecar *sc, const char *v, char *why, size_t whysz)
{
	return sc_num_key("fps", v, 0, 1, 1000, "1000", "expected a positive number", &sc->fps, why, whysz);
}

static int sc_set_retries(struct sidecar *sc, const char *v, char *why, size_t whysz)
{
	return sc_int_key("retries", v, 0, 100, "expected an integer from 0 to 100", 0, &sc->retries, why,
			  whysz);
}

static int sc_set_timeout(struct sidecar *sc, const char *v, char *why, size_t whysz)
{
	int64_t ms;
	int rc = sc_duration(v, &ms);

	if (rc == -ERANGE)
		return sc_over(why, whysz, "timeout", v, "30 days");
	if (rc)
		return sc_bad(why, whysz, "timeout", v, "expected a duration like 90s, 30m, 2h or 1h30m");
	if (!ms)
		return sc_bad(why, whysz, "timeout", v, "it must be more than zero");
	sc->timeout_s = (ms + 999) / 1000;
	return 0;
}

static int sc_set_priority(struct sidecar *sc, const char *v, char *why, size_t whysz)
{
	return sc_int_key("priority", v, -1000000, 1000000, "expected an integer from -1000000 to 1000000", 0,
			  &sc->priority, why, whysz);
}

static int sc_set_nodes(struct sidecar *sc, const char *v, char *why, size_t whysz)
{
	return sc_int_key("nodes", v, 1, 1000, "expected a positive integer", 1, &sc->nodes, why, whysz);
}

static int sc_set_gpu(struct sidecar *sc, const char *v, char *why, size_t whysz)
{
	return sc_set_text(sc->gpu, sizeof(sc->gpu), "gpu", v, why, whysz);
}

static int sc_set_min_vram(struct sidecar *sc, const char *v, char *why, size_t whysz)
{
	return sc_num_key("min_vram", v, 0, 0, 1e6, "1000000", "expected a number of 0 or more",
			  &sc->min_vram, why, whysz);
}

static int sc_set_max_price(struct sidecar *sc, const char *v, char *why, size_t whysz)
{
	return sc_num_key("max_price", v, 0, 1, 1e6, "1000000", "expected a positive number", &sc->max_price,
			  why, whysz);
}

static int sc_set_spot(struct sidecar *sc, const char *v, char *why, size_t whysz)
{
	int b = sc_bool(v);

	if (b < 0)
		return sc_bad(why, whysz, "spot", v, "expected yes or no");
	sc->spot = b;
	return 0;
}

static int sc_set_budget(struct sidecar *sc, const char *v, char *why, size_t whysz)
{
	return sc_num_key("budget", v, 0, 0, 1e9, "1000000000", "expected a number of 0 or more", &sc->budget,
			  why, whysz);
}

enum { SC_KEY_FRAMES = 0 };

static const struct {
	const char *name;
	sc_setter set;
} sc_keys[] = {
    [SC_KEY_FRAMES] = {"frames", sc_set_frames},
    {"scene", sc_set_scene},
    {"engine", sc_set_engine},
    {"device", sc_set_device},
    {"samples", sc_set_samples},
    {"resolution", sc_set_resolution},
    {"format", sc_set_format},
    {"video", sc_set_video},
    {"fps", sc_set_fps},
    {"retries", sc_set_retries},
    {"timeout", sc_set_timeout},
    {"priority", sc_set_priority},
    {"nodes", sc_set_nodes},
    {"gpu", sc_set_gpu},
    {"min_vram", sc_set_min_vram},
    {"max_price", sc_set_max_price},
    {"spot", sc_set_spot},
    {"budget", sc_set_budget},
    {"missing", sc_set_missing},
};

#define SC_NKEYS (sizeof(sc_keys) / sizeof(sc_keys[0]))

/* Keys are matched exactly: product.md spells them in lower case, and a
 * key that silently means the same in two spellings invites duplicates. */
static int sc_key_index(const char *k, size_t n)
{
	size_t i;

	for (i = 0; i < SC_NKEYS; i++)
		if (strlen(sc_keys[i].name) == n && !memcmp(sc_keys[i].name, k, n))
			return (int)i;
	return -1;
}

/* ---- the file -------------------------------------------------------- */

struct sc_parser {
	const char *fname;
	struct sidecar sc;
	char *err; /* collected messages, NUL-terminated */
	size_t err_len, err_cap;
	int nomem;
	unsigned seen[SC_NKEYS]; /* line a key was first given on, 0 = not yet */
	int content_lines;       /* lines that were neither blank nor comment */
	int frames_tried;        /* a frame list was given, even a bad one */
};

static void sc_err(struct sc_parser *ps, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void sc_err(struct sc_parser *ps, unsigned line, const char *fmt, ...)
{
	char msg[SC_WHY_MAX + SC_QUOTE_BUF], fn[SC_FNAME_MAX * 4 + 8];
	va_list ap;
	int n;
	size_t need;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sc_escape(fn, sizeof(fn), ps->fname, strlen(ps->fname), SC_FNAME_MAX, 0);
	n = snprintf(NULL, 0, "%s:%u: %s\n", fn, line, msg);
	if (n < 0) {
		ps->nomem = 1;
		return;
	}
	need = ps->err_len + (size_t)n + 1;
	if (need > ps->err_cap) {
		size_t cap = ps->err_cap ? ps->err_cap : 256;
		char *p;

		while (cap < need)
			cap *= 2;
		p = realloc(ps->err, cap);
		if (!p) {
			ps->nomem = 1;
			return;
		}
		ps->err = p;
		ps->err_cap = cap;
	}
	snprintf(ps->err + ps->err_len, (size_t)n + 1, "%s:%u: %s\n", fn, line, msg);
	ps->err_len += (size_t)n;
}

/* The first byte of line[0..n) that makes it not text, reported; -1 if none. */
static int sc_check_text(struct sc_parser *ps, unsigned lineno, const char *line, size_t n)
{
	size_t i = 0, l;

	while (i < n) {
		unsigned char c = (unsigned char)line[i];

		if (!c) {
			sc_err(ps, lineno, "NUL byte at column %zu (is this a text file?)", i + 1);
			return -1;
		}
		l = util_utf8_seq((const unsigned char *)line + i, n - i, NULL);
		if (!l) {
			sc_err(ps, lineno, "invalid UTF-8 (byte 0x%02x at column %zu)", c, i + 1);
			return -1;
		}
		i += l;
	}
	return 0;
}

static int sc_is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static void sc_apply(struct sc_parser *ps, unsigned lineno, int k, char *val)
{
	char why[SC_WHY_MAX];
	int rc;

	why[0] = '\0';
	rc = sc_keys[k].set(&ps->sc, val, why, sizeof(why));
	if (rc == -ENOMEM)
		ps->nomem = 1;
	else if (rc)
		sc_err(ps, lineno, "%s", why);
}

/*
 * One line, already split off and NUL-terminated at line[n].  text_ok is
 * zero when the line is not valid text: it was reported already, and is
 * looked at only to learn whether it held the frame list, so that the
 * user is not also told the list is missing.
 */
static void sc_line(struct sc_parser *ps, unsigned lineno, char *line, size_t n, int text_ok)
{
	char q[SC_QUOTE_BUF], *hash, *eq, *key, *val;
	size_t kn, vn;
	int first, k;

	hash = memchr(line, '#', n);
	if (hash)
		n = (size_t)(hash - line);
	line = (char *)sc_trim(line, &n);
	if (!n)
		return;
	line[n] = '\0';
	first = ps->content_lines++ == 0;
	eq = memchr(line, '=', n);
	if (!eq) {
		int framish = !sc_is_alpha(line[0]);

		if (framish)
			ps->frames_tried = 1;
		if (!text_ok)
			return;
		sc_quote(q, sizeof(q), line, n);
		if (first && framish) {
			ps->seen[SC_KEY_FRAMES] = lineno;
			sc_apply(ps, lineno, SC_KEY_FRAMES, line);
		} else if (first) {
			sc_err(ps, lineno, "expected a frame list or 'key = value', got '%s'", q);
		} else if (framish) {
			sc_err(ps, lineno,
			       "expected 'key = value', got '%s' "
			       "(a bare frame list must be the first line)",
			       q);
		} else {
			sc_err(ps, lineno, "expected 'key = value', got '%s'", q);
		}
		return;
	}
	kn = (size_t)(eq - line);
	key = (char *)sc_trim(line, &kn);
	vn = (size_t)(line + n - eq - 1);
	val = (char *)sc_trim(eq + 1, &vn);
	val[vn] = '\0';
	k = sc_key_index(key, kn);
	if (k == SC_KEY_FRAMES)
		ps->frames_tried = 1;
	if (!text_ok)
		return;
	if (!kn) {
		sc_err(ps, lineno, "missing key before '='");
		return;
	}
	if (k < 0) {
		sc_quote(q, sizeof(q), key, kn);
		sc_err(ps, lineno, "unknown key '%s'", q);
		return;
	}
	if (ps->seen[k]) {
		sc_err(ps, lineno, "duplicate key '%s' (first on line %u)", sc_keys[k].name, ps->seen[k]);
		return;
	}
	ps->seen[k] = lineno;
	if (!vn) {
		sc_err(ps, lineno, "no value for '%s'", sc_keys[k].name);
		return;
	}
	sc_apply(ps, lineno, k, val);
}

static void sc_defaults(struct sidecar *sc)
{
	memset(sc, 0, sizeof(*sc));
	sc->engine = SC_ENGINE_SAVED;
	sc->device = SC_DEVICE_AUTO;
	sc->format = SC_FORMAT_PNG;
	sc->video = -1;
	sc->retries = 3;
	sc->min_vram = -1;
	sc->max_price = -1;
	sc->spot = -1;
	sc->budget = -1;
}

int sidecar_parse(const char *text, size_t len, const char *fname, struct sidecar *out, char **errors)
{
	struct sc_parser ps;
	char *buf = NULL;
	size_t pos = 0;
	unsigned lineno = 0;
	int rc;

	memset(&ps, 0, sizeof(ps));
	ps.fname = fname ? fname : "?";
	sc_defaults(&ps.sc);
	sc_defaults(out);
	if (errors)
		*errors = NULL;
	if (!text)
		len = 0;

	if (len > SIDECAR_MAX_BYTES) {
		/* not worth reading: whatever it is, it is not a sidecar */
		sc_err(&ps, 0, "file is %zu bytes, over the limit of %u", len, SIDECAR_MAX_BYTES);
		goto done;
	}
	/* a private copy so each line can be NUL-terminated in place */
	buf = malloc(len + 1);
	if (!buf) {
		ps.nomem = 1;
		goto done;
	}
	if (len)
		memcpy(buf, text, len);
	buf[len] = '\0';
	/* editors on Windows like to start UTF-8 with a byte order mark */
	if (len >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3))
		pos = 3;
	while (pos < len) {
		char *nl = memchr(buf + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - buf) : len, n = end - pos;
		int text_ok;

		lineno++;
		if (n && buf[pos + n - 1] == '\r')
			n--; /* CRLF */
		text_ok = sc_check_text(&ps, lineno, buf + pos, n) == 0;
		buf[pos + n] = '\0';
		sc_line(&ps, lineno, buf + pos, n, text_ok);
		pos = end + 1;
	}
	/* No frame list is fine: the scene's own range is rendered (intake
	 * reads it from the .blend; nframes stays 0 here). */

done:
	free(buf);
	if (ps.nomem) {
		rc = -ENOMEM;
	} else if (ps.err_len) {
		rc = -EINVAL;
		if (errors) {
			*errors = ps.err;
			ps.err = NULL;
		}
	} else {
		*out = ps.sc;
		return 0;
	}
	free(ps.err);
	sidecar_free(&ps.sc);
	return rc;
}

void sidecar_free(struct sidecar *sc)
{
	if (!sc)
		return;
	free(sc->frames);
	sc->frames = NULL;
	sc->nframes = 0;
}
