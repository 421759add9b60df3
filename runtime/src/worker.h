/* esr/worker.h — the `esr run` process: consumes the configured topics and applies them, partition by partition.
 *
 * The worker loads the handlers, takes an exclusive lock on state.dir (one worker per state directory), and consumes in
 * one of two modes: `group` (Kafka consumer group, cooperative-sticky by default; on assignment each partition resumes
 * at the next_offset stored in its SQLite database, on revocation its batch is committed first) or `static` (the
 * configured partitions are assigned directly, with the same resume rule, and no group protocol). Kafka group offsets
 * are stored after each SQLite commit for lag visibility only. A start offset the log no longer holds stops that
 * partition with an error naming the needed offset and the log start; it is never skipped. esr_worker_run returns when
 * *stop becomes non-zero (after committing every batch, publishing the outbox and closing the consumer) or on a fatal
 * error.
 */
#ifndef ESR_WORKER_H
#define ESR_WORKER_H

#include <signal.h>

#include "config.h"

typedef struct esr_worker esr_worker;

/* Borrows cfg, which must outlive the worker. */
esr_code esr_worker_new(const esr_config *cfg, esr_worker **out, esr_error *err);
esr_code esr_worker_run(esr_worker *w, volatile sig_atomic_t *stop, esr_error *err);
void esr_worker_free(esr_worker *w);

#endif
