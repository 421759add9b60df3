/* esr/registry.h — the loaded handlers and which one consumes an event type.
 *
 * Routing: an exact type claim wins over a ".*" prefix claim, and a longer prefix over a shorter one. Two handlers may not
 * make the same claim (esr_registry_add refuses it, naming both). The registry owns its plugins.
 */
#ifndef ESR_REGISTRY_H
#define ESR_REGISTRY_H

#include "config.h"
#include "loader.h"

typedef struct esr_route_index esr_route_index;

typedef struct esr_registry {
  esr_plugin **plugins;
  size_t n;
  esr_route_index *index; /* the claims, hashed: built by esr_registry_add (routing compares one string at most) */
} esr_registry;

typedef enum esr_route_result { ESR_ROUTE_OK = 0, ESR_ROUTE_UNKNOWN_TYPE, ESR_ROUTE_UNKNOWN_VERSION } esr_route_result;

typedef struct esr_route {
  const esr_plugin *plugin;
  const esr_event_type *claim;
} esr_route;

/* Takes ownership of `p` (also on failure). */
esr_code esr_registry_add(esr_registry *r, esr_plugin *p, esr_error *err);
/* Loads each path with `host` and adds it. `opts` are the handler options of the configuration, each key
 * "<stem>.<key>" (from handler.<stem>.<key>): a plugin gets those of its stem (esr_plugin_stem); an option whose stem
 * names no plugin is an ESR_E_CONFIG error. */
esr_code esr_registry_load(esr_registry *r, char *const *paths, size_t n, const esr_host_api *host,
                           const esr_kv *opts, size_t n_opts, esr_error *err);
esr_route_result esr_registry_route(const esr_registry *r, const char *type, int version, esr_route *out);
void esr_registry_clear(esr_registry *r);

#endif
