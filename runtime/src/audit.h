/* audit.h — `esr verify`: is a state what the log says it is?
 *
 * esr_audit_compare compares two state directories (a worker's state.dir, a checkpoint or replay directory) partition
 * by partition — every `<topic>-<partition>.db` of either — by their state digests (statedigest.h), each pair read in
 * one read transaction per database, so that a running worker's state can be one of them. Where the digests differ it
 * reports, for each table, the first differing rows (key, column, the value in A and in B: statediff.h); a database
 * present on one side only is a difference; positions (next offset, log digest) that differ are told as notes.
 *
 * esr_audit_live is the one-shot proof for a worker's state: for each partition database of its state.dir (each of
 * its topics), a consistent snapshot is taken (SQLite's backup API from a read-only connection, in one read
 * transaction: the worker keeps committing, and its WAL is held back only for the copy), its next offset and state
 * digest are read from it, the log is replayed to exactly that offset (replay_run.h: from offset 0, or with
 * from_checkpoints from the worker's own checkpoints, which proves less: the notes say so) and the digests compared.
 * Where they differ, the rows are reported, and the differing partitions are replayed a second time: two replays of
 * the same events that differ from each other name a non-deterministic handler. Nothing of the worker's is written:
 * snapshots and replays go to a work directory (a temporary one unless given), removed at the end unless it holds
 * differences to look at or `keep` is set.
 *
 * Findings go to a callback, one line each; *differences counts the partitions that differ (0: equal). Errors are
 * what kept the comparison from being made (ESR_E_CONFIG, ESR_E_PLUGIN, ESR_E_KAFKA, ESR_E_IO, ESR_E_SQLITE, ...).
 */
#ifndef ESR_AUDIT_H
#define ESR_AUDIT_H

#include "config.h"
#include "error.h"
#include "replay_run.h"

typedef enum esr_audit_kind {
  ESR_AUDIT_EQUAL = 0, /* a partition whose states are equal */
  ESR_AUDIT_DIFFERENT, /* a partition whose states differ */
  ESR_AUDIT_DETAIL,    /* a differing table, row or value (indented under its partition) */
  ESR_AUDIT_NOTE,      /* anything else worth telling */
} esr_audit_kind;

typedef void (*esr_audit_fn)(void *arg, esr_audit_kind kind, const char *line);

esr_code esr_audit_compare(const char *a, const char *b, int max_rows, esr_audit_fn fn, void *arg, int *differences,
                           esr_error *err);

typedef struct esr_audit_live_opts {
  const esr_config *cfg;
  int from_checkpoints;
  int max_rows;         /* differing rows shown per table */
  const char *work_dir; /* NULL: a new temporary directory under $TMPDIR */
  int keep;             /* keep the work directory in any case */
  int threads;          /* replay threads (<= 0: one per CPU) */
  esr_audit_fn fn;
  void *arg;
  /* passed to the replays (replay_run.h), may be NULL */
  void (*replay_note)(void *arg, const char *line);
  void (*replay_progress)(void *arg, const esr_replay_report *r, int final);
  void *replay_arg;
} esr_audit_live_opts;

esr_code esr_audit_live(const esr_audit_live_opts *o, int *differences, esr_error *err);

#endif
