/* esr/loader.h — loading one handler plugin and checking that it keeps the ABI contract.
 *
 * esr_plugin_load dlopens the file, reads the exported `esr_handler_abi` constant (refusing another major version
 * before running any plugin code), calls `esr_handler_init` with the host table, and checks what it filled in: name,
 * types, required callbacks. Every refusal is ESR_E_PLUGIN with a message that names the file and the reason, e.g.
 * "handler ./x.so: no entry point esr_handler_init". The plugin owns nothing of the host's; esr_plugin_free calls its
 * `fini` and unloads it.
 */
#ifndef ESR_LOADER_H
#define ESR_LOADER_H

#include "esr/error.h"
#include "esr/handler.h"

typedef struct esr_plugin {
  char *path;
  void *dl;
  esr_handler handler; /* as filled by the plugin's init */
} esr_plugin;

esr_plugin *esr_plugin_load(const char *path, const esr_host_api *host, esr_error *err);
void esr_plugin_free(esr_plugin *p);

#endif
