/* replay.h — the replay engine: one partition's range of the log applied to a database, exactly as a worker applies it.
 *
 * esr_replay_apply reads the partition's log (readback.h) from the partition's next offset up to a target and hands
 * each message to esr_partition_apply — the worker's own path: envelope, routing, upcast, schema, the handler in a
 * savepoint, dead letters with the worker's reasons — committing a batch (with the position and the log digest) every
 * `batch_events` events. The partition must have been opened with an esr_partition_env whose publisher is NULL, so
 * that nothing is published: dead letters and emitted events stay in the database's esr_outbox table. Batch sizes do
 * not change the state (statedigest.h). Nothing is skipped: a log that no longer holds the partition's next offset,
 * or whose retention deleted part of the range while it was read, is ESR_E_GAP, naming the needed offset and the log
 * start. A handler that stops the partition (ESR_FATAL) is ESR_E_PLUGIN: what came before that event is committed.
 *
 * Hooks see every event, before it goes through the apply path and after (with its verdict: applied, or dead-lettered
 * with the reason and the message), on the calling thread, with the partition's database in a batch transaction or
 * not: a hook may read it and attach to it (SQLite's session extension, to record the row changes an event makes), and
 * must not commit. A hook that returns an error stops the replay with it. `esr history` uses them; `esr replay` and
 * `esr verify` (replay_run.h) replay without hooks.
 *
 * Time targets: esr_replay_time_end finds where the longest prefix of a partition whose Kafka timestamps are all at
 * or before an instant ends, from the broker's offsets-for-times when it answers and otherwise by reading the
 * timestamps from the log start (librdkafka's mock cluster does not answer); esr_replay_apply can also stop by itself
 * at the first later event (stop_after_ms) when the end need not be known in advance.
 */
#ifndef ESR_REPLAY_H
#define ESR_REPLAY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "partition.h"
#include "readback.h"

#define ESR_REPLAY_BATCH 5000

/* One event as the hooks see it. The pointers are valid during the call only. */
typedef struct esr_replay_event {
  const char *topic;
  int32_t partition;
  int64_t offset;
  int64_t timestamp_ms; /* the Kafka message timestamp, -1 when it has none */
  const void *key;      /* NULL: no key */
  size_t key_len;
  const void *value;
  size_t value_len;
  /* after only */
  int applied;        /* 1: applied by a handler; 0: dead-lettered */
  const char *reason; /* dead letters: "bad-json", "rejected", ... (the worker's reasons); NULL when applied */
  const char *error;  /* dead letters: the message */
} esr_replay_event;

typedef struct esr_replay_hooks {
  esr_code (*before)(void *arg, esr_partition *p, const esr_replay_event *ev, esr_error *err); /* may be NULL */
  esr_code (*after)(void *arg, esr_partition *p, const esr_replay_event *ev, esr_error *err);  /* may be NULL */
  void *arg;
} esr_replay_hooks;

typedef struct esr_replay_range {
  int64_t to;            /* apply the events with offset < to; < 0: up to the log end as the read begins */
  int64_t stop_after_ms; /* >= 0: stop before the first event whose timestamp is later than this; -1: no such stop */
  int batch_events;      /* events per transaction; <= 0: ESR_REPLAY_BATCH */
  const esr_replay_hooks *hooks; /* may be NULL */
  _Atomic int64_t *progress;     /* may be NULL: set to the events consumed so far in this call, every few hundred */
  _Atomic int *cancel;           /* may be NULL: when it becomes nonzero the call stops (ESR_E_STATE) */
} esr_replay_range;

typedef struct esr_replay_outcome {
  int64_t events;  /* events consumed by this call (applied + dead-lettered) */
  int64_t applied; /* ... of which applied */
  int64_t dead;    /* ... of which dead-lettered */
  int64_t log_start, log_end; /* as the read saw them */
  int stopped_by_time;        /* 1: an event later than stop_after_ms ended the range ... */
  int64_t stopped_at;         /* ... this one (its offset; not applied) */
} esr_replay_outcome;

/* Applies the range to p (see the file comment), then commits. out (may be NULL) is filled as far as it got; the
 * partition's position (esr_partition_committed) says where it stands. */
esr_code esr_replay_apply(esr_readback *rb, esr_partition *p, const esr_replay_range *r, esr_replay_outcome *out,
                          esr_error *err);

typedef enum esr_time_source {
  ESR_TIME_BROKER = 1, /* the broker answered offsets-for-times */
  ESR_TIME_SCAN = 2,   /* it did not: the timestamps were read from the log */
} esr_time_source;

/* The end of the longest prefix of topic/partition whose message timestamps are all <= at_ms: the offset of the first
 * later message, or the log end when there is none. *source says how it was found. The prefix is counted from the log
 * start: messages retention already deleted cannot be read. */
esr_code esr_replay_time_end(esr_readback *rb, const char *topic, int32_t partition, int64_t at_ms, int64_t *end,
                             esr_time_source *source, esr_error *err);

/* Parses an instant for --to: RFC 3339 / ISO 8601 with a date, a time, optional fraction and a zone ("Z" or
 * "+hh:mm"), e.g. 2026-06-30T23:59:59Z or 2026-06-30T23:59:59.250+02:00. *ms is the instant in milliseconds since the
 * epoch, rounded down. Returns 0, or -1 when the text is not such an instant. */
int esr_replay_parse_time(const char *text, int64_t *ms);
/* The other way: "2026-06-30T21:59:59.250Z" (UTC, milliseconds) into buf (>= 32 bytes). */
void esr_replay_format_time(int64_t ms, char *buf, size_t cap);

#endif
