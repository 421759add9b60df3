/* esr/history.h — the timeline of one entity: every event of one Kafka key and the exact row changes each made.
 *
 * esr_history_build finds the key's events, then replays each partition that holds them through the worker's own apply
 * path (partition.h: esr_partition_open/apply/commit with no publisher) into a temporary state directory, from offset
 * 0 to the key's last event, and records what each event of the key changed with SQLite's session extension: one
 * session around each of those events, attached to every table except esr's own (esr_*) and SQLite's, so that the
 * changes are exactly those the handler's statements left once the event's savepoint was released (an event that was
 * dead-lettered changed nothing: its savepoint was rolled back). Before and after values come from the changeset:
 * an INSERT has only after values, a DELETE only before values, an UPDATE the primary key and the columns that changed.
 * A table without a declared primary key is not seen by the session extension: its name is listed in `untracked`.
 * Each event also says whether it was applied or dead-lettered, with the same reason and message as the worker's
 * dead letter (the outbox row the replay wrote), and which messages it emitted.
 *
 * Where the key's events are: in the partition given, in the one a partitioner named as librdkafka's computes (the
 * producer's choice), or, by default, in whichever partitions hold them: every partition of the topic is read first
 * (keys only), which finds them whatever the producer's partitioner was. Reads cover the log as it was when each read
 * began. The replay needs the partition from offset 0: when retention deleted the start, the build fails with ESR_E_GAP
 * naming the log start. A key that no event carries gives an empty timeline (not an error). A handler that stops the
 * partition (ESR_FATAL) ends the replay there: the timeline so far is returned with `stopped` set. Nothing is
 * published and no worker's database is opened; the temporary directory is removed before returning.
 *
 * Not covered: an event a worker dead-lettered with reason `crash` (its handler killed the process) kills this process
 * too; the history cannot replay past it.
 */
#ifndef ESR_HISTORY_H
#define ESR_HISTORY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "error.h"

typedef struct sqlite3_value sqlite3_value;

/* One row changed by one event. */
typedef struct esr_history_change {
  char *table;
  int op; /* SQLITE_INSERT, SQLITE_UPDATE or SQLITE_DELETE */
  int n_cols;
  char **cols;             /* column names */
  unsigned char *pk;       /* 1 for the primary key's columns */
  sqlite3_value **before;  /* n_cols values; NULL where the changeset holds none (INSERT; UPDATE: unchanged) */
  sqlite3_value **after;   /* the same for the values after the event (DELETE: none; UPDATE: changed columns only) */
} esr_history_change;

/* A message the event emitted (an outbox row with src_index > 0). */
typedef struct esr_history_emit {
  char *topic;
  char *key; /* NUL-terminated copy; NULL: no key */
  size_t key_len;
  char *value; /* NUL-terminated copy; NULL: no value */
  size_t value_len;
} esr_history_emit;

typedef enum esr_history_outcome {
  ESR_HISTORY_APPLIED = 0,
  ESR_HISTORY_DEAD,    /* dead-lettered: reason and error say why */
  ESR_HISTORY_STOPPED, /* the handler stopped the partition on this event (ESR_FATAL): not consumed */
} esr_history_outcome;

typedef struct esr_history_event {
  int32_t partition;
  int64_t offset;
  int64_t timestamp; /* the Kafka message timestamp, ms since the epoch; -1 when it has none */
  int timestamp_type; /* rd_kafka_timestamp_type_t */
  char *type;         /* from the envelope; NULL when the value is not an envelope */
  int version;
  char *id;   /* NULL when absent */
  char *time; /* the envelope's own time; NULL when absent */
  esr_history_outcome outcome;
  char *reason; /* ESR_HISTORY_DEAD: bad-json, schema, rejected, ...; NULL otherwise */
  char *error;  /* the human message of a dead letter or of the stop */
  esr_history_change *changes;
  size_t n_changes;
  esr_history_emit *emits;
  size_t n_emits;
} esr_history_event;

