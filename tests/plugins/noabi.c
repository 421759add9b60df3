/* noabi.c — a broken plugin for the loader tests: a complete esr_handler_init but no ESR_HANDLER_DECLARE_ABI. The
 * loader must refuse it before calling init; init leaves a mark in the environment (ESR_TEST_PLUGIN_INIT_CALLED) so
 * that a test can prove it was never run. */
#include <stdlib.h>

#include "esr/handler.h"

static int migrate(esr_ctx *ctx, int from_version) { return ESR_OK; }
static int apply(esr_ctx *ctx, const esr_event *event) { return ESR_OK; }

static const esr_event_type TYPES[] = {{"noabi.event", 1, 1}, {NULL, 0, 0}};

int esr_handler_init(const esr_host_api *host, esr_handler *out) {
  setenv("ESR_TEST_PLUGIN_INIT_CALLED", "noabi", 1);
  out->abi_version = ESR_HANDLER_ABI;
  out->name = "noabi";
  out->version = "0";
  out->schema_version = 1;
  out->types = TYPES;
  out->migrate = migrate;
  out->apply = apply;
  return 0;
}
