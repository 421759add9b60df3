/* sqlhandler.c — the built-in SQL handler: a YAML file compiled into an esr_handler (sqlhandler.h).
 *
 * Loading parses the file with libyaml (the document API keeps each node's line for messages), checks every key, and
 * compiles the SQL: named parameters (:data.amount) are rewritten to numbered ones (?3) with a table saying what each
 * number binds; an event type's checks become one SELECT with one column per check, evaluated in declaration order;
 * each `run` block is split into statements with sqlite3_complete. At run time the callbacks reach the database only
 * through the host table, like any plugin: statements come from the partition's cache.
 */
#include "sqlhandler.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "esr/json.h"
#include "host.h"

/* ---- compiled form ---- */

typedef enum param_kind { P_KEY, P_TIME, P_ID, P_TYPE, P_VERSION, P_OFFSET, P_PARTITION, P_TOPIC, P_DATA, P_OPTION } param_kind;

typedef struct param {
  param_kind kind;
  char **path; /* P_DATA: field names; P_OPTION: path[0] is the option's value (owned) */
  int n_path;
} param;

typedef struct sql_text { /* one statement, rewritten to numbered parameters */
  char *sql;
  param *params;
  int n_params;
} sql_text;

typedef struct check {
  int reject; /* 1: reject, 0: invalid */
  char *message;
  int line;
} check;

typedef struct upcast_step {
  int from;
  char **fields; /* data field paths, "a.b" */
  int n_fields;
  sql_text select; /* SELECT expr1, expr2, ... */
} upcast_step;

typedef struct event_spec {
  char *type;
  int min_version, max_version;
  upcast_step *upcasts;
  int n_upcasts;
  check *checks;
  int n_checks;
  sql_text check_select; /* one column per check (global checks first) */
  sql_text *run;
  int n_run;
  char **emit_topics; /* one per emit */
  int n_emits;
  sql_text emit_select; /* SELECT key1, value1, key2, value2, ... after the statements ran */
} event_spec;

typedef struct option_spec {
  char *key, *value;
} option_spec;

typedef struct sql_handler {
  const esr_host_api *host;
  char *path;
  char *name, *version;
  char **migrations; /* [1..schema_version], index 0 unused */
  int schema_version;
  option_spec *options;
  int n_options;
  event_spec *events;
  int n_events;
  esr_event_type *types; /* n_events + 1 */
} sql_handler;

/* ---- errors while loading ---- */

typedef struct loading {
  const char *path;
  yaml_document_t *doc;
  esr_error *err;
  int failed;
} loading;

