/* esr/outputs.h — publish once: where a partition's outputs (dead letters, emitted events) stand in their topics, and
 * which of them are already there.
 *
 * Marks. For each output topic-partition a partition published to, its database keeps the highest offset Kafka
 * acknowledged for one of its rows (table esr_outputs, written by esr_outputs_save in the transaction that deletes the
 * acknowledged rows, so it travels with the state, checkpoints included). Every output of the partition whose row is
 * still in the outbox lies at or after the mark of its topic-partition: one idempotent producer publishes a partition's
 * rows in order, and a row sent after an acknowledgement came back lands after it. A failed delivery may still have
 * landed anywhere after the marks of the moment: from the first failure the marks stop moving until a read-back
 * covered it.
 *
 * Read-back. Before the partition publishes anything after it opened (whichever recovery step it took), and before it
 * sends rows again after a failed delivery, each output partition of every topic it knows (one with a mark, or read
 * since it opened) is read from its mark to its end (a topic without a mark: from its start), and the esr-source keys
 * of this partition's own outputs ("<topic>/<partition>/<offset>/<index>") are collected: a row whose key is there
 * was published already and is dropped unpublished (esr_outputs_check says ESR_OUTPUT_DROP) — rows a crash left
 * between publish and delete, and rows that re-applying the log (after a restore from an older checkpoint, or a rebuild
 * from the log on a new owner) produces again. A row for a topic not read yet asks for a read-back of that topic
 * first. Keys are collected for a window of source offsets [lo, hi) into a set with a byte bound (esr/strset.h): when
 * the set is full, hi comes down to the median of the keys and the keys above go; a row at or past hi then asks for
 * the next window. The set is kept until the partition's committed position passes every key collected; meanwhile
 * the marks do not move, so that a crash restarts the read-back from the same marks. A read that finds offsets after
 * a mark already deleted by retention cannot know what was there: rows it concerns are published (at least once),
 * and the read-back counts it. One read-back can serve several partitions (of one apply thread) at once: one read of
 * each output partition, from the lowest mark among them.
 *
 * Not thread-safe: the thread that owns the partition uses it.
 */
#ifndef ESR_OUTPUTS_H
#define ESR_OUTPUTS_H

#include <stddef.h>
#include <stdint.h>

#include "readback.h"
#include "store.h"

typedef struct esr_outputs esr_outputs;

typedef struct esr_outputs_opts {
  int readback;     /* 0: no read-back and no marks: every row is published (at least once) */
  size_t max_bytes; /* the bound of the key set (0: ESR_OUTPUTS_MAX_BYTES) */
} esr_outputs_opts;

#define ESR_OUTPUTS_MAX_BYTES ((size_t)16 << 20)

/* Cumulative figures since the partition opened (for logs and metrics). */
typedef struct esr_outputs_stats {
  int64_t readbacks; /* read-back passes this partition took part in */
  int64_t read;      /* messages read by those passes (shared passes: counted for each partition) */
  int64_t found;     /* keys of this partition collected */
  int64_t dropped;   /* outbox rows dropped unpublished because their key was found */
  int64_t truncated; /* output partitions whose range after the mark was partly deleted by retention */
  int64_t ms;        /* time spent reading back */
} esr_outputs_stats;

typedef enum esr_output_verdict {
  ESR_OUTPUT_SEND,    /* not published yet, as far as can be known: publish it */
  ESR_OUTPUT_DROP,    /* already in its topic: delete it unpublished */
  ESR_OUTPUT_READBACK /* a read-back must come first (esr_outputs_due is now 1) */
} esr_output_verdict;

/* The publish-once state of the partition of store `s`, with its marks read from the database. */
esr_code esr_outputs_open(esr_store *s, const esr_outputs_opts *opts, esr_outputs **out, esr_error *err);
void esr_outputs_free(esr_outputs *o); /* NULL is a no-op */

/* Kafka acknowledged a row of this partition at topic/partition/offset. */
void esr_outputs_acked(esr_outputs *o, const char *topic, int32_t partition, int64_t offset);
/* A delivery failed: the marks stay where they are until a read-back covered the row. */
void esr_outputs_failed(esr_outputs *o);
/* Every unacknowledged row is about to be sent again (after failures): read back first. */
void esr_outputs_resend(esr_outputs *o);
/* Kafka transactions (outputs.transactional): acknowledgements between _BEGIN and _COMMIT count only once the
 * transaction committed; _ABORT forgets them. */
typedef enum esr_outputs_txn_phase { ESR_OUTPUTS_TXN_BEGIN, ESR_OUTPUTS_TXN_COMMIT, ESR_OUTPUTS_TXN_ABORT } esr_outputs_txn_phase;
void esr_outputs_txn(esr_outputs *o, esr_outputs_txn_phase phase);
/* Writes the marks that moved (inside the caller's transaction); nothing while a read-back holds them. */
esr_code esr_outputs_save(esr_outputs *o, esr_store *s, esr_error *err);

/* What to do with an outbox row of this partition. */
esr_output_verdict esr_outputs_check(esr_outputs *o, const char *topic, int64_t src_offset, int src_index);
/* Rows for `topic` wait in the outbox: the next read-back reads it too (saves a pass when the rows come). */
void esr_outputs_want(esr_outputs *o, const char *topic);
/* 1 when a read-back must run before the partition publishes. */
int esr_outputs_due(const esr_outputs *o);
/* Every row committed so far was checked (published or dropped), and the committed position is `next_offset`: when
 * it is past every key collected, the set goes, the marks move again, and one line is logged with what the
 * read-back read and dropped. */
void esr_outputs_settled(esr_outputs *o, int64_t next_offset);

/* One read-back for those of the n partitions given that are due (lo[i]: the lowest source offset partition i may
 * still publish a row for: its first unsent row's, else its committed position); a topic one of them asks for is
 * read for every partition given that does not know it yet (they become due). Each output partition concerned is read
 * once. timeout_ms bounds each wait for Kafka without progress (<= 0: the reader's default). On failure (Kafka
 * unreachable) the partitions stay due and nothing changed. */
esr_code esr_outputs_readback(esr_readback *rb, esr_outputs *const *os, const int64_t *lo, size_t n, int timeout_ms,
                              esr_error *err);

void esr_outputs_stats_get(const esr_outputs *o, esr_outputs_stats *st);

#endif
