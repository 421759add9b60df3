/* esr/host.h — the host side of the handler ABI: the esr_host_api table and the per-call context behind it.
 *
 * One table serves every plugin for the life of the process. A context is made by the partition for one callback
 * (migrate, upcast or apply of one event) and describes where that call runs: the store, the plugin, the source event.
 * `emit` writes outbox rows in the current transaction; `error` records the message that goes with a non-OK result;
 * `log` prefixes "handler <name>, <topic>[<partition>]@<offset>" in the spirit of PostgreSQL's error context.
 */
#ifndef ESR_HOST_H
#define ESR_HOST_H

#include "esr/handler.h"
#include "esr/loader.h"
#include "esr/store.h"

struct esr_ctx {
  esr_store *store;
  const esr_plugin *plugin;
  const char *phase; /* "migrate", "upcast", "apply" */
  int64_t offset;    /* source event, -1 outside apply */
  int emits;         /* outbox rows emitted for this event so far */
  char error[512];   /* set by host->error, or by the host when one of its services fails */
};

const esr_host_api *esr_host_api_table(void);
/* Resets a context for one call. */
void esr_ctx_init(esr_ctx *ctx, esr_store *store, const esr_plugin *plugin, const char *phase, int64_t offset);

#endif