static int fail_at(loading *L, const yaml_node_t *node, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_at(loading *L, const yaml_node_t *node, const char *fmt, ...) {
  if (L->failed) return -1;
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  esr_error_set(L->err, ESR_E_PLUGIN, 0, "handler %s:%lu: %s", L->path,
                node ? (unsigned long)node->start_mark.line + 1 : 0UL, msg);
  L->failed = 1;
  return -1;
}

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

static yaml_node_t *node(loading *L, int id) { return yaml_document_get_node(L->doc, id); }

static const char *scalar(const yaml_node_t *n) {
  return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int parse_int(const char *s, int *out) {
  char *end;
  long v = s ? strtol(s, &end, 10) : 0;
  if (!s || !*s || *end || v < 1 || v > 1000000) return -1;
  *out = (int)v;
  return 0;
}

/* ---- parameters: ":data.amount" -> "?N" ---- */

static int name_char(char c, int first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!first && ((c >= '0' && c <= '9') || c == '.'));
}

static void param_free(param *p) {
  for (int i = 0; i < p->n_path; i++) free(p->path[i]);
  free(p->path);
}

static void sql_text_free(sql_text *t) {
  free(t->sql);
  for (int i = 0; i < t->n_params; i++) param_free(&t->params[i]);
  free(t->params);
  memset(t, 0, sizeof *t);
}

/* Parses a parameter name ("data.amount", "key", "option.v1.currency") into p. */
static int param_parse(loading *L, const yaml_node_t *at, const sql_handler *h, const char *name, param *p) {
  memset(p, 0, sizeof *p);
  static const struct {
    const char *name;
    param_kind kind;
  } simple[] = {{"key", P_KEY},       {"time", P_TIME},          {"id", P_ID},       {"type", P_TYPE},
                {"version", P_VERSION}, {"offset", P_OFFSET}, {"partition", P_PARTITION}, {"topic", P_TOPIC}};
  for (size_t i = 0; i < sizeof simple / sizeof *simple; i++) {
    if (strcmp(name, simple[i].name) == 0) {
      p->kind = simple[i].kind;
      return 0;
    }
  }
  if (strncmp(name, "option.", 7) == 0) {
    for (int i = 0; i < h->n_options; i++) {
      if (strcmp(h->options[i].key, name + 7) == 0) {
        p->kind = P_OPTION;
        p->path = malloc(sizeof *p->path);
        if (!p->path || !(p->path[0] = xstrdup(h->options[i].value))) return fail_at(L, at, "out of memory");
        p->n_path = 1;
        return 0;
      }
    }
    return fail_at(L, at, "parameter :%s: no such option (declare it under options:)", name);
  }
  if (strncmp(name, "data.", 5) != 0 || !name[5])
    return fail_at(L, at,
                   "unknown parameter :%s (use :key, :time, :id, :type, :version, :offset, :partition, :topic, "
                   ":data.<field> or :option.<key>)",
                   name);
  p->kind = P_DATA;
  const char *s = name + 5;
  while (*s) {
    const char *dot = strchr(s, '.');
    size_t n = dot ? (size_t)(dot - s) : strlen(s);
    if (n == 0) return fail_at(L, at, "parameter :%s: an empty field name", name);
    char **g = realloc(p->path, (size_t)(p->n_path + 1) * sizeof *g);
    if (!g) return fail_at(L, at, "out of memory");
    p->path = g;
    if (!(p->path[p->n_path] = strndup(s, n))) return fail_at(L, at, "out of memory");
    p->n_path++;
    s += n;
    if (*s == '.') s++;
  }
  return 0;
}

static int same_param(const param *a, const param *b) {
  if (a->kind != b->kind || a->n_path != b->n_path) return 0;
  for (int i = 0; i < a->n_path; i++)
    if (strcmp(a->path[i], b->path[i]) != 0) return 0;
  return 1;
}

/* Rewrites `src` into t: named parameters outside literals, quoted identifiers and comments become ?N. */
static int compile_sql(loading *L, const yaml_node_t *at, const sql_handler *h, const char *src, sql_text *t) {
  memset(t, 0, sizeof *t);
  size_t cap = strlen(src) * 2 + 64, n = 0;
  char *out = malloc(cap);
  if (!out) return fail_at(L, at, "out of memory");
  for (const char *s = src; *s;) {
    char c = *s;
    if (c == '\'' || c == '"' || c == '`' || c == '[') { /* literal or quoted identifier: copied as is */
      char close = c == '[' ? ']' : c;
      out[n++] = *s++;
      while (*s && *s != close) out[n++] = *s++;
      if (*s) out[n++] = *s++;
    } else if (c == '-' && s[1] == '-') {
      while (*s && *s != '\n') out[n++] = *s++;
    } else if (c == '/' && s[1] == '*') {
      const char *e = strstr(s + 2, "*/");
      size_t k = e ? (size_t)(e + 2 - s) : strlen(s);
      memcpy(out + n, s, k);
      n += k;
      s += k;
    } else if (c == ':' && name_char(s[1], 1)) {
      const char *b = ++s;
      while (name_char(*s, 0)) s++;
      while (s > b && s[-1] == '.') s--; /* a trailing dot is punctuation */
      char name[256];
      snprintf(name, sizeof name, "%.*s", (int)(s - b), b);
      param p;
      if (param_parse(L, at, h, name, &p) != 0) {
        free(out);
        sql_text_free(t);
        return -1;
      }
      int idx = -1;
      for (int i = 0; i < t->n_params && idx < 0; i++)
        if (same_param(&t->params[i], &p)) idx = i;
      if (idx >= 0) {
        param_free(&p);
      } else {
        param *g = realloc(t->params, (size_t)(t->n_params + 1) * sizeof *g);
        if (!g) {
          param_free(&p);
          free(out);
          sql_text_free(t);
          return fail_at(L, at, "out of memory");
        }
        t->params = g;
        t->params[t->n_params] = p;
        idx = t->n_params++;
      }
      n += (size_t)snprintf(out + n, cap - n, "?%d", idx + 1);
    } else {
      out[n++] = *s++;
    }
  }
  out[n] = '\0';
  t->sql = out;
  return 0;
}

/* Splits a block of statements at the semicolons SQLite itself would end them at. */
static int split_statements(loading *L, const yaml_node_t *at, const char *block, char ***out, int *n_out) {
  *out = NULL;
  *n_out = 0;
  size_t len = strlen(block);
  char *buf = malloc(len + 2);
  if (!buf) return fail_at(L, at, "out of memory");
  size_t start = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i < len && block[i] != ';') continue;
    size_t k = i - start + (i < len);
    memcpy(buf, block + start, k);
    buf[k] = '\0';
    if (i < len && !sqlite3_complete(buf)) continue; /* a ';' inside a literal or a trigger body */
    const char *p = buf;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ';') p++;
    if (*p) {
      char **g = realloc(*out, (size_t)(*n_out + 1) * sizeof *g);
      if (!g || !(g[*n_out] = xstrdup(buf))) {
        free(g ? g : *out);
        free(buf);
        return fail_at(L, at, "out of memory");
      }
      *out = g;
      (*n_out)++;
    }
    start = i + 1;
  }
  free(buf);
  return 0;
}

/* ---- the file ---- */

static int parse_versions(loading *L, const yaml_node_t *n, int *lo, int *hi) {
  const char *s = scalar(n);
  if (!s) return fail_at(L, n, "versions: expected N or A..B");
  const char *dots = strstr(s, "..");
  char a[32];
  if (!dots) {
    if (parse_int(s, lo) != 0) return fail_at(L, n, "versions: '%s' is not a version >= 1", s);
    *hi = *lo;
    return 0;
  }
  snprintf(a, sizeof a, "%.*s", (int)(dots - s), s);
  if (parse_int(a, lo) != 0 || parse_int(dots + 2, hi) != 0 || *hi < *lo)
    return fail_at(L, n, "versions: '%s' is not a range A..B of versions >= 1", s);
  return 0;
}

