/* esr/partition.h — applying one partition's events to its store, in batches, exactly once.
 *
 * A partition owns its store and a working position (next offset, log digest, counters) that runs ahead of the
 * committed one while a batch is open. esr_partition_apply consumes one message: a message below the working next
 * offset is a redelivery and is skipped; any other is either applied by the handler that claims its type (in a
 * savepoint of its own; an older version upcast first, then its data validated against the schema of its type and
 * version when there is one) or written to the outbox as a dead letter with a reason (bad-json, bad-envelope,
 * unknown-type, unknown-version, schema, rejected, invalid, crash) — in both cases inside the batch transaction, so it counts as consumed exactly
 * when the batch commits. esr_partition_commit writes the position in the same transaction. The caller (the worker)
 * decides batch boundaries and owns the Kafka side: it must rewind the consumer to esr_partition_next_offset after an
 * apply or commit that failed with a store error (the batch was rolled back). A handler that returns ESR_FATAL stops
 * the partition before that event: esr_partition_stopped then says why, and the events before it can still be
 * committed. A batch that kills the process again and again is re-applied carefully and its poison event dead-lettered
 * with reason "crash" (esr/crashguard.h). A partition is used by one thread at a time.
 */
#ifndef ESR_PARTITION_H
#define ESR_PARTITION_H

#include <stdint.h>

#include "crashguard.h"
#include "metrics.h"
#include "outputs.h"
#include "publisher.h"
#include "registry.h"
#include "schema.h"
#include "store.h"

typedef struct esr_partition esr_partition;

typedef struct esr_message {
  int64_t offset;
  const void *key; /* NULL: the message has no key */
  size_t key_len;
  const void *value;
  size_t value_len;
} esr_message;

/* What every partition of a worker shares; borrowed, must outlive the partitions. */
typedef struct esr_partition_env {
  const esr_registry *registry;
  esr_publisher *publisher; /* NULL: outbox rows are kept but not published (tests, replay) */
  const char *state_dir;
  const char *dlq_topic;
  esr_store_opts store;
  int max_crash_retries;                /* restarts of one batch before the careful pass (crashguard.h) */
  int batch_max;                        /* how many events a careful pass covers */
  const esr_crash_record *last_crash;   /* the previous process's fatal signal, or NULL */
  const esr_schema_set *schemas;        /* the events' data is validated against these (after upcast), or NULL */
  esr_outputs_opts outputs;             /* publish once: marks and read-back (esr/outputs.h) */
  /* No savepoint per event: a refused event that changed nothing needs no undo; one that did makes
   * esr_partition_apply roll the batch back and return ESR_E_REDO (the caller applies it again from the committed
   * position, the handler then with a savepoint per event). 0: a savepoint per event, never ESR_E_REDO. */
  int fast_path;
} esr_partition_env;

/* Opens the partition's store and brings every handler's tables up to date. `sink` identifies the partition in
 * delivery reports (see esr_partition_delivered). */
esr_code esr_partition_open(const esr_partition_env *env, const char *topic, int32_t partition, uint64_t sink,
                            esr_partition **out, esr_error *err);
/* Rolls back an open batch (commit first to keep it) and closes the store. NULL is a no-op. */
void esr_partition_close(esr_partition *p);

const char *esr_partition_topic(const esr_partition *p);
int32_t esr_partition_id(const esr_partition *p);
esr_store *esr_partition_store(esr_partition *p);
/* The next offset to consume, counting the open batch. */
int64_t esr_partition_next_offset(const esr_partition *p);
/* The position as last committed. */
const esr_position *esr_partition_committed(const esr_partition *p);
/* The working position: the committed one plus the open batch (next offset, log digest, counters). */
const esr_position *esr_partition_working(const esr_partition *p);
/* Events in the open batch (0: none open), and when it was opened (esr_now_ms). */
int esr_partition_batch_events(const esr_partition *p);
int64_t esr_partition_batch_started(const esr_partition *p);
/* 1 when the open batch must be committed now, before another event: while a batch that killed the process is
 * re-applied one event per transaction, and once a poison event was dead-lettered (its verdict must be durable
 * before anything after it runs: a second poison event in the same batch would otherwise roll it back). */
int esr_partition_commit_due(const esr_partition *p);
/* NULL while running; the reason once a handler stopped the partition. */
const char *esr_partition_stopped(const esr_partition *p);

esr_code esr_partition_apply(esr_partition *p, const esr_message *m, esr_error *err);
/* Commits the open batch (no-op when none). esr_partition_publish then sends the outbox rows it added. */
esr_code esr_partition_commit(esr_partition *p, esr_error *err);
/* Rolls back the open batch; the working position returns to the committed one. */
void esr_partition_rollback(esr_partition *p);

/* Holds the outbox back (on) or lets it go (off): while the live database awaits its integrity check, nothing derived
 * from it may leave the process. Rows keep accumulating in the outbox meanwhile. */
void esr_partition_hold(esr_partition *p, int on);
/* Sends outbox rows not yet sent (after a restart: every row left in the outbox), each at most once as far as the
 * read-back can tell (esr/outputs.h): a row already in its topic is deleted unpublished. Nothing while held, and
 * nothing, or only the rows before it, when a read-back must come first: esr_partition_readback_due then says so, and
 * the caller runs esr_partitions_readback and publishes again. */
esr_code esr_partition_publish(esr_partition *p, esr_error *err);
/* 1 when committed outbox rows may wait to be published (and the outbox is not held). */
int esr_partition_unpublished(const esr_partition *p);
/* 1 when a read-back must run before this partition publishes. */
int esr_partition_readback_due(const esr_partition *p);
/* One read-back (esr/outputs.h) for those of the n partitions given that are due (and those that do not know a topic
 * one of them needs): one read of each output partition concerned. The partitions are used by the calling thread
 * only. */
esr_code esr_partitions_readback(esr_readback *rb, esr_partition *const *ps, size_t n, int timeout_ms, esr_error *err);
/* The publish-once state (figures for logs and metrics: esr_outputs_stats_get). */
const esr_outputs *esr_partition_outputs(const esr_partition *p);
/* Publishes with `pub` instead of the environment's publisher (a transactional one of its own); NULL: the
 * environment's again. Only between publications (nothing in flight). */
void esr_partition_set_publisher(esr_partition *p, esr_publisher *pub);
/* outputs.transactional: rows acknowledged between ESR_OUTPUTS_TXN_BEGIN and the end count as delivered only once the
 * transaction committed; after an abort they are sent again (after a read-back). */
void esr_partition_txn(esr_partition *p, esr_outputs_txn_phase phase);
/* A delivery report for a row of this partition. */
void esr_partition_delivered(esr_partition *p, const esr_delivery *d);
/* Housekeeping while idle: deletes acknowledged (and dropped) rows, marks failed ones for a resend. It does not
 * publish: the caller does (esr_partition_publish), after the checks it owes. */
esr_code esr_partition_tick(esr_partition *p, esr_error *err);
/* Rows sent and not yet reported. */
int esr_partition_in_flight(const esr_partition *p);
/* Where each commit counts its events, dead letters (by reason) and position (esr/metrics.h); NULL: nowhere. */
void esr_partition_set_metrics(esr_partition *p, esr_pmetrics *m);

#endif
