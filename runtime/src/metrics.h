/* metrics.h — the process's metrics: counted where events happen, read by the HTTP thread (esr/http.h).
 *
 * One registry per process (a worker is a process). Writers are the apply threads (per-partition counters and states,
 * the commit-time histogram, heartbeats), the checkpoint thread (checkpoints written, uploaded, failed) and the main
 * thread (rebalances, the worker's phase). Every update is a relaxed atomic operation on memory that lives as long as
 * the registry: no lock and no allocation on the per-event or per-commit path. The only lock guards the list of
 * partitions, taken when a partition's entry is looked up (at open, by the checkpoint thread once per checkpoint) and
 * by the reader while it copies the list; an entry, once created, stays until esr_metrics_reset, so a reader never
 * sees one freed, and a partition's counters survive its release (Prometheus counters of the process never go back).
 * Counters count what committed: a rolled-back batch counts nothing (partition.c folds its dead letters in at commit).
 *
 * esr_metrics_render writes the Prometheus text format (esr/promtext.h): every family the README lists, the process's
 * CPU, memory and open files from /proc, the state directory's size and free space. esr_metrics_ready and
 * esr_metrics_healthy are /readyz's and /healthz's verdicts.
 */
#ifndef ESR_METRICS_H
#define ESR_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* A partition's state, as esr_partition_state{state} shows it (UNOWNED: not shown). */
enum {
  ESR_PSTATE_UNOWNED = 0,
  ESR_PSTATE_RECOVERING, /* climbing the recovery ladder */
  ESR_PSTATE_RUNNING,
  ESR_PSTATE_PAUSED,     /* a batch was rolled back (full disk, I/O error): retried with backoff */
  ESR_PSTATE_STOPPED,    /* stopped for good by a handler's fatal verdict */
  ESR_PSTATE_REFUSED,    /* cannot start: the log no longer holds (or never held) the state's position */
  ESR_PSTATE_N
};

/* Dead-letter reasons (esr-reason header values), for counting without strings. */
enum {
  ESR_DL_BAD_JSON = 0,
  ESR_DL_BAD_ENVELOPE,
  ESR_DL_UNKNOWN_TYPE,
  ESR_DL_UNKNOWN_VERSION,
  ESR_DL_SCHEMA,
  ESR_DL_REJECTED,
  ESR_DL_INVALID,
  ESR_DL_CRASH,
  ESR_DL_OTHER,
  ESR_DL_N
};

/* Where a checkpoint failed (esr_checkpoint_failures_total{where}). */
enum { ESR_CPFAIL_WRITE = 0, ESR_CPFAIL_UPLOAD, ESR_CPFAIL_PRUNE, ESR_CPFAIL_N };

/* The worker's phase, for /readyz. */
enum { ESR_PHASE_STARTING = 0, ESR_PHASE_RUNNING, ESR_PHASE_DRAINING };

typedef struct esr_pmetrics {
  char topic[256];
  int32_t partition;
  _Atomic int state;
  _Atomic int64_t applied;         /* events applied (committed) by this process */
  _Atomic int64_t dead[ESR_DL_N];  /* dead letters written (committed) by this process, by reason */
  _Atomic int64_t next_offset;     /* the committed position; -1 unknown */
  _Atomic int64_t outbox_rows;     /* rows in the partition's outbox (dead letters, emits) not yet acknowledged; -1 */
  _Atomic int64_t uncovered_ms;    /* esr_now_ms of the first commit that no checkpoint holds; 0: none */
  _Atomic int64_t cp_offset;       /* the newest checkpoint this process wrote; -1 none */
  _Atomic int64_t uploaded_offset; /* the newest checkpoint this process uploaded to the store; -1 none */
  _Atomic int64_t released_ms;     /* esr_now_ms when this process released it; 0 while owned or never */
} esr_pmetrics;

/* The partition's entry, created on first use (NULL only when out of memory). Valid until esr_metrics_reset. */
esr_pmetrics *esr_metrics_partition(const char *topic, int32_t partition);
/* The entry if it exists, or NULL. */
esr_pmetrics *esr_metrics_partition_find(const char *topic, int32_t partition);
/* Frees every entry and zeroes every counter (process exit, tests). No other thread may use the registry then. */
void esr_metrics_reset(void);

int esr_metrics_reason_index(const char *reason);
const char *esr_metrics_reason_name(int index);

static inline void esr_metrics_add(_Atomic int64_t *c, int64_t n) { atomic_fetch_add_explicit(c, n, memory_order_relaxed); }
static inline void esr_metrics_set(_Atomic int64_t *c, int64_t v) { atomic_store_explicit(c, v, memory_order_relaxed); }

/* Partition hooks (the owning apply thread; m may be NULL: nothing). */
void esr_metrics_state(esr_pmetrics *m, int state);
/* A batch committed: the position it reached, events applied and dead letters (by reason, may be NULL) it held; now
 * is esr_now_ms. */
void esr_metrics_committed(esr_pmetrics *m, int64_t next_offset, int64_t applied, const int *dead, int64_t now);
void esr_metrics_commit_seconds(double seconds);
/* Rows in the outbox, as last counted. */
void esr_metrics_outbox(esr_pmetrics *m, int64_t rows);
/* A batch was rolled back by a store error: esr_code and the library's code (SQLite's extended code). */
void esr_metrics_rolled_back(int code, int lib_code);
/* A partition was opened through the recovery ladder (step: esr_recovery_step, 0 when refused) in `seconds`. */
void esr_metrics_recovery(int step, double seconds);

/* Checkpoint thread. started_ms: esr_now_ms when the copy began (commits after it are not in it). */
void esr_metrics_checkpoint_written(const char *topic, int32_t partition, int64_t offset, int64_t started_ms);
void esr_metrics_checkpoint_uploaded(const char *topic, int32_t partition, int64_t offset);
void esr_metrics_checkpoint_failed(int where);

/* Main thread. */
void esr_metrics_rebalance(void);
void esr_metrics_phase(int phase);
void esr_metrics_kafka_error(void);
/* Apply threads: how many there are (before they start), and each one's heartbeat (esr_now_ms), once per loop. */
void esr_metrics_appliers(int n);
extern _Atomic int64_t esr_metrics_beats[256];
static inline void esr_metrics_beat(int index, int64_t now) {
  if (index >= 0 && index < 256) atomic_store_explicit(&esr_metrics_beats[index], now, memory_order_relaxed);
}
/* Disk hygiene (esr/hygiene.h). */
void esr_metrics_pruned(int64_t files);
void esr_metrics_dropped(void);

/* What the reader needs from the worker. */
typedef struct esr_metrics_source {
  const char *state_dir;
  /* The partition's high watermark as last seen by the consumer: 0 and *hi, or -1 unknown. May be NULL. */
  int (*watermark)(void *arg, const char *topic, int32_t partition, int64_t *hi);
  void *arg;
} esr_metrics_source;

/* The text of /metrics (the caller frees it), or NULL when out of memory. */
char *esr_metrics_render(const esr_metrics_source *src, size_t *len);
/* 1 ready; 0 not ready, with the reason in why. */
int esr_metrics_ready(char *why, size_t cap);
/* 1 healthy; 0 when an apply thread's loop has not come round for stall_ms (the reason in why). */
int esr_metrics_healthy(int64_t now, int64_t stall_ms, char *why, size_t cap);

#endif
