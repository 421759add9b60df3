/* ownsqlite.c — a broken plugin for the loader tests: it carries SQLite functions of its own, as a plugin linked with
 * libsqlite3.a does (Debian's libsqlite3.a is not position-independent, so the copy is stood in for by definitions of
 * the same exported names). Two SQLite instances on one database file break its locking: the loader must refuse it,
 * naming the library, before calling init. */
#include <stdlib.h>

#include "esr/handler.h"

ESR_HANDLER_DECLARE_ABI;

__attribute__((visibility("default"))) int sqlite3_open_v2(const char *f, void **db, int flags, const char *vfs) {
  return 1;
}
__attribute__((visibility("default"))) int sqlite3_step(void *st) { return 1; }

static int migrate(esr_ctx *ctx, int from_version) { return ESR_OK; }
static int apply(esr_ctx *ctx, const esr_event *event) { return ESR_OK; }

static const esr_event_type TYPES[] = {{"ownsqlite.event", 1, 1}, {NULL, 0, 0}};

int esr_handler_init(const esr_host_api *host, esr_handler *out) {
  setenv("ESR_TEST_PLUGIN_INIT_CALLED", "ownsqlite", 1);
  out->abi_version = ESR_HANDLER_ABI;
  out->name = "ownsqlite";
  out->version = "0";
  out->schema_version = 1;
  out->types = TYPES;
  out->migrate = migrate;
  out->apply = apply;
  return 0;
}
