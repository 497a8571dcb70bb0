/*
 * hostkeys: see hostkeys.h.
 */
#include "store/hostkeys.h"

#include <errno.h>
#include <stdio.h>

int store_hostkey_get(struct store *st, const char *node, char *buf, size_t sz)
{
	sqlite3_stmt *s;
	int rc = store_prepare(st, "SELECT fingerprint FROM hostkeys WHERE node = ?", &s);

	if (sz)
		buf[0] = '\0';
	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, node, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		snprintf(buf, sz, "%s", (const char *)sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
	return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : store_errno(rc);
}

int store_hostkey_pin(struct store *st, const char *node, const char *fingerprint, int64_t now)
{
	sqlite3_stmt *s;
	int rc =
	    store_prepare(st, "INSERT INTO hostkeys(node, fingerprint, first_seen) VALUES (?, ?, ?)", &s);

	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, node, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, fingerprint, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, now);
	rc = store_errno(sqlite3_step(s));
	sqlite3_finalize(s);
	return rc;
}

void store_hostkey_forget_command(const char *node, char *buf, size_t sz)
{
	snprintf(buf, sz, "sqlite3 STATE/renderfs.db \"DELETE FROM hostkeys WHERE node = '%s'\"", node);
}
