/* schema_compile.c — JSON Schema draft-07 documents compiled into sx_node arrays (see schema_int.h).
 *
 * Two passes over the document. Pass 1 indexes every subschema position (the values of the applicator keywords,
 * recursively) with its JSON pointer and its base URI, which $id changes; then it resolves each $ref to one of those
 * positions, indexing the target too when it lies outside them (a pointer into a member that is not a keyword). Pass 2
 * compiles each indexed position into the node of the same index, so a $ref is a plain index and recursion costs
 * nothing. Then a graph check refuses $ref cycles that never descend into the instance. Everything esr cannot honour is
 * refused here, naming the origin, the keyword and its location: a schema that compiles is enforced exactly as written.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_int.h"

/* ---------------------------------------------------------------------------------------------------------------- */
/* compile context                                                                                                  */

typedef struct cx_entry {
  const cJSON *json;
  const char *base; /* owned by cx.pool */
  char *where;      /* JSON pointer of this subschema in the document; owned */
  int32_t ref_target;
  uint8_t has_ref;
} cx_entry;

typedef struct cx_named {
  char *uri; /* an absolute URI without fragment (a resource) or with a "#name" fragment (an anchor) */
  int32_t entry;
} cx_named;

typedef struct cx {
  esr_schema *s;
  const char *origin;
  esr_error *err;
  cx_entry *e;
  uint32_t n, cap;
  int32_t *map; /* open addressing: cJSON pointer -> entry index, -1 empty */
  uint32_t map_cap;
  cx_named *named;
  uint32_t n_named, cap_named;
  char **pool;
  uint32_t n_pool, cap_pool;
  int32_t *refs; /* entries holding a $ref */
  uint32_t n_refs, cap_refs;
  pcre2_compile_context *ccx;
} cx;

static int grow(void *arrp, uint32_t *cap, uint32_t need, size_t elem) {
  void **arr = arrp;
  if (need <= *cap) return 0;
  uint32_t nc = *cap ? *cap : 16;
  while (nc < need) {
    if (nc > UINT32_MAX / 2) return -1;
    nc *= 2;
  }
  void *p = realloc(*arr, (size_t)nc * elem);
  if (!p) return -1;
  *arr = p;
  *cap = nc;
  return 0;
}

static const char *type_name(const cJSON *v) {
  switch (v->type & 0xFF) {
  case cJSON_False:
  case cJSON_True: return "a boolean";
  case cJSON_NULL: return "null";
  case cJSON_Number: return "a number";
  case cJSON_String: return "a string";
  case cJSON_Array: return "an array";
  case cJSON_Object: return "an object";
  default: return "an invalid value";
  }
}

/* Appends "/" + the escaped token (~ -> ~0, / -> ~1) to buf[*len..cap), truncating. */
static void ptr_append(char *buf, size_t cap, size_t *len, const char *token) {
  if (*len + 1 < cap) buf[(*len)++] = '/';
  for (const char *t = token; *t; t++) {
    const char *rep = *t == '~' ? "~0" : *t == '/' ? "~1" : NULL;
    size_t k = rep ? 2 : 1;
    if (*len + k >= cap) break;
    if (rep)
      memcpy(buf + *len, rep, 2);
    else
      buf[*len] = *t;
    *len += k;
  }
  buf[*len < cap ? *len : cap - 1] = '\0';
}

