/* host.c — the services a handler reaches through esr_host_api while one of its callbacks runs, and the wrappers every
 * call into a plugin goes through. */
#include "host.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "outbox.h"

static sqlite3 *host_db(esr_ctx *ctx) { return esr_store_db(ctx->store); }

static sqlite3_stmt *host_stmt(esr_ctx *ctx, const char *sql) {
  esr_error err;
  sqlite3_stmt *st = esr_store_stmt(ctx->store, sql, &err);
  if (!st) snprintf(ctx->error, sizeof ctx->error, "%s", err.msg);
  return st;
}

static int host_emit(esr_ctx *ctx, const char *topic, const void *key, size_t key_len, const void *value,
                     size_t value_len) {
  if (ctx->offset < 0 || strcmp(ctx->phase, "apply") != 0) {
    snprintf(ctx->error, sizeof ctx->error, "emit is only allowed in apply");
    return -1;
  }
  esr_outbox_row row = {.topic = topic,
                        .key = key,
                        .key_len = key_len,
                        .value = value,
                        .value_len = value_len,
                        .src_offset = ctx->offset,
                        .src_index = ctx->emits + 1};
  esr_error err;
  esr_store_host_call(ctx->store, 1);
  esr_code rc = esr_outbox_add(ctx->store, &row, &err);
  esr_store_host_call(ctx->store, 0);
  if (rc != ESR_E_OK) {
    snprintf(ctx->error, sizeof ctx->error, "emit: %s", err.msg);
    return -1;
  }
  ctx->emits++;
  return 0;
}

static void host_error(esr_ctx *ctx, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
  va_end(ap);
}

static void host_log(esr_ctx *ctx, int level, const char *fmt, ...) {
  if (!esr_log_enabled(level)) return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (ctx->offset >= 0)
    esr_log(level, "handler", "handler %s, %s %s[%d]@%lld: %s", ctx->plugin->handler.name, ctx->phase,
            esr_store_topic(ctx->store), (int)esr_store_partition(ctx->store), (long long)ctx->offset, msg);
  else
    esr_log(level, "handler", "handler %s, %s %s[%d]: %s", ctx->plugin->handler.name, ctx->phase,
            esr_store_topic(ctx->store), (int)esr_store_partition(ctx->store), msg);
}

static void *host_user(esr_ctx *ctx) { return ctx->plugin->handler.user; }

static const esr_host_api HOST = {
    .struct_size = sizeof(esr_host_api),
    .abi_version = ESR_HANDLER_ABI,
    .db = host_db,
    .stmt = host_stmt,
    .emit = host_emit,
    .error = host_error,
    .log = host_log,
    .user = host_user,
};

const esr_host_api *esr_host_api_table(void) { return &HOST; }

void esr_ctx_init(esr_ctx *ctx, esr_store *store, const esr_plugin *plugin, const char *phase, int64_t offset) {
  ctx->store = store;
  ctx->plugin = plugin;
  ctx->phase = phase;
  ctx->offset = offset;
  ctx->emits = 0;
  ctx->fault = 0;
  ctx->error[0] = '\0';
}

const char *esr_ctx_where(const esr_ctx *ctx, char *buf, size_t cap) {
  char at[32] = "";
  if (ctx->offset >= 0) snprintf(at, sizeof at, "@%" PRId64, ctx->offset);
  snprintf(buf, cap, "handler %s, %s %s[%d]%s", ctx->plugin->handler.name, ctx->phase, esr_store_topic(ctx->store),
           (int)esr_store_partition(ctx->store), at);
  return buf;
}

/* ---- calls into a plugin: context, guard on, call, guard off, storage failure noted ---- */

static void call_begin(esr_ctx *ctx, esr_store *s, const esr_plugin *pl, const char *phase, int64_t offset) {
  esr_ctx_init(ctx, s, pl, phase, offset);
  esr_store_guard(s, 1);
}

static int call_end(esr_ctx *ctx, int result) {
  esr_store_guard(ctx->store, 0);
  ctx->fault = esr_store_guard_fault(ctx->store);
  return result;
}

int esr_call_migrate(esr_ctx *ctx, esr_store *s, const esr_plugin *pl, int from_version) {
  call_begin(ctx, s, pl, "migrate", -1);
  return call_end(ctx, pl->handler.migrate(ctx, from_version));
}

int esr_call_upcast(esr_ctx *ctx, esr_store *s, const esr_plugin *pl, int64_t offset, cJSON *envelope,
                    int from_version) {
  call_begin(ctx, s, pl, "upcast", offset);
  return call_end(ctx, pl->handler.upcast(ctx, envelope, from_version));
}

int esr_call_apply(esr_ctx *ctx, esr_store *s, const esr_plugin *pl, const esr_event *ev) {
  call_begin(ctx, s, pl, "apply", ev->offset);
  return call_end(ctx, pl->handler.apply(ctx, ev));
}

esr_code esr_call_storage(const esr_ctx *ctx, esr_error *err) {
  char where[400];
  if (ctx->fault)
    return esr_error_set(err,
                         (ctx->fault & 0xff) == SQLITE_CORRUPT || ctx->fault == SQLITE_NOTADB ? ESR_E_CORRUPT
                                                                                               : ESR_E_SQLITE,
                         ctx->fault, "%s: the storage failed under the handler (%s); rolled back, to be retried",
                         esr_ctx_where(ctx, where, sizeof where), sqlite3_errstr(ctx->fault));
  sqlite3 *db = esr_store_db(ctx->store);
  if (esr_store_in_batch(ctx->store) && sqlite3_get_autocommit(db))
    return esr_error_set(err, ESR_E_SQLITE, sqlite3_extended_errcode(db),
                         "%s: the transaction was rolled back under the handler (%s); rolled back, to be retried",
                         esr_ctx_where(ctx, where, sizeof where), sqlite3_errmsg(db));
  return ESR_E_OK;
}
