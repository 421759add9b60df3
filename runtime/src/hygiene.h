/* hygiene.h — disk hygiene of a worker's state directory: set-aside files pruned, released partitions dropped.
 *
 * Pruning: a database the recovery ladder moved aside (`<topic>-<p>.db.corrupt-<time>`, `.old-<time>`, with their
 * -wal/-shm/-journal) and a local checkpoint set aside (`<checkpoint.dir>/<topic>-<p>/<offset>.db.bad-<time>`) are kept for
 * inspection, the newest `aside_keep` of each directory (by the time they were moved: the inode's change time);
 * older ones are removed. Dropping (only with a remote store, and drop_after_ms > 0): the database of a partition this
 * worker does not own, once it has not owned it for drop_after_ms (in group mode a partition may come back within
 * seconds) and the store's listing (asked through the lister in the background: the main thread never waits for the
 * store) shows a checkpoint at or past the database's position; then the database, its -wal and -shm and its
 * in-flight marker are removed. Ownership is asked again just before the removal, on the thread that assigns
 * partitions, so a partition assigned meanwhile is never touched. Everything runs on the caller's thread (the worker's
 * main thread) from esr_hygiene_tick, which does nothing until its next pass is due (every 5 s). Removals are logged
 * and counted (esr/metrics.h); failures are logged and retried at the next pass.
 */
#ifndef ESR_HYGIENE_H
#define ESR_HYGIENE_H

#include <stddef.h>
#include <stdint.h>

#include "cplister.h"

typedef struct esr_hygiene esr_hygiene;

typedef struct esr_hygiene_opts {
  const char *state_dir;
  const char *cp_dir;
  char *const *topics;
  size_t n_topics;
  int aside_keep;
  int drop_after_ms;     /* 0: never drop */
  esr_cplister *lister;  /* the remote store's lister; NULL: never drop */
  /* Whether this worker owns (or is opening) topic/partition now. */
  int (*owned)(void *arg, const char *topic, int32_t partition);
  void *arg;
} esr_hygiene_opts;

/* Borrows opts' strings and lister, which must outlive it. NULL only when out of memory. */
esr_hygiene *esr_hygiene_new(const esr_hygiene_opts *opts);
/* Drops pending listings. NULL is a no-op. */
void esr_hygiene_free(esr_hygiene *h);
/* One pass when due (now: esr_now_ms): prunes set-aside files, advances the drops. */
void esr_hygiene_tick(esr_hygiene *h, int64_t now);
/* Removes the set-aside files of `dir` beyond the newest `keep`; returns how many groups were removed. */
int esr_hygiene_prune_dir(const char *dir, int keep);

/* Removes `path` and everything below it (symbolic links are removed, not followed); best effort, silent: for
 * scratch directories (esr replay's fetch area, esr verify --live's snapshots). */
void esr_remove_tree(const char *path);

#endif