static int cfail(cx *c, const char *where, const char *kw, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Refuses the schema: "<origin>: <what> at <where>[/<kw>]". Returns -1. */
static int cfail(cx *c, const char *where, const char *kw, const char *fmt, ...) {
  char what[400], loc[300];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  size_t len = 0;
  loc[0] = '\0';
  if (where) {
    snprintf(loc, sizeof loc, "%s", where);
    len = strlen(loc);
  }
  if (kw) ptr_append(loc, sizeof loc, &len, kw);
  esr_error_set(c->err, ESR_E_CONFIG, 0, "%s: %s at %s", c->origin, what, loc[0] ? loc : "the root");
  for (char *p = c->err ? c->err->msg : NULL; p && *p; p++) /* one line, whatever the schema's strings hold */
    if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
  return -1;
}

static int nomem(cx *c) {
  esr_error_set(c->err, ESR_E_NOMEM, ENOMEM, "%s: out of memory compiling the schema", c->origin);
  return -1;
}

/* where + "/" + escaped token, malloc'd. */
static char *ptr_child(const char *where, const char *token) {
  size_t wl = strlen(where), tl = strlen(token), extra = 0;
  for (const char *t = token; *t; t++) extra += (*t == '~' || *t == '/');
  char *out = malloc(wl + 1 + tl + extra + 1);
  if (!out) return NULL;
  memcpy(out, where, wl);
  size_t len = wl;
  out[len++] = '/';
  for (const char *t = token; *t; t++) {
    if (*t == '~' || *t == '/') {
      out[len++] = '~';
      out[len++] = *t == '~' ? '0' : '1';
    } else {
      out[len++] = *t;
    }
  }
  out[len] = '\0';
  return out;
}

static char *ptr_index(const char *where, size_t i) {
  char tok[32];
  snprintf(tok, sizeof tok, "%zu", i);
  return ptr_child(where, tok);
}

static const char *pool_add(cx *c, char *s) { /* takes s */
  if (!s || grow(&c->pool, &c->cap_pool, c->n_pool + 1, sizeof *c->pool)) {
    free(s);
    return NULL;
  }
  c->pool[c->n_pool++] = s;
  return s;
}

static uint32_t ptr_hash(const void *p) {
  uint64_t x = (uint64_t)(uintptr_t)p;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return (uint32_t)x;
}

static int32_t find(const cx *c, const cJSON *json) {
  if (!c->map_cap) return -1;
  for (uint32_t h = ptr_hash(json) & (c->map_cap - 1);; h = (h + 1) & (c->map_cap - 1)) {
    int32_t i = c->map[h];
    if (i < 0) return -1;
    if (c->e[i].json == json) return i;
  }
}

static int map_put(cx *c, const cJSON *json, int32_t idx) {
  if ((uint64_t)(c->n + 1) * 2 > c->map_cap) { /* keep the load under one half */
    uint32_t nc = c->map_cap ? c->map_cap * 2 : 64;
    int32_t *m = malloc((size_t)nc * sizeof *m);
    if (!m) return -1;
    for (uint32_t i = 0; i < nc; i++) m[i] = -1;
    for (uint32_t i = 0; i < c->map_cap; i++) {
      if (c->map[i] < 0) continue;
      uint32_t h = ptr_hash(c->e[c->map[i]].json) & (nc - 1);
      while (m[h] >= 0) h = (h + 1) & (nc - 1);
      m[h] = c->map[i];
    }
    free(c->map);
    c->map = m;
    c->map_cap = nc;
  }
  uint32_t h = ptr_hash(json) & (c->map_cap - 1);
  while (c->map[h] >= 0) h = (h + 1) & (c->map_cap - 1);
  c->map[h] = idx;
  return 0;
}

/* Adds an entry; takes `where`. Returns its index or -1 (out of memory). */
static int32_t add_entry(cx *c, const cJSON *json, const char *base, char *where) {
  if (!where || c->n >= INT32_MAX - 1 || grow(&c->e, &c->cap, c->n + 1, sizeof *c->e) ||
      map_put(c, json, (int32_t)c->n)) {
    free(where);
    return -1;
  }
  cx_entry *e = &c->e[c->n];
  memset(e, 0, sizeof *e);
  e->json = json;
  e->base = base;
  e->where = where;
  e->ref_target = SX_NONE;
  return (int32_t)c->n++;
}

static const char *key(const cJSON *m) { return m->string ? m->string : ""; }

static const cJSON *member(const cJSON *obj, const char *name) {
  for (const cJSON *m = obj->child; m; m = m->next)
    if (strcmp(key(m), name) == 0) return m;
  return NULL;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* URIs (RFC 3986 section 5: reference resolution), enough for $id and $ref                                         */

typedef struct uri {
  const char *scheme, *auth, *path, *query, *frag;
  size_t scheme_len, auth_len, path_len, query_len, frag_len;
  int has_scheme, has_auth, has_query, has_frag;
} uri;

static void uri_parse(const char *s, uri *u) {
  memset(u, 0, sizeof *u);
  const char *p = s, *q;
  if (isalpha((unsigned char)*p)) {
    for (q = p + 1; isalnum((unsigned char)*q) || *q == '+' || *q == '-' || *q == '.'; q++) {
    }
    if (*q == ':') {
      u->has_scheme = 1;
      u->scheme = p;
      u->scheme_len = (size_t)(q - p);
      p = q + 1;
    }
  }
  if (p[0] == '/' && p[1] == '/') {
    p += 2;
    for (q = p; *q && *q != '/' && *q != '?' && *q != '#'; q++) {
    }
    u->has_auth = 1;
    u->auth = p;
    u->auth_len = (size_t)(q - p);
    p = q;
  }
  for (q = p; *q && *q != '?' && *q != '#'; q++) {
  }
  u->path = p;
  u->path_len = (size_t)(q - p);
  p = q;
  if (*p == '?') {
    for (q = ++p; *q && *q != '#'; q++) {
    }
    u->has_query = 1;
    u->query = p;
    u->query_len = (size_t)(q - p);
    p = q;
  }
  if (*p == '#') {
    u->has_frag = 1;
    u->frag = p + 1;
    u->frag_len = strlen(p + 1);
  }
}

/* RFC 3986 5.2.4, in place on a NUL-terminated copy; returns a malloc'd result. */
static char *remove_dots(const char *path, size_t len) {
  char *in = malloc(len + 1), *out = malloc(len + 2);
  if (!in || !out) {
    free(in);
    free(out);
    return NULL;
  }
  memcpy(in, path, len);
  in[len] = '\0';
  char *p = in;
  size_t o = 0;
  while (*p) {
    if (strncmp(p, "../", 3) == 0) {
      p += 3;
    } else if (strncmp(p, "./", 2) == 0) {
      p += 2;
    } else if (strncmp(p, "/./", 3) == 0) {
      p += 2;
    } else if (strcmp(p, "/.") == 0) {
      p[1] = '/';
      p += 1;
    } else if (strncmp(p, "/../", 4) == 0 || strcmp(p, "/..") == 0) {
      if (p[3] == '\0') {
        p[2] = '/';
        p += 2;
      } else {
        p += 3;
      }
      while (o > 0 && out[o - 1] != '/') o--;
      if (o > 0) o--;
    } else if (strcmp(p, ".") == 0 || strcmp(p, "..") == 0) {
      p += strlen(p);
    } else {
      if (*p == '/') out[o++] = *p++;
      while (*p && *p != '/') out[o++] = *p++;
    }
  }
  out[o] = '\0';
  free(in);
  return out;
}

typedef struct sbuf {
  char *s;
  size_t len, cap;
  int oom;
} sbuf;

/* Appends n bytes and keeps the text NUL-terminated. The room test cannot wrap (cap >= len), unlike len + n + 1 > cap,
 * which wrapped for n near SIZE_MAX into "no growth" and a memcpy of n bytes: GCC 12 rightly reported that path at -O3
 * (-Wstringop-overflow); the growth is bounded too. */
static void sb_add(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (n >= b->cap - b->len) {
    if (n > SIZE_MAX / 4 - b->len) {
      b->oom = 1;
      return;
    }
    size_t need = b->len + n + 1, nc = b->cap ? b->cap * 2 : 64;
    while (nc < need) nc *= 2;
    char *p = realloc(b->s, nc);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->s = p;
    b->cap = nc;
  }
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* `ref` resolved against the absolute URI `base`; malloc'd, or NULL when out of memory. The scheme is lowercased. */
static char *uri_resolve(const char *base, const char *ref) {
  uri b, r;
  uri_parse(base, &b);
  uri_parse(ref, &r);
  sbuf out = {0};
  char *path = NULL, *merged = NULL;
  const uri *sch = r.has_scheme ? &r : &b;
  for (size_t i = 0; i < sch->scheme_len; i++) {
    char ch = (char)tolower((unsigned char)sch->scheme[i]);
    sb_add(&out, &ch, 1);
  }
  if (sch->has_scheme) sb_add(&out, ":", 1);
  const uri *auth, *query;
  if (r.has_scheme || r.has_auth) {
    auth = &r;
    query = &r;
    path = remove_dots(r.path, r.path_len);
  } else {
    auth = &b;
    if (r.path_len == 0) {
      path = remove_dots(b.path, b.path_len);
      query = r.has_query ? &r : &b;
    } else {
      query = &r;
      if (r.path[0] == '/') {
        path = remove_dots(r.path, r.path_len);
      } else {
        sbuf m = {0};
        if (b.has_auth && b.path_len == 0) {
          sb_add(&m, "/", 1);
        } else {
          size_t keep = b.path_len;
          while (keep > 0 && b.path[keep - 1] != '/') keep--;
          sb_add(&m, b.path, keep);
        }
        sb_add(&m, r.path, r.path_len);
        merged = m.s;
        path = m.oom ? NULL : remove_dots(merged ? merged : "", merged ? strlen(merged) : 0);
      }
    }
  }
  if (!path) goto fail;
  if (auth->has_auth) {
    sb_add(&out, "//", 2);
    sb_add(&out, auth->auth, auth->auth_len);
  }
  sb_str(&out, path);
  if (query->has_query) {
    sb_add(&out, "?", 1);
    sb_add(&out, query->query, query->query_len);
  }
  if (r.has_frag) {
    sb_add(&out, "#", 1);
    sb_add(&out, r.frag, r.frag_len);
  }
  if (!out.s) sb_add(&out, "", 0);
  if (out.oom) goto fail;
  free(path);
  free(merged);
  return out.s;
fail:
  free(path);
  free(merged);
  free(out.s);
  return NULL;
}

/* Splits an absolute URI at its '#': returns the malloc'd part before it, *frag points after it (NULL when none). */
static char *uri_split(const char *abs, const char **frag) {
  const char *hash = strchr(abs, '#');
  size_t n = hash ? (size_t)(hash - abs) : strlen(abs);
  *frag = hash ? hash + 1 : NULL;
  char *doc = malloc(n + 1);
  if (doc) {
    memcpy(doc, abs, n);
    doc[n] = '\0';
  }
  return doc;
}

static int hexval(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* %XX-decoded copy (malformed escapes are kept as written). */
static char *pct_decode(const char *s) {
  size_t n = strlen(s), o = 0;
  char *out = malloc(n + 1);
  if (!out) return NULL;
  for (size_t i = 0; i < n; i++) {
    int hi, lo;
    if (s[i] == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 && (lo = hexval(s[i + 2])) >= 0) {
      out[o++] = (char)(hi * 16 + lo);
      i += 2;
    } else {
      out[o++] = s[i];
    }
  }
  out[o] = '\0';
  return out;
}

static int32_t named_find(const cx *c, const char *uri_text) {
  for (uint32_t i = 0; i < c->n_named; i++)
    if (strcmp(c->named[i].uri, uri_text) == 0) return c->named[i].entry;
  return -1;
}

/* Registers a resource or an anchor; takes `uri_text`. */
static int named_add(cx *c, char *uri_text, int32_t entry, const char *where) {
  if (!uri_text) return nomem(c);
  int32_t old = named_find(c, uri_text);
  if (old >= 0 && old != entry) {
    cfail(c, where, "$id", "\"%s\" identifies two subschemas (the other at %s)", uri_text,
          c->e[old].where[0] ? c->e[old].where : "the root");
    free(uri_text);
    return -1;
  }
  if (old >= 0 || grow(&c->named, &c->cap_named, c->n_named + 1, sizeof *c->named)) {
    free(uri_text);
    return old >= 0 ? 0 : nomem(c);
  }
  c->named[c->n_named].uri = uri_text;
  c->named[c->n_named].entry = entry;
  c->n_named++;
  return 0;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* pass 1: index the subschema positions                                                                            */

static int index_schema(cx *c, const cJSON *json, const char *base, char *where, int depth);

static int index_child(cx *c, const cJSON *json, const char *base, const char *where, const char *kw, int depth) {
  return index_schema(c, json, base, ptr_child(where, kw), depth + 1);
}

/* The members of `obj` (properties, patternProperties, definitions; dependencies when `skip_arrays`) */
static int index_map(cx *c, const cJSON *obj, const char *base, const char *where, const char *kw, int depth,
                     int skip_arrays) {
  if (!cJSON_IsObject(obj)) return 0;
  char *kwhere = ptr_child(where, kw);
  if (!kwhere) return nomem(c);
  int rc = 0;
  for (const cJSON *m = obj->child; m && rc == 0; m = m->next) {
    if (skip_arrays && cJSON_IsArray(m)) continue;
    rc = index_schema(c, m, base, ptr_child(kwhere, key(m)), depth + 1);
  }
  free(kwhere);
  return rc;
}

static int index_array(cx *c, const cJSON *arr, const char *base, const char *where, const char *kw, int depth) {
  if (!cJSON_IsArray(arr)) return 0;
  char *kwhere = ptr_child(where, kw);
  if (!kwhere) return nomem(c);
  int rc = 0;
  size_t i = 0;
  for (const cJSON *m = arr->child; m && rc == 0; m = m->next, i++)
    rc = index_schema(c, m, base, ptr_index(kwhere, i), depth + 1);
  free(kwhere);
  return rc;
}

/* $id: the new base of `idx` and its children; registers the resource and the "#name" anchor it declares. */
static int apply_id(cx *c, int32_t idx, const char *id, const char **base) {
  char *abs = uri_resolve(*base, id);
  if (!abs) return nomem(c);
  const char *frag;
  char *doc = uri_split(abs, &frag);
  if (!doc) {
    free(abs);
    return nomem(c);
  }
  int rc = 0;
  if (frag && frag[0] == '/') {
    rc = cfail(c, c->e[idx].where, "$id", "$id \"%s\" must not hold a JSON pointer fragment", id);
  } else {
    if (id[0] != '#') rc = named_add(c, strdup(doc), idx, c->e[idx].where);
    if (rc == 0 && frag && frag[0]) rc = named_add(c, strdup(abs), idx, c->e[idx].where);
  }
  if (rc == 0) {
    const char *b = pool_add(c, doc);
    doc = NULL;
    if (!b)
      rc = nomem(c);
    else
      *base = c->e[idx].base = b;
  }
  free(doc);
  free(abs);
  return rc;
}

/* Indexes `json` and the subschemas below it; takes `where`. */
static int index_schema(cx *c, const cJSON *json, const char *base, char *where, int depth) {
  if (!where) return nomem(c);
  if (find(c, json) >= 0) {
    free(where);
    return 0;
  }
  if (depth > ESR_SCHEMA_MAX_NESTING) {
    cfail(c, where, NULL, "subschemas nested deeper than %d levels", ESR_SCHEMA_MAX_NESTING);
    free(where);
    return -1;
  }
  int32_t idx = add_entry(c, json, base, where);
  if (idx < 0) return nomem(c);
  if (!cJSON_IsObject(json)) return 0;
  if (member(json, "$ref")) { /* its siblings, $id included, are ignored (draft-07) */
    c->e[idx].has_ref = 1;
    if (grow(&c->refs, &c->cap_refs, c->n_refs + 1, sizeof *c->refs)) return nomem(c);
    c->refs[c->n_refs++] = idx;
    return 0;
  }
  const cJSON *id = member(json, "$id");
  if (cJSON_IsString(id) && apply_id(c, idx, id->valuestring, &base)) return -1;
  for (const cJSON *m = json->child; m; m = m->next) {
    const char *k = key(m);
    const char *w = c->e[idx].where; /* re-read: c->e moves as it grows */
    int rc = 0;
    if (!strcmp(k, "properties") || !strcmp(k, "patternProperties") || !strcmp(k, "definitions"))
      rc = index_map(c, m, base, w, k, depth, 0);
    else if (!strcmp(k, "dependencies"))
      rc = index_map(c, m, base, w, k, depth, 1);
    else if (!strcmp(k, "allOf") || !strcmp(k, "anyOf") || !strcmp(k, "oneOf"))
      rc = index_array(c, m, base, w, k, depth);
    else if (!strcmp(k, "items") && cJSON_IsArray(m))
      rc = index_array(c, m, base, w, k, depth);
    else if (!strcmp(k, "items") || !strcmp(k, "additionalItems") || !strcmp(k, "contains") ||
             !strcmp(k, "additionalProperties") || !strcmp(k, "propertyNames") || !strcmp(k, "not") ||
             !strcmp(k, "if") || !strcmp(k, "then") || !strcmp(k, "else"))
      rc = index_child(c, m, base, w, k, depth);
    if (rc) return rc;
  }
  return 0;
}

/* Resolves the $ref of entry `idx` to an entry (indexing the target when it is not a subschema position yet). */
static int resolve_ref(cx *c, int32_t idx) {
  const cJSON *refj = member(c->e[idx].json, "$ref");
  if (!cJSON_IsString(refj)) return 0; /* pass 2 refuses it */
  const char *ref = refj->valuestring;
  char *abs = uri_resolve(c->e[idx].base, ref), *doc = NULL, *token = NULL, *target_where = NULL, *frag_dec = NULL;
  int rc = -1;
  if (!abs) goto oom;
  const char *frag;
  doc = uri_split(abs, &frag);
  if (!doc) goto oom;
  int32_t res = named_find(c, doc);
  if (res < 0) {
    cfail(c, c->e[idx].where, "$ref",
          "remote $ref \"%s\" is not supported: esr resolves references only within the schema's own document", ref);
    goto done;
  }
  int32_t target = -1;
  if (!frag || !frag[0]) {
    target = res;
  } else if (frag[0] != '/') { /* "#name": an anchor declared by an $id */
    char *anchor = malloc(strlen(doc) + strlen(frag) + 2);
    if (!anchor) goto oom;
    sprintf(anchor, "%s#%s", doc, frag);
    target = named_find(c, anchor);
    free(anchor);
    if (target < 0) {
      cfail(c, c->e[idx].where, "$ref", "$ref \"%s\": no subschema declares the $id \"#%s\"", ref, frag);
      goto done;
    }
  } else { /* a JSON pointer, relative to the resource */
    frag_dec = pct_decode(frag);
    if (!frag_dec) goto oom;
    const cJSON *cur = c->e[res].json;
    const char *base = c->e[res].base;
    target_where = strdup(c->e[res].where);
    token = malloc(strlen(frag_dec) + 1);
    if (!target_where || !token) goto oom;
    const char *p = frag_dec + 1;
    for (;;) {
      size_t t = 0;
      for (; *p && *p != '/'; p++) {
        if (*p == '~') {
          if (p[1] != '0' && p[1] != '1') {
            cfail(c, c->e[idx].where, "$ref", "$ref \"%s\": bad escape in the JSON pointer (~ must be ~0 or ~1)", ref);
            goto done;
          }
          token[t++] = p[1] == '0' ? '~' : '/';
          p++;
        } else {
          token[t++] = *p;
        }
      }
      token[t] = '\0';
      const cJSON *next = NULL;
      if (cJSON_IsObject(cur)) {
        next = member(cur, token);
      } else if (cJSON_IsArray(cur)) {
        char *end;
        errno = 0;
        unsigned long k = strtoul(token, &end, 10);
        if (token[0] >= '0' && token[0] <= '9' && !*end && errno == 0 && (token[0] != '0' || !token[1]))
          next = cJSON_GetArrayItem(cur, (int)(k > INT32_MAX ? -1 : (long)k));
      }
      if (!next) {
        cfail(c, c->e[idx].where, "$ref", "$ref \"%s\": no such location in the document", ref);
        goto done;
      }
      char *w = ptr_child(target_where, token);
      if (!w) goto oom;
      free(target_where);
      target_where = w;
      cur = next;
      int32_t known = find(c, cur);
      if (known >= 0) {
        base = c->e[known].base;
      } else if (cJSON_IsObject(cur) && !member(cur, "$ref")) { /* outside the subschema positions */
        const cJSON *id = member(cur, "$id");
        if (cJSON_IsString(id)) {
          char *a = uri_resolve(base, id->valuestring), *d;
          const char *f;
          if (!a || !(d = uri_split(a, &f))) {
            free(a);
            goto oom;
          }
          free(a);
          if (!(base = pool_add(c, d))) goto oom;
        }
      }
      if (!*p) break;
      p++;
    }
    target = find(c, cur);
    if (target < 0) {
      uint32_t before = c->n;
      if (index_schema(c, cur, base, target_where, 0)) {
        target_where = NULL;
        goto done;
      }
      target_where = NULL;
      target = (int32_t)before;
    }
  }
  c->e[idx].ref_target = target;
  rc = 0;
  goto done;
oom:
  nomem(c);
done:
  free(abs);
  free(doc);
  free(token);
  free(target_where);
  free(frag_dec);
  return rc;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* pass 2: compile each indexed subschema                                                                           */

enum kw {
  KW_UNKNOWN = 0,
  KW_IGNORED, /* annotations */
  KW_SCHEMA,
  KW_ID,
  KW_DEFINITIONS,
  KW_TYPE,
  KW_ENUM,
  KW_CONST,
  KW_MULTIPLE_OF,
  KW_MAXIMUM,
  KW_XMAXIMUM,
  KW_MINIMUM,
  KW_XMINIMUM,
  KW_MAX_LENGTH,
  KW_MIN_LENGTH,
  KW_PATTERN,
  KW_ITEMS,
  KW_ADDITIONAL_ITEMS,
  KW_MAX_ITEMS,
  KW_MIN_ITEMS,
  KW_UNIQUE_ITEMS,
  KW_CONTAINS,
  KW_MAX_PROPS,
  KW_MIN_PROPS,
  KW_REQUIRED,
  KW_PROPERTIES,
  KW_PATTERN_PROPS,
  KW_ADDITIONAL_PROPS,
  KW_DEPENDENCIES,
  KW_PROPERTY_NAMES,
  KW_IF,
  KW_THEN,
  KW_ELSE,
  KW_ALL_OF,
  KW_ANY_OF,
  KW_ONE_OF,
  KW_NOT,
  KW_FORMAT,
};

static const struct {
  const char *name;
  enum kw kw;
} KEYWORDS[] = {
    {"$comment", KW_IGNORED},
    {"title", KW_IGNORED},
    {"description", KW_IGNORED},
    {"default", KW_IGNORED},
    {"examples", KW_IGNORED},
    {"readOnly", KW_IGNORED},
    {"writeOnly", KW_IGNORED},
    {"contentMediaType", KW_IGNORED},
    {"contentEncoding", KW_IGNORED},
    {"$schema", KW_SCHEMA},
    {"$id", KW_ID},
    {"definitions", KW_DEFINITIONS},
    {"type", KW_TYPE},
    {"enum", KW_ENUM},
    {"const", KW_CONST},
    {"multipleOf", KW_MULTIPLE_OF},
    {"maximum", KW_MAXIMUM},
    {"exclusiveMaximum", KW_XMAXIMUM},
    {"minimum", KW_MINIMUM},
    {"exclusiveMinimum", KW_XMINIMUM},
    {"maxLength", KW_MAX_LENGTH},
    {"minLength", KW_MIN_LENGTH},
    {"pattern", KW_PATTERN},
    {"items", KW_ITEMS},
    {"additionalItems", KW_ADDITIONAL_ITEMS},
    {"maxItems", KW_MAX_ITEMS},
    {"minItems", KW_MIN_ITEMS},
    {"uniqueItems", KW_UNIQUE_ITEMS},
    {"contains", KW_CONTAINS},
    {"maxProperties", KW_MAX_PROPS},
    {"minProperties", KW_MIN_PROPS},
    {"required", KW_REQUIRED},
    {"properties", KW_PROPERTIES},
    {"patternProperties", KW_PATTERN_PROPS},
    {"additionalProperties", KW_ADDITIONAL_PROPS},
    {"dependencies", KW_DEPENDENCIES},
    {"propertyNames", KW_PROPERTY_NAMES},
    {"if", KW_IF},
    {"then", KW_THEN},
    {"else", KW_ELSE},
    {"allOf", KW_ALL_OF},
    {"anyOf", KW_ANY_OF},
    {"oneOf", KW_ONE_OF},
    {"not", KW_NOT},
    {"format", KW_FORMAT},
};

static enum kw keyword(const char *name) {
  for (size_t i = 0; i < sizeof KEYWORDS / sizeof KEYWORDS[0]; i++)
    if (strcmp(KEYWORDS[i].name, name) == 0) return KEYWORDS[i].kw;
  return KW_UNKNOWN;
}

/* Whether some $ref points at or below `where`/`kw` (a member that is not a keyword but a container of subschemas). */
static int referenced_below(const cx *c, const char *where, const char *kw) {
  char *loc = ptr_child(where, kw);
  if (!loc) return 0;
  size_t n = strlen(loc);
  int found = 0;
  for (uint32_t i = 0; i < c->n_refs && !found; i++) {
    int32_t t = c->e[c->refs[i]].ref_target;
    if (t < 0) continue;
    const char *tw = c->e[t].where;
    found = strncmp(tw, loc, n) == 0 && (tw[n] == '\0' || tw[n] == '/');
  }
  free(loc);
  return found;
}

static int32_t child_of(cx *c, const cJSON *v, const char *where, const char *kw) {
  int32_t i = find(c, v);
  if (i < 0) cfail(c, where, kw, "internal error: subschema not indexed");
  return i;
}

static int schema_arg(cx *c, const cJSON *v, const char *where, const char *kw, int32_t *out) {
  if (!cJSON_IsObject(v) && !cJSON_IsBool(v)) {
    int32_t at = find(c, v);
    return cfail(c, at >= 0 ? c->e[at].where : where, at >= 0 ? NULL : kw,
                 "a schema must be an object or a boolean, not %s", type_name(v));
  }
  *out = child_of(c, v, where, kw);
  return *out < 0 ? -1 : 0;
}

static int schema_list_arg(cx *c, const cJSON *v, const char *where, const char *kw, sx_list *out) {
  if (!cJSON_IsArray(v) || !v->child) return cfail(c, where, kw, "\"%s\" must be a non-empty array of schemas", kw);
  uint32_t n = 0;
  for (const cJSON *m = v->child; m; m = m->next) n++;
  out->v = calloc(n, sizeof *out->v);
  if (!out->v) return nomem(c);
  out->n = n;
  uint32_t i = 0;
  for (const cJSON *m = v->child; m; m = m->next, i++) {
    if (!cJSON_IsObject(m) && !cJSON_IsBool(m))
      return cfail(c, where, kw, "item %u of \"%s\" must be a schema (an object or a boolean), not %s", i, kw,
                   type_name(m));
    if ((out->v[i] = child_of(c, m, where, kw)) < 0) return -1;
  }
  return 0;
}

static int number_arg(cx *c, const cJSON *v, const char *where, const char *kw, double *out) {
  if (!cJSON_IsNumber(v) || isnan(v->valuedouble)) {
    if (cJSON_IsBool(v) && (!strcmp(kw, "exclusiveMinimum") || !strcmp(kw, "exclusiveMaximum")))
      return cfail(c, where, kw, "\"%s\" must be a number in draft-07 (the boolean form is draft-04)", kw);
    return cfail(c, where, kw, "\"%s\" must be a number, not %s", kw, type_name(v));
  }
  *out = v->valuedouble;
  return 0;
}

static int count_arg(cx *c, const cJSON *v, const char *where, const char *kw, size_t *out) {
  double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
  if (!cJSON_IsNumber(v) || !(d >= 0) || d != floor(d))
    return cfail(c, where, kw, "\"%s\" must be a non-negative integer", kw);
  *out = d >= 18446744073709551616.0 /* 2^64 */ ? SIZE_MAX : (size_t)d;
  return 0;
}

static int str_ptr_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int check_unique_keys(cx *c, const cJSON *obj, const char *where, const char *kw) {
  size_t n = 0;
  for (const cJSON *m = obj->child; m; m = m->next) n++;
  if (n < 2) return 0;
  const char **keys = malloc(n * sizeof *keys), *dup = NULL;
  if (!keys) return nomem(c);
  size_t i = 0;
  for (const cJSON *m = obj->child; m; m = m->next) keys[i++] = key(m);
  qsort(keys, n, sizeof *keys, str_ptr_cmp); /* a big "properties" must not cost n^2 comparisons */
  for (i = 1; i < n && !dup; i++)
    if (strcmp(keys[i - 1], keys[i]) == 0) dup = keys[i];
  free(keys);
  if (!dup) return 0;
  if (!kw) return cfail(c, where, dup, "duplicate keyword \"%s\"", dup);
  return cfail(c, where, kw, "duplicate member \"%s\" in \"%s\"", dup, kw);
}

static int regex_compile(cx *c, const char *src, const char *where, const char *kw, sx_regex *out) {
  int code;
  PCRE2_SIZE off;
  uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY | PCRE2_ALT_BSUX |
                  PCRE2_ALLOW_EMPTY_CLASS | PCRE2_NEVER_BACKSLASH_C;
  out->code = pcre2_compile((PCRE2_SPTR)src, PCRE2_ZERO_TERMINATED, opts, &code, &off, c->ccx);
  if (!out->code) {
    PCRE2_UCHAR msg[200];
    if (pcre2_get_error_message(code, msg, sizeof msg) < 0) snprintf((char *)msg, sizeof msg, "error %d", code);
    return cfail(c, where, kw, "\"%s\" is not a valid regular expression: %s (at offset %zu)", src, (char *)msg,
                 (size_t)off);
  }
  pcre2_jit_compile(out->code, PCRE2_JIT_COMPLETE); /* when JIT is unavailable, the interpreter matches */
  out->source = strdup(src);
  return out->source ? 0 : nomem(c);
}

static const struct {
  const char *name;
  uint8_t bit;
} TYPES[] = {{"null", SX_T_NULL},     {"boolean", SX_T_BOOLEAN}, {"object", SX_T_OBJECT},  {"array", SX_T_ARRAY},
             {"number", SX_T_NUMBER}, {"string", SX_T_STRING},   {"integer", SX_T_INTEGER}};

static int type_bit(const char *name) {
  for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
    if (strcmp(TYPES[i].name, name) == 0) return TYPES[i].bit;
  return 0;
}

static int type_arg(cx *c, const cJSON *v, const char *where, uint8_t *out) {
  if (cJSON_IsString(v)) {
    if (!(*out = (uint8_t)type_bit(v->valuestring)))
      return cfail(c, where, "type", "unknown type \"%s\" (null, boolean, object, array, number, string, integer)",
                   v->valuestring);
    return 0;
  }
  if (!cJSON_IsArray(v) || !v->child) return cfail(c, where, "type", "\"type\" must be a string or a non-empty array");
  *out = 0;
  for (const cJSON *m = v->child; m; m = m->next) {
    int bit = cJSON_IsString(m) ? type_bit(m->valuestring) : 0;
    if (!bit) return cfail(c, where, "type", "\"type\" lists something that is not a type name");
    if (*out & bit) return cfail(c, where, "type", "\"type\" lists \"%s\" twice", m->valuestring);
    *out |= (uint8_t)bit;
  }
  return 0;
}

/* "must be one of "USD", "EUR"" / "must be equal to 5", computed once so that failures never print JSON. */
static char *value_rule(const cJSON *values, int is_enum) {
  sbuf b = {0};
  if (is_enum && !values->child) return strdup("is not allowed (\"enum\" is empty)");
  sb_str(&b, is_enum ? "must be one of " : "must be equal to ");
  size_t count = 0;
  for (const cJSON *m = is_enum ? values->child : values; m; m = is_enum ? m->next : NULL) {
    char *txt = cJSON_PrintUnformatted(m);
    if (!txt) {
      free(b.s);
      return NULL;
    }
    if (count++) sb_str(&b, ", ");
    sb_str(&b, txt);
    free(txt);
    if (b.len > 160) break;
  }
  if (b.oom) {
    free(b.s);
    return NULL;
  }
  if (b.len > 160) {
    free(b.s);
    char buf[96];
    if (is_enum)
      snprintf(buf, sizeof buf, "must be one of the %d values listed in \"enum\"", cJSON_GetArraySize(values));
    else
      snprintf(buf, sizeof buf, "must be equal to the \"const\" value");
    return strdup(buf);
  }
  return b.s;
}

static int prop_cmp(const void *a, const void *b) {
  return strcmp(((const sx_prop *)a)->name, ((const sx_prop *)b)->name);
}

static int compile_keyword(cx *c, sx_node *n, const cJSON *v, const char *where, const char *k) {
  switch (keyword(k)) {
  case KW_UNKNOWN:
    if (referenced_below(c, where, k)) return 0;
    return cfail(c, where, k, "unknown keyword \"%s\" (JSON Schema draft-07; a typo?)", k);
  case KW_FORMAT:
    return cfail(c, where, k,
                 "\"format\" is not supported: esr does not check formats and will not ignore one silently "
                 "(use \"pattern\")");
  case KW_IGNORED: return 0;
  case KW_SCHEMA:
    if (!cJSON_IsString(v) || (strcmp(v->valuestring, "http://json-schema.org/draft-07/schema#") &&
                               strcmp(v->valuestring, "http://json-schema.org/draft-07/schema") &&
                               strcmp(v->valuestring, "https://json-schema.org/draft-07/schema#") &&
                               strcmp(v->valuestring, "https://json-schema.org/draft-07/schema")))
      return cfail(c, where, k,
                   "$schema %s%s%s is not supported: esr validates JSON Schema draft-07 "
                   "(\"http://json-schema.org/draft-07/schema#\")",
                   cJSON_IsString(v) ? "\"" : "", cJSON_IsString(v) ? v->valuestring : "(not a string)",
                   cJSON_IsString(v) ? "\"" : "");
    return 0;
  case KW_ID:
    if (!cJSON_IsString(v)) return cfail(c, where, k, "\"$id\" must be a string");
    return 0;
  case KW_DEFINITIONS:
    if (!cJSON_IsObject(v)) return cfail(c, where, k, "\"definitions\" must be an object of schemas");
    if (check_unique_keys(c, v, where, k)) return -1;
    for (const cJSON *m = v->child; m; m = m->next) {
      int32_t unused;
      if (schema_arg(c, m, where, k, &unused)) return -1;
    }
    return 0;
  case KW_TYPE: return type_arg(c, v, where, &n->types);
  case KW_ENUM:
    if (!cJSON_IsArray(v)) return cfail(c, where, k, "\"enum\" must be an array");
    if (!(n->enumeration = cJSON_Duplicate(v, 1)) || !(n->enum_rule = value_rule(v, 1))) return nomem(c);
    n->flags |= SX_F_ENUM;
    return 0;
  case KW_CONST:
    if (!(n->constant = cJSON_Duplicate(v, 1))) return nomem(c);
    if (!(n->const_rule = value_rule(v, 0))) return nomem(c);
    n->flags |= SX_F_CONST;
    return 0;
  case KW_MULTIPLE_OF:
    if (number_arg(c, v, where, k, &n->multiple_of)) return -1;
    if (!(n->multiple_of > 0)) return cfail(c, where, k, "\"multipleOf\" must be greater than 0");
    n->flags |= SX_F_MULTIPLE;
    return 0;
  case KW_MAXIMUM: n->flags |= SX_F_MAXIMUM; return number_arg(c, v, where, k, &n->maximum);
  case KW_XMAXIMUM: n->flags |= SX_F_XMAXIMUM; return number_arg(c, v, where, k, &n->xmaximum);
  case KW_MINIMUM: n->flags |= SX_F_MINIMUM; return number_arg(c, v, where, k, &n->minimum);
  case KW_XMINIMUM: n->flags |= SX_F_XMINIMUM; return number_arg(c, v, where, k, &n->xminimum);
  case KW_MAX_LENGTH: n->flags |= SX_F_STRING; return count_arg(c, v, where, k, &n->max_length);
  case KW_MIN_LENGTH: n->flags |= SX_F_STRING; return count_arg(c, v, where, k, &n->min_length);
  case KW_PATTERN:
    if (!cJSON_IsString(v)) return cfail(c, where, k, "\"pattern\" must be a string");
    n->flags |= SX_F_STRING;
    return regex_compile(c, v->valuestring, where, k, &n->pattern);
  case KW_ITEMS:
    n->flags |= SX_F_ARRAY;
    if (cJSON_IsArray(v)) {
      n->flags |= SX_F_TUPLE;
      if (!v->child) return 0; /* "items": [] constrains nothing by itself; additionalItems applies from item 0 */
      return schema_list_arg(c, v, where, k, &n->tuple);
    }
    return schema_arg(c, v, where, k, &n->items);
  case KW_ADDITIONAL_ITEMS: n->flags |= SX_F_ARRAY; return schema_arg(c, v, where, k, &n->additional_items);
  case KW_MAX_ITEMS: n->flags |= SX_F_ARRAY; return count_arg(c, v, where, k, &n->max_items);
  case KW_MIN_ITEMS: n->flags |= SX_F_ARRAY; return count_arg(c, v, where, k, &n->min_items);
  case KW_UNIQUE_ITEMS:
    if (!cJSON_IsBool(v)) return cfail(c, where, k, "\"uniqueItems\" must be a boolean");
    if (cJSON_IsTrue(v)) n->flags |= SX_F_ARRAY | SX_F_UNIQUE;
    return 0;
  case KW_CONTAINS: n->flags |= SX_F_ARRAY; return schema_arg(c, v, where, k, &n->contains);
  case KW_MAX_PROPS: n->flags |= SX_F_OBJECT; return count_arg(c, v, where, k, &n->max_props);
  case KW_MIN_PROPS: n->flags |= SX_F_OBJECT; return count_arg(c, v, where, k, &n->min_props);
  case KW_REQUIRED: {
    if (!cJSON_IsArray(v)) return cfail(c, where, k, "\"required\" must be an array of strings");
    uint32_t cnt = 0;
    for (const cJSON *m = v->child; m; m = m->next, cnt++)
      if (!cJSON_IsString(m)) return cfail(c, where, k, "\"required\" must be an array of strings");
    if (!cnt) return 0;
    if (!(n->required = calloc(cnt, sizeof *n->required))) return nomem(c);
    for (const cJSON *m = v->child; m; m = m->next)
      if (!(n->required[n->n_required++] = strdup(m->valuestring))) return nomem(c);
    n->flags |= SX_F_OBJECT;
    return 0;
  }
  case KW_PROPERTIES: {
    if (!cJSON_IsObject(v)) return cfail(c, where, k, "\"properties\" must be an object of schemas");
    if (check_unique_keys(c, v, where, k)) return -1;
    uint32_t cnt = (uint32_t)cJSON_GetArraySize(v);
    n->flags |= SX_F_OBJECT;
    if (!cnt) return 0;
    if (!(n->props = calloc(cnt, sizeof *n->props))) return nomem(c);
    for (const cJSON *m = v->child; m; m = m->next) {
      sx_prop *p = &n->props[n->n_props];
      if (!(p->name = strdup(key(m)))) return nomem(c);
      n->n_props++;
      if (schema_arg(c, m, where, k, &p->schema)) return -1;
    }
    qsort(n->props, n->n_props, sizeof *n->props, prop_cmp);
    return 0;
  }
  case KW_PATTERN_PROPS: {
    if (!cJSON_IsObject(v)) return cfail(c, where, k, "\"patternProperties\" must be an object of schemas");
    if (check_unique_keys(c, v, where, k)) return -1;
    uint32_t cnt = (uint32_t)cJSON_GetArraySize(v);
    n->flags |= SX_F_OBJECT;
    if (!cnt) return 0;
    if (!(n->pattern_props = calloc(cnt, sizeof *n->pattern_props))) return nomem(c);
    for (const cJSON *m = v->child; m; m = m->next) {
      sx_pattern_prop *p = &n->pattern_props[n->n_pattern_props++];
      if (regex_compile(c, key(m), where, k, &p->re) || schema_arg(c, m, where, k, &p->schema)) return -1;
    }
    return 0;
  }
  case KW_ADDITIONAL_PROPS: n->flags |= SX_F_OBJECT; return schema_arg(c, v, where, k, &n->additional_props);
  case KW_DEPENDENCIES: {
    if (!cJSON_IsObject(v)) return cfail(c, where, k, "\"dependencies\" must be an object");
    if (check_unique_keys(c, v, where, k)) return -1;
    uint32_t cnt = (uint32_t)cJSON_GetArraySize(v);
    n->flags |= SX_F_OBJECT;
    if (!cnt) return 0;
    if (!(n->deps = calloc(cnt, sizeof *n->deps))) return nomem(c);
    for (const cJSON *m = v->child; m; m = m->next) {
      sx_dep *d = &n->deps[n->n_deps++];
      d->schema = SX_NONE;
      if (!(d->name = strdup(key(m)))) return nomem(c);
      if (!cJSON_IsArray(m)) {
        if (schema_arg(c, m, where, k, &d->schema)) return -1;
        continue;
      }
      uint32_t names = (uint32_t)cJSON_GetArraySize(m);
      if (names && !(d->names = calloc(names, sizeof *d->names))) return nomem(c);
      for (const cJSON *s = m->child; s; s = s->next) {
        if (!cJSON_IsString(s))
          return cfail(c, where, k, "dependency \"%s\" must be a schema or an array of strings", key(m));
        if (!(d->names[d->n_names++] = strdup(s->valuestring))) return nomem(c);
      }
    }
    return 0;
  }
  case KW_PROPERTY_NAMES: n->flags |= SX_F_OBJECT; return schema_arg(c, v, where, k, &n->property_names);
  case KW_IF: n->flags |= SX_F_LOGIC; return schema_arg(c, v, where, k, &n->if_);
  case KW_THEN: return schema_arg(c, v, where, k, &n->then_);
  case KW_ELSE: return schema_arg(c, v, where, k, &n->else_);
  case KW_ALL_OF: n->flags |= SX_F_LOGIC; return schema_list_arg(c, v, where, k, &n->all_of);
  case KW_ANY_OF: n->flags |= SX_F_LOGIC; return schema_list_arg(c, v, where, k, &n->any_of);
  case KW_ONE_OF: n->flags |= SX_F_LOGIC; return schema_list_arg(c, v, where, k, &n->one_of);
  case KW_NOT: n->flags |= SX_F_LOGIC; return schema_arg(c, v, where, k, &n->not_);
  }
  return 0;
}

static void node_init(sx_node *n) {
  memset(n, 0, sizeof *n);
  n->ref = n->items = n->additional_items = n->contains = SX_NONE;
  n->additional_props = n->property_names = n->not_ = n->if_ = n->then_ = n->else_ = SX_NONE;
  n->max_length = n->max_items = n->max_props = SIZE_MAX;
}

static int compile_node(cx *c, uint32_t i) {
  const cx_entry *e = &c->e[i];
  sx_node *n = &c->s->nodes[i];
  if (cJSON_IsBool(e->json)) {
    n->kind = cJSON_IsTrue(e->json) ? SX_TRUE : SX_FALSE;
    return 0;
  }
  if (!cJSON_IsObject(e->json))
    return cfail(c, e->where, NULL, "a schema must be an object or a boolean, not %s", type_name(e->json));
  if (e->has_ref) {
    const cJSON *ref = member(e->json, "$ref");
    if (!cJSON_IsString(ref)) return cfail(c, e->where, "$ref", "\"$ref\" must be a string");
    n->ref = e->ref_target;
    return 0;
  }
  if (check_unique_keys(c, e->json, e->where, NULL)) return -1;
  for (const cJSON *m = e->json->child; m; m = m->next)
    if (compile_keyword(c, n, m, e->where, key(m))) return -1;
  if (n->if_ == SX_NONE) n->then_ = n->else_ = SX_NONE; /* then/else without if have no effect */
  return 0;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* cycles that never descend into the instance                                                                     */

static uint32_t inplace_edges(const sx_node *n, int32_t *out, uint32_t cap) {
  uint32_t k = 0;
#define EDGE(x)                                                                                                        \
  do {                                                                                                                 \
    if ((x) >= 0 && k < cap) out[k++] = (x);                                                                           \
  } while (0)
  EDGE(n->ref);
  for (uint32_t i = 0; i < n->all_of.n; i++) EDGE(n->all_of.v[i]);
  for (uint32_t i = 0; i < n->any_of.n; i++) EDGE(n->any_of.v[i]);
  for (uint32_t i = 0; i < n->one_of.n; i++) EDGE(n->one_of.v[i]);
  EDGE(n->not_);
  EDGE(n->if_);
  EDGE(n->then_);
  EDGE(n->else_);
  for (uint32_t i = 0; i < n->n_deps; i++) EDGE(n->deps[i].schema);
#undef EDGE
  return k;
}

static uint32_t inplace_count(const sx_node *n) { return 5 + n->all_of.n + n->any_of.n + n->one_of.n + n->n_deps; }

/* Iterative depth-first search (a schema may have thousands of nodes: no recursion). */
static int check_cycles(cx *c) {
  uint32_t nn = c->s->n_nodes;
  uint8_t *color = calloc(nn, 1); /* 0 new, 1 on the stack, 2 done */
  uint32_t *stack = malloc((size_t)nn * sizeof *stack), *pos = malloc((size_t)nn * sizeof *pos);
  int32_t *edges = NULL;
  uint32_t edges_cap = 0;
  int rc = 0;
  if (!color || !stack || !pos) {
    rc = nomem(c);
    goto done;
  }
  for (uint32_t root = 0; root < nn && rc == 0; root++) {
    if (color[root]) continue;
    uint32_t sp = 0;
    stack[sp] = root;
    pos[sp++] = 0;
    color[root] = 1;
    while (sp > 0 && rc == 0) {
      uint32_t u = stack[sp - 1];
      const sx_node *n = &c->s->nodes[u];
      uint32_t need = inplace_count(n);
      if (grow(&edges, &edges_cap, need, sizeof *edges)) {
        rc = nomem(c);
        break;
      }
      uint32_t ne = inplace_edges(n, edges, edges_cap);
      if (pos[sp - 1] >= ne) {
        color[u] = 2;
        sp--;
        continue;
      }
      int32_t v = edges[pos[sp - 1]++];
      if (color[v] == 1) {
        char chain[300];
        size_t len = 0;
        chain[0] = '\0';
        uint32_t from = sp;
        while (from > 0 && stack[from - 1] != (uint32_t)v) from--;
        for (uint32_t j = from ? from - 1 : 0; j < sp && len + 8 < sizeof chain; j++) {
          const char *w = c->e[stack[j]].where;
          len += (size_t)snprintf(chain + len, sizeof chain - len, "%s%s", j + 1 > from ? " -> " : "", w[0] ? w : "#");
          if (len >= sizeof chain) len = sizeof chain - 1;
        }
        rc = cfail(c, c->e[u].where, NULL,
                   "subschemas refer to each other in a cycle that never descends into the instance (%s -> %s): "
                   "validation would loop forever",
                   chain, c->e[v].where[0] ? c->e[v].where : "#");
      } else if (color[v] == 0) {
        color[v] = 1;
        stack[sp] = (uint32_t)v;
        pos[sp++] = 0;
      }
    }
  }
done:
  free(color);
  free(stack);
  free(pos);
  free(edges);
  return rc;
}

/* ---------------------------------------------------------------------------------------------------------------- */

static void regex_free(sx_regex *re) {
  pcre2_code_free(re->code);
  free(re->source);
}

static void node_free(sx_node *n) {
  regex_free(&n->pattern);
  free(n->tuple.v);
  for (uint32_t i = 0; i < n->n_props; i++) free(n->props[i].name);
  free(n->props);
  for (uint32_t i = 0; i < n->n_pattern_props; i++) regex_free(&n->pattern_props[i].re);
  free(n->pattern_props);
  for (uint32_t i = 0; i < n->n_required; i++) free(n->required[i]);
  free(n->required);
  for (uint32_t i = 0; i < n->n_deps; i++) {
    free(n->deps[i].name);
    for (uint32_t j = 0; j < n->deps[i].n_names; j++) free(n->deps[i].names[j]);
    free(n->deps[i].names);
  }
  free(n->deps);
  free(n->all_of.v);
  free(n->any_of.v);
  free(n->one_of.v);
  cJSON_Delete(n->constant);
  cJSON_Delete(n->enumeration);
  free(n->enum_rule);
  free(n->const_rule);
}

void esr_schema_free(esr_schema *s) {
  if (!s) return;
  for (uint32_t i = 0; i < s->n_nodes; i++) node_free(&s->nodes[i]);
  free(s->nodes);
  free(s->origin);
  free(s);
}

const char *esr_schema_origin(const esr_schema *s) { return s ? s->origin : NULL; }

/* The base URI of a document without $id: never equal to anything a schema would write, so relative references that
 * do not land on an $id of this document stay unresolved (remote). */
#define SX_DOCUMENT_BASE "urn:esr:schema-document"

esr_schema *esr_schema_compile(const cJSON *doc, const char *origin, esr_error *err) {
  cx c = {0};
  c.origin = origin ? origin : "schema";
  c.err = err;
  if (!doc) {
    esr_error_set(err, ESR_E_CONFIG, 0, "%s: no schema document", c.origin);
    return NULL;
  }
  c.s = calloc(1, sizeof *c.s);
  if (!c.s || !(c.s->origin = strdup(c.origin))) goto oom;
  if (!(c.ccx = pcre2_compile_context_create(NULL))) goto oom;
  pcre2_set_compile_extra_options(c.ccx, PCRE2_EXTRA_ALT_BSUX);

  /* pass 1 */
  const char *base = pool_add(&c, strdup(SX_DOCUMENT_BASE));
  if (!base) goto oom;
  if (named_add(&c, strdup(SX_DOCUMENT_BASE), 0, "")) goto fail; /* the root is entry 0 */
  if (index_schema(&c, doc, base, strdup(""), 0)) goto fail;
  for (uint32_t i = 0; i < c.n_refs; i++) /* c.n_refs grows when targets outside the positions are indexed */
    if (resolve_ref(&c, c.refs[i])) goto fail;

  /* pass 2 */
  c.s->n_nodes = c.n;
  if (!(c.s->nodes = calloc(c.n, sizeof *c.s->nodes))) {
    c.s->n_nodes = 0;
    goto oom;
  }
  for (uint32_t i = 0; i < c.n; i++) node_init(&c.s->nodes[i]);
  for (uint32_t i = 0; i < c.n; i++)
    if (compile_node(&c, i)) goto fail;
  if (check_cycles(&c)) goto fail;
  goto done;
oom:
  nomem(&c);
fail:
  esr_schema_free(c.s);
  c.s = NULL;
done:
  for (uint32_t i = 0; i < c.n; i++) free(c.e[i].where);
  free(c.e);
  free(c.map);
  for (uint32_t i = 0; i < c.n_named; i++) free(c.named[i].uri);
  free(c.named);
  for (uint32_t i = 0; i < c.n_pool; i++) free(c.pool[i]);
  free(c.pool);
  free(c.refs);
  pcre2_compile_context_free(c.ccx);
  return c.s;
}

esr_schema *esr_schema_compile_text(const char *text, size_t len, const char *origin, esr_error *err) {
  const char *name = origin ? origin : "schema";
  if (!text || len == 0) {
    esr_error_set(err, ESR_E_CONFIG, 0, "%s: empty schema", name);
    return NULL;
  }
  const char *end = NULL;
  cJSON *doc = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (!doc) {
    size_t at = end ? (size_t)(end - text) : 0, line = 1;
    for (size_t i = 0; i < at && i < len; i++) line += text[i] == '\n';
    esr_error_set(err, ESR_E_CONFIG, 0, "%s: not valid JSON (line %zu, byte %zu)", name, line, at);
    return NULL;
  }
  for (const char *p = end; p < text + len; p++) {
    if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
      esr_error_set(err, ESR_E_CONFIG, 0, "%s: not valid JSON: trailing data at byte %zu", name, (size_t)(p - text));
      cJSON_Delete(doc);
      return NULL;
    }
  }
  esr_schema *s = esr_schema_compile(doc, name, err);
  cJSON_Delete(doc);
  return s;
}

esr_code esr_schema_load(const char *path, esr_schema **out, esr_error *err) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  size_t len = 0, cap = 0;
  esr_code rc;
  if (!f) return esr_error_set(err, ESR_E_CONFIG, errno, "%s: cannot open the schema: %s", path, strerror(errno));
  for (;;) {
    if (len == cap) {
      if (cap >= (64u << 20)) {
        rc = esr_error_set(err, ESR_E_CONFIG, 0, "%s: schema larger than 64 MiB", path);
        goto fail;
      }
      char *p = realloc(buf, cap ? cap * 2 : 8192);
      if (!p) {
        rc = esr_error_set(err, ESR_E_NOMEM, ENOMEM, "%s: out of memory reading the schema", path);
        goto fail;
      }
      buf = p;
      cap = cap ? cap * 2 : 8192;
    }
    size_t got = fread(buf + len, 1, cap - len, f);
    len += got;
    if (got == 0) break;
  }
  if (ferror(f)) {
    rc = esr_error_set(err, ESR_E_CONFIG, errno, "%s: cannot read the schema: %s", path, strerror(errno));
    goto fail;
  }
  fclose(f);
  esr_error local = {0};
  if (!err) err = &local; /* the code of a refused schema comes from esr_schema_compile_text's error */
  esr_schema *s = esr_schema_compile_text(buf, len, path, err);
  free(buf);
  if (!s) return err->code;
  *out = s;
  return ESR_E_OK;
fail:
  fclose(f);
  free(buf);
  return rc;
}
