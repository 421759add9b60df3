/* esr/loader.h — loading one handler plugin and checking that it keeps the ABI contract.
 *
 * esr_plugin_load dlopens the file, reads the exported `esr_handler_abi` constant (refusing another major version, or a
 * newer minor one, before running any plugin code), checks that the plugin's SQLite and cJSON are the host's
 * instances, calls `esr_handler_init` with the host table and the plugin's options, and checks what it filled in:
 * name, types, required callbacks. Every refusal is ESR_E_PLUGIN with one line that names the file and the reason,
 * e.g. "handler ./x.so: no entry point esr_handler_init", or the plugin's own message when its init refuses. The
 * plugin's handler struct is kept as far as the plugin knows it (struct_size: a 1.0 plugin's stops before the 1.1
 * members), so host code tests ESR_HANDLER_HAS before reading a later member. The plugin owns nothing of the host's;
 * esr_plugin_free calls its `fini` and unloads it.
 */
#ifndef ESR_LOADER_H
#define ESR_LOADER_H

#include <stdatomic.h>

#include "error.h"
#include "esr/handler.h"

typedef struct esr_plugin {
  char *path;
  void *dl;
  esr_handler handler; /* as filled by the plugin's init */
  /* The handler was seen changing the database before refusing an event (partition.c's fast path): from then on
   * every event it handles gets a savepoint. Shared by the apply threads. */
  atomic_int writes_before_refusing;
} esr_plugin;

/* `options` (NULL-terminated, may be NULL) are handed to init; they need to live only during the call. */
esr_plugin *esr_plugin_load(const char *path, const esr_host_api *host, const esr_handler_option *options,
                            esr_error *err);
void esr_plugin_free(esr_plugin *p);
/* The plugin's stem: its file name without directory and extension ("/usr/lib/esr/ledger.so" -> "ledger"), the
 * <stem> of its configuration keys handler.<stem>.<key>. */
void esr_plugin_stem(const char *path, char *buf, size_t cap);

#endif
