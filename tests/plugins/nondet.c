/* nondet.c — a broken handler for `esr handler test`: it records the wall clock's time, so the same stream applied
 * twice gives two different states. The test must catch it. */
#include <sqlite3.h>
#include <stdio.h>
#include <time.h>

#include "esr/handler.h"

ESR_HANDLER_DECLARE_ABI;

static const esr_host_api *host;

static int migrate(esr_ctx *ctx, int from_version) {
  return sqlite3_exec(host->db(ctx), "CREATE TABLE seen(k TEXT PRIMARY KEY, at INTEGER)", NULL, NULL, NULL) == SQLITE_OK
             ? ESR_OK
             : ESR_FATAL;
}

static int apply(esr_ctx *ctx, const esr_event *ev) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  sqlite3_stmt *st = host->stmt(ctx, "INSERT OR REPLACE INTO seen VALUES (?1, ?2)");
  if (!st) return ESR_FATAL;
  sqlite3_bind_text(st, 1, ev->key ? ev->key : "", -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)ts.tv_sec * 1000000000 + ts.tv_nsec); /* never do this */
  return sqlite3_step(st) == SQLITE_DONE ? ESR_OK : ESR_FATAL;
}

static const esr_event_type TYPES[] = {{"nondet.event", 1, 1}, {NULL, 0, 0}};

int esr_handler_init(const esr_host_api *h, esr_handler *out) {
  host = h;
  out->abi_version = ESR_HANDLER_ABI;
  out->name = "nondet";
  out->version = "0";
  out->schema_version = 1;
  out->types = TYPES;
  out->migrate = migrate;
  out->apply = apply;
  return 0;
}
