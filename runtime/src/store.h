/* esr/store.h — one partition's SQLite database: state, resume position and outbox, committed together.
 *
 * The store opens `<dir>/<topic>-<partition>.db` in WAL mode with synchronous=NORMAL. Its table esr_offsets holds the
 * partition's position (next_offset, the log digest chain, counters) and is only written by esr_store_commit, in the
 * same transaction as everything the batch changed: after any crash the state and the position roll back together,
 * which is why no fsync per event is needed. A store is used by one thread at a time. Transactions nest one level:
 * a batch (begin/commit/rollback) holds per-event savepoints (savepoint/release/rollback_to). While the `guard` is on
 * (handler code runs), an SQLite authorizer denies transaction control, ATTACH, DETACH, durability pragmas and any
 * change to esr's own tables (esr_offsets, esr_outbox, esr_outputs, esr_handlers), so a plugin cannot break the
 * batch's atomicity or lose a dead letter. Statements handed out by esr_store_stmt are cached for the store's life.
 */
#ifndef ESR_STORE_H
#define ESR_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;
typedef struct esr_store esr_store;

#define ESR_DIGEST_LEN 32

/* Where a partition stands: the next offset to apply and the proof of which events led there. */
typedef struct esr_position {
  int64_t next_offset;
  uint8_t log_digest[ESR_DIGEST_LEN]; /* hash chain over (offset, key, value) of every event consumed */
  int64_t applied;                     /* events applied */
  int64_t dead;                        /* events dead-lettered */
} esr_position;

typedef struct esr_store_opts {
  int cache_mb; /* page cache in MiB (sqlite.cache.mb); 0: SQLite's default */
} esr_store_opts;

/* Process-wide SQLite settings, for a program's start, before any other SQLite call (later, it changes nothing):
 * SQLite's memory statistics off (they take one global mutex on every allocation and free, which apply threads
 * working on different databases would otherwise contend for), and SQLite's error log routed to the storage-fault
 * tracker of esr_store_guard_fault. */
void esr_store_init_library(void);
/* 1 when an SQLite extended code is a failure of the storage rather than of the statement (I/O error, full disk, out
 * of memory, corruption, read-only or unopenable file): never an event's fault. */
int esr_store_is_storage_fault(int ext);

/* Builds "<dir>/<topic>-<partition>.db" into buf. */
void esr_store_path(char *buf, size_t cap, const char *dir, const char *topic, int32_t partition);
/* Keeps a database for inspection, never deleting it: renames `path` with its -wal and -journal to
 * "<path>.<tag>-<UTC time>" (a name no file has yet; into aside) and removes its -shm. The database must be closed. */
esr_code esr_store_move_aside(const char *path, const char *tag, char *aside, size_t cap, esr_error *err);

/* Opens (creating when absent) the database of topic/partition in `dir`. A database that belongs to another
 * topic/partition, or is not a database, is ESR_E_CORRUPT. */
esr_code esr_store_open(const char *dir, const char *topic, int32_t partition, const esr_store_opts *opts,
                        esr_store **out, esr_error *err);
/* Closes; rolls back an open transaction. NULL is a no-op. */
void esr_store_close(esr_store *s);

sqlite3 *esr_store_db(esr_store *s);
const char *esr_store_topic(const esr_store *s);
int32_t esr_store_partition(const esr_store *s);
/* The position as of the last commit (or as read at open). */
const esr_position *esr_store_position(const esr_store *s);
int esr_store_in_batch(const esr_store *s);

esr_code esr_store_begin(esr_store *s, esr_error *err);
/* Writes `pos` to esr_offsets and commits. On failure the transaction is rolled back and the committed position kept. */
esr_code esr_store_commit(esr_store *s, const esr_position *pos, esr_error *err);
esr_code esr_store_rollback(esr_store *s, esr_error *err);
/* Grows whenever the connection changes a row (sqlite3_total_changes64: handlers', triggers' and the host's outbox
 * rows) or a handler prepares a statement that changes the schema (the authorizer sees it at prepare). Equal marks
 * before and after a handler call: it changed nothing. A cached schema-changing statement run again is not seen. */
uint64_t esr_store_write_mark(const esr_store *s);
esr_code esr_store_savepoint(esr_store *s, esr_error *err);
esr_code esr_store_release(esr_store *s, esr_error *err);
esr_code esr_store_rollback_to(esr_store *s, esr_error *err);

/* Copies the WAL into the database and truncates it (outside a batch; skipped with ESR_E_STATE when a reader is busy).
 * A short WAL makes the next open after a crash fast: SQLite rereads the whole WAL to recover its index. */
esr_code esr_store_wal_truncate(esr_store *s, esr_error *err);
/* Frames in the WAL as of the last commit or truncation (at open: an upper bound from the file's size). */
int esr_store_wal_frames(const esr_store *s);
/* Turns the handler guard on or off (see the file comment). Turning it off resets statements left mid-step. */
void esr_store_guard(esr_store *s, int on);
/* The first storage failure (SQLite extended code, esr_store_is_storage_fault) SQLite met on this thread while the
 * guard was last on, or 0: whatever a handler returned then, its verdict is not to be trusted. Needs
 * esr_store_init_library (without it, only a statement the host prepared for the handler is seen). */
int esr_store_guard_fault(const esr_store *s);

/* A cached prepared statement for handler code, reset with bindings cleared; NULL with err set when `sql` does not
 * compile (or the guard denies it). Borrowed. */
sqlite3_stmt *esr_store_stmt(esr_store *s, const char *sql, esr_error *err);
/* The same for the host's own statements (esr_* tables): a separate cache, never lent to handlers. */
sqlite3_stmt *esr_store_host_stmt(esr_store *s, const char *sql, esr_error *err);
/* Marks a host service running inside a handler callback (emit): the guard does not apply to what it executes. */
void esr_store_host_call(esr_store *s, int on);

/* The schema version of handler `name`'s tables in this database (0 when none). */
esr_code esr_store_handler_version(esr_store *s, const char *name, int *version, esr_error *err);
/* Records it (inside the caller's transaction). */
esr_code esr_store_set_handler_version(esr_store *s, const char *name, int version, const char *plugin_version,
                                       esr_error *err);

/* Fills err from the connection's last error: "<what>: <sqlite message>", code ESR_E_SQLITE, lib_code extended code. */
esr_code esr_store_error(esr_store *s, esr_error *err, const char *what);

#endif
