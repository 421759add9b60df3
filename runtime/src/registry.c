/* registry.c — routing event types to the handler that claims them. */
#include "registry.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The routing index: exact claims in an open-addressing table keyed by a hash of the type, prefix claims ("a.*") in
 * a list, longest first. Rebuilt whenever a plugin is added; read-only afterwards, so apply threads share it. */
typedef struct exact_claim {
  uint64_t hash; /* 0: empty slot */
  size_t len;
  const char *type;
  const esr_plugin *plugin;
  const esr_event_type *claim;
} exact_claim;

typedef struct prefix_claim {
  size_t len; /* of the prefix, without the '*' */
  const char *type;
  const esr_plugin *plugin;
  const esr_event_type *claim;
} prefix_claim;

struct esr_route_index {
  exact_claim *exact;
  size_t mask; /* table size - 1 (a power of two) */
  prefix_claim *prefix;
  size_t n_prefix;
};

/* FNV-1a over the type, and its length; never 0. */
static uint64_t type_hash(const char *s, size_t *len) {
  uint64_t h = 1469598103934665603ULL;
  const char *p = s;
  for (; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  *len = (size_t)(p - s);
  return h ? h : 1;
}

static int is_prefix_claim(const char *claim, size_t n) { return n >= 2 && claim[n - 1] == '*'; }

static void index_free(esr_route_index *x) {
  if (!x) return;
  free(x->exact);
  free(x->prefix);
  free(x);
}

static int prefix_longer_first(const void *a, const void *b) {
  size_t la = ((const prefix_claim *)a)->len, lb = ((const prefix_claim *)b)->len;
  return la < lb ? 1 : la > lb ? -1 : 0;
}

static esr_route_index *index_build(esr_plugin *const *plugins, size_t n) {
  size_t claims = 0;
  for (size_t i = 0; i < n; i++)
    for (const esr_event_type *t = plugins[i]->handler.types; t->type; t++) claims++;
  size_t size = 8;
  while (size < claims * 2) size *= 2;
  esr_route_index *x = calloc(1, sizeof *x);
  if (!x || !(x->exact = calloc(size, sizeof *x->exact)) || !(x->prefix = calloc(claims + 1, sizeof *x->prefix))) {
    index_free(x);
    return NULL;
  }
  x->mask = size - 1;
  for (size_t i = 0; i < n; i++) {
    for (const esr_event_type *t = plugins[i]->handler.types; t->type; t++) {
      size_t len;
      uint64_t h = type_hash(t->type, &len);
      if (is_prefix_claim(t->type, len)) {
        x->prefix[x->n_prefix++] = (prefix_claim){len - 1, t->type, plugins[i], t};
        continue;
      }
      size_t k = h & x->mask;
      while (x->exact[k].hash) k = (k + 1) & x->mask;
      x->exact[k] = (exact_claim){h, len, t->type, plugins[i], t};
    }
  }
  qsort(x->prefix, x->n_prefix, sizeof *x->prefix, prefix_longer_first);
  return x;
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
  r->plugins[r->n] = p;
  esr_route_index *x = index_build(r->plugins, r->n + 1);
  if (!x) {
    esr_plugin_free(p);
    return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  }
  r->n++;
  index_free(r->index);
  r->index = x;
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
  out->plugin = NULL;
  out->claim = NULL;
  const esr_route_index *x = r->index;
  if (!x) return ESR_ROUTE_UNKNOWN_TYPE;
  size_t len;
  uint64_t h = type_hash(type, &len);
  for (size_t k = h & x->mask; x->exact[k].hash; k = (k + 1) & x->mask) {
    const exact_claim *e = &x->exact[k];
    if (e->hash == h && e->len == len && memcmp(e->type, type, len) == 0) {
      out->plugin = e->plugin;
      out->claim = e->claim;
      break;
    }
  }
  for (size_t i = 0; !out->plugin && i < x->n_prefix; i++) { /* longest first: the first match is the best */
    const prefix_claim *c = &x->prefix[i];
    if (c->len <= len && memcmp(c->type, type, c->len) == 0) {
      out->plugin = c->plugin;
      out->claim = c->claim;
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
  index_free(r->index);
  r->index = NULL;
  r->n = 0;
}
