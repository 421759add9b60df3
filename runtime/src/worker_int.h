/* worker_int.h — what the parts of the worker share (internal: runtime/src only).
 *
 * The worker is four files, one job each. worker.c is the process: it builds the consumer, the apply threads and the
 * checkpointer, locks the state directory, polls the consumer on the main thread and shuts down. assign.c is the Kafka
 * side on the main thread: group rebalances and static assignment, which apply thread owns which partition, opening and
 * closing partitions by requests to their owners. applier.c is an apply thread: its mailbox of requests from the main
 * thread, its loop over the queue librdkafka forwards its partitions' messages to, batching and idle housekeeping.
 * slot.c is one partition's life on its apply thread: recovery and open, commit, pause and retry after a lost batch,
 * rebuild of a damaged database, gaps in the log, release. Threads: everything in slot.c and applier.c runs on the
 * apply thread that owns the partition, except esr__applier_submit and esr__applier_wait (main thread); assign.c runs
 * on the main thread (librdkafka's rebalance callback is served there). gate.c is the apply thread's publication gate:
 * nothing a partition produced (dead letters, emits) leaves the process before its read-back ran, and in group mode
 * before an ownership check of the current round passed.
 */
#ifndef ESR_WORKER_INT_H
#define ESR_WORKER_INT_H

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "checkpointer.h"
#include "config.h"
#include "crashguard.h"
#include "http.h"
#include "hygiene.h"
#include "metrics.h"
#include "partition.h"
#include "readback.h"
#include "recovery.h"
#include "registry.h"
#include "worker.h"

#define RETRY_BACKOFF_MS 1000
#define RETRY_BACKOFF_MAX_MS 30000
#define TICK_MS 20
#define IDLE_MS 5 /* no message for this long while batches are open: commit them */
#define ROUND 512 /* messages applied between two looks at batches, outbox and requests */
#define STATS_MS 10000
#define REVOKE_FLUSH_MS 5000
#define SHUTDOWN_FLUSH_MS 10000
#define RELEASE_CHECKPOINT_MS 120000

typedef struct applier applier;

/* One partition owned by an apply thread. */
typedef struct slot {
  esr_partition *p;
  int32_t partition;
  size_t topic;
  uint32_t gen;
  int paused;       /* stopped for good (gap, fatal handler) or waiting for retry_at */
  int64_t retry_at; /* 0: stopped for good */
  int64_t cp_offset, cp_at; /* the last checkpoint asked for: at which offset, when (esr_now_ms) */
  int64_t replay_end;       /* log end seen by recovery: "caught up" is logged once the partition reaches it */
  int64_t replay_from, replay_started;
  esr_verify_ticket *verify; /* the live database's integrity check under way: outbox and checkpoints wait for it */
  int64_t backoff_ms;        /* the next retry's delay after a lost batch: doubles up to RETRY_BACKOFF_MAX_MS */
  int corrupt;               /* the database is damaged: rebuilt by the next tick, never while in use */
  esr_pmetrics *m;           /* its metrics (esr/metrics.h), or NULL */
  int64_t sampled_at;        /* esr_now_ms of the last outbox count for the metrics */
  char corrupt_why[400];
  int publish_wanted;        /* committed outbox rows wait for a publication round (gate.c) */
  int checking;              /* part of the ownership check under way */
  esr_publisher *txn;        /* outputs.transactional: the partition's own transactional producer */
} slot;

/* What an apply thread's publication gate did (gate.c), for logs and metrics. */
typedef struct gate_stats {
  int64_t rounds;        /* ownership checks that passed, each followed by a publication */
  int64_t refused;       /* checks that failed: the round was dropped, its rows stayed in the outbox */
  int64_t window_max_us; /* longest time from sending a check to the last row of its round handed to the producer */
  int64_t window_sum_us;
  int64_t answer_max_us;  /* ... of which the longest wait for the check's answer (until it was served) */
  int64_t publish_max_us; /* ... and the longest publication after it */
  int64_t readback_failures;
} gate_stats;

typedef struct topic_slots {
  rd_kafka_topic_t *rkt; /* as seen on messages, to find the topic without strcmp */
  slot **by_partition;
  size_t cap;
} topic_slots;

typedef enum ctl_kind { CTL_OPEN, CTL_CLOSE, CTL_DRAIN, CTL_REWIND, CTL_EXIT } ctl_kind;

/* A request from the main thread to an applier; `done` is set under the applier's mutex. */
typedef struct ctl {
  ctl_kind kind;
  size_t topic;
  int32_t partition;
  int64_t offset; /* CTL_OPEN: where the partition starts; -1 when it could not be opened */
  int done;
  struct ctl *next;
} ctl;

struct applier {
  esr_worker *w;
  int index;
  pthread_t thread;
  int started;
  rd_kafka_queue_t *queue;
  esr_publisher *pub;
  esr_partition_env env;
  esr_cpstore *store; /* the remote checkpoint store, for recovery on this thread */
  esr_recovery_env recovery;
  topic_slots *topics;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  ctl *head, *tail;
  ctl bcast; /* the request esr__assign_broadcast sends: no allocation, so a broadcast cannot fail */
  int owned; /* partitions owned; changed by the main thread only */
  int draining;
  int exit;
  int open_batches;
  _Atomic int ctl_pending; /* the main thread queued a request: end the round */
  _Atomic int64_t consumed;
  esr_readback *rb;          /* reads outputs back (NULL: outputs.readback = false) */
  rd_kafka_queue_t *check_q; /* answers to this thread's ownership checks (group mode) */
  int check_in_flight;
  _Atomic int check_ready; /* the answer to the check under way arrived: end the round (set by librdkafka's thread) */
  int64_t check_sent_us, check_retry_at, readback_retry_at;
  int64_t refused_logged_at; /* esr_now_ms of the last "ownership check failed" line */
  int refused_unlogged;
  gate_stats gate;
};

