/*
 * status: the text and JSON status files, each rendered from one read
 * transaction so every number in a file agrees with every other.  The text
 * is "key: value" lines with stable keys; the JSON holds the same facts
 * under the same names (money in USD, durations in seconds, progress in
 * percent, frame lists as arrays).
 *
 * Ownership: output is appended to the caller's util_sb.
 */
#ifndef RENDERFS_STATUS_H
#define RENDERFS_STATUS_H

#include <stdint.h>
#include "store/store.h"
#include "core/util.h"

int status_job(struct store *st, int64_t job, int json, struct util_sb *out);
int status_farm(struct store *st, int json, struct util_sb *out);
int status_node(struct store *st, int64_t node, int json, struct util_sb *out);

#endif
