/* esr/publisher.h — publishes outbox rows with an idempotent producer and reports each delivery.
 *
 * Every message carries the headers esr-topic, esr-partition, esr-offset (decimal text: the source event), esr-source
 * ("topic/partition/offset/index", the de-duplication key) and, for dead letters, esr-reason and esr-error. Key and value
 * are the row's, byte for byte. Deliveries are reported through the callback given at creation, from inside
 * esr_publisher_poll/flush on the calling thread, with the `sink` and `seq` passed to esr_publisher_send.
 */
#ifndef ESR_PUBLISHER_H
#define ESR_PUBLISHER_H

#include <stdint.h>

#include "config.h"
#include "outbox.h"

typedef struct esr_publisher esr_publisher;

/* One delivery report: the row (sink and seq as given to esr_publisher_send), and where it went. ok: 1 delivered
 * (acknowledged by all in-sync replicas) at topic/partition/offset; 0 failed, `error` says why (partition and offset
 * may then be -1). Pointers valid during the callback. */
typedef struct esr_delivery {
  uint64_t sink;
  int64_t seq;
  int ok;
  const char *error;
  const char *topic;
  int32_t partition;
  int64_t offset;
} esr_delivery;

typedef void (*esr_delivery_fn)(void *opaque, const esr_delivery *d);

esr_code esr_publisher_new(const esr_config *cfg, esr_delivery_fn fn, void *opaque, esr_publisher **out,
                           esr_error *err);
void esr_publisher_free(esr_publisher *p);
/* A transactional publisher (outputs.transactional): transactional.id `txn_id`, transactions initialised (which
 * fences and aborts what an earlier producer with that id left open; blocks up to timeout_ms). Rows are sent only
 * between esr_publisher_txn_begin and esr_publisher_txn_commit. */
esr_code esr_publisher_new_txn(const esr_config *cfg, const char *txn_id, int timeout_ms, esr_delivery_fn fn,
                               void *opaque, esr_publisher **out, esr_error *err);
esr_code esr_publisher_txn_begin(esr_publisher *p, esr_error *err);
/* Commits the open transaction (flushing it first: delivery reports are served from this call). On failure the
 * transaction is aborted (its messages never reach read_committed consumers) and the error returned; when the producer
 * was fenced by a newer one with the same transactional.id (the partition has a new owner), esr_publisher_fenced is 1
 * from then on. */
esr_code esr_publisher_txn_commit(esr_publisher *p, int timeout_ms, esr_error *err);
int esr_publisher_fenced(const esr_publisher *p);
/* Queues one row of source topic/partition. A full local queue is ESR_E_KAFKA with lib_code _QUEUE_FULL: retry later. */
esr_code esr_publisher_send(esr_publisher *p, uint64_t sink, const char *src_topic, int32_t src_partition,
                            const esr_outbox_row *row, esr_error *err);
/* Looks `topic` up now (metadata, and the idempotent producer's id) so that the first row sent to it is not delayed. */
void esr_publisher_warm(esr_publisher *p, const char *topic);
/* Whether a send failed only because the local queue is full (retry after polling). */
int esr_publisher_queue_full(const esr_error *err);
void esr_publisher_poll(esr_publisher *p, int timeout_ms);
/* Waits up to timeout_ms for everything queued; returns how many are still in flight. */
int esr_publisher_flush(esr_publisher *p, int timeout_ms);
int esr_publisher_in_flight(esr_publisher *p);

#endif
