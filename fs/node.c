/*
 * node: the index from an inode number to its kind's table of operations
 * (node.h), and the pieces every kind uses: the attribute fillers, frame
 * name parsing, and the byte format of a directory listing.
 */
#include "node.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Thread_local struct node_caller node_caller;

/* An inode that names no kind (the kernel only has those we gave it, so
 * these answer only a forged number): every answer is a default, except
 * that creating in an unknown fixed inode is refused as in the root. */
static const struct node_ops node_none = {0};
static const struct node_ops node_fixed_none = {.refuse_create = EACCES};

static const struct node_ops *const fixed_kinds[] = {
    [I_ROOT] = &node_root,
    [I_STATUS] = &node_farm_status,
    [I_STATUSJSON] = &node_farm_status_json,
    [I_QUEUE] = &node_queue,
    [I_OUT] = &node_out,
    [I_NODES] = &node_nodes,
};

static const struct node_ops *const typed_kinds[] = {
    [T_QFILE] = &node_qfile,
    [T_QERR] = &node_qerr,
    [T_JOB] = &node_job,
    [T_JSTATUS] = &node_job_status,
    [T_JSTATUSJSON] = &node_job_status_json,
    [T_JCONTROL] = &node_jcontrol,
    [T_JLOGS] = &node_jlogs,
    [T_JVIDEO] = &node_jvideo,
    [T_FRAME] = &node_frame,
    [T_LOG] = &node_log,
    [T_NODE] = &node_node,
    [T_NSTATUS] = &node_node_status,
    [T_NSTATUSJSON] = &node_node_status_json,
};

_Static_assert(ARRAY_SIZE(typed_kinds) == T_NSTATUSJSON + 1, "every inode type has a table");
_Static_assert(ARRAY_SIZE(fixed_kinds) == I_NODES + 1, "every fixed inode has a table");

const struct node_ops *node_ops(fuse_ino_t ino)
{
	uint64_t type = ino >> 48;
	int64_t id = INO_ID(ino);

	if (type == T_FIXED) {
		if (id < 0 || (uint64_t)id >= ARRAY_SIZE(fixed_kinds) || !fixed_kinds[id])
			return &node_fixed_none;
		return fixed_kinds[id];
	}
	if (type >= ARRAY_SIZE(typed_kinds) || !typed_kinds[type])
		return &node_none;
	return typed_kinds[type];
}

void node_fill_dir(struct stat *st, fuse_ino_t ino, mode_t mode)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = S_IFDIR | mode;
	st->st_nlink = 2;
	st->st_uid = getuid();
	st->st_gid = getgid();
}

void node_fill_reg(struct stat *st, fuse_ino_t ino, mode_t mode, off_t size, int64_t mtime_ms)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = S_IFREG | mode;
	st->st_nlink = 1;
	st->st_size = size;
	st->st_blocks = (size + 511) / 512;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_mtim.tv_sec = mtime_ms / 1000;
	st->st_mtim.tv_nsec = (mtime_ms % 1000) * 1000000;
	st->st_atim = st->st_ctim = st->st_mtim;
}

int node_stat_file(const char *path, fuse_ino_t ino, mode_t mode, struct stat *st)
{
	struct stat sb;

	if (stat(path, &sb) < 0)
		return -errno;
	node_fill_reg(st, ino, mode, sb.st_size, 0);
	st->st_mtim = sb.st_mtim;
	st->st_atim = sb.st_atim;
	st->st_ctim = sb.st_ctim;
	return 0;
}

uid_t node_uid(int64_t uid)
{
	return uid < 0 || uid > (int64_t)UINT32_MAX - 1 ? getuid() : (uid_t)uid;
}

gid_t node_gid(int64_t gid)
{
	return gid < 0 || gid > (int64_t)UINT32_MAX - 1 ? getgid() : (gid_t)gid;
}

int node_caller_owns(uid_t uid)
{
	return node_caller.uid == 0 || node_caller.uid == uid;
}

int node_sticky_check(uid_t uid)
{
	return node_caller_owns(uid) || node_caller.uid == getuid() ? 0 : -EPERM;
}

int node_caller_in_group(gid_t gid)
{
	gid_t groups[64];
	int n;

	if (node_caller.gid == gid)
		return 1;
	if (!node_caller.req)
		return 0;
	n = fuse_req_getgroups(node_caller.req, (int)ARRAY_SIZE(groups), groups);
	for (int i = 0; i < n && i < (int)ARRAY_SIZE(groups); i++)
		if (groups[i] == gid)
			return 1;
	return 0;
}