static int parse_checks(loading *L, const yaml_node_t *seq, check **out, int *n_out, char ***conds, int *n_conds) {
  if (seq->type != YAML_SEQUENCE_NODE)
    return fail_at(L, seq, "checks: expected a list of {invalid|reject: message, unless: condition}");
  for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
    yaml_node_t *c = node(L, *it);
    if (!c || c->type != YAML_MAPPING_NODE) return fail_at(L, c, "a check is {invalid|reject: message, unless: SQL}");
    const char *msg = NULL, *cond = NULL;
    int reject = -1;
    for (yaml_node_pair_t *p = c->data.mapping.pairs.start; p < c->data.mapping.pairs.top; p++) {
      const char *k = scalar(node(L, p->key));
      const char *v = scalar(node(L, p->value));
      if (!k || !v) return fail_at(L, node(L, p->key), "a check's keys and values are text");
      if (strcmp(k, "invalid") == 0 || strcmp(k, "reject") == 0) {
        if (reject >= 0) return fail_at(L, node(L, p->key), "a check is either invalid or reject, not both");
        reject = k[0] == 'r';
        msg = v;
      } else if (strcmp(k, "unless") == 0) {
        cond = v;
      } else {
        return fail_at(L, node(L, p->key), "unknown key '%s' in a check (invalid, reject, unless)", k);
      }
    }
    if (reject < 0 || !cond) return fail_at(L, c, "a check needs invalid: or reject: (the message) and unless:");
    check *g = realloc(*out, (size_t)(*n_out + 1) * sizeof *g);
    char **gc = g ? realloc(*conds, (size_t)(*n_conds + 1) * sizeof *gc) : NULL;
    if (g) *out = g;
    if (gc) *conds = gc;
    if (!g || !gc) return fail_at(L, c, "out of memory");
    g[*n_out] = (check){.reject = reject, .message = xstrdup(msg), .line = (int)c->start_mark.line + 1};
    gc[*n_conds] = xstrdup(cond);
    if (!g[*n_out].message || !gc[*n_conds]) return fail_at(L, c, "out of memory");
    (*n_out)++;
    (*n_conds)++;
  }
  return 0;
}

/* "SELECT CASE WHEN (c1) THEN 1 ELSE 0 END, ..." */
static char *checks_select(char *const *conds, int n) {
  size_t len = 32;
  for (int i = 0; i < n; i++) len += strlen(conds[i]) + 40;
  char *s = malloc(len);
  if (!s) return NULL;
  size_t k = (size_t)snprintf(s, len, "SELECT ");
  for (int i = 0; i < n; i++)
    k += (size_t)snprintf(s + k, len - k, "%sCASE WHEN (%s) THEN 1 ELSE 0 END", i ? ", " : "", conds[i]);
  return s;
}

static int parse_upcasts(loading *L, sql_handler *h, event_spec *e, const yaml_node_t *map) {
  if (map->type != YAML_MAPPING_NODE)
    return fail_at(L, map, "upcast: expected {<from version>: {<data field>: <SQL expression>, ...}}");
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *kn = node(L, p->key), *vn = node(L, p->value);
    int from;
    if (parse_int(scalar(kn), &from) != 0 || from < e->min_version || from >= e->max_version)
      return fail_at(L, kn, "upcast: '%s' is not an older version of %s (%d..%d)", scalar(kn) ? scalar(kn) : "?",
                     e->type, e->min_version, e->max_version - 1);
    if (!vn || vn->type != YAML_MAPPING_NODE) return fail_at(L, vn, "upcast %d: expected {<data field>: <SQL>}", from);
    upcast_step *g = realloc(e->upcasts, (size_t)(e->n_upcasts + 1) * sizeof *g);
    if (!g) return fail_at(L, vn, "out of memory");
    e->upcasts = g;
    upcast_step *u = &e->upcasts[e->n_upcasts++];
    memset(u, 0, sizeof *u);
    u->from = from;
    size_t len = 16;
    for (yaml_node_pair_t *q = vn->data.mapping.pairs.start; q < vn->data.mapping.pairs.top; q++) {
      const char *f = scalar(node(L, q->key)), *x = scalar(node(L, q->value));
      if (!f || !x || strncmp(f, "data.", 5) != 0 || !f[5])
        return fail_at(L, node(L, q->key), "upcast %d: each key is data.<field> and each value an SQL expression",
                       from);
      len += strlen(x) + 8;
    }
    char *sel = malloc(len);
    if (!sel) return fail_at(L, vn, "out of memory");
    size_t k = (size_t)snprintf(sel, len, "SELECT ");
    for (yaml_node_pair_t *q = vn->data.mapping.pairs.start; q < vn->data.mapping.pairs.top; q++) {
      char **gf = realloc(u->fields, (size_t)(u->n_fields + 1) * sizeof *gf);
      if (!gf) {
        free(sel);
        return fail_at(L, vn, "out of memory");
      }
      u->fields = gf;
      u->fields[u->n_fields++] = xstrdup(scalar(node(L, q->key)) + 5);
      k += (size_t)snprintf(sel + k, len - k, "%s(%s)", u->n_fields > 1 ? ", " : "", scalar(node(L, q->value)));
    }
    int rc = compile_sql(L, vn, h, sel, &u->select);
    free(sel);
    if (rc != 0) return -1;
  }
  return 0;
}

