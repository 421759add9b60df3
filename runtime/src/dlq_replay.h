/* esr/dlq_replay.h — putting dead-lettered events back into their source topic after a fix, at most once each.
 *
 * Reads every partition of the dead-letter topic from its start to the end it had when the replay began (so a replay
 * never chases its own re-sent events), keeps each source event once (dead letters can be duplicated by a crash: the
 * esr-source header identifies them), applies the filters, and produces the original key and value unchanged — to the
 * source topic's same partition by default, so that an entity's events stay in its partition, or to another topic —
 * with an idempotent producer (acks=all). Each re-sent message carries `esr-replayed-from` ("<dlq>/<partition>/<offset>",
 * the dead letter it came from) and `esr-replayed-reason`. Messages of the dead-letter topic without esr headers are
 * counted and skipped.
 *
 * At most once across runs. Before sending, a replay reads the dead-letter topic once to learn which partitions it
 * would send to, reads those back (readback.h) collecting the esr-replayed-from values that name this dead-letter topic,
 * and only then reads the dead-letter topic again and sends: a source event whose dead letter, or any duplicate of it
 * still in the dead-letter topic, is named by one of those values was re-sent by an earlier run and is skipped
 * (`already`). A re-sent event that is dead-lettered again has esr-source coordinates of its own (its offset in the
 * source partition), so it is a new dead letter that a later run re-sends. A run that fails half-way can be run again.
 *
 * Where the read-back starts. A re-sent event is produced after its dead letter, which is produced after its source
 * event was read: in the default mode (same topic, same partition) it sits after its source event. So each source
 * partition is read from one past the lowest source offset among the dead letters within the filters, not from its
 * start: replaying recent dead letters reads only the recent part of the source partitions, and --source-partition and
 * --from-offset narrow it further. With `target_topic` or `by_key` a re-sent event lands in a partition whose offsets
 * say nothing about the source's, so those partitions are read from their log start.
 * When retention has already deleted offsets where an earlier re-send of a dead letter could be (the target
 * partition's log start is past one plus its source offset, or past 0 for --to/--by-key), whether it was re-sent
 * cannot be known: it is skipped (`unverified`) unless allow_unverified is set.
 *
 * Not covered: two runs at the same time (neither sees what the other is sending), and runs with different
 * target_topic/by_key (a run looks for earlier re-sends where it would send them itself).
 * Memory: each set (the dead letters within the filters with their source, the re-sends found, the source events seen)
 * is bounded by max_set_bytes; past it the run stops with ESR_E_NOMEM (lib_code E2BIG), which narrower filters avoid.
 */
#ifndef ESR_DLQ_REPLAY_H
#define ESR_DLQ_REPLAY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

#define ESR_DLQ_REPLAY_MAX_SET_BYTES ((size_t)256 << 20)

typedef struct esr_dlq_replay_opts {
  const char *dlq_topic;
  const char *target_topic;   /* NULL: each dead letter's source topic (esr-topic) */
  const char *const *reasons; /* NULL-terminated; NULL or empty: every reason */
  int32_t source_partition;   /* -1: any */
  int64_t from_offset;        /* source offsets [from, to]; -1: unbounded */
  int64_t to_offset;
  int by_key;           /* 1: let the producer's partitioner place messages by key; 0: the source partition number */
  int dry_run;          /* list what would be re-sent, send nothing */
  int allow_unverified; /* 1: re-send dead letters whose earlier re-send could have been deleted by retention */
  size_t max_set_bytes; /* 0: ESR_DLQ_REPLAY_MAX_SET_BYTES */
  FILE *list;           /* optional: one line per dead letter re-sent (or that would be), already re-sent or unverified */
} esr_dlq_replay_opts;

typedef struct esr_dlq_replay_stats {
  int64_t read;       /* messages read from the dead-letter topic */
  int64_t duplicates; /* dead letters of a source already seen */
  int64_t filtered;   /* not matching the filters */
  int64_t foreign;    /* without esr headers */
  int64_t already;    /* re-sent by an earlier run (found in the target partitions) */
  int64_t unverified; /* not re-sent: retention deleted where an earlier re-send would be */
  int64_t resent;     /* produced and acknowledged (or listed, in a dry run) */
  int64_t checked_partitions; /* target partitions read back for earlier re-sends */
  int64_t checked_messages;   /* messages read there */
} esr_dlq_replay_stats;

/* `cfg` gives the Kafka settings (kafka.*; only bootstrap.servers is required). */
esr_code esr_dlq_replay(const esr_config *cfg, const esr_dlq_replay_opts *opts, esr_dlq_replay_stats *stats,
                        esr_error *err);

#endif
