/* loader.c — dlopen a handler plugin, check its ABI and its libraries before running it, then check what its init
 * filled in. */
#include "loader.h"

#include "sqlhandler.h"

#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <link.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The handler struct as a 1.0 plugin knows it: everything before the first member appended in 1.1. */
#define HANDLER_SIZE_1_0 offsetof(esr_handler, options)

static int valid_name(const char *name) {
  if (!name || !*name || strlen(name) > 64) return 0;
  for (const char *c = name; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_')) return 0;
  return 1;
}

static esr_code check_handler(const esr_handler *h, const char *path, esr_error *err) {
  if (ESR_HANDLER_ABI_MAJOR_OF(h->abi_version) != ESR_HANDLER_ABI_MAJOR)
    return esr_error_set(err, ESR_E_PLUGIN, 0, "handler %s: init set abi_version %u.%u, this esr supports %u.x", path,
                         ESR_HANDLER_ABI_MAJOR_OF(h->abi_version), ESR_HANDLER_ABI_MINOR_OF(h->abi_version),
                         ESR_HANDLER_ABI_MAJOR);
  if (!valid_name(h->name))
    return esr_error_set(err, ESR_E_PLUGIN, 0, "handler %s: name must be 1-64 characters of [a-z0-9_]", path);
  if (!h->apply) return esr_error_set(err, ESR_E_PLUGIN, 0, "handler %s (%s): no apply callback", path, h->name);
  if (!h->migrate) return esr_error_set(err, ESR_E_PLUGIN, 0, "handler %s (%s): no migrate callback", path, h->name);
  if (h->schema_version < 1)
    return esr_error_set(err, ESR_E_PLUGIN, 0, "handler %s (%s): schema_version must be >= 1", path, h->name);
  if (!h->types || !h->types[0].type)
    return esr_error_set(err, ESR_E_PLUGIN, 0, "handler %s (%s): declares no event types", path, h->name);
  for (const esr_event_type *t = h->types; t->type; t++) {
    const char *star = strchr(t->type, '*');
    if (!*t->type || (star && (star[1] || star == t->type || star[-1] != '.')))
      return esr_error_set(err, ESR_E_PLUGIN, 0,
                           "handler %s (%s): event type '%s': use an exact type or a prefix ending in \".*\"", path,
                           h->name, t->type);
    if (t->min_version < 1 || t->max_version < t->min_version)
      return esr_error_set(err, ESR_E_PLUGIN, 0, "handler %s (%s): event type '%s': versions %d..%d are not a range",
                           path, h->name, t->type, t->min_version, t->max_version);
  }
  return ESR_E_OK;
}

/* The libraries a plugin must share with the host, each probed by a few of its functions. A plugin uses the host's
 * instance when each symbol, looked up from the plugin's own handle (the plugin first, then its dependencies), lands
 * in an object the process had loaded before the plugin: the host's library. It lands in the plugin itself when the
 * plugin carries a copy (libsqlite3.a), and in a newly loaded object when it links another soname. (Comparing
 * addresses with the host's instead would be fooled by an interposer such as an LD_PRELOAD library.) */
typedef struct shared_symbol {
  const char *library, *symbol;
  void *host; /* the host's own: it also makes sure the host has the library loaded */
} shared_symbol;

typedef struct loaded_set {
  uintptr_t v[512];
  int n;
} loaded_set;

static int note_loaded(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  loaded_set *set = arg;
  if (set->n < (int)(sizeof set->v / sizeof *set->v)) set->v[set->n++] = (uintptr_t)info->dlpi_addr;
  return 0;
}

static int was_loaded(const loaded_set *set, uintptr_t base) {
  for (int i = 0; i < set->n; i++)
    if (set->v[i] == base) return 1;
  return 0;
}

static esr_code check_libraries(void *dl, const loaded_set *before, const char *path, esr_error *err) {
  const shared_symbol want[] = {
      {"SQLite (libsqlite3)", "sqlite3_open_v2", (void *)sqlite3_open_v2},
      {"SQLite (libsqlite3)", "sqlite3_step", (void *)sqlite3_step},
      {"SQLite (libsqlite3)", "sqlite3_malloc", (void *)sqlite3_malloc},
      {"cJSON (libcjson)", "cJSON_Parse", (void *)cJSON_Parse},
      {"cJSON (libcjson)", "cJSON_Delete", (void *)cJSON_Delete},
      {"cJSON (libcjson)", "cJSON_AddStringToObject", (void *)cJSON_AddStringToObject},
  };
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
    void *theirs = dlsym(dl, want[i].symbol);
    if (!theirs || theirs == want[i].host) continue; /* not used (or a hidden copy: undetectable), or the host's */
    Dl_info info;
    struct link_map *lm = NULL;
    if (!dladdr1(theirs, &info, (void **)&lm, RTLD_DL_LINKMAP) || !lm) continue;
    if (was_loaded(before, (uintptr_t)lm->l_addr)) continue; /* the host's own instance */
    const char *where = info.dli_fname && *info.dli_fname ? info.dli_fname : "an unknown object";
    Dl_info in_host;
    const char *host = dladdr(want[i].host, &in_host) && in_host.dli_fname ? in_host.dli_fname : "the host";
    return esr_error_set(err, ESR_E_PLUGIN, 0,
                         "handler %s: its %s is not the host's: %s resolves to %s, the host's to %s (a static copy "
                         "or another soname); link the plugin against the system's shared library (pkg-config "
                         "sqlite3 libcjson, or esr::handler in CMake)",
                         path, want[i].library, want[i].symbol, strcmp(where, path) == 0 ? "the plugin itself" : where,
                         host);
  }
  return ESR_E_OK;
}