/* emit: [{topic: T, key: SQL, value: SQL}, ...] -> one SELECT of key and value columns, evaluated after `run`. */
static int parse_emits(loading *L, sql_handler *h, event_spec *e, const yaml_node_t *seq) {
  if (seq->type != YAML_SEQUENCE_NODE) return fail_at(L, seq, "emit: expected a list of {topic, key, value}");
  size_t len = 16;
  for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
    yaml_node_t *m = node(L, *it);
    if (!m || m->type != YAML_MAPPING_NODE) return fail_at(L, m, "an emit is {topic: name, key: SQL, value: SQL}");
    const char *topic = NULL, *key = NULL, *value = NULL;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
      const char *k = scalar(node(L, p->key)), *v = scalar(node(L, p->value));
      if (!k || !v) return fail_at(L, node(L, p->key), "an emit's keys and values are text");
      if (strcmp(k, "topic") == 0) topic = v;
      else if (strcmp(k, "key") == 0) key = v;
      else if (strcmp(k, "value") == 0) value = v;
      else return fail_at(L, node(L, p->key), "unknown key '%s' in an emit (topic, key, value)", k);
    }
    if (!topic || !*topic || !value) return fail_at(L, m, "an emit needs topic: and value: (key: is optional)");
    char **g = realloc(e->emit_topics, (size_t)(e->n_emits + 1) * sizeof *g);
    if (!g) return fail_at(L, m, "out of memory");
    e->emit_topics = g;
    if (!(e->emit_topics[e->n_emits++] = xstrdup(topic))) return fail_at(L, m, "out of memory");
    len += strlen(value) + (key ? strlen(key) : 4) + 16;
  }
  char *sel = malloc(len);
  if (!sel) return fail_at(L, seq, "out of memory");
  size_t k = (size_t)snprintf(sel, len, "SELECT ");
  int i = 0;
  for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++, i++) {
    yaml_node_t *m = node(L, *it);
    const char *key = "NULL", *value = "NULL";
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
      const char *kk = scalar(node(L, p->key));
      if (strcmp(kk, "key") == 0) key = scalar(node(L, p->value));
      if (strcmp(kk, "value") == 0) value = scalar(node(L, p->value));
    }
    k += (size_t)snprintf(sel + k, len - k, "%s(%s), (%s)", i ? ", " : "", key, value);
  }
  int rc = compile_sql(L, seq, h, sel, &e->emit_select);
  free(sel);
  return rc;
}

static int parse_event(loading *L, sql_handler *h, event_spec *e, const char *type, const yaml_node_t *spec,
                       char *const *global_conds, int n_global, const check *global_checks) {
  memset(e, 0, sizeof *e);
  e->type = xstrdup(type);
  e->min_version = e->max_version = 1;
  if (!e->type) return fail_at(L, spec, "out of memory");
  if (!spec || spec->type != YAML_MAPPING_NODE)
    return fail_at(L, spec, "event %s: expected a mapping (versions, upcast, checks, run)", type);
  const yaml_node_t *upcast = NULL, *checks = NULL, *run = NULL, *emit = NULL;
  for (yaml_node_pair_t *p = spec->data.mapping.pairs.start; p < spec->data.mapping.pairs.top; p++) {
    const char *k = scalar(node(L, p->key));
    yaml_node_t *v = node(L, p->value);
    if (!k) return fail_at(L, node(L, p->key), "event %s: keys are text", type);
    if (strcmp(k, "versions") == 0) {
      if (parse_versions(L, v, &e->min_version, &e->max_version) != 0) return -1;
    } else if (strcmp(k, "upcast") == 0) {
      upcast = v;
    } else if (strcmp(k, "checks") == 0) {
      checks = v;
    } else if (strcmp(k, "run") == 0) {
      run = v;
    } else if (strcmp(k, "emit") == 0) {
      emit = v;
    } else {
      return fail_at(L, node(L, p->key), "event %s: unknown key '%s' (versions, upcast, checks, run, emit)", type, k);
    }
  }
  if (upcast && parse_upcasts(L, h, e, upcast) != 0) return -1;
  /* The checks: the file's global ones, then the event's own, as one SELECT. */
  char **conds = NULL;
  int n_conds = 0;
  for (int i = 0; i < n_global; i++) {
    check *g = realloc(e->checks, (size_t)(e->n_checks + 1) * sizeof *g);
    char **gc = g ? realloc(conds, (size_t)(n_conds + 1) * sizeof *gc) : NULL;
    if (g) e->checks = g;
    if (gc) conds = gc;
    if (!g || !gc) return fail_at(L, spec, "out of memory");
    e->checks[e->n_checks] = global_checks[i];
    e->checks[e->n_checks].message = xstrdup(global_checks[i].message);
    conds[n_conds] = xstrdup(global_conds[i]);
    e->n_checks++;
    n_conds++;
  }
  int rc = checks ? parse_checks(L, checks, &e->checks, &e->n_checks, &conds, &n_conds) : 0;
  if (rc == 0 && n_conds > 0) {
    char *sel = checks_select(conds, n_conds);
    rc = sel ? compile_sql(L, checks ? checks : spec, h, sel, &e->check_select) : fail_at(L, spec, "out of memory");
    free(sel);
  }
  for (int i = 0; i < n_conds; i++) free(conds[i]);
  free(conds);
  if (rc != 0) return -1;
  if (!run) return fail_at(L, spec, "event %s: no run: (the SQL statements that apply it)", type);
  const char *block = scalar(run);
  if (!block) return fail_at(L, run, "event %s: run: expected SQL text", type);
  char **stmts;
  int n;
  if (split_statements(L, run, block, &stmts, &n) != 0) return -1;
  if (n == 0) rc = fail_at(L, run, "event %s: run: holds no statement", type);
  e->run = n ? calloc((size_t)n, sizeof *e->run) : NULL;
  if (n && !e->run) rc = fail_at(L, run, "out of memory");
  for (int i = 0; i < n; i++) {
    if (rc == 0 && compile_sql(L, run, h, stmts[i], &e->run[e->n_run]) == 0) e->n_run++;
    else rc = -1;
    free(stmts[i]);
  }
  free(stmts);
  if (rc == 0 && emit) rc = parse_emits(L, h, e, emit);
  return rc;
}

