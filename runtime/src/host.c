/* host.c — the services a handler reaches through esr_host_api while one of its callbacks runs. */
#include "esr/host.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "esr/log.h"
#include "esr/outbox.h"

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
  ctx->error[0] = '\0';
}
