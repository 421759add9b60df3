/* schema_set.c — the schemas of a directory, `<type>.v<version>.json`, compiled at load and found by hash. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "schema_int.h"

typedef struct set_entry {
  char *type;
  int version;
  esr_schema *schema;
} set_entry;

struct esr_schema_set {
  set_entry *v;
  size_t n;
  uint32_t *table; /* open addressing: entry index + 1, 0 empty */
  size_t table_cap;
};

static uint64_t key_hash(const char *type, int version) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (const char *s = type; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
  h ^= (uint64_t)(unsigned)version * 0x9e3779b97f4a7c15ULL;
  h ^= h >> 29;
  return h;
}

static int entry_cmp(const void *a, const void *b) {
  const set_entry *x = a, *y = b;
  int c = strcmp(x->type, y->type);
  if (c) return c;
  return x->version < y->version ? -1 : x->version > y->version;
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* "account.deposited.v12.json" -> type "account.deposited", version 12. 0 on success. */
static int parse_name(const char *name, char **type, int *version) {
  size_t n = strlen(name);
  if (n < 5 || strcmp(name + n - 5, ".json") != 0) return -1;
  size_t stem = n - 5, v = stem;
  while (v > 0 && name[v - 1] >= '0' && name[v - 1] <= '9') v--;
  if (v == stem || v < 3 || name[v - 1] != 'v' || name[v - 2] != '.') return -1;
  if (name[v] == '0') return -1; /* no leading zeros: one file per (type, version) */
  long long ver = 0;
  for (size_t i = v; i < stem; i++) {
    ver = ver * 10 + (name[i] - '0');
    if (ver > INT_MAX) return -1;
  }
  size_t tlen = v - 2;
  if (tlen == 0 || tlen > 255) return -1;
  if (!(*type = malloc(tlen + 1))) return -2;
  memcpy(*type, name, tlen);
  (*type)[tlen] = '\0';
  *version = (int)ver;
  return 0;
}

void esr_schema_set_free(esr_schema_set *set) {
  if (!set) return;
  for (size_t i = 0; i < set->n; i++) {
    free(set->v[i].type);
    esr_schema_free(set->v[i].schema);
  }
  free(set->v);
  free(set->table);
  free(set);
}

esr_code esr_schema_set_load(const char *dir, esr_schema_set **out, esr_error *err) {
  *out = NULL;
  esr_schema_set *set = calloc(1, sizeof *set);
  char **names = NULL, *path = NULL;
  size_t n_names = 0, cap_names = 0;
  DIR *d = NULL;
  esr_code code = ESR_E_OK;
  if (!set) goto oom;
  if (!(d = opendir(dir))) {
    code = esr_error_set(err, ESR_E_CONFIG, errno, "schema directory %s: %s", dir, strerror(errno));
    goto fail;
  }
  struct dirent *de;
  while ((de = readdir(d))) {
    size_t len = strlen(de->d_name);
    if (de->d_name[0] == '.' || len < 5 || strcmp(de->d_name + len - 5, ".json") != 0) continue;
    if (n_names == cap_names) {
      size_t nc = cap_names ? cap_names * 2 : 16;
      char **p = realloc(names, nc * sizeof *p);
      if (!p) goto oom;
      names = p;
      cap_names = nc;
    }
    if (!(names[n_names] = strdup(de->d_name))) goto oom;
    n_names++;
  }
  closedir(d);
  d = NULL;
  if (n_names) qsort(names, n_names, sizeof *names, name_cmp);
  if (n_names && !(set->v = calloc(n_names, sizeof *set->v))) goto oom;
  for (size_t i = 0; i < n_names; i++) {
    free(path);
    if (asprintf(&path, "%s/%s", dir, names[i]) < 0) {
      path = NULL;
      goto oom;
    }
    set_entry *e = &set->v[set->n];
    int rc = parse_name(names[i], &e->type, &e->version);
    if (rc == -2) goto oom;
    if (rc) {
      code = esr_error_set(err, ESR_E_CONFIG, 0,
                           "%s: a schema file must be named <type>.v<version>.json (e.g. account.deposited.v1.json; "
                           "version >= 1, no leading zeros)",
                           path);
      goto fail;
    }
    set->n++;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
      code = esr_error_set(err, ESR_E_CONFIG, errno, "%s: not a regular file", path);
      goto fail;
    }
    if ((code = esr_schema_load(path, &e->schema, err)) != ESR_E_OK) goto fail;
  }
  if (set->n) qsort(set->v, set->n, sizeof *set->v, entry_cmp);
  set->table_cap = 16;
  while (set->table_cap < set->n * 2) set->table_cap *= 2;
  if (!(set->table = calloc(set->table_cap, sizeof *set->table))) goto oom;
  for (size_t i = 0; i < set->n; i++) {
    size_t h = (size_t)key_hash(set->v[i].type, set->v[i].version) & (set->table_cap - 1);
    while (set->table[h]) h = (h + 1) & (set->table_cap - 1);
    set->table[h] = (uint32_t)(i + 1);
  }
  goto done;
oom:
  code = esr_error_set(err, ESR_E_NOMEM, ENOMEM, "schema directory %s: out of memory", dir);
fail:
  esr_schema_set_free(set);
  set = NULL;
done:
  if (d) closedir(d);
  for (size_t i = 0; i < n_names; i++) free(names[i]);
  free(names);
  free(path);
  *out = set;
  return code;
}

const esr_schema *esr_schema_set_find(const esr_schema_set *set, const char *type, int version) {
  if (!set || !type || !set->table) return NULL;
  for (size_t h = (size_t)key_hash(type, version) & (set->table_cap - 1); set->table[h];
       h = (h + 1) & (set->table_cap - 1)) {
    const set_entry *e = &set->v[set->table[h] - 1];
    if (e->version == version && strcmp(e->type, type) == 0) return e->schema;
  }
  return NULL;
}

int esr_schema_set_latest(const esr_schema_set *set, const char *type) {
  int best = 0;
  for (size_t i = 0; set && type && i < set->n; i++)
    if (strcmp(set->v[i].type, type) == 0 && set->v[i].version > best) best = set->v[i].version;
  return best;
}

size_t esr_schema_set_count(const esr_schema_set *set) { return set ? set->n : 0; }

const esr_schema *esr_schema_set_at(const esr_schema_set *set, size_t i, const char **type, int *version) {
  if (!set || i >= set->n) return NULL;
  if (type) *type = set->v[i].type;
  if (version) *version = set->v[i].version;
  return set->v[i].schema;
}
