/* schema_validate.c — validating cJSON instances against a compiled schema (see schema_int.h).
 *
 * Everything lives on the caller's stack: the pointer of the current instance value is a stack of frames (a member name
 * or an item index) turned into text only when a failure is reported, and PCRE2's match data comes from a small arena
 * in the same frame. So the success path allocates nothing, and a shared compiled schema is never written. A failure in
 * a "quiet" region (a branch of anyOf/oneOf, not, if, contains) is not reported: the keyword that owns the region
 * reports its own rule. A limit (depth, steps, regex backtracking, memory) is a "hard" failure: it fails the whole
 * validation whatever not/anyOf would make of it, because an unchecked instance must never pass.
 */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_int.h"

/* ---------------------------------------------------------------------------------------------------------------- */
/* JSON values                                                                                                      */

int esr__schema_json_equal(const cJSON *a, const cJSON *b, long *work) {
  (*work)++;
  int t = a->type & 0xFF;
  if (t != (b->type & 0xFF)) return 0;
  switch (t) {
  case cJSON_Number: return a->valuedouble == b->valuedouble; /* 1 == 1.0; NaN (inexact literal) equals nothing */
  case cJSON_String: return strcmp(a->valuestring ? a->valuestring : "", b->valuestring ? b->valuestring : "") == 0;
  case cJSON_Array: {
    const cJSON *x = a->child, *y = b->child;
    for (; x && y; x = x->next, y = y->next)
      if (!esr__schema_json_equal(x, y, work)) return 0;
    return !x && !y;
  }
  case cJSON_Object: {
    size_t na = 0, nb = 0;
    for (const cJSON *x = a->child; x; x = x->next) na++;
    for (const cJSON *y = b->child; y; y = y->next) nb++;
    *work += (long)(na + nb);
    if (na != nb) return 0;
    for (const cJSON *x = a->child; x; x = x->next) {
      const cJSON *y = b->child;
      while (y && strcmp(x->string ? x->string : "", y->string ? y->string : "") != 0) {
        y = y->next;
        (*work)++;
      }
      if (!y || !esr__schema_json_equal(x, y, work)) return 0;
    }
    return 1;
  }
  default: return 1; /* null, true, false */
  }
}

static uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

static uint64_t str_hash(const char *s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (; s && *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
  return h;
}

/* A hash consistent with esr__schema_json_equal (member order does not matter; 0 and -0 are equal). */
static uint64_t json_hash(const cJSON *v) {
  int t = v->type & 0xFF;
  switch (t) {
  case cJSON_Number: {
    double d = v->valuedouble == 0 ? 0.0 : v->valuedouble;
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    return mix(bits ^ 0x1111);
  }
  case cJSON_String: return mix(str_hash(v->valuestring) ^ 0x2222);
  case cJSON_Array: {
    uint64_t h = 0x3333;
    for (const cJSON *x = v->child; x; x = x->next) h = mix(h * 31 + json_hash(x));
    return h;
  }
  case cJSON_Object: {
    uint64_t h = 0x4444;
    for (const cJSON *x = v->child; x; x = x->next) h += mix(str_hash(x->string) ^ json_hash(x));
    return mix(h);
  }
  default: return mix((uint64_t)t);
  }
}

void esr__schema_format_number(double d, char *buf, size_t cap) {
  if (isfinite(d) && d == floor(d) && fabs(d) < 1e17) {
    snprintf(buf, cap, "%.0f", d);
    return;
  }
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, cap, "%.*g", prec, d);
    if (strtod(buf, NULL) == d) return;
  }
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* the validation context                                                                                           */

typedef struct vframe {
  const char *key; /* NULL: an array index */
  size_t index;
} vframe;

