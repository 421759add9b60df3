/* esr/cplister.h — listings of the remote checkpoint store in the background, waited for with a deadline.
 *
 * The recovery ladder asks the store what checkpoints it holds for a partition; a store that is down (its retries
 * take seconds) must not hold up a partition whose live database or local checkpoint is valid, where the store is
 * only an optimisation. A lister runs `threads` threads, each with a store handle of its own; esr_cplister_ask
 * queues a partition's listing at once (so that it runs while the ladder checks the local state), and
 * esr_cplister_wait waits for it no longer than the caller's deadline. A ticket the caller drops before its listing
 * started is never listed, except one kept as a probe while the store is unhealthy, so that the lister learns when
 * the store is back.
 *
 * Health: the store is unhealthy from the time a listing that failed (other than a damaged checkpoint) or missed a
 * caller's deadline was asked for, or from a failure reported by another user of the store (esr_cplister_report),
 * until a listing or a reported operation succeeds. esr_cplister_unhealthy_ms says for how long, so that callers stop
 * waiting for a store that is known to be down. Thread-safe: any thread may ask, wait and drop.
 */
#ifndef ESR_CPLISTER_H
#define ESR_CPLISTER_H

#include <stdint.h>

#include "cpstore.h"

typedef struct esr_cplister esr_cplister;
typedef struct esr_cplist_ticket esr_cplist_ticket;

/* Opens `threads` (>= 1) stores on `url` (esr_cpstore_open; opts may be NULL; its cancel hook is the lister's own)
 * and starts their threads. ESR_E_CONFIG for a URL that cannot work. */
esr_code esr_cplister_new(const char *url, const esr_cpstore_opts *opts, int threads, esr_cplister **out,
                          esr_error *err);
/* Abandons listings under way (the stores' cancel hook), joins the threads, frees undropped tickets' results: every
 * ticket must have been dropped. NULL is a no-op. */
void esr_cplister_free(esr_cplister *l);

/* Queues the listing of topic/partition. NULL when out of memory or stopping (then list without the lister). */
esr_cplist_ticket *esr_cplister_ask(esr_cplister *l, const char *topic, int32_t partition);
/* Waits up to timeout_ms (0: not at all) for the listing. 1 when it is done (esr_cplister_result), 0 when it is not:
 * the store then counts as unhealthy until a listing succeeds. */
int esr_cplister_wait(esr_cplist_ticket *t, int timeout_ms);
/* The result of a done listing: ESR_E_OK and *out (the caller frees it; a second call gets NULL), or the store's
 * error. */
esr_code esr_cplister_result(esr_cplist_ticket *t, esr_manifest_list **out, esr_error *err);
/* Releases the ticket (a listing not started is not made, unless kept as a probe). NULL is a no-op. */
void esr_cplister_drop(esr_cplist_ticket *t);
/* What another user of the same store found (an upload, the check at start): ESR_E_OK counts it as healthy again;
 * a failure of the store (ESR_E_IO, ESR_E_CONFIG) as down from now; other codes say nothing about it. */
void esr_cplister_report(esr_cplister *l, esr_code rc);
/* How long the store has been unhealthy, in ms; 0 when it is healthy. */
int64_t esr_cplister_unhealthy_ms(esr_cplister *l);
/* The store's URL (borrowed). */
const char *esr_cplister_url(const esr_cplister *l);

#endif
