/* badabi.c — a broken plugin for the loader tests: built for handler ABI 2.3, a major version this esr does not know.
 * The loader must refuse it from the exported constant alone, naming both versions, without calling init; init leaves
 * a mark in the environment (ESR_TEST_PLUGIN_INIT_CALLED) so that a test can prove it was never run. */
#include <stdlib.h>

#include "esr/handler.h"

__attribute__((visibility("default"))) const uint32_t esr_handler_abi = (2u << 16) | 3u;

static int migrate(esr_ctx *ctx, int from_version) { return ESR_OK; }
static int apply(esr_ctx *ctx, const esr_event *event) { return ESR_OK; }

static const esr_event_type TYPES[] = {{"badabi.event", 1, 1}, {NULL, 0, 0}};

int esr_handler_init(const esr_host_api *host, esr_handler *out) {
  setenv("ESR_TEST_PLUGIN_INIT_CALLED", "badabi", 1);
  out->abi_version = ESR_HANDLER_ABI; /* even a "fixed" struct must not make the host run a 2.x plugin */
  out->name = "badabi";
  out->version = "0";
  out->schema_version = 1;
  out->types = TYPES;
  out->migrate = migrate;
  out->apply = apply;
  return 0;
}
