/* esrt_state.h — reading a worker's state directory from outside (SQLite, read-only, safe while the worker runs in WAL
 * mode), waiting until a worker has caught up with the log, and comparing a state and a dead-letter topic with the
 * ledger oracle. */
#ifndef ESRT_STATE_H
#define ESRT_STATE_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "esrt_kafka.h"
#include "esrt_ledger.h"

typedef struct esrt_part_state {
  int present; /* the database exists and has a position row */
  int64_t next_offset, applied, dead, outbox;
  uint8_t digest[32];
} esrt_part_state;

typedef struct esrt_db_account {
  int32_t partition;
  char *id;
  char *owner;
  int64_t balance;
} esrt_db_account;

typedef struct esrt_state {
  int partitions;
  esrt_part_state *parts;
  esrt_db_account *accounts; /* sorted by (partition, id) after esrt_state_read */
  size_t n_accounts, cap_accounts;
} esrt_state;

/* Reads the position (and, with accounts, the ledger's accounts) of every partition database of `topic` found in
 * `dir`, merging into *st (call it once per state directory; st zeroed before the first call). 0, or -1 with a message
 * on stderr. */
int esrt_state_read(esrt_state *st, const char *dir, const char *topic, int partitions, int accounts);
void esrt_state_free(esrt_state *st);
/* Like esrt_state_read for one partition only: reads `partition` from `dir` (its position and accounts) into *st,
 * which must not hold that partition yet. For directories holding stale copies of partitions that moved away. */
int esrt_state_read_one(esrt_state *st, const char *dir, const char *topic, int partitions, int32_t partition);
/* One partition's position from `dir` (present = 0 when no database or no row yet). 0, or -1 on a read error. */
int esrt_read_position(const char *dir, const char *topic, int32_t partition, esrt_part_state *out);

/* Waits until, for every partition, a database in one of `dirs` has next_offset == the high watermark and an empty
 * outbox (partitions with an empty log need no database). On timeout prints where each partition stands and returns
 * -1; returns 0 when caught up. */
int esrt_wait_caught_up(rd_kafka_t *rk, const char *topic, int partitions, const char *const *dirs, size_t n_dirs,
                        int timeout_ms);

/* Compares the state with the oracle: every (partition, account) with owner and balance, no account the oracle does
 * not know, and per partition next_offset, applied/dead counts and the log digest. Prints up to max_report
 * differences ("first differences") to out. Returns the number of differences. */
size_t esrt_compare_state(esrt_oracle *o, const esrt_state *st, FILE *out, int max_report);

typedef struct esrt_dlq_summary {
  size_t messages;   /* dead letters read */
  size_t distinct;   /* distinct sources */
  size_t duplicates; /* messages whose source was already seen (allowed after a crash) */
} esrt_dlq_summary;

/* Compares a dead-letter topic with the oracle: the set of source offsets equals the oracle's dead offsets, each with
 * the expected esr-reason; key and value are the source record's byte for byte; esr-topic/-partition/-offset agree
 * with esr-source "topic/partition/offset/0"; esr-error is present. `source` is the source topic read back (sorted).
 * Duplicates (same esr-source) are counted, and must agree with each other. Returns the number of differences. */
size_t esrt_compare_dlq(const esrt_oracle *o, const char *src_topic, const esrt_records *source,
                        const esrt_records *dlq, esrt_dlq_summary *sum, FILE *out, int max_report);

/* Compares the events the ledger_echo test plugin emitted (topic read back, sorted) with the oracle: every event of
 * src_topic the oracle applies has one emitted event with esr-source "<src_topic>/<p>/<offset>/1", the source's key
 * and the value {"offset":<offset>}, and no other event has any. Duplicates (same esr-source) are counted in sum, not
 * as differences. Returns the number of differences. */
size_t esrt_compare_emits(const esrt_oracle *o, const char *src_topic, const esrt_records *source,
                          const esrt_records *out, esrt_dlq_summary *sum, FILE *rep, int max_report);

/* Calls fn with the esr-source key ("<topic>/<partition>/<offset>/<index>") of every row in the outbox of the partition
 * database of topic/partition in dir (none when it does not exist). 0, or -1 on a read error. */
int esrt_outbox_keys(const char *dir, const char *topic, int32_t partition, void (*fn)(void *arg, const char *key),
                     void *arg);

/* Feeds a topic read back from Kafka (sorted by partition, offset) to the oracle. 0, or -1 when a partition does not
 * start at offset 0 or has a hole (the oracle needs the whole log). */
int esrt_oracle_feed_records(esrt_oracle *o, const esrt_records *recs);

/* Reads `topic` back from Kafka into *src, checks that it holds exactly the produced events (each at the offset its
 * delivery report gave, key and value byte for byte), folds it through a new oracle, and checks that the oracle agrees
 * with every event's intent (a cross-check of the generator and the oracle). Returns the oracle, or NULL after
 * printing the first problems. */
esrt_oracle *esrt_ledger_oracle_from_log(const char *bootstrap, const char *topic, int partitions,
                                         const esrt_event *ev, size_t n, esrt_records *src);

/* A record by (partition, offset) in a sorted list, or NULL. */
const esrt_record *esrt_records_find(const esrt_records *recs, int32_t partition, int64_t offset);

#endif
