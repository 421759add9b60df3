/* esr/dlq_replay.h — putting dead-lettered events back into their source topic after a fix.
 *
 * Reads every partition of the dead-letter topic from its start to the end it had when the replay began (so a replay
 * never chases its own re-sent events), keeps each source event once (dead letters can be duplicated by a crash: the
 * esr-source header identifies them), applies the filters, and produces the original key and value unchanged — to the
 * source topic's same partition by default, so that an entity's events stay in its partition, or to another topic —
 * with an idempotent producer (acks=all). Each re-sent message carries `esr-replayed-from` ("<dlq>/<partition>/<offset>",
 * the dead letter it came from) and `esr-replayed-reason`. Messages of the dead-letter topic without esr headers are
 * counted and skipped.
 */
#ifndef ESR_DLQ_REPLAY_H
#define ESR_DLQ_REPLAY_H

#include <stdint.h>
#include <stdio.h>

#include "esr/config.h"

typedef struct esr_dlq_replay_opts {
  const char *dlq_topic;
  const char *target_topic;   /* NULL: each dead letter's source topic (esr-topic) */
  const char *const *reasons; /* NULL-terminated; NULL or empty: every reason */
  int32_t source_partition;   /* -1: any */
  int64_t from_offset;        /* source offsets [from, to]; -1: unbounded */
  int64_t to_offset;
  int by_key;  /* 1: let the producer's partitioner place messages by key; 0: the source partition number */
  int dry_run; /* list what would be re-sent, send nothing */
  FILE *list;  /* optional: one line per dead letter re-sent (or that would be) */
} esr_dlq_replay_opts;

typedef struct esr_dlq_replay_stats {
  int64_t read;       /* messages read from the dead-letter topic */
  int64_t duplicates; /* dead letters of a source already seen */
  int64_t filtered;   /* not matching the filters */
  int64_t foreign;    /* without esr headers */
  int64_t resent;     /* produced and acknowledged (or listed, in a dry run) */
} esr_dlq_replay_stats;

/* `cfg` gives the Kafka settings (kafka.*; only bootstrap.servers is required). */
esr_code esr_dlq_replay(const esr_config *cfg, const esr_dlq_replay_opts *opts, esr_dlq_replay_stats *stats,
                        esr_error *err);

#endif