struct esr_worker {
  const esr_config *cfg;
  esr_registry registry;
  rd_kafka_t *rk;
  esr_checkpointer *checkpointer;
  char cp_dir[4096];
  esr_crash_record last_crash; /* how the previous process died, if a fatal signal was recorded */
  esr_schema_set *schemas;
  int crash_record_open;
  applier *appliers;
  int n_appliers;
  int **owner; /* owner[topic][partition]: applier index or -1; main thread only */
  size_t *owner_cap;
  int lock_fd;
  int group;        /* group mode */
  int commit_kafka; /* store offsets in Kafka (a group.id is set) */
  _Atomic uint32_t next_gen;
  _Atomic int fatal;
  pthread_mutex_t fatal_mu;
  esr_error fatal_err;
  int64_t consumed_at_last_stats, last_stats;
  esr_http *http;        /* /healthz, /readyz, /metrics, or NULL */
  _Atomic int rk_ready;  /* rk may be read by the HTTP thread */
  int64_t join_deadline; /* group mode: "starting" ends at the first assignment or at this time (esr_now_ms) */
  esr_hygiene *hygiene;
};

/* worker.c */
void esr__worker_fatal(esr_worker *w, const esr_error *err); /* stops the worker with this error (any thread) */
int esr__worker_topic_index(const esr_worker *w, const char *name);
int esr__worker_log_bounds(void *arg, const char *topic, int32_t partition, int64_t *start, int64_t *end);

/* assign.c (main thread) */
void esr__assign_broadcast(esr_worker *w, ctl_kind kind);
void esr__assign_close_all(esr_worker *w);
void esr__assign_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                              void *opaque);
void esr__assign_stray(esr_worker *w, rd_kafka_message_t *m);
esr_code esr__assign_static(esr_worker *w, esr_error *err);
esr_code esr__assign_subscribe(esr_worker *w, esr_error *err);

/* applier.c */
esr_code esr__applier_init(esr_worker *w, applier *a, int index, esr_error *err);
void esr__applier_fini(esr_worker *w, applier *a);
void *esr__applier_main(void *arg);
void esr__applier_submit(applier *a, ctl *c); /* main thread: queue a request and wake the applier */
void esr__applier_wait(applier *a, ctl *c);   /* main thread: wait until the request was served */
void esr__applier_delivery(void *opaque, const esr_delivery *d); /* delivery reports of the thread's producers */

/* slot.c (the owning apply thread) */
slot *esr__slot_find(applier *a, size_t t, int32_t partition);
const char *esr__slot_topic(const applier *a, const slot *s);
uint64_t esr__slot_sink(const slot *s);
void esr__slot_pause(applier *a, slot *s, int64_t retry_in);
void esr__slot_resume(applier *a, slot *s);
void esr__slot_lost_batch(applier *a, slot *s, const esr_error *err);
void esr__slot_commit(applier *a, slot *s);
void esr__slot_checkpoint_if_old(applier *a, slot *s, int64_t now);
void esr__slot_sample(applier *a, slot *s, int64_t now);
void esr__slot_stop(applier *a, slot *s, const char *why);
int64_t esr__slot_open(applier *a, size_t t, int32_t partition);
void esr__slot_close(applier *a, slot *s);
void esr__slot_rebuild(applier *a, slot *s, const char *reason);
void esr__slot_check_verdict(applier *a, slot *s);
void esr__slot_gap(applier *a, slot *s);

/* gate.c (the owning apply thread) */
esr_code esr__gate_init(applier *a, esr_error *err);
void esr__gate_fini(applier *a);
/* s may have committed rows to publish: static assignment publishes them now when `now` (after a commit), else at the
 * next round; group assignment at the next round, after its ownership check. */
void esr__gate_want(applier *a, slot *s, int now);
/* Serves ownership checks' answers (their rounds publish) and starts the next round's read-backs and check. */
void esr__gate_poll(applier *a);
void esr__gate_round(applier *a);
/* Release (s) and shutdown (NULL: every partition of the thread): publishes what there is, and waits for the
 * deliveries until `deadline` (esr_now_ms); acknowledged rows are deleted. Shutdown reads back first and, in group
 * mode, asks an ownership check. A release, inside a rebalance, waits for neither: a revoked partition is still this
 * worker's and publishes (unless its read-back is due: its next owner reads back and publishes), a lost one
 * publishes nothing. */
void esr__gate_flush(applier *a, slot *only, int release, int64_t deadline);
/* A slot opens or closes: its transactional producer (outputs.transactional). */
esr_code esr__gate_slot_open(applier *a, slot *s, esr_error *err);
void esr__gate_slot_close(applier *a, slot *s);
void esr__gate_log_stats(applier *a);

#endif
