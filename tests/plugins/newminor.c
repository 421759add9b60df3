/* newminor.c — a broken plugin for the loader tests: built for handler ABI 1.9, a minor version newer than this esr's.
 * Such a plugin may write members the host's structs do not have, so the loader must refuse it from the exported
 * constant alone, naming both versions, without calling init (which leaves ESR_TEST_PLUGIN_INIT_CALLED). */
#include <stdlib.h>

#include "esr/handler.h"

__attribute__((visibility("default"))) const uint32_t esr_handler_abi = (1u << 16) | 9u;

static int migrate(esr_ctx *ctx, int from_version) { return ESR_OK; }
static int apply(esr_ctx *ctx, const esr_event *event) { return ESR_OK; }

static const esr_event_type TYPES[] = {{"newminor.event", 1, 1}, {NULL, 0, 0}};

int esr_handler_init(const esr_host_api *host, esr_handler *out) {
  setenv("ESR_TEST_PLUGIN_INIT_CALLED", "newminor", 1);
  out->abi_version = ESR_HANDLER_ABI;
  out->name = "newminor";
  out->version = "0";
  out->schema_version = 1;
  out->types = TYPES;
  out->migrate = migrate;
  out->apply = apply;
  return 0;
}
