/* othercjson.c — a broken plugin for the loader tests: linked against a cJSON of another soname
 * (libesrt_othercjson.so, built beside it), not the host's libcjson.so.1. A tree one cJSON parsed and another frees
 * corrupts the heap: the loader must refuse it, naming that library. */
#include <cjson/cJSON.h>

#include "esr/handler.h"

ESR_HANDLER_DECLARE_ABI;

static int migrate(esr_ctx *ctx, int from_version) { return ESR_OK; }
static int apply(esr_ctx *ctx, const esr_event *event) {
  cJSON_Delete(cJSON_Parse("{}")); /* uses its cJSON */
  return ESR_OK;
}

static const esr_event_type TYPES[] = {{"othercjson.event", 1, 1}, {NULL, 0, 0}};

int esr_handler_init(const esr_host_api *host, esr_handler *out) {
  out->abi_version = ESR_HANDLER_ABI;
  out->name = "othercjson";
  out->version = "0";
  out->schema_version = 1;
  out->types = TYPES;
  out->migrate = migrate;
  out->apply = apply;
  return 0;
}