typedef struct esr_history {
  char *topic;
  char *key; /* NUL-terminated copy */
  size_t key_len;
  int partition_count;        /* of the topic */
  int32_t *searched;          /* partitions read for the key */
  size_t n_searched;
  esr_history_event *events;  /* in (partition, offset) order */
  size_t n_events, cap_events;
  int64_t replayed;           /* events applied or dead-lettered by the replays, every key's */
  char **untracked;           /* tables of the replayed partitions without a primary key: changes not recorded */
  size_t n_untracked;
  char **notes;               /* what the reader should know (a searched partition whose log no longer starts at 0) */
  size_t n_notes;
  char *stopped;              /* the handler stopped the partition: why (the timeline ends there); NULL otherwise */
} esr_history;

typedef enum esr_history_phase { ESR_HISTORY_SEARCH = 0, ESR_HISTORY_REPLAY } esr_history_phase;

typedef struct esr_history_progress {
  esr_history_phase phase;
  int32_t partition;
  int64_t done;  /* messages read in this phase of this partition so far */
  int64_t total; /* messages to read in it (an upper bound); -1 while not known (a search learns it at the end) */
  int64_t started_ms; /* esr_now_ms when this phase of this partition began */
  int last;           /* 1: this phase of this partition is over */
} esr_history_progress;

typedef struct esr_history_opts {
  const char *topic;
  const char *key; /* the Kafka key, key_len bytes */
  size_t key_len;
  int32_t partition; /* >= 0: only this partition */
  /* partition < 0: NULL to search every partition, or the name of librdkafka's partitioner the producer used
   * (consistent, consistent_random, murmur2, murmur2_random, fnv1a, fnv1a_random; an unknown name is ESR_E_CONFIG).
   * The _random variants place keyed messages as their plain counterpart; with an empty key they are random, and every
   * partition is searched. */
  const char *partitioner;
  const char *tmp_dir; /* where the temporary state directory goes; NULL: $TMPDIR or /tmp */
  /* Optional, called on the calling thread about every 64 Ki messages and at the end of each read. */
  void (*progress)(void *arg, const esr_history_progress *p);
  void *progress_arg;
} esr_history_opts;

/* Builds the timeline. `cfg` gives the Kafka settings (kafka.*), the handlers (and their options) and the schemas
 * (schemas.dir), and sqlite.cache.mb; nothing else of it is used. On success *out is the timeline (free it with
 * esr_history_free). Errors: ESR_E_CONFIG (unknown topic, partition out of range, unknown partitioner, bad key),
 * ESR_E_PLUGIN (a handler that cannot be loaded or refuses its tables), ESR_E_KAFKA, ESR_E_GAP (the log no longer
 * starts at 0), ESR_E_IO / ESR_E_SQLITE (the temporary state). */
esr_code esr_history_build(const esr_config *cfg, const esr_history_opts *opts, esr_history **out, esr_error *err);
void esr_history_free(esr_history *h);

/* The partition librdkafka's partitioner `name` gives a key (see esr_history_opts.partitioner); -1 when it would be
 * random (an empty key with a _random variant); -2 when the name is unknown. */
int32_t esr_history_partition_of(const char *name, const void *key, size_t key_len, int partition_count);

/* Renderings (history_render.c). Each returns 0, or -1 when writing failed (errno set). */
/* For people: a header, then one block per event and one line per changed row. */
int esr_history_write_text(const esr_history *h, FILE *out);
/* JSON lines: one object per event (partition, offset, timestamp, type, version, id, time, outcome, reason, error,
 * changes: [{table, op, pk: {col: value}, before: {col: value}, after: {col: value}}], emits). An INSERT's after and
 * a DELETE's before are the whole row; an UPDATE's before and after hold the columns that changed. Integers stay
 * exact; a blob is {"hex": "..."}. */
int esr_history_write_json(const esr_history *h, FILE *out);
/* One self-contained HTML page (inline style, no script, no external asset), for an auditor offline. */
int esr_history_write_html(const esr_history *h, FILE *out);

#endif
