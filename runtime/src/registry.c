/* registry.c — routing event types to the handler that claims them. */
#include "registry.h"

#include <stdlib.h>
#include <string.h>

/* How specifically `claim` matches `type`: 0 none, else a rank (exact beats any prefix; longer prefix beats shorter). */
static size_t match(const char *claim, const char *type) {
  size_t n = strlen(claim);
  if (n >= 2 && claim[n - 1] == '*') return strncmp(claim, type, n - 1) == 0 ? n - 1 : 0;
  return strcmp(claim, type) == 0 ? (size_t)-1 : 0;
}

esr_code esr_registry_add(esr_registry *r, esr_plugin *p, esr_error *err) {
  for (size_t i = 0; i < r->n; i++) {
    for (const esr_event_type *a = r->plugins[i]->handler.types; a->type; a++) {
      for (const esr_event_type *b = p->handler.types; b->type; b++) {
        if (strcmp(a->type, b->type) == 0) {
          esr_error_set(err, ESR_E_PLUGIN, 0, "handlers %s (%s) and %s (%s) both claim event type '%s'",
                        r->plugins[i]->path, r->plugins[i]->handler.name, p->path, p->handler.name, a->type);
          esr_plugin_free(p);
          return ESR_E_PLUGIN;
        }
      }
    }
    if (strcmp(r->plugins[i]->handler.name, p->handler.name) == 0) {
      esr_error_set(err, ESR_E_PLUGIN, 0, "handlers %s and %s have the same name '%s'", r->plugins[i]->path, p->path,
                    p->handler.name);
      esr_plugin_free(p);
      return ESR_E_PLUGIN;
    }
  }
  esr_plugin **grown = realloc(r->plugins, (r->n + 1) * sizeof *grown);
  if (!grown) {
    esr_plugin_free(p);
    return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  }
  r->plugins = grown;
  r->plugins[r->n++] = p;
  return ESR_E_OK;
}

/* The options of the plugin whose stem is `stem`: entries "<stem>.<key>" of opts, as "<key>" (borrowed). */
static esr_handler_option *options_of(const char *stem, const esr_kv *opts, size_t n_opts, int *used) {
  esr_handler_option *v = calloc(n_opts + 1, sizeof *v);
  if (!v) return NULL;
  size_t k = 0, len = strlen(stem);
  for (size_t i = 0; i < n_opts; i++) {
    if (strncmp(opts[i].key, stem, len) != 0 || opts[i].key[len] != '.') continue;
    v[k].key = opts[i].key + len + 1;
    v[k].value = opts[i].value;
    k++;
    used[i] = 1;
  }
  return v;
}

esr_code esr_registry_load(esr_registry *r, char *const *paths, size_t n, const esr_host_api *host,
                           const esr_kv *opts, size_t n_opts, esr_error *err) {
  int *used = calloc(n_opts + 1, sizeof *used);
  if (!used) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  esr_code rc = ESR_E_OK;
  for (size_t i = 0; i < n && rc == ESR_E_OK; i++) {
    char stem[256];
    esr_plugin_stem(paths[i], stem, sizeof stem);
    esr_handler_option *mine = options_of(stem, opts, n_opts, used);
    if (!mine) {
      rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
      break;
    }
    esr_plugin *p = esr_plugin_load(paths[i], host, mine, err);
    free(mine);
    rc = p ? esr_registry_add(r, p, err) : err ? err->code : ESR_E_PLUGIN;
  }
  for (size_t i = 0; i < n_opts && rc == ESR_E_OK; i++)
    if (!used[i])
      rc = esr_error_set(err, ESR_E_CONFIG, 0,
                         "config: handler.%s: no handler plugin in `handlers` has the stem of this key (the plugin "
                         "file's name without .so): fix the key or the handlers list",
                         opts[i].key);
  free(used);
  return rc;
}

esr_route_result esr_registry_route(const esr_registry *r, const char *type, int version, esr_route *out) {
  size_t best = 0;
  out->plugin = NULL;
  out->claim = NULL;
  for (size_t i = 0; i < r->n; i++) {
    for (const esr_event_type *t = r->plugins[i]->handler.types; t->type; t++) {
      size_t m = match(t->type, type);
      if (m > best) {
        best = m;
        out->plugin = r->plugins[i];
        out->claim = t;
      }
    }
  }
  if (!out->plugin) return ESR_ROUTE_UNKNOWN_TYPE;
  if (version < out->claim->min_version || version > out->claim->max_version) return ESR_ROUTE_UNKNOWN_VERSION;
  return ESR_ROUTE_OK;
}

void esr_registry_clear(esr_registry *r) {
  for (size_t i = 0; i < r->n; i++) esr_plugin_free(r->plugins[i]);
  free(r->plugins);
  r->plugins = NULL;
  r->n = 0;
}
