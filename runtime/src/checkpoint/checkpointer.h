/* esr/checkpointer.h — the worker's background checkpoint thread.
 *
 * Apply threads ask for checkpoints; one background thread takes them, so that copying a partition database (seconds
 * for hundreds of MB) never holds up the apply loop: each job writes a local checkpoint (esr_checkpoint_write, from a
 * read connection of its own while the partition keeps committing), keeps the newest `keep` locally, uploads it to
 * the remote store when one is configured (data, then manifest) and keeps the newest `keep` there. A partition has at
 * most one job queued at a time. esr_checkpointer_now queues a job and waits for it (used when a partition is
 * released, so that its next owner finds the newest state). The thread logs each checkpoint and each failure itself:
 * there is no caller to return them to. A failed checkpoint only costs a longer replay later.
 *
 * While the remote store is known to be unreachable (esr/cplister.h: a listing or an upload failed, and none has
 * succeeded since), a checkpoint's upload is put off: it runs when no other job waits, and a job that comes
 * meanwhile abandons it (to run again later), so that neither a release nor an integrity check waits for the
 * store's retries. Its success makes the store count as reachable again.
 *
 * At start it checks the remote store (esr_cpstore_check: a store that cannot work is ESR_E_CONFIG, one that cannot
 * be reached now a warning), starts a lister of the store for the recovery ladder (esr/cplister.h) and removes the
 * temporary files that writers killed mid-way left in the checkpoint directory and the state directory
 * (esr_checkpoint_sweep) — unless another live checkpointer shares the checkpoint directory. Create it while holding
 * the state directory's lock (one worker per state directory).
 */
#ifndef ESR_CHECKPOINTER_H
#define ESR_CHECKPOINTER_H

#include <stdint.h>

#include "cplister.h"
#include "cpstore.h"
#include "error.h"

typedef struct esr_checkpointer esr_checkpointer;

typedef struct esr_checkpointer_opts {
  const char *state_dir;
  const char *cp_dir;
  const char *store_url; /* NULL: local checkpoints only */
  esr_cpstore_opts store_opts;
  int keep;
  int lister_threads; /* threads listing the store for recovery (esr_checkpointer_lister); 0: none */
} esr_checkpointer_opts;

/* Opens and checks the remote store (a bad URL, a missing or read-only directory, a bucket that does not exist or
 * refuses access are ESR_E_CONFIG, with the fix), removes stale temporary files and starts the thread. */
esr_code esr_checkpointer_new(const esr_checkpointer_opts *opts, esr_checkpointer **out, esr_error *err);
/* The lister of the remote store (NULL without a store or lister_threads): borrowed, valid until free. */
esr_cplister *esr_checkpointer_lister(esr_checkpointer *c);
/* Cancels a copy under way, finishes nothing else, joins the thread. NULL is a no-op. */
void esr_checkpointer_free(esr_checkpointer *c);
/* Queues a checkpoint of topic/partition unless one is queued already. Never blocks on the copy. */
void esr_checkpointer_request(esr_checkpointer *c, const char *topic, int32_t partition);
/* Queues one and waits up to timeout_ms for it (only the partition's owning thread may wait on it). Sets *next_offset (when not NULL) to the checkpoint's offset. */
esr_code esr_checkpointer_now(esr_checkpointer *c, const char *topic, int32_t partition, int timeout_ms,
                              int64_t *next_offset, esr_error *err);
/* The verdict of a background integrity check (PRAGMA quick_check) of a live database: shared by the partition that
 * waits for it and the checkpoint thread that runs it (reference-counted: either may go first). */
typedef struct esr_verify_ticket esr_verify_ticket;
enum { ESR_VERIFY_PENDING = 0, ESR_VERIFY_OK = 1, ESR_VERIFY_CORRUPT = -1 };
/* Queues a check of topic/partition's live database; returns the ticket (the caller owns one reference) or NULL. */
esr_verify_ticket *esr_checkpointer_verify(esr_checkpointer *c, const char *topic, int32_t partition);
/* ESR_VERIFY_PENDING, _OK or _CORRUPT; with _CORRUPT, msg says what is wrong. */
int esr_verify_state(esr_verify_ticket *t, const char **msg);
void esr_verify_release(esr_verify_ticket *t);
/* Waits up to timeout_ms until no job is queued or running; returns the number left. */
int esr_checkpointer_drain(esr_checkpointer *c, int timeout_ms);

#endif
