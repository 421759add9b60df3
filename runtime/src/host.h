/* esr/host.h — the host side of the handler ABI: the esr_host_api table, the per-call context behind it, and the
 * wrappers every call into a plugin goes through.
 *
 * The wrappers (in the spirit of PostgreSQL's *_cb_wrapper) make a context for the call (plugin, phase, source event:
 * the "handler ledger, apply ledger[3]@1042" that prefixes its messages and log lines), turn the store's handler guard
 * on around the callback (esr/store.h: the authorizer, no commit on the side) and note a storage failure SQLite met
 * during it in ctx->fault. They return what the callback returned; esr_call_storage then says whether the call's
 * verdict stands: a storage failure, or a transaction rolled back under the handler, voids it.
 *
 * One table serves every plugin for the life of the process. A context is made by the partition for one callback
 * (migrate, upcast or apply of one event) and describes where that call runs: the store, the plugin, the source event.
 * `emit` writes outbox rows in the current transaction; `error` records the message that goes with a non-OK result;
 * `log` prefixes "handler <name>, <topic>[<partition>]@<offset>" in the spirit of PostgreSQL's error context.
 */
#ifndef ESR_HOST_H
#define ESR_HOST_H

#include "esr/handler.h"
#include "loader.h"
#include "store.h"

struct esr_ctx {
  esr_store *store;
  const esr_plugin *plugin;
  const char *phase; /* "migrate", "upcast", "apply" */
  int64_t offset;    /* source event, -1 outside apply */
  int emits;         /* outbox rows emitted for this event so far */
  int fault;         /* the storage failure (SQLite extended code) SQLite met during the call, or 0 */
  char error[512];   /* set by host->error, or by the host when one of its services fails */
};

const esr_host_api *esr_host_api_table(void);
/* Resets a context for one call. */
void esr_ctx_init(esr_ctx *ctx, esr_store *store, const esr_plugin *plugin, const char *phase, int64_t offset);
/* "handler <name>, <phase> <topic>[<partition>]@<offset>" into buf; returns buf. */
const char *esr_ctx_where(const esr_ctx *ctx, char *buf, size_t cap);

int esr_call_migrate(esr_ctx *ctx, esr_store *s, const esr_plugin *pl, int from_version);
/* The plugin must have an upcast callback. */
int esr_call_upcast(esr_ctx *ctx, esr_store *s, const esr_plugin *pl, int64_t offset, cJSON *envelope,
                    int from_version);
int esr_call_apply(esr_ctx *ctx, esr_store *s, const esr_plugin *pl, const esr_event *ev);
/* After a call: ESR_E_OK when its verdict stands; otherwise why not (ESR_E_CORRUPT when SQLite found the database
 * damaged, ESR_E_SQLITE for any other storage failure or a transaction rolled back under the handler). */
esr_code esr_call_storage(const esr_ctx *ctx, esr_error *err);

#endif