esr_plugin *esr_plugin_load(const char *path, const esr_host_api *host, const esr_handler_option *options,
                            esr_error *err) {
  if (esr_sqlhandler_is_file(path)) { /* a handler written in SQL, served by the built-in plugin */
    esr_plugin *q = esr_sqlhandler_load(path, host, options, err);
    if (q && check_handler(&q->handler, path, err) != ESR_E_OK) {
      esr_plugin_free(q);
      return NULL;
    }
    return q;
  }
  esr_plugin *p = calloc(1, sizeof *p);
  if (!p || !(p->path = strdup(path))) {
    esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto fail;
  }
  loaded_set before = {.n = 0};
  dl_iterate_phdr(note_loaded, &before); /* what the host had loaded: its SQLite and cJSON among them */
  /* RTLD_LOCAL: two plugins may define the same symbols; RTLD_NOW: missing symbols fail here, not mid-batch. */
  p->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!p->dl) {
    esr_error_set(err, ESR_E_PLUGIN, 0, "handler %s: cannot load: %s", path, dlerror());
    goto fail;
  }
  const uint32_t *abi = dlsym(p->dl, "esr_handler_abi");
  esr_handler_init_fn init = (esr_handler_init_fn)dlsym(p->dl, "esr_handler_init");
  if (!init) {
    esr_error_set(err, ESR_E_PLUGIN, 0, "handler %s: no entry point esr_handler_init (is it an esr handler?)", path);
    goto fail;
  }
  if (!abi) {
    esr_error_set(err, ESR_E_PLUGIN, 0,
                  "handler %s: no symbol esr_handler_abi: build it with ESR_HANDLER_DECLARE_ABI from esr/handler.h",
                  path);
    goto fail;
  }
  if (ESR_HANDLER_ABI_MAJOR_OF(*abi) != ESR_HANDLER_ABI_MAJOR) {
    esr_error_set(err, ESR_E_PLUGIN, 0,
                  "handler %s: built for handler ABI %u.%u, this esr supports %u.x: rebuild it against this esr's "
                  "esr/handler.h",
                  path, ESR_HANDLER_ABI_MAJOR_OF(*abi), ESR_HANDLER_ABI_MINOR_OF(*abi), ESR_HANDLER_ABI_MAJOR);
    goto fail;
  }
  if (ESR_HANDLER_ABI_MINOR_OF(*abi) > ESR_HANDLER_ABI_MINOR) {
    esr_error_set(err, ESR_E_PLUGIN, 0,
                  "handler %s: built for handler ABI %u.%u, newer than this esr's %u.%u: upgrade esr, or rebuild the "
                  "plugin against this esr's esr/handler.h",
                  path, ESR_HANDLER_ABI_MAJOR_OF(*abi), ESR_HANDLER_ABI_MINOR_OF(*abi), ESR_HANDLER_ABI_MAJOR,
                  ESR_HANDLER_ABI_MINOR);
    goto fail;
  }
  if (check_libraries(p->dl, &before, path, err) != ESR_E_OK) goto fail;
  static const esr_handler_option none[] = {{NULL, NULL}};
  char why[512] = "";
  p->handler.struct_size = sizeof p->handler;
  p->handler.options = options ? options : none;
  p->handler.init_error = why;
  p->handler.init_error_cap = sizeof why;
  int rc = init(host, &p->handler);
  /* From here on the host reads the struct as far as the plugin knows it: a 1.0 plugin set none of 1.1's members. */
  if (ESR_HANDLER_ABI_MINOR_OF(*abi) == 0) p->handler.struct_size = HANDLER_SIZE_1_0;
  if (ESR_HANDLER_HAS(&p->handler, options)) {
    p->handler.options = NULL; /* valid during init only */
    p->handler.init_error = NULL;
    p->handler.init_error_cap = 0;
  }
  if (rc != 0) {
    why[sizeof why - 1] = '\0';
    if (why[0])
      esr_error_set(err, ESR_E_PLUGIN, rc, "handler %s: esr_handler_init refused: %s", path, why);
    else
      esr_error_set(err, ESR_E_PLUGIN, rc, "handler %s: esr_handler_init failed (returned %d, no message)", path, rc);
    goto fail_inited;
  }
  if (check_handler(&p->handler, path, err) != ESR_E_OK) goto fail_inited;
  return p;
fail_inited:
  if (p->handler.fini) p->handler.fini(p->handler.user);
  p->handler.fini = NULL;
fail:
  esr_plugin_free(p);
  return NULL;
}

void esr_plugin_free(esr_plugin *p) {
  if (!p) return;
  if (p->handler.fini) p->handler.fini(p->handler.user);
  if (p->dl) dlclose(p->dl);
  free(p->path);
  free(p);
}

void esr_plugin_stem(const char *path, char *buf, size_t cap) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t n = strlen(base);
  const char *dot = strrchr(base, '.');
  if (dot && dot != base) n = (size_t)(dot - base);
  if (cap == 0) return;
  if (n >= cap) n = cap - 1;
  memcpy(buf, base, n);
  buf[n] = '\0';
}
