/* noentry.c — a broken plugin for the loader tests: it declares the ABI but exports no esr_handler_init, so the loader
 * must refuse it with "no entry point esr_handler_init". */
#include "esr/handler.h"

ESR_HANDLER_DECLARE_ABI;

/* A plausible typo of the entry point: exported, but not the name the host looks for. */
ESR_HANDLER_EXPORT int esr_handler_initialize(const esr_host_api *host, esr_handler *out);
int esr_handler_initialize(const esr_host_api *host, esr_handler *out) {
  (void)host;
  (void)out;
  return 0;
}