typedef struct vctx {
  const esr_schema *s;
  esr_error *err;
  const char *prefix;
  int quiet; /* > 0 inside a region whose failures the owner reports */
  int hard;  /* a limit was hit: the validation fails, whatever the keywords make of it */
  int nomem;
  int propname; /* > 0 while validating a property name (propertyNames) */
  uint32_t depth, nframes;
  long steps;            /* work done: subschema evaluations, comparisons, members and items visited */
  unsigned long rx_work; /* regex match limits granted so far */
  pcre2_general_context *gcx;
  pcre2_match_data *md;
  pcre2_match_context *mcx;
  size_t arena_used;
  _Alignas(16) unsigned char arena[768];
  vframe frames[ESR_SCHEMA_MAX_DEPTH + 2];
} vctx;

static void emit(vctx *c, const char *rule) {
  if (!c->err) return;
  char ptr[420];
  size_t len = 0;
  ptr[0] = '\0';
  for (uint32_t i = 0; i < c->nframes && len + 1 < sizeof ptr; i++) {
    const vframe *f = &c->frames[i];
    if (!f->key) {
      int w = snprintf(ptr + len, sizeof ptr - len, "/%zu", f->index);
      len = w < 0 ? len : len + (size_t)w >= sizeof ptr ? sizeof ptr - 1 : len + (size_t)w;
      continue;
    }
    ptr[len++] = '/';
    for (const char *k = f->key; *k && len + 3 < sizeof ptr; k++) {
      if (*k == '~' || *k == '/') {
        ptr[len++] = '~';
        ptr[len++] = *k == '~' ? '0' : '1';
      } else {
        ptr[len++] = *k;
      }
    }
    ptr[len] = '\0';
  }
  esr_error_set(c->err, c->nomem ? ESR_E_NOMEM : ESR_E_BADINPUT, 0, "%s%s: %s%s", c->prefix, ptr,
                c->propname ? "property name " : "", rule);
  for (char *p = c->err->msg; *p; p++) /* one line, whatever the names and patterns hold */
    if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
}

