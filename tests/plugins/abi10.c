/* abi10.c — a plugin built against handler ABI 1.0: tests/plugins/abi10/esr/handler.h is that header as it was
 * released, unchanged. A host of a later 1.x must load it and read none of the members appended after 1.0. */
#include "esr/handler.h"

ESR_HANDLER_DECLARE_ABI;

static int migrate(esr_ctx *ctx, int from_version) { return ESR_OK; }
static int apply(esr_ctx *ctx, const esr_event *event) { return ESR_OK; }

static const esr_event_type TYPES[] = {{"abi10.event", 1, 1}, {NULL, 0, 0}};

int esr_handler_init(const esr_host_api *host, esr_handler *out) {
  out->abi_version = ESR_HANDLER_ABI;
  out->name = "abi10";
  out->version = "1.0.0";
  out->schema_version = 1;
  out->types = TYPES;
  out->migrate = migrate;
  out->apply = apply;
  return 0;
}
