/* esrt_kafka.h — test support on the Kafka side: the mock cluster process, a producer that writes to explicit
 * partitions and reports each message's offset, watermarks, and reading a whole topic (with headers) to its end. */
#ifndef ESRT_KAFKA_H
#define ESRT_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "esrt_proc.h"

/* ---- records read back from a topic ---- */
typedef struct esrt_header {
  char *name;
  char *value; /* NUL-terminated copy; NULL for a header without value */
  size_t value_len;
} esrt_header;

typedef struct esrt_record {
  int32_t partition;
  int64_t offset;
  char *key; /* NULL: the message has no key; otherwise a NUL-terminated copy of key_len bytes */
  size_t key_len;
  char *value; /* NULL: null value; otherwise NUL-terminated copy of value_len bytes */
  size_t value_len;
  esrt_header *headers;
  size_t n_headers;
  int64_t timestamp; /* the message's timestamp (CreateTime: when its producer took it), ms since the epoch; -1 none */
} esrt_record;

typedef struct esrt_records {
  esrt_record *v;
  size_t n, cap;
} esrt_records;

void esrt_records_free(esrt_records *r);
/* The value of the first header called `name` (NUL-terminated), or NULL when absent. */
const char *esrt_record_header(const esrt_record *r, const char *name);

/* ---- the mock cluster: `esr mock-cluster` in a child process ---- */
typedef struct esrt_mock {
  esrt_proc proc;
  char bootstrap[1024];
} esrt_mock;

/* Starts `esr_bin mock-cluster --brokers N --topic T...` (topics as "NAME:PARTITIONS", NULL-terminated) with its logs
 * in `dir`, and waits (polling, up to timeout_ms) for its bootstrap file. 0, or -1 with a message on stderr. */
int esrt_mock_start(esrt_mock *m, const char *esr_bin, const char *dir, int brokers, const char *const *topics,
                    int timeout_ms);
/* Sends a control line (e.g. "topic orders 4", "broker-down 1") and waits for its "ok". 0, or -1. */
int esrt_mock_control(esrt_mock *m, const char *line, int timeout_ms);
/* SIGTERM and wait. Returns the exit code. */
int esrt_mock_stop(esrt_mock *m);

/* ---- producing ---- */
typedef struct esrt_producer esrt_producer;

/* An idempotent acks=all producer (so that each partition keeps the order of production). NULL on failure. */
esrt_producer *esrt_producer_new(const char *bootstrap);
/* The same with more properties: extra is "key", "value", ... NULL (e.g. "batch.num.messages", "5", NULL). */
esrt_producer *esrt_producer_new_with(const char *bootstrap, const char *const *extra);
void esrt_producer_free(esrt_producer *p);
rd_kafka_t *esrt_producer_handle(esrt_producer *p);
/* Queues one message to an explicit partition (key NULL: no key). *offset_out (may be NULL) is set by the delivery
 * report: the offset, or -1 on failure. Waits for room when the local queue is full. 0, or -1. */
int esrt_produce(esrt_producer *p, const char *topic, int32_t partition, const void *key, size_t key_len,
                 const void *value, size_t value_len, int64_t *offset_out);
/* Serves delivery reports for up to timeout_ms. */
void esrt_producer_poll(esrt_producer *p, int timeout_ms);
/* Waits until every queued message is reported. 0 when all were delivered, -1 (message on stderr) on a failed
 * delivery or on timeout. */
int esrt_producer_flush(esrt_producer *p, int timeout_ms);
/* Messages delivered / failed so far. */
int64_t esrt_producer_delivered(const esrt_producer *p);
int64_t esrt_producer_failed(const esrt_producer *p);

/* ---- metadata ---- */
/* A client handle for queries (watermarks, metadata). NULL on failure. */
rd_kafka_t *esrt_kafka_client_new(const char *bootstrap);
/* The low (log start) and high watermarks of a partition. 0, or -1. */
int esrt_watermarks(rd_kafka_t *rk, const char *topic, int32_t partition, int64_t *lo, int64_t *hi);
/* The partition count of a topic, or -1. */
int esrt_partition_count(rd_kafka_t *rk, const char *topic);
/* 1 when every partition of `topic` still starts at offset 0 (the mock's retention dropped nothing), else 0 (with a
 * message on stderr). */
int esrt_topic_whole(rd_kafka_t *rk, const char *topic);

/* Reads every partition of `topic` from its log start to its high watermark as of the call, appending to `out` sorted
 * by (partition, offset), with isolation.level=read_committed (what a downstream consumer of esr's outputs sees).
 * 0, or -1 with a message on stderr (also on timeout). */
int esrt_consume_all(const char *bootstrap, const char *topic, esrt_records *out, int timeout_ms);

/* ---- following output topics ---- */
/* A reader that follows topics from their start (read_committed, manual assignment) and keeps the esr-source values of
 * the messages it read: "was this row already published?", asked from outside the worker. */
typedef struct esrt_tail esrt_tail;

esrt_tail *esrt_tail_new(const char *bootstrap, const char *const *topics); /* NULL-terminated; NULL on failure */
void esrt_tail_free(esrt_tail *t);
/* Reads what the topics hold now, up to their high watermarks as of the call. 0, or -1 (message on stderr). */
int esrt_tail_catch_up(esrt_tail *t, int timeout_ms);
/* Whether a message with this esr-source value was read. */
int esrt_tail_has(const esrt_tail *t, const char *source);
size_t esrt_tail_messages(const esrt_tail *t);

#endif
