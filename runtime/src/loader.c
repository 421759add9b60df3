/* loader.c — dlopen a handler plugin, check its ABI before running it, then check what its init filled in. */
#include "esr/loader.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

static int valid_name(const char *name) {
  if (!name || !*name || strlen(name) > 64) return 0;
  for (const char *c = name; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_')) return 0;
  return 1;
}

static esr_code check_handler(const esr_handler *h, const char *path, esr_error *err) {
  if (ESR_HANDLER_ABI_MAJOR_OF(h->abi_version) != ESR_HANDLER_ABI_MAJOR)
    return esr_error_set(err, ESR_E_PLUGIN, 0, "handler %s: init set abi_version %u.%u, this esr supports %u.x", path,
                         ESR_HANDLER_ABI_MAJOR_OF(h->abi_version), h->abi_version & 0xffff, ESR_HANDLER_ABI_MAJOR);
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

esr_plugin *esr_plugin_load(const char *path, const esr_host_api *host, esr_error *err) {
  esr_plugin *p = calloc(1, sizeof *p);
  if (!p || !(p->path = strdup(path))) {
    esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto fail;
  }
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
                  path, ESR_HANDLER_ABI_MAJOR_OF(*abi), *abi & 0xffff, ESR_HANDLER_ABI_MAJOR);
    goto fail;
  }
  p->handler.struct_size = sizeof p->handler;
  int rc = init(host, &p->handler);
  if (rc != 0) {
    esr_error_set(err, ESR_E_PLUGIN, rc, "handler %s: esr_handler_init failed (returned %d)", path, rc);
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
