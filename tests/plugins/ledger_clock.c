/* ledger_clock.c — the real ledger handler with a defect on purpose: it is not deterministic. Each applied event also
 * writes the wall clock (nanoseconds) into a table clock_seen(offset, ns), so that two replays of the same events
 * give different states. For the audit tests: `esr verify` must catch it. Everything else is the ledger's. */
#include <time.h>

#define esr_handler_init ledger_real_init
#include "../../handlers/ledger/ledger.c"
#undef esr_handler_init

static int (*real_apply)(esr_ctx *, const esr_event *);
static int (*real_migrate)(esr_ctx *, int);

static int clock_migrate(esr_ctx *ctx, int from_version) {
  int rc = real_migrate(ctx, from_version);
  if (rc == ESR_OK && from_version < 1)
    rc = exec(ctx, "CREATE TABLE clock_seen(offset INTEGER PRIMARY KEY, ns INTEGER NOT NULL)", "creating clock_seen");
  return rc;
}

static int clock_apply(esr_ctx *ctx, const esr_event *ev) {
  int rc = real_apply(ctx, ev);
  if (rc != ESR_OK) return rc;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts); /* the defect: handlers must not read the clock */
  sqlite3_stmt *st = host->stmt(ctx, "INSERT INTO clock_seen(offset, ns) VALUES (?1, ?2)");
  if (!st) return ESR_FATAL;
  sqlite3_bind_int64(st, 1, ev->offset);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)ts.tv_sec * 1000000000 + ts.tv_nsec);
  if (sqlite3_step(st) != SQLITE_DONE) return sql_failed(ctx, "recording the clock");
  return ESR_OK;
}

ESR_HANDLER_EXPORT int esr_handler_init(const esr_host_api *h, esr_handler *out) {
  int rc = ledger_real_init(h, out);
  real_apply = out->apply;
  real_migrate = out->migrate;
  out->apply = clock_apply;
  out->migrate = clock_migrate;
  return rc;
}
