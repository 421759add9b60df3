/* esrt_ledger.h — the ledger model for tests: a deterministic generator of ledger event streams (good events and bad
 * ones of every kind) and an independent oracle that folds a partition's log into the expected state.
 *
 * Generator: from a seed, a stream over many accounts. Every event carries the partition it must go to
 * (esrt_ledger_partition(key) = FNV-1a(key) % P), so all events of one account are in one partition, in stream order.
 * A configurable share of the events is bad, drawn evenly from every kind in esrt_ledger_bad_kinds (bad JSON, bad
 * envelopes, unknown types and versions, rejections of each business rule, invalid data incl. amounts 1.5, 0, -3, "10",
 * 2^53+2, 2^53+1 and 4503599627370496.5 (the last two a double would round into range), and a Kafka key that is not
 * the account). An optional "whale" account receives 2^53 deposits until its
 * balance overflows int64, which the handler must reject. Each event records the reason the generator meant it to get
 * ("" for applied): a cross-check for the oracle, never the expectation itself.
 *
 * Oracle: plain C (a hash map of balances and a strict JSON parser of its own; no SQLite, no cJSON, no plugin code).
 * Fed every record of a partition in offset order, it computes the expected accounts (owner, balance) per
 * (partition, account), the expected dead-letter reason of every offset, the applied/dead counts and the log digest
 * (the SHA-256 chain of esr/digest.h) that the worker's esr_offsets row must show.
 */
#ifndef ESRT_LEDGER_H
#define ESRT_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#define ESRT_INT53 ((int64_t)9007199254740992) /* 2^53 */

int32_t esrt_ledger_partition(const char *key, size_t key_len, int partitions);

/* ---- generator ---- */
typedef struct esrt_gen_opts {
  uint64_t seed;
  int events;        /* total, including the whale's */
  int accounts;
  int partitions;
  double bad_share;  /* 0..1: share of bad events, spread evenly over every bad kind */
  int whale;         /* 1: include the overflow account (about 1,030 events) */
  size_t pad_bytes;  /* >0: every good event carries a "memo" of this many bytes (for retention tests) */
  int prefix_kinds;  /* 1: emit one event of every bad kind first, so that even short streams hold each kind */
} esrt_gen_opts;

typedef struct esrt_event {
  int32_t partition;
  char *key; /* NULL: no key */
  size_t key_len;
  char *value;
  size_t value_len;
  const char *kind;   /* "open", "deposit", ... or the bad kind's name */
  const char *intent; /* the reason the generator meant: "" applied, else "bad-json", "rejected", ... */
  int64_t offset;     /* set by the producer's delivery report; -1 before */
} esrt_event;

typedef struct esrt_bad_kind {
  const char *kind;
  const char *reason;
} esrt_bad_kind;

/* Every bad kind the generator can emit (NULL-terminated). */
extern const esrt_bad_kind esrt_ledger_bad_kinds[];

/* NULL only when out of memory. */
esrt_event *esrt_ledger_generate(const esrt_gen_opts *o, size_t *n_out);
void esrt_events_free(esrt_event *ev, size_t n);

/* ---- oracle ---- */
typedef struct esrt_oracle esrt_oracle;

typedef struct esrt_oracle_part {
  int64_t next_offset; /* one past the last offset fed */
  int64_t first_offset;
  int64_t applied, dead;
  uint8_t digest[32];
} esrt_oracle_part;

typedef struct esrt_oracle_account {
  int32_t partition;
  const char *id;
  const char *owner;
  int64_t balance;
} esrt_oracle_account;

esrt_oracle *esrt_oracle_new(int partitions);
void esrt_oracle_free(esrt_oracle *o);
/* Folds one record. Records of a partition must come in increasing offset order, starting at offset 0 (the digest is
 * a chain from the log's first event). Returns the dead-letter reason ("bad-json", ..., NULL when applied), or
 * "order" when the record is out of order (an error of the caller). */
const char *esrt_oracle_feed(esrt_oracle *o, int32_t partition, int64_t offset, const void *key, size_t key_len,
                             const void *value, size_t value_len);
/* Folds a record as a dead letter with `reason` (a static string) without judging it: for events the worker must
 * dead-letter for a reason outside the ledger's rules (a test handler that crashes on them: reason "crash"). */
const char *esrt_oracle_feed_dead(esrt_oracle *o, int32_t partition, int64_t offset, const void *key, size_t key_len,
                                  const void *value, size_t value_len, const char *reason);
/* The expected reason for an offset: NULL applied (or never fed), else the reason. */
const char *esrt_oracle_reason(const esrt_oracle *o, int32_t partition, int64_t offset);
const esrt_oracle_part *esrt_oracle_part_of(const esrt_oracle *o, int32_t partition);
int esrt_oracle_partitions(const esrt_oracle *o);
/* Dead letters: the i-th (partition, offset, reason) in (partition, offset) order. */
size_t esrt_oracle_dead_count(const esrt_oracle *o);
void esrt_oracle_dead_at(const esrt_oracle *o, size_t i, int32_t *partition, int64_t *offset, const char **reason);
/* Accounts in a stable order (partition, then id). The array is owned by the oracle and valid until the next feed. */
const esrt_oracle_account *esrt_oracle_accounts(esrt_oracle *o, size_t *n);
/* One account, or NULL. */
const esrt_oracle_account *esrt_oracle_account_get(const esrt_oracle *o, int32_t partition, const char *id);

#endif
