/* statedigest.h — the state digest: one SHA-256 over a partition's state, independent of how the state came to be.
 *
 * The digest covers the tables of the state (statetables.h: every table not named esr_* or sqlite_*), in name order:
 * each table's name and columns (PRAGMA table_xinfo), then its rows in canonical order (primary-key order; a table
 * without a declared key: its rows' encodings in byte order, the rowid left out), each value with its type. It reads
 * values, never pages: equal states give equal digests whatever their history (VACUUM, checkpoints, batch sizes, the
 * order rows were written in), and any change of a value, a row, a column or a table changes it. The digest of
 * version 1 hashes "esr-state-digest-1\n" first, so that another encoding can never be mistaken for this one.
 *
 * esr_state_summarize reads, in one read transaction, a partition database's position (esr_offsets) and its state
 * digest: the pair that says "this state is the fold of the log up to next_offset". It is safe beside a worker that
 * commits to the same database (WAL: a reader sees one commit and never blocks the writer).
 */
#ifndef ESR_STATEDIGEST_H
#define ESR_STATEDIGEST_H

#include <stdint.h>

#include "error.h"

typedef struct sqlite3 sqlite3;

#define ESR_STATE_DIGEST_VERSION 1

/* The state digest of the main database of `db`, as of the caller's read transaction (or of now, without one). */
esr_code esr_state_digest(sqlite3 *db, uint8_t out[32], esr_error *err);

typedef struct esr_state_summary {
  int has_position; /* 0: esr_offsets holds no row (nothing committed yet), or the table does not exist */
  char topic[256];
  int32_t partition;
  int64_t next_offset;
  uint8_t log_digest[32];
  int64_t applied, dead;
  uint8_t state_digest[32];
} esr_state_summary;

/* Position and state digest of `db` in one read transaction: the caller's when one is open, else one of its own. */
esr_code esr_state_summarize(sqlite3 *db, esr_state_summary *out, esr_error *err);
/* The same for the file at `path`, opened read-only. */
esr_code esr_state_summarize_file(const char *path, esr_state_summary *out, esr_error *err);

#endif
