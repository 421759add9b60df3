/* initfail.c — a broken plugin for the loader tests: a valid ABI and a complete handler, but esr_handler_init returns
 * non-zero (as a plugin does when its own setup fails), so the loader must refuse it, with the reason init gives
 * (ABI 1.1) in the message. */
#include "esr/handler.h"

ESR_HANDLER_DECLARE_ABI;

static int migrate(esr_ctx *ctx, int from_version) { return ESR_OK; }
static int apply(esr_ctx *ctx, const esr_event *event) { return ESR_OK; }

static const esr_event_type TYPES[] = {{"initfail.event", 1, 1}, {NULL, 0, 0}};

int esr_handler_init(const esr_host_api *host, esr_handler *out) {
  out->abi_version = ESR_HANDLER_ABI;
  out->name = "initfail";
  out->version = "0";
  out->schema_version = 1;
  out->types = TYPES;
  out->migrate = migrate;
  out->apply = apply;
  esr_handler_init_error(out, "refused on purpose: its reference data is missing");
  return 7;
}