static void handler_free(sql_handler *h) {
  if (!h) return;
  for (int v = 1; v <= h->schema_version && h->migrations; v++) free(h->migrations[v]);
  free(h->migrations);
  for (int i = 0; i < h->n_options; i++) {
    free(h->options[i].key);
    free(h->options[i].value);
  }
  free(h->options);
  for (int i = 0; i < h->n_events; i++) {
    event_spec *e = &h->events[i];
    free(e->type);
    for (int u = 0; u < e->n_upcasts; u++) {
      for (int f = 0; f < e->upcasts[u].n_fields; f++) free(e->upcasts[u].fields[f]);
      free(e->upcasts[u].fields);
      sql_text_free(&e->upcasts[u].select);
    }
    free(e->upcasts);
    for (int c = 0; c < e->n_checks; c++) free(e->checks[c].message);
    free(e->checks);
    sql_text_free(&e->check_select);
    for (int r = 0; r < e->n_run; r++) sql_text_free(&e->run[r]);
    free(e->run);
    for (int m = 0; m < e->n_emits; m++) free(e->emit_topics[m]);
    free(e->emit_topics);
    sql_text_free(&e->emit_select);
  }
  free(h->events);
  free(h->types);
  free(h->name);
  free(h->version);
  free(h->path);
  free(h);
}

static int parse_migrations(loading *L, sql_handler *h, const yaml_node_t *map) {
  if (map->type != YAML_MAPPING_NODE) return fail_at(L, map, "migrations: expected {1: SQL, 2: SQL, ...}");
  int max = 0;
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    int v;
    if (parse_int(scalar(node(L, p->key)), &v) != 0 || !scalar(node(L, p->value)))
      return fail_at(L, node(L, p->key), "migrations: each key is a version >= 1 and each value SQL text");
    if (v > max) max = v;
  }
  if (max == 0) return fail_at(L, map, "migrations: at least version 1 (the tables' creation)");
  h->migrations = calloc((size_t)max + 1, sizeof *h->migrations);
  if (!h->migrations) return fail_at(L, map, "out of memory");
  h->schema_version = max;
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    int v = 0;
    parse_int(scalar(node(L, p->key)), &v); /* checked above */
    if (h->migrations[v]) return fail_at(L, node(L, p->key), "migrations: version %d twice", v);
    if (!(h->migrations[v] = xstrdup(scalar(node(L, p->value))))) return fail_at(L, map, "out of memory");
  }
  for (int v = 1; v <= max; v++)
    if (!h->migrations[v]) return fail_at(L, map, "migrations: version %d is missing (versions run 1..%d)", v, max);
  return 0;
}

static int parse_options(loading *L, sql_handler *h, const yaml_node_t *map, const esr_handler_option *given) {
  if (map && map->type != YAML_MAPPING_NODE) return fail_at(L, map, "options: expected {<key>: <default>, ...}");
  for (yaml_node_pair_t *p = map ? map->data.mapping.pairs.start : NULL; map && p < map->data.mapping.pairs.top; p++) {
    const char *k = scalar(node(L, p->key)), *v = scalar(node(L, p->value));
    if (!k || !v || !*k || strspn(k, "abcdefghijklmnopqrstuvwxyz0123456789.") != strlen(k))
      return fail_at(L, node(L, p->key), "options: each key is [a-z0-9.]+ with a default value");
    option_spec *g = realloc(h->options, (size_t)(h->n_options + 1) * sizeof *g);
    if (!g) return fail_at(L, map, "out of memory");
    h->options = g;
    h->options[h->n_options].key = xstrdup(k);
    h->options[h->n_options].value = xstrdup(v);
    h->n_options++;
  }
  for (const esr_handler_option *o = given; o && o->key; o++) {
    int found = 0;
    for (int i = 0; i < h->n_options && !found; i++) {
      if (strcmp(h->options[i].key, o->key) != 0) continue;
      found = 1;
      free(h->options[i].value);
      h->options[i].value = xstrdup(o->value);
    }
    if (!found) {
      esr_error_set(L->err, ESR_E_PLUGIN, 0, "handler %s: unknown option '%s' (the file declares %d option(s))",
                    L->path, o->key, h->n_options);
      L->failed = 1;
      return -1;
    }
  }
  return 0;
}