static int fail(vctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int hard(vctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A rule failed: reported unless quiet. Returns 0 (invalid). */
static int fail(vctx *c, const char *fmt, ...) {
  if (c->quiet) return 0;
  char rule[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(rule, sizeof rule, fmt, ap);
  va_end(ap);
  emit(c, rule);
  return 0;
}

/* A limit was hit: always reported, and every enclosing keyword gives up. Returns 0 (invalid). */
static int hard(vctx *c, const char *fmt, ...) {
  char rule[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(rule, sizeof rule, fmt, ap);
  va_end(ap);
  if (c->hard) return 0; /* the first limit hit is the one reported */
  c->hard = 1;
  int propname = c->propname;
  c->propname = 0;
  emit(c, rule);
  c->propname = propname;
  return 0;
}

static int oom(vctx *c) {
  c->nomem = 1;
  return hard(c, "out of memory while validating");
}

/* Adds `k` units of work; 0 (a hard failure) once the budget is spent. */
static int charge(vctx *c, long k) {
  c->steps += k;
  if (c->steps <= ESR_SCHEMA_MAX_STEPS) return 1;
  return hard(c, "needs more than %ld steps to validate (ESR_SCHEMA_MAX_STEPS)", (long)ESR_SCHEMA_MAX_STEPS);
}

static void push_key(vctx *c, const char *key) {
  c->frames[c->nframes].key = key ? key : "";
  c->nframes++;
}

static void push_index(vctx *c, size_t i) {
  c->frames[c->nframes].key = NULL;
  c->frames[c->nframes].index = i;
  c->nframes++;
}

/* PCRE2 allocates its match data through these: from the context's arena while it lasts (always, for JIT matching). */
static void *arena_alloc(size_t size, void *data) {
  vctx *c = data;
  size_t at = (c->arena_used + 15) & ~(size_t)15;
  if (at <= sizeof c->arena && size <= sizeof c->arena - at) {
    c->arena_used = at + size;
    return c->arena + at;
  }
  return malloc(size);
}

static void arena_free(void *p, void *data) {
  vctx *c = data;
  uintptr_t a = (uintptr_t)p, lo = (uintptr_t)c->arena;
  if (a >= lo && a < lo + sizeof c->arena) return;
  free(p);
}

/* 1 match, 0 no match, -1 a hard failure (already reported).
 * PCRE2 cannot say how much work a match took, only whether it stayed under a limit. So a match first runs under a
 * small limit, enough for any sane pattern on event data, and only when that is exceeded again under the full one; each
 * run is charged its whole limit to a per-validation regex budget. Thus the regex work of one validation is bounded
 * even with a pattern that backtracks catastrophically on every string of the instance. */
static int rx_search(vctx *c, const sx_regex *re, const char *s) {
  if (!c->md) {
    c->gcx = pcre2_general_context_create(arena_alloc, arena_free, c);
    c->md = c->gcx ? pcre2_match_data_create(1, c->gcx) : NULL;
    c->mcx = c->md ? pcre2_match_context_create(c->gcx) : NULL;
    if (!c->mcx) {
      oom(c);
      return -1;
    }
    pcre2_set_heap_limit(c->mcx, 64 * 1024); /* KiB; the interpreter's backtracking memory when JIT is unavailable */
  }
  if (!charge(c, 1)) return -1;
  uint32_t limit = ESR_SCHEMA_REGEX_FIRST_LIMIT, opts = 0;
  int rc;
  for (;;) {
    if (c->rx_work + limit > ESR_SCHEMA_REGEX_BUDGET) {
      hard(c, "needs more regular expression matching than allowed (ESR_SCHEMA_REGEX_BUDGET)");
      return -1;
    }
    c->rx_work += limit;
    pcre2_set_match_limit(c->mcx, limit);
    rc = pcre2_match(re->code, (PCRE2_SPTR)(s ? s : ""), PCRE2_ZERO_TERMINATED, 0, opts, c->md, c->mcx);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !opts) {
      opts = PCRE2_NO_JIT; /* a long subject nests deeper than JIT's 32 KiB stack: the interpreter uses the heap */
      continue;
    }
    if (rc != PCRE2_ERROR_MATCHLIMIT || limit >= ESR_SCHEMA_REGEX_MATCH_LIMIT) break;
    limit = ESR_SCHEMA_REGEX_MATCH_LIMIT;
  }
  if (rc >= 0) return 1;
  if (rc == PCRE2_ERROR_NOMATCH) return 0;
  PCRE2_UCHAR msg[160];
  if (pcre2_get_error_message(rc, msg, sizeof msg) < 0) snprintf((char *)msg, sizeof msg, "error %d", rc);
  hard(c, "cannot be matched against the pattern \"%s\": %s", re->source, (char *)msg);
  return -1;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* keywords                                                                                                         */

static int vnode(vctx *c, int32_t idx, const cJSON *inst, const char *via);

static unsigned inst_bits(const cJSON *v) {
  switch (v->type & 0xFF) {
  case cJSON_False:
  case cJSON_True: return SX_T_BOOLEAN;
  case cJSON_NULL: return SX_T_NULL;
  case cJSON_Number: {
    double d = v->valuedouble;
    return isfinite(d) && d == floor(d) ? SX_T_NUMBER | SX_T_INTEGER : SX_T_NUMBER;
  }
  case cJSON_String: return SX_T_STRING;
  case cJSON_Array: return SX_T_ARRAY;
  case cJSON_Object: return SX_T_OBJECT;
  default: return 0;
  }
}

#define INEXACT "is not exactly representable (an integral number literal beyond 2^53 that a double cannot hold)"

static int fail_type(vctx *c, unsigned types, const cJSON *inst) {
  if ((inst->type & 0xFF) == cJSON_Number && isnan(inst->valuedouble)) return fail(c, INEXACT);
  static const struct {
    unsigned bit;
    const char *name;
  } names[] = {{SX_T_OBJECT, "an object"}, {SX_T_ARRAY, "an array"},     {SX_T_STRING, "a string"},
               {SX_T_NUMBER, "a number"},  {SX_T_INTEGER, "an integer"}, {SX_T_BOOLEAN, "a boolean"},
               {SX_T_NULL, "null"}};
  if (types & SX_T_NUMBER) types &= ~(unsigned)SX_T_INTEGER;
  const char *list[7];
  size_t n = 0;
  for (size_t i = 0; i < 7; i++)
    if (types & names[i].bit) list[n++] = names[i].name;
  char text[200] = "must be ";
  for (size_t i = 0; i < n; i++) {
    if (i) strcat(text, i + 1 == n ? " or " : ", ");
    strcat(text, list[i]);
  }
  return fail(c, "%s", text);
}

static int is_multiple(double x, double m) {
  if (x == 0) return 1;
  if (!isfinite(x)) return 0;
  if (x == floor(x) && m == floor(m) && fabs(x) < 9007199254740992.0) return fmod(x, m) == 0;
  double q = x / m;
  if (!isfinite(q)) return 0;
  if (fabs(q) >= 9007199254740992.0) return fmod(x, m) == 0; /* every such double is integral: ask exactly */
  /* x and m are decimal literals read as doubles (0.0075 / 0.0001 = 74.99999999999999): each carries a relative error
   * of at most 2^-53, so an integral true quotient lies within a few ulps of the computed one. */
  return fabs(q - nearbyint(q)) <= fabs(q) * 4 * DBL_EPSILON;
}

static int vnumber(vctx *c, const sx_node *n, double d) {
  char b[40];
  if (isnan(d)) return fail(c, INEXACT);
  if ((n->flags & SX_F_MINIMUM) && !(d >= n->minimum)) {
    esr__schema_format_number(n->minimum, b, sizeof b);
    return fail(c, "must be >= %s", b);
  }
  if ((n->flags & SX_F_MAXIMUM) && !(d <= n->maximum)) {
    esr__schema_format_number(n->maximum, b, sizeof b);
    return fail(c, "must be <= %s", b);
  }
  if ((n->flags & SX_F_XMINIMUM) && !(d > n->xminimum)) {
    esr__schema_format_number(n->xminimum, b, sizeof b);
    return fail(c, "must be > %s", b);
  }
  if ((n->flags & SX_F_XMAXIMUM) && !(d < n->xmaximum)) {
    esr__schema_format_number(n->xmaximum, b, sizeof b);
    return fail(c, "must be < %s", b);
  }
  if ((n->flags & SX_F_MULTIPLE) && !is_multiple(d, n->multiple_of)) {
    esr__schema_format_number(n->multiple_of, b, sizeof b);
    return fail(c, "must be a multiple of %s", b);
  }
  return 1;
}

/* Code points of UTF-8 text: every byte that is not a continuation byte starts one (invalid bytes count one each). */
static size_t code_points(const char *s) {
  size_t n = 0;
  for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
  return n;
}

static int vstring(vctx *c, const sx_node *n, const char *s) {
  if (!s) s = "";
  if (n->min_length > 0 || n->max_length != SIZE_MAX) {
    size_t len = code_points(s);
    if (len < n->min_length)
      return fail(c, "must be at least %zu character%s long", n->min_length, n->min_length == 1 ? "" : "s");
    if (len > n->max_length)
      return fail(c, "must be at most %zu character%s long", n->max_length, n->max_length == 1 ? "" : "s");
  }
  if (n->pattern.code) {
    int m = rx_search(c, &n->pattern, s);
    if (m < 0) return 0;
    if (!m) return fail(c, "must match the pattern \"%s\"", n->pattern.source);
  }
  return 1;
}

typedef struct hitem {
  uint64_t h;
  size_t i;
  const cJSON *v;
} hitem;

static int hitem_cmp(const void *a, const void *b) {
  const hitem *x = a, *y = b;
  if (x->h != y->h) return x->h < y->h ? -1 : 1;
  return x->i < y->i ? -1 : x->i > y->i;
}

/* 1 when all items differ; 0 with the first duplicate pair (smallest second index, then smallest first); -1 no memory.
 */
static int all_unique(const cJSON *arr, size_t count, size_t *first, size_t *second, long *work) {
  if (count <= 16) {
    size_t j = 0;
    for (const cJSON *b = arr->child; b; b = b->next, j++) {
      size_t i = 0;
      for (const cJSON *a = arr->child; a != b; a = a->next, i++) {
        if (esr__schema_json_equal(a, b, work)) {
          *first = i;
          *second = j;
          return 0;
        }
      }
    }
    return 1;
  }
  hitem *items = malloc(count * sizeof *items);
  if (!items) return -1;
  size_t k = 0;
  for (const cJSON *v = arr->child; v && k < count; v = v->next, k++) {
    items[k].h = json_hash(v);
    items[k].i = k;
    items[k].v = v;
  }
  qsort(items, k, sizeof *items, hitem_cmp);
  int unique = 1;
  for (size_t run = 0; run < k;) {
    size_t end = run + 1;
    while (end < k && items[end].h == items[run].h) end++;
    for (size_t y = run + 1; y < end; y++) {
      for (size_t x = run; x < y; x++) {
        if (!esr__schema_json_equal(items[x].v, items[y].v, work)) continue;
        if (unique || items[y].i < *second || (items[y].i == *second && items[x].i < *first)) {
          *first = items[x].i;
          *second = items[y].i;
        }
        unique = 0;
        break;
      }
    }
    run = end;
  }
  free(items);
  return unique;
}

static int varray(vctx *c, const sx_node *n, const cJSON *inst) {
  size_t count = 0;
  if (n->min_items > 0 || n->max_items != SIZE_MAX || (n->flags & SX_F_UNIQUE)) {
    for (const cJSON *v = inst->child; v; v = v->next) count++;
    if (!charge(c, (long)count)) return 0;
    if (count < n->min_items)
      return fail(c, "must have at least %zu item%s", n->min_items, n->min_items == 1 ? "" : "s");
    if (count > n->max_items)
      return fail(c, "must have at most %zu item%s", n->max_items, n->max_items == 1 ? "" : "s");
  }
  if ((n->flags & SX_F_TUPLE) || n->items != SX_NONE) {
    size_t i = 0;
    for (const cJSON *v = inst->child; v; v = v->next, i++) {
      int32_t sub;
      const char *via = "items";
      if (!(n->flags & SX_F_TUPLE)) {
        sub = n->items;
      } else if (i < n->tuple.n) {
        sub = n->tuple.v[i];
      } else if (n->additional_items != SX_NONE) {
        sub = n->additional_items;
        via = "additionalItems";
      } else {
        break;
      }
      push_index(c, i);
      int ok = vnode(c, sub, v, via);
      c->nframes--;
      if (!ok) return 0;
    }
  }
  if (n->flags & SX_F_UNIQUE) {
    size_t a = 0, b = 0;
    long work = 0;
    int u = all_unique(inst, count, &a, &b, &work);
    if (u < 0) return oom(c);
    if (!charge(c, work)) return 0;
    if (!u) return fail(c, "must not contain duplicate items (items %zu and %zu are equal)", a, b);
  }
  if (n->contains != SX_NONE) {
    size_t i = 0;
    int found = 0;
    c->quiet++;
    for (const cJSON *v = inst->child; v && !found; v = v->next, i++) {
      push_index(c, i);
      found = vnode(c, n->contains, v, "contains");
      c->nframes--;
      if (c->hard) break;
    }
    c->quiet--;
    if (c->hard) return 0;
    if (!found) return fail(c, "must contain at least one item that matches the \"contains\" schema");
  }
  return 1;
}

static const cJSON *get_member(const cJSON *obj, const char *name) {
  for (const cJSON *m = obj->child; m; m = m->next)
    if (m->string && strcmp(m->string, name) == 0) return m;
  return NULL;
}

static const sx_prop *find_prop(const sx_node *n, const char *name) {
  size_t lo = 0, hi = n->n_props;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int cmp = strcmp(name, n->props[mid].name);
    if (cmp == 0) return &n->props[mid];
    if (cmp < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  return NULL;
}

static int vmembers(vctx *c, const sx_node *n, const cJSON *inst) {
  for (const cJSON *m = inst->child; m; m = m->next) {
    const char *name = m->string ? m->string : "";
    int ok = 1, matched = 0;
    if (!charge(c, 1)) return 0;
    push_key(c, name);
    if (n->property_names != SX_NONE) {
      cJSON tmp;
      memset(&tmp, 0, sizeof tmp);
      tmp.type = cJSON_String;
      tmp.valuestring = (char *)name;
      c->propname++;
      ok = vnode(c, n->property_names, &tmp, "propertyNames");
      c->propname--;
    }
    if (ok && n->n_props) {
      const sx_prop *p = find_prop(n, name);
      if (p) {
        matched = 1;
        ok = vnode(c, p->schema, m, "properties");
      }
    }
    for (uint32_t i = 0; ok && i < n->n_pattern_props; i++) {
      int r = rx_search(c, &n->pattern_props[i].re, name);
      if (r < 0) ok = 0;
      if (r > 0) {
        matched = 1;
        ok = vnode(c, n->pattern_props[i].schema, m, "patternProperties");
      }
    }
    if (ok && !matched && n->additional_props != SX_NONE) ok = vnode(c, n->additional_props, m, "additionalProperties");
    c->nframes--;
    if (!ok) return 0;
  }
  return 1;
}

static int vobject(vctx *c, const sx_node *n, const cJSON *inst) {
  if (n->min_props > 0 || n->max_props != SIZE_MAX) {
    size_t count = 0;
    for (const cJSON *v = inst->child; v; v = v->next) count++;
    if (!charge(c, (long)count)) return 0;
    if (count < n->min_props)
      return fail(c, "must have at least %zu propert%s", n->min_props, n->min_props == 1 ? "y" : "ies");
    if (count > n->max_props)
      return fail(c, "must have at most %zu propert%s", n->max_props, n->max_props == 1 ? "y" : "ies");
  }
  for (uint32_t i = 0; i < n->n_required; i++) {
    if (!charge(c, 1)) return 0;
    if (!get_member(inst, n->required[i])) return fail(c, "must have property \"%s\"", n->required[i]);
  }
  if ((n->n_props || n->n_pattern_props || n->additional_props != SX_NONE || n->property_names != SX_NONE) &&
      !vmembers(c, n, inst))
    return 0;
  for (uint32_t i = 0; i < n->n_deps; i++) {
    const sx_dep *d = &n->deps[i];
    if (!charge(c, 1 + (long)d->n_names)) return 0;
    if (!get_member(inst, d->name)) continue;
    if (d->schema != SX_NONE) {
      if (!vnode(c, d->schema, inst, "dependencies")) return 0;
      continue;
    }
    for (uint32_t j = 0; j < d->n_names; j++)
      if (!get_member(inst, d->names[j]))
        return fail(c, "must have property \"%s\" when property \"%s\" is present", d->names[j], d->name);
  }
  return 1;
}

static int vlogic(vctx *c, const sx_node *n, const cJSON *inst) {
  for (uint32_t i = 0; i < n->all_of.n; i++)
    if (!vnode(c, n->all_of.v[i], inst, "allOf")) return 0;
  if (n->any_of.n) {
    int ok = 0;
    c->quiet++;
    for (uint32_t i = 0; i < n->any_of.n && !ok && !c->hard; i++) ok = vnode(c, n->any_of.v[i], inst, "anyOf");
    c->quiet--;
    if (c->hard) return 0;
    if (!ok) return fail(c, "must match at least one schema in \"anyOf\"");
  }
  if (n->one_of.n) {
    uint32_t count = 0, first = 0, second = 0;
    c->quiet++;
    for (uint32_t i = 0; i < n->one_of.n && count < 2 && !c->hard; i++) {
      if (!vnode(c, n->one_of.v[i], inst, "oneOf")) continue;
      if (count++ == 0)
        first = i;
      else
        second = i;
    }
    c->quiet--;
    if (c->hard) return 0;
    if (count == 0) return fail(c, "must match exactly one schema in \"oneOf\" (none matches)");
    if (count > 1)
      return fail(c, "must match exactly one schema in \"oneOf\" (schemas %u and %u match)", first, second);
  }
  if (n->not_ != SX_NONE) {
    c->quiet++;
    int ok = vnode(c, n->not_, inst, "not");
    c->quiet--;
    if (c->hard) return 0;
    if (ok) return fail(c, "must not match the schema in \"not\"");
  }
  if (n->if_ != SX_NONE) {
    c->quiet++;
    int ok = vnode(c, n->if_, inst, "if");
    c->quiet--;
    if (c->hard) return 0;
    if (ok && n->then_ != SX_NONE) return vnode(c, n->then_, inst, "then");
    if (!ok && n->else_ != SX_NONE) return vnode(c, n->else_, inst, "else");
  }
  return 1;
}

static int vnode(vctx *c, int32_t idx, const cJSON *inst, const char *via) {
  const sx_node *n = &c->s->nodes[idx];
  for (;;) {
    if (!charge(c, 1)) return 0;
    if (n->ref == SX_NONE) break;
    n = &c->s->nodes[n->ref];
  }
  if (n->kind == SX_TRUE) return 1;
  if (n->kind == SX_FALSE) {
    if (!via) return fail(c, "is not allowed (the schema is false)");
    if (!strcmp(via, "additionalProperties") || !strcmp(via, "additionalItems") || !strcmp(via, "items") ||
        !strcmp(via, "propertyNames"))
      return fail(c, "is not allowed (\"%s\": false)", via);
    return fail(c, "is not allowed (false schema in \"%s\")", via);
  }
  if (c->depth >= ESR_SCHEMA_MAX_DEPTH)
    return hard(c, "is nested too deeply to validate (more than %d levels)", ESR_SCHEMA_MAX_DEPTH);
  c->depth++;
  int ok = 1;
  if (n->types && !(n->types & inst_bits(inst))) ok = fail_type(c, n->types, inst);
  if (ok && (n->flags & SX_F_ENUM)) {
    int found = 0;
    long work = 0;
    for (const cJSON *v = n->enumeration->child; v && !found; v = v->next)
      found = esr__schema_json_equal(v, inst, &work);
    ok = charge(c, work) && (found || fail(c, "%s", n->enum_rule));
  }
  if (ok && (n->flags & SX_F_CONST)) {
    long work = 0;
    int same = esr__schema_json_equal(n->constant, inst, &work);
    ok = charge(c, work) && (same || fail(c, "%s", n->const_rule));
  }
  if (ok) {
    switch (inst->type & 0xFF) {
    case cJSON_Number:
      if (n->flags & SX_F_NUMERIC) ok = vnumber(c, n, inst->valuedouble);
      break;
    case cJSON_String:
      if (n->flags & SX_F_STRING) ok = vstring(c, n, inst->valuestring);
      break;
    case cJSON_Array:
      if (n->flags & SX_F_ARRAY) ok = varray(c, n, inst);
      break;
    case cJSON_Object:
      if (n->flags & SX_F_OBJECT) ok = vobject(c, n, inst);
      break;
    default: break;
    }
  }
  if (ok && (n->flags & SX_F_LOGIC)) ok = vlogic(c, n, inst);
  c->depth--;
  return ok;
}

esr_code esr_schema_validate(const esr_schema *s, const cJSON *instance, const char *prefix, esr_error *err) {
  if (!s || !instance || !s->n_nodes)
    return esr_error_set(err, ESR_E_STATE, 0, "esr_schema_validate: no schema or no instance");
  vctx c; /* not zeroed as a whole: the frames need no initialisation */
  c.s = s;
  c.err = err;
  c.prefix = prefix ? prefix : "";
  c.quiet = c.hard = c.nomem = c.propname = 0;
  c.depth = c.nframes = 0;
  c.steps = 0;
  c.rx_work = 0;
  c.gcx = NULL;
  c.md = NULL;
  c.mcx = NULL;
  c.arena_used = 0;
  int ok = vnode(&c, 0, instance, NULL);
  pcre2_match_context_free(c.mcx);
  pcre2_match_data_free(c.md);
  pcre2_general_context_free(c.gcx);
  if (ok) return ESR_E_OK;
  return c.nomem ? ESR_E_NOMEM : ESR_E_BADINPUT;
}
