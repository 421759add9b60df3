/* esrt_recovery.h — test support for checkpoints, the recovery ladder and partitions that move between workers:
 * reading what a worker logged (assignments with the ladder step taken, refusals, checkpoints, releases), damaging
 * state on purpose (a b-tree page overwritten, a file truncated, a live database removed), listing checkpoints and
 * set-aside files, an oracle fed from the produced events themselves (for logs whose start was deleted by retention),
 * and a caught-up wait that tolerates stale copies of a partition in former owners' directories. */
#ifndef ESRT_RECOVERY_H
#define ESRT_RECOVERY_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "esrt_kafka.h"
#include "esrt_ledger.h"
#include "esrt_state.h"

/* ---- worker logs (text or JSON format) ---- */

/* `<topic>[<p>]: assigned; resuming at offset N (...); recovery: <step> in X ms[; K events to replay][; <detail>]` */
typedef struct esrt_assignment {
  int64_t ts_ms; /* the line's UTC timestamp, ms since the epoch; -1 when it has none */
  int line;      /* 1-based line number in the log */
  int32_t partition;
  int64_t offset;      /* where it resumed */
  char step[48];       /* "live database", "local checkpoint", "remote checkpoint", "log replay from offset 0" */
  int64_t recovery_ms; /* the ladder's own time */
  int64_t opened_ms;   /* ladder and open together ("opened in X ms"): the ladder began at ts_ms - opened_ms */
  int64_t to_replay;   /* -1 when not logged (log end unknown) */
  char detail[1024];   /* JSON escapes undone; "" when none */
} esrt_assignment;

/* `<topic>[<p>]: partition stopped: ...` (a refusal, a fatal handler, ...) */
typedef struct esrt_stop_line {
  int64_t ts_ms;
  int line;
  int32_t partition;
  int64_t needed;    /* "no longer holds offset N": N, else -1 */
  int64_t log_start; /* "the log now starts at M": M, else -1 */
  char text[1024];   /* what follows "partition stopped: " */
} esrt_stop_line;

/* `<topic>[<p>]: checkpoint at offset N (S MB) written in X ms[, uploaded in Y ms]` */
typedef struct esrt_cp_line {
  int64_t ts_ms;
  int line;
  int32_t partition;
  int64_t offset;
  int64_t write_ms;
  int64_t upload_ms; /* -1 when not uploaded */
} esrt_cp_line;

/* `<topic>[<p>]: released at offset N` */
typedef struct esrt_release_line {
  int64_t ts_ms;
  int line;
  int32_t partition;
  int64_t offset;
} esrt_release_line;

typedef struct esrt_wlog {
  esrt_assignment *assigned;
  size_t n_assigned;
  esrt_stop_line *stopped;
  size_t n_stopped;
  esrt_cp_line *checkpoints;
  size_t n_checkpoints;
  esrt_release_line *released;
  size_t n_released;
} esrt_wlog;

/* Parses the lines about `topic` in a worker's log file, appending to *out (zero it before the first call; several
 * logs may be merged into one). A missing file is an empty log. 0, or -1 when the file cannot be read. */
int esrt_wlog_read(esrt_wlog *out, const char *path, const char *topic);
void esrt_wlog_free(esrt_wlog *l);
/* The last assignment of `partition` in the log, or NULL. */
const esrt_assignment *esrt_wlog_last_assignment(const esrt_wlog *l, int32_t partition);
/* Whether the log says the worker owns `partition` now: an assignment with no release or stop after it. Line numbers
 * order the events: use it on an esrt_wlog read from one log file only. */
int esrt_wlog_owns(const esrt_wlog *l, int32_t partition);
/* The partitions the log says the worker owns now, as a bit mask (partitions < 64). */
uint64_t esrt_wlog_owned_mask(const esrt_wlog *l);

/* ---- files ---- */

/* SHA-256 of a file into out (32 bytes). 0, or -1. */
int esrt_file_sha256(const char *path, uint8_t out[32]);
/* Size of a file, or -1 when it does not exist. */
int64_t esrt_file_size(const char *path);
/* Truncates a file to `size` bytes. 0, or -1. */
int esrt_truncate_file(const char *path, int64_t size);
/* Entries of `dir` whose name starts with `prefix`: their count; the first (in name order) goes to first (optional,
 * a full path). -1 when the directory cannot be read. */
int esrt_dir_count_prefix(const char *dir, const char *prefix, char *first, size_t cap);
/* Removes a partition's live database "<dir>/<topic>-<p>.db" with its -wal, -shm and -journal. Returns how many of
 * those files existed (and were removed). */
int esrt_remove_live_db(const char *dir, const char *topic, int32_t partition);

/* ---- checkpoints (the layout of esr/checkpoint.h, local or a file:// store) ---- */

/* Offsets of the complete checkpoints (a "<20 digits>.json" with its ".db") in "<root>/<topic>-<p>", newest first,
 * at most `cap`. Returns the count (0 when the directory does not exist). */
int esrt_checkpoint_offsets(const char *root, const char *topic, int32_t partition, int64_t *offsets, int cap);
/* "<root>/<topic>-<p>/<offset as 20 digits><ext>" into buf. */
void esrt_checkpoint_file(char *buf, size_t cap, const char *root, const char *topic, int32_t partition,
                          int64_t offset, const char *ext);

/* ---- SQLite damage ---- */

/* `PRAGMA quick_check` of a database file opened read-only: 1 when "ok", 0 when it reports damage (first message
 * into msg, optional), -1 when it cannot run at all (message into msg). */
int esrt_quick_check(const char *path, char *msg, size_t cap);
/* Folds the database's WAL into its main file and removes the -wal (no writer may have it open). 0, or -1. */
int esrt_fold_wal(const char *path);
/* Overwrites the b-tree page header (the first 12 bytes) of a page of `table` in the middle of the database file with
 * 0xFF bytes: a leaf page in the middle of the table's pages (dbstat), or the table's root page when dbstat is not
 * available. The page number goes to *page and its file offset to *at (optional). 0, or -1 with a message. */
int esrt_corrupt_table_page(const char *path, const char *table, int64_t *page, int64_t *at);

/* ---- oracles ---- */

/* An oracle fed from the produced events themselves, in (partition, offset) order (each event's offset as its
 * delivery report gave it): for logs whose start retention deleted. Checks that every partition's offsets run from 0
 * without holes and that the oracle agrees with every event's intent. NULL (after a message) otherwise. */
esrt_oracle *esrt_oracle_from_events(const esrt_event *ev, size_t n, int partitions);
/* An oracle of one partition's prefix: the records of `partition` with offset < upto, from a sorted read-back. NULL
 * when the prefix does not start at 0 or has a hole. */
esrt_oracle *esrt_oracle_prefix(const esrt_records *recs, int partitions, int32_t partition, int64_t upto);

/* ---- moving partitions ---- */

/* Waits until, for every partition, some database in one of `dirs` has next_offset == the high watermark and an empty
 * outbox (stale copies at lower offsets in other directories are ignored). 0, or -1 after printing where each
 * partition stands. */
int esrt_wait_caught_up_any(rd_kafka_t *rk, const char *topic, int partitions, const char *const *dirs, size_t n_dirs,
                            int timeout_ms);

#endif