int node_access(const struct stat *st, int mask)
{
	mode_t bits;

	mask &= R_OK | W_OK | X_OK;
	if (node_caller.uid == 0) {
		/* Root reads and writes anything; it executes only what some
		 * x bit allows, as the kernel decides for root. */
		if ((mask & X_OK) && !S_ISDIR(st->st_mode) && !(st->st_mode & 0111))
			return -EACCES;
		return 0;
	}
	if (node_caller.uid == st->st_uid)
		bits = (st->st_mode >> 6) & 7;
	else if (node_caller_in_group(st->st_gid))
		bits = (st->st_mode >> 3) & 7;
	else
		bits = st->st_mode & 7;
	return ((mode_t)mask & ~bits) ? -EACCES : 0;
}

/* The first time anyone asked: the fallback of directories the store has
 * no time for. */
static int64_t started_ms(void)
{
	static _Atomic int64_t started;
	int64_t v = atomic_load(&started), now;

	if (v)
		return v;
	now = util_now_ms();
	return atomic_compare_exchange_strong(&started, &v, now) ? now : v;
}

int64_t node_dir_time(struct store *s, enum change_kind kind, int64_t id, int64_t fallback)
{
	int64_t at = 0;

	if (!s || store_dir_time(s, kind, id, &at) || at <= 0)
		at = 0;
	if (fallback > at)
		at = fallback;
	return at ? at : started_ms();
}

void node_set_times(struct stat *st, int64_t ms)
{
	st->st_mtim.tv_sec = ms / 1000;
	st->st_mtim.tv_nsec = (ms % 1000) * 1000000;
	st->st_atim = st->st_ctim = st->st_mtim;
}

fuse_ino_t node_parent(fuse_ino_t dir)
{
	int64_t id = INO_ID(dir);

	switch (INO_TYPE(dir)) {
	case T_FIXED:
		return id == I_ROOT || id == I_QUEUE || id == I_OUT || id == I_NODES ? INO(T_FIXED, I_ROOT) : 0;
	case T_JOB:
		return INO(T_FIXED, I_OUT);
	case T_JLOGS:
		return INO(T_JOB, id);
	case T_NODE:
		return INO(T_FIXED, I_NODES);
	default:
		return 0;
	}
}

int node_is_write(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

long node_parse_frame_name(const char *name, const char *ext)
{
	const char *p = name + 6;
	char *end;
	long n;

	if (strncmp(name, "frame_", 6) || !(*p >= '0' && *p <= '9'))
		return -1;
	n = strtol(p, &end, 10);
	if (strcmp(end, ext) || end - p < 4 || (end - p > 4 && *p == '0') || n < 0 || n > 1048574)
		return -1;
	return n;
}

/*
 * A listing is a byte string of entries: the inode (8 bytes, little
 * endian), a kind byte ('d' directory, 'f' file, 'F' a frame whose size and
 * mtime follow as two more 8-byte fields, so readdirplus needs no lookup for
 * it), the name, and a NUL.
 */
static void put_u64(struct listing *l, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		util_sb_printf(&l->names, "%c", (char)((v >> (8 * i)) & 0xff));
}

static uint64_t get_u64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void list_add_kind(struct listing *l, fuse_ino_t ino, char kind, int64_t size, int64_t mtime,
			  const char *name)
{
	if (l->names.oom || node_hidden(ino))
		return;
	put_u64(l, ino);
	util_sb_printf(&l->names, "%c", kind);
	if (kind == 'F') {
		put_u64(l, (uint64_t)size);
		put_u64(l, (uint64_t)mtime);
	}
	util_sb_printf(&l->names, "%s%c", name, 0);
}

void list_add(struct listing *l, fuse_ino_t ino, int is_dir, const char *name)
{
	list_add_kind(l, ino, is_dir ? 'd' : 'f', 0, 0, name);
}

void list_add_frame(struct listing *l, fuse_ino_t ino, int64_t size, int64_t mtime, const char *name)
{
	list_add_kind(l, ino, 'F', size, mtime, name);
}

void list_entry_at(const char *buf, size_t pos, struct listing_entry *e)
{
	const unsigned char *p = (const unsigned char *)buf + pos;

	e->ino = get_u64(p);
	e->kind = (char)p[8];
	e->size = e->kind == 'F' ? (int64_t)get_u64(p + 9) : 0;
	e->mtime = e->kind == 'F' ? (int64_t)get_u64(p + 17) : 0;
	e->name = (const char *)p + (e->kind == 'F' ? 25 : 9);
	e->next = (size_t)(e->name - buf) + strlen(e->name) + 1;
}
