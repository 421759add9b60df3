/* noapply.c — a broken plugin for the loader tests: init succeeds but fills no apply callback, so the host must refuse
 * it after init ("no apply callback") instead of crashing at the first event. */
#include "esr/handler.h"

ESR_HANDLER_DECLARE_ABI;

static int migrate(esr_ctx *ctx, int from_version) { return ESR_OK; }

static const esr_event_type TYPES[] = {{"noapply.event", 1, 1}, {NULL, 0, 0}};

int esr_handler_init(const esr_host_api *host, esr_handler *out) {
  out->abi_version = ESR_HANDLER_ABI;
  out->name = "noapply";
  out->version = "0";
  out->schema_version = 1;
  out->types = TYPES;
  out->migrate = migrate;
  return 0;
}