static sql_handler *parse_file(loading *L, const esr_handler_option *given) {
  sql_handler *h = calloc(1, sizeof *h);
  if (!h) {
    fail_at(L, NULL, "out of memory");
    return NULL;
  }
  yaml_node_t *root = yaml_document_get_root_node(L->doc);
  if (!root || root->type != YAML_MAPPING_NODE) {
    fail_at(L, root, "expected a mapping with name, version, migrations and events");
    goto fail;
  }
  const yaml_node_t *migrations = NULL, *events = NULL, *checks = NULL, *options = NULL;
  for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
    const char *k = scalar(node(L, p->key));
    yaml_node_t *v = node(L, p->value);
    if (!k) {
      fail_at(L, node(L, p->key), "keys are text");
      goto fail;
    }
    if (strcmp(k, "name") == 0 && scalar(v)) {
      h->name = xstrdup(scalar(v));
    } else if (strcmp(k, "version") == 0 && scalar(v)) {
      h->version = xstrdup(scalar(v));
    } else if (strcmp(k, "migrations") == 0) {
      migrations = v;
    } else if (strcmp(k, "events") == 0) {
      events = v;
    } else if (strcmp(k, "checks") == 0) {
      checks = v;
    } else if (strcmp(k, "options") == 0) {
      options = v;
    } else {
      fail_at(L, node(L, p->key), "unknown key '%s' (name, version, options, migrations, checks, events)", k);
      goto fail;
    }
  }
  if (!h->name || !h->version) {
    fail_at(L, root, "name: and version: are required");
    goto fail;
  }
  if (!migrations) {
    fail_at(L, root, "migrations: is required (version 1 creates the tables)");
    goto fail;
  }
  if (parse_migrations(L, h, migrations) != 0 || parse_options(L, h, options, given) != 0) goto fail;
  check *gchecks = NULL;
  char **gconds = NULL;
  int n_g = 0, n_gc = 0;
  if (checks && parse_checks(L, checks, &gchecks, &n_g, &gconds, &n_gc) != 0) goto fail_globals;
  if (!events || events->type != YAML_MAPPING_NODE || events->data.mapping.pairs.top == events->data.mapping.pairs.start) {
    fail_at(L, events ? events : root, "events: expected {<event type>: {versions, upcast, checks, run}, ...}");
    goto fail_globals;
  }
  int n = (int)(events->data.mapping.pairs.top - events->data.mapping.pairs.start);
  h->events = calloc((size_t)n, sizeof *h->events);
  h->types = calloc((size_t)n + 1, sizeof *h->types);
  if (!h->events || !h->types) {
    fail_at(L, events, "out of memory");
    goto fail_globals;
  }
  for (yaml_node_pair_t *p = events->data.mapping.pairs.start; p < events->data.mapping.pairs.top; p++) {
    const char *type = scalar(node(L, p->key));
    if (!type || !*type || strchr(type, '*')) {
      fail_at(L, node(L, p->key), "events: each key is an exact event type");
      goto fail_globals;
    }
    event_spec *e = &h->events[h->n_events];
    int rc = parse_event(L, h, e, type, node(L, p->value), gconds, n_gc, gchecks);
    h->n_events++; /* freed with the handler, whole or partial */
    if (rc != 0) goto fail_globals;
    h->types[h->n_events - 1] = (esr_event_type){e->type, e->min_version, e->max_version};
  }
  for (int i = 0; i < n_g; i++) free(gchecks[i].message);
  for (int i = 0; i < n_gc; i++) free(gconds[i]);
  free(gchecks);
  free(gconds);
  return h;
fail_globals:
  for (int i = 0; i < n_g; i++) free(gchecks[i].message);
  for (int i = 0; i < n_gc; i++) free(gconds[i]);
  free(gchecks);
  free(gconds);
fail:
  handler_free(h);
  return NULL;
}

/* ---- run time ---- */

static const cJSON *data_at(const cJSON *data, const param *p) {
  const cJSON *v = data;
  for (int i = 0; i < p->n_path && v; i++) v = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, p->path[i]) : NULL;
  return v;
}

static void bind_json(sqlite3_stmt *st, int i, const cJSON *v) {
  if (!v || cJSON_IsNull(v)) {
    sqlite3_bind_null(st, i);
  } else if (cJSON_IsString(v)) {
    sqlite3_bind_text(st, i, v->valuestring, -1, SQLITE_STATIC);
  } else if (cJSON_IsNumber(v)) {
    double d = v->valuedouble;
    if (isfinite(d) && d == floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0)
      sqlite3_bind_int64(st, i, (int64_t)d);
    else if (isfinite(d))
      sqlite3_bind_double(st, i, d);
    else
      sqlite3_bind_null(st, i); /* an inexact literal (esr/envelope.h) */
  } else { /* booleans, objects, arrays: their JSON text as a BLOB, never mistaken for a string */
    char *text = cJSON_PrintUnformatted(v);
    if (text)
      sqlite3_bind_blob(st, i, text, (int)strlen(text), SQLITE_TRANSIENT);
    else
      sqlite3_bind_null(st, i);
    free(text);
  }
}

typedef struct values { /* what parameters bind to: an event, or an envelope being upcast */
  const esr_event *ev;
  const cJSON *data;
  const char *type, *time, *id;
  int version;
} values;

static void bind_all(sqlite3_stmt *st, const sql_text *t, const values *v) {
  for (int i = 0; i < t->n_params; i++) {
    const param *p = &t->params[i];
    int k = i + 1;
    switch (p->kind) {
    case P_KEY:
      if (v->ev && v->ev->key)
        sqlite3_bind_text(st, k, v->ev->key, (int)v->ev->key_len, SQLITE_STATIC);
      else
        sqlite3_bind_null(st, k);
      break;
    case P_TIME: v->time ? sqlite3_bind_text(st, k, v->time, -1, SQLITE_STATIC) : sqlite3_bind_null(st, k); break;
    case P_ID: v->id ? sqlite3_bind_text(st, k, v->id, -1, SQLITE_STATIC) : sqlite3_bind_null(st, k); break;
    case P_TYPE: sqlite3_bind_text(st, k, v->type, -1, SQLITE_STATIC); break;
    case P_VERSION: sqlite3_bind_int(st, k, v->version); break;
    case P_OFFSET: v->ev ? sqlite3_bind_int64(st, k, v->ev->offset) : sqlite3_bind_null(st, k); break;
    case P_PARTITION: v->ev ? sqlite3_bind_int(st, k, v->ev->partition) : sqlite3_bind_null(st, k); break;
    case P_TOPIC: v->ev ? sqlite3_bind_text(st, k, v->ev->topic, -1, SQLITE_STATIC) : sqlite3_bind_null(st, k); break;
    case P_DATA: bind_json(st, k, data_at(v->data, p)); break;
    case P_OPTION: sqlite3_bind_text(st, k, p->path[0], -1, SQLITE_STATIC); break;
    }
  }
}

