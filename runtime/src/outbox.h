/* esr/outbox.h — rows to publish after commit: dead letters and events emitted by handlers.
 *
 * A row is written in the batch transaction that consumed its source event, so it exists if and only if that event
 * counts as consumed: a crash can neither lose a dead letter nor produce one for an event that will be consumed again.
 * Rows are published after the commit and deleted once Kafka acknowledged them; a crash between the two publishes the
 * row again, and the source coordinates (topic, partition, offset, index) let consumers drop the duplicate.
 * Rows live in the table esr_outbox of the partition's store.
 */
#ifndef ESR_OUTBOX_H
#define ESR_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct esr_outbox_row {
  int64_t seq; /* assigned by esr_outbox_add */
  const char *topic;
  const void *key;
  size_t key_len; /* key NULL: no key */
  const void *value;
  size_t value_len;
  int64_t src_offset;
  int src_index;      /* 0 for a dead letter; 1, 2, ... for the emits of one event */
  const char *reason; /* dead letters: short code (bad-json, rejected, ...); NULL for emits */
  const char *error;  /* dead letters: human message */
} esr_outbox_row;

/* Adds a row in the current transaction; sets row->seq. */
esr_code esr_outbox_add(esr_store *s, esr_outbox_row *row, esr_error *err);
/* Calls fn for up to `limit` rows with seq > after, in seq order (pointers valid during the call). fn returns non-zero
 * to stop early. Sets *last to the seq of the last row passed to fn (unchanged when none). */
esr_code esr_outbox_scan(esr_store *s, int64_t after, int limit, int (*fn)(void *arg, const esr_outbox_row *row),
                         void *arg, int64_t *last, esr_error *err);
/* Deletes delivered rows (in the current transaction). */
esr_code esr_outbox_delete(esr_store *s, const int64_t *seqs, size_t n, esr_error *err);
/* Rows waiting. */
esr_code esr_outbox_count(esr_store *s, int64_t *count, esr_error *err);
/* Calls fn with each distinct topic of the rows with seq > after (fn returns non-zero to stop). */
esr_code esr_outbox_topics(esr_store *s, int64_t after, int (*fn)(void *arg, const char *topic), void *arg,
                           esr_error *err);
/* The source offset of the first row with seq > after, or -1 when there is none. */
esr_code esr_outbox_first_src(esr_store *s, int64_t after, int64_t *src, esr_error *err);

#endif
