/* esr/readback.h — "was this already published?": read one Kafka partition back from an offset to its current end.
 *
 * A reader owns one consumer, built from the configuration's kafka.* settings like every esr consumer
 * (isolation.level=read_committed, auto.offset.reset=error), with manual assignment only: it never joins or commits to
 * a consumer group. Each read covers one topic-partition, from a start offset to the end the partition had when the read
 * began (its high watermark; under read_committed, its last stable offset), so that a read never chases messages written
 * while it runs and always ends. esr_readback_collect gathers the values of one header (optionally only those that begin
 * with a prefix) into an esr_strset, whose byte bound is the memory bound of the read; esr_readback_scan hands every
 * message to a callback instead.
 *
 * What a read guarantees: every message of [from, end) that a read_committed consumer can see was read, where `from` is
 * the start offset, or the partition's log start when retention has already deleted offsets after the start offset
 * (then `truncated` is 1: what was there cannot be known, and the caller decides what that means for it). An empty
 * range (no messages, start at or past the end) returns at once after one watermark query. A topic or partition that
 * does not exist is ESR_E_KAFKA with lib_code RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART (esr_readback_unknown). Any other
 * Kafka failure is ESR_E_KAFKA with librdkafka's code; a read that makes no progress for timeout_ms (a broker down, a
 * partition without leader) stops with RD_KAFKA_RESP_ERR__TIMED_OUT, so a read never hangs. A full set is ESR_E_NOMEM
 * (strset.h). After a failed read the reader can be used again. A reader serves one thread at a time.
 *
 * Users: `esr replay` and `esr verify` read each partition's range of the log with it (replay.h); `esr dlq replay` looks for esr-replayed-from values in the partitions it is about to re-send to (dlq_replay.h
 * says from which offsets); a partition opening reads its output partitions from the offset it recorded and collects
 * the esr-source keys of its own topic-partition (prefix "<topic>/<partition>/").
 */
#ifndef ESR_READBACK_H
#define ESR_READBACK_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>

#include "config.h"
#include "error.h"
#include "strset.h"

typedef struct esr_readback esr_readback;

#define ESR_READBACK_TIMEOUT_MS 30000

typedef struct esr_readback_range {
  const char *topic;
  int32_t partition;
  int64_t start;  /* the first offset wanted (>= 0) */
  int64_t end;    /* < 0: the end when the read begins; otherwise the smaller of this and that end */
  int timeout_ms; /* the longest wait for Kafka without progress; <= 0: ESR_READBACK_TIMEOUT_MS */
} esr_readback_range;

typedef struct esr_readback_result {
  int64_t log_start; /* the partition's first retained offset, as last seen */
  int64_t from;      /* the read covered [from, end): from = max(start, log_start) */
  int64_t end;
  int64_t read;      /* messages read */
  int64_t collected; /* header values that matched (esr_readback_collect), members already in the set included */
  int truncated;     /* 1: offsets at or after `start` were already deleted by retention when they were to be read */
} esr_readback_result;

/* Returns ESR_E_OK to go on; anything else stops the read and is its result (the callback fills err). m is valid
 * only during the call. */
typedef esr_code (*esr_readback_fn)(void *arg, const rd_kafka_message_t *m, esr_error *err);

/* A reader with the kafka.* settings of cfg (only bootstrap.servers is required), in *out. On failure *out is NULL and
 * the code is ESR_E_CONFIG (ESR_E_NOMEM when out of memory). */
esr_code esr_readback_new(const esr_config *cfg, esr_readback **out, esr_error *err);
/* A read stops with ESR_E_STATE as soon as *flag is non-zero (looked at least every 20 ms), so that the thread that
 * reads can serve something more urgent; NULL: never. The flag must outlive the reader. */
void esr_readback_set_interrupt(esr_readback *rb, const _Atomic int *flag);
/* Closes the consumer; NULL is a no-op. */
void esr_readback_free(esr_readback *rb);
/* The number of partitions of topic (ESR_E_KAFKA when unknown; timeout_ms <= 0: ESR_READBACK_TIMEOUT_MS). */
esr_code esr_readback_partition_count(esr_readback *rb, const char *topic, int timeout_ms, int *count,
                                      esr_error *err);
/* The partition's log start and end (under read_committed, its last stable offset), transient failures waited out up to
 * timeout_ms (<= 0: ESR_READBACK_TIMEOUT_MS). Errors as for a read. */
esr_code esr_readback_bounds(esr_readback *rb, const char *topic, int32_t partition, int timeout_ms, int64_t *start,
                             int64_t *end, esr_error *err);
/* The broker's answer to "the first offset whose timestamp is at or after ts_ms" (ListOffsets by time): *offset, or -1
 * when it names none — no later message, or a broker that does not answer such requests (librdkafka's mock cluster
 * answers -1 to every one): the caller cannot tell the two apart and must then read the timestamps itself. */
esr_code esr_readback_offset_for_time(esr_readback *rb, const char *topic, int32_t partition, int64_t ts_ms,
                                      int timeout_ms, int64_t *offset, esr_error *err);
/* Calls fn for each message of the range, in offset order. res (may be NULL) is filled as far as the read got. */
esr_code esr_readback_scan(esr_readback *rb, const esr_readback_range *r, esr_readback_fn fn, void *arg,
                           esr_readback_result *res, esr_error *err);
/* The same for n ranges at once (one assignment of all their partitions: reading many partitions costs about one
 * read's round trips, not n): fn gets the messages of every range, each range's in offset order, ranges interleaved;
 * results[i] (may be NULL) is filled for rs[i]. The longest timeout_ms of the ranges applies. */
esr_code esr_readback_scan_many(esr_readback *rb, const esr_readback_range *rs, size_t n, esr_readback_fn fn,
                                void *arg, esr_readback_result *results, esr_error *err);
/* Adds to `into` the value of every header called `header` (all of them when a message has several) that begins with
 * `prefix` (NULL or "": every value); headers without a value are skipped. */
esr_code esr_readback_collect(esr_readback *rb, const esr_readback_range *r, const char *header, const char *prefix,
                              esr_strset *into, esr_readback_result *res, esr_error *err);
/* 1 when err says that the topic or partition read does not exist. */
int esr_readback_unknown(const esr_error *err);

#endif