/* A message with {name} replaced by the value it names. */
static void render(char *out, size_t cap, const char *tmpl, const values *v, const sql_handler *h) {
  size_t n = 0;
  for (const char *s = tmpl; *s && n + 1 < cap;) {
    const char *close = *s == '{' ? strchr(s, '}') : NULL;
    if (!close) {
      out[n++] = *s++;
      continue;
    }
    char name[200], val[300] = "";
    snprintf(name, sizeof name, "%.*s", (int)(close - s - 1), s + 1);
    if (strcmp(name, "key") == 0 && v->ev && v->ev->key)
      snprintf(val, sizeof val, "%.*s", (int)(v->ev->key_len > 200 ? 200 : v->ev->key_len), v->ev->key);
    else if (strcmp(name, "time") == 0 && v->time)
      snprintf(val, sizeof val, "%s", v->time);
    else if (strcmp(name, "type") == 0)
      snprintf(val, sizeof val, "%s", v->type);
    else if (strncmp(name, "data.", 5) == 0) {
      param p = {.kind = P_DATA};
      char buf[200], *save = NULL, *tok;
      char *path[16];
      snprintf(buf, sizeof buf, "%s", name + 5);
      for (tok = strtok_r(buf, ".", &save); tok && p.n_path < 16; tok = strtok_r(NULL, ".", &save))
        path[p.n_path++] = tok;
      p.path = path;
      const cJSON *j = data_at(v->data, &p);
      if (cJSON_IsString(j))
        snprintf(val, sizeof val, "%s", j->valuestring);
      else if (j) {
        char *t = cJSON_PrintUnformatted(j);
        snprintf(val, sizeof val, "%s", t ? t : "?");
        free(t);
      } else
        snprintf(val, sizeof val, "(none)");
    } else if (strncmp(name, "option.", 7) == 0) {
      for (int i = 0; i < h->n_options; i++)
        if (strcmp(h->options[i].key, name + 7) == 0) snprintf(val, sizeof val, "%s", h->options[i].value);
    } else {
      snprintf(val, sizeof val, "{%s}", name);
    }
    n += (size_t)snprintf(out + n, cap - n, "%s", val);
    if (n >= cap) n = cap - 1;
    s = close + 1;
  }
  out[n] = '\0';
}

static const event_spec *spec_of(const sql_handler *h, const char *type) {
  for (int i = 0; i < h->n_events; i++)
    if (strcmp(h->events[i].type, type) == 0) return &h->events[i];
  return NULL;
}

static int sql_failed(const sql_handler *h, esr_ctx *ctx, const char *what) {
  h->host->error(ctx, "%s: %s", what, sqlite3_errmsg(h->host->db(ctx)));
  return ESR_FATAL;
}

static int cb_migrate(esr_ctx *ctx, int from_version) {
  const sql_handler *h = esr_host_api_table()->user(ctx);
  for (int v = from_version + 1; v <= h->schema_version; v++) {
    char *msg = NULL;
    if (sqlite3_exec(h->host->db(ctx), h->migrations[v], NULL, NULL, &msg) != SQLITE_OK) {
      h->host->error(ctx, "migration %d: %s", v, msg ? msg : "failed");
      sqlite3_free(msg);
      return ESR_FATAL;
    }
  }
  return ESR_OK;
}

/* Sets data.<path> (dotted) to the column's value, creating objects on the way. */
static int set_field(cJSON *data, const char *path, sqlite3_stmt *st, int col) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", path);
  cJSON *obj = data;
  char *save = NULL, *tok = strtok_r(buf, ".", &save), *next;
  for (; (next = strtok_r(NULL, ".", &save)); tok = next) {
    cJSON *child = cJSON_GetObjectItemCaseSensitive(obj, tok);
    if (!cJSON_IsObject(child)) {
      cJSON_DeleteItemFromObjectCaseSensitive(obj, tok);
      if (!(child = cJSON_AddObjectToObject(obj, tok))) return -1;
    }
    obj = child;
  }
  cJSON *v;
  switch (sqlite3_column_type(st, col)) {
  case SQLITE_INTEGER: v = cJSON_CreateNumber((double)sqlite3_column_int64(st, col)); break;
  case SQLITE_FLOAT: v = cJSON_CreateNumber(sqlite3_column_double(st, col)); break;
  case SQLITE_NULL: v = cJSON_CreateNull(); break;
  default: v = cJSON_CreateString((const char *)sqlite3_column_text(st, col)); break;
  }
  if (!v) return -1;
  cJSON_DeleteItemFromObjectCaseSensitive(obj, tok);
  cJSON_AddItemToObject(obj, tok, v);
  return 0;
}

static int cb_upcast(esr_ctx *ctx, cJSON *envelope, int from_version) {
  const sql_handler *h = esr_host_api_table()->user(ctx);
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(envelope, "type");
  const event_spec *e = cJSON_IsString(type) ? spec_of(h, type->valuestring) : NULL;
  cJSON *data = cJSON_GetObjectItemCaseSensitive(envelope, "data");
  if (!e || !cJSON_IsObject(data)) {
    h->host->error(ctx, "cannot upcast this envelope");
    return ESR_INVALID;
  }
  for (int v = from_version; v < e->max_version; v++) {
    for (int u = 0; u < e->n_upcasts; u++) {
      const upcast_step *step = &e->upcasts[u];
      if (step->from != v) continue;
      sqlite3_stmt *st = h->host->stmt(ctx, step->select.sql);
      if (!st) return ESR_FATAL;
      const cJSON *tm = cJSON_GetObjectItemCaseSensitive(envelope, "time"),
                  *id = cJSON_GetObjectItemCaseSensitive(envelope, "id");
      values vals = {.data = data, .type = e->type, .version = v,
                     .time = cJSON_IsString(tm) ? tm->valuestring : NULL,
                     .id = cJSON_IsString(id) ? id->valuestring : NULL};
      bind_all(st, &step->select, &vals);
      if (sqlite3_step(st) != SQLITE_ROW) return sql_failed(h, ctx, "upcast");
      for (int f = 0; f < step->n_fields; f++)
        if (set_field(data, step->fields[f], st, f) != 0) return ESR_FATAL;
      sqlite3_reset(st);
    }
  }
  cJSON_DeleteItemFromObjectCaseSensitive(envelope, "version");
  return cJSON_AddNumberToObject(envelope, "version", e->max_version) ? ESR_OK : ESR_FATAL;
}

