/* esr/recovery.h — the recovery ladder: how a partition's live database comes to be before the partition opens.
 *
 * Candidates are the live database (when it passes `PRAGMA quick_check` and holds this partition's position), the
 * newest valid local checkpoint and the newest checkpoint in the remote store. The one with the highest next_offset
 * wins, because recovery must be as short as the newest checkpoint allows (a partition that comes back to a node after
 * running elsewhere finds a newer remote checkpoint than its old live database); ties go to the live database, then the
 * local checkpoint, then the remote one (no copy needed). The winner must be covered by the log: its next_offset must
 * lie within [log start, log end]. A candidate below the log start cannot resume (retention deleted events it never
 * applied) and one beyond the log end belongs to another log (a recreated topic); when no candidate is usable the
 * partition is rebuilt from the log alone if the log still starts at 0, and otherwise refused (ESR_E_GAP) with the
 * needed offset and the log start in the message — never started anywhere else. A corrupt live database or checkpoint
 * is moved aside (never deleted) and the ladder goes on; a remote checkpoint that fails its verification is set
 * aside in the store too (esr_cpstore_quarantine). Runs on the thread that will own the partition, with no
 * connection open on its live database.
 *
 * The remote store is consulted concurrently when a lister is given (esr/cplister.h): its listing is asked for
 * first and runs while the local state is checked. A partition with a valid local state (live database or local
 * checkpoint) waits for it at most store_wait_ms from the start of the ladder, and not at all while the store is
 * known to be down: the store only saves replay then, it is never needed for correctness. A partition without one
 * waits at most store_wait_cold_ms (from the start of the ladder, and from the start of the store's outage). A store
 * that does not answer in time is left out and the detail says so.
 */
#ifndef ESR_RECOVERY_H
#define ESR_RECOVERY_H

#include <stdint.h>

#include "cplister.h"
#include "cpstore.h"
#include "error.h"

typedef struct sqlite3 sqlite3;

typedef enum esr_recovery_step {
  ESR_RECOVERY_LIVE = 1,   /* the live database, as it is */
  ESR_RECOVERY_LOCAL = 2,  /* restored from a local checkpoint */
  ESR_RECOVERY_REMOTE = 3, /* fetched from the remote store and restored */
  ESR_RECOVERY_LOG = 4,    /* a fresh database, the whole log replayed */
} esr_recovery_step;

/* The log's bounds for the partition: first and next offset (low and high watermarks). Returns 0, or -1 when they
 * cannot be known now (then coverage is not checked up front; the consumer's auto.offset.reset=error still refuses a
 * gap when fetching). */
typedef int (*esr_log_bounds_fn)(void *arg, const char *topic, int32_t partition, int64_t *start, int64_t *end);

typedef struct esr_recovery_env {
  const char *state_dir;
  const char *cp_dir;    /* local checkpoints */
  esr_cpstore *store;    /* remote checkpoints (fetched on the calling thread), or NULL */
  esr_cplister *lister;  /* lists the same store in the background, with deadlines; NULL: listed on this thread */
  int store_wait_ms;      /* with a lister: the longest wait for its listing when a valid local state exists */
  int store_wait_cold_ms; /* ... and when none does */
  int quick_check;    /* run PRAGMA quick_check on the live database now (0: the caller checks it later, in the
                         background, with esr_recovery_check_db; until then it must not publish anything from it) */
  esr_log_bounds_fn bounds;
  void *bounds_arg;
} esr_recovery_env;

typedef struct esr_recovery_result {
  esr_recovery_step step;
  int64_t next_offset; /* where the partition resumes */
  int64_t log_start, log_end; /* -1 when unknown */
  int64_t elapsed_ms;
  char detail[512]; /* what was found and done, for the log line (quarantined files, skipped candidates) */
  /* ESR_RECOVERY_LIVE: the connection that checked the live database, left open so that its WAL index stays built
   * and the store's open does not read again the whole WAL a crash left. Close it once the store is open. */
  sqlite3 *live_db;
} esr_recovery_result;

const char *esr_recovery_step_name(esr_recovery_step step);
/* Climbs the ladder for topic/partition. ESR_E_GAP when the partition must be refused; other codes for I/O errors. The
 * log bounds are asked for only when a checkpoint competes with the live database (the usual restart costs no broker
 * round trip); log_start/log_end are then -1. */
esr_code esr_recover(const esr_recovery_env *env, const char *topic, int32_t partition, esr_recovery_result *out,
                     esr_error *err);
/* Closes out->live_db (NULL: nothing to do). */
void esr_recovery_result_release(esr_recovery_result *out);
/* PRAGMA quick_check of a database from a read-only connection of its own (any thread). ESR_E_CORRUPT when damaged. */
esr_code esr_recovery_check_db(const char *path, esr_error *err);
/* Moves the live database of topic/partition (and its -wal, -shm) aside to "<live>.corrupt-<UTC time>"; the new name
 * goes to aside. Never deletes. No connection may be open on it. */
void esr_recovery_quarantine_live(const char *state_dir, const char *topic, int32_t partition, char *aside,
                                  size_t cap);

#endif