static int cb_apply(esr_ctx *ctx, const esr_event *ev) {
  const sql_handler *h = esr_host_api_table()->user(ctx);
  const event_spec *e = spec_of(h, ev->type);
  if (!e) {
    h->host->error(ctx, "event type %s is not declared in %s", ev->type, h->path);
    return ESR_FATAL; /* the registry routes only declared types here */
  }
  values vals = {.ev = ev, .data = ev->data, .type = ev->type, .time = ev->time, .id = ev->id, .version = ev->version};
  if (e->n_checks > 0) {
    sqlite3_stmt *st = h->host->stmt(ctx, e->check_select.sql);
    if (!st) return ESR_FATAL;
    bind_all(st, &e->check_select, &vals);
    if (sqlite3_step(st) != SQLITE_ROW) return sql_failed(h, ctx, "checks");
    for (int c = 0; c < e->n_checks; c++) {
      if (sqlite3_column_int(st, c)) continue;
      char msg[512];
      render(msg, sizeof msg, e->checks[c].message, &vals, h);
      sqlite3_reset(st);
      h->host->error(ctx, "%s", msg);
      return e->checks[c].reject ? ESR_REJECT : ESR_INVALID;
    }
    sqlite3_reset(st);
  }
  for (int r = 0; r < e->n_run; r++) {
    sqlite3_stmt *st = h->host->stmt(ctx, e->run[r].sql);
    if (!st) return ESR_FATAL;
    bind_all(st, &e->run[r], &vals);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    }
    if (rc != SQLITE_DONE) return sql_failed(h, ctx, "run");
  }
  if (e->n_emits > 0) {
    sqlite3_stmt *st = h->host->stmt(ctx, e->emit_select.sql);
    if (!st) return ESR_FATAL;
    bind_all(st, &e->emit_select, &vals);
    if (sqlite3_step(st) != SQLITE_ROW) return sql_failed(h, ctx, "emit");
    for (int m = 0; m < e->n_emits; m++) {
      const void *key = sqlite3_column_type(st, 2 * m) == SQLITE_NULL ? NULL : sqlite3_column_blob(st, 2 * m);
      size_t key_len = key ? (size_t)sqlite3_column_bytes(st, 2 * m) : 0;
      const void *value = sqlite3_column_blob(st, 2 * m + 1);
      size_t value_len = (size_t)sqlite3_column_bytes(st, 2 * m + 1);
      if (sqlite3_column_type(st, 2 * m + 1) == SQLITE_NULL) {
        sqlite3_reset(st);
        h->host->error(ctx, "emit %d to %s: the value is NULL", m + 1, e->emit_topics[m]);
        return ESR_FATAL;
      }
      if (h->host->emit(ctx, e->emit_topics[m], key, key_len, value, value_len) != 0) {
        sqlite3_reset(st);
        return ESR_FATAL; /* the host set the message */
      }
    }
    sqlite3_reset(st);
  }
  return ESR_OK;
}

static void cb_fini(void *user) { handler_free(user); }

/* ---- loading ---- */

int esr_sqlhandler_is_file(const char *path) {
  size_t n = strlen(path);
  return (n > 5 && strcmp(path + n - 5, ".yaml") == 0) || (n > 4 && strcmp(path + n - 4, ".yml") == 0);
}

esr_plugin *esr_sqlhandler_load(const char *path, const esr_host_api *host, const esr_handler_option *options,
                                esr_error *err) {
  esr_plugin *p = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) {
    esr_error_set(err, ESR_E_PLUGIN, 0, "handler %s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  yaml_parser_t parser;
  yaml_document_t doc;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_file(&parser, f);
  int loaded = yaml_parser_load(&parser, &doc);
  if (!loaded) {
    esr_error_set(err, ESR_E_PLUGIN, 0, "handler %s:%lu: not valid YAML: %s", path,
                  (unsigned long)parser.problem_mark.line + 1, parser.problem ? parser.problem : "parse error");
    yaml_parser_delete(&parser);
    fclose(f);
    return NULL;
  }
  loading L = {.path = path, .doc = &doc, .err = err};
  sql_handler *h = parse_file(&L, options);
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  fclose(f);
  if (!h) return NULL;
  h->host = host;
  if (!(h->path = xstrdup(path)) || !(p = calloc(1, sizeof *p)) || !(p->path = xstrdup(path))) {
    esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    free(p);
    handler_free(h);
    return NULL;
  }
  esr_handler *out = &p->handler;
  out->struct_size = sizeof *out;
  out->abi_version = ESR_HANDLER_ABI;
  out->name = h->name;
  out->version = h->version;
  out->schema_version = h->schema_version;
  out->types = h->types;
  out->user = h;
  out->migrate = cb_migrate;
  out->apply = cb_apply;
  out->upcast = cb_upcast;
  out->fini = cb_fini;
  return p;
}
