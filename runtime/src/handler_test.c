/* handler_test.c — `esr handler test` (handler_test.h): an events file applied twice through esr_partition_apply into
 * temporary state directories, the two state digests compared, then the expectations checked against the first. */
#include "handler_test.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "partition.h"
#include "registry.h"
#include "schema.h"
#include "statedigest.h"

#define MAX_PARTS 64

typedef struct tev { /* one message of the events file */
  int32_t partition;
  int64_t offset;
  char *key; /* NULL: no key */
  size_t key_len;
  char *value;
  size_t value_len;
  int line;
} tev;

typedef struct tevs {
  tev *v;
  size_t n, cap;
} tevs;

static void tevs_free(tevs *t) {
  for (size_t i = 0; i < t->n; i++) {
    free(t->v[i].key);
    free(t->v[i].value);
  }
  free(t->v);
}

static char *read_file(const char *path, size_t *len, esr_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    esr_error_set(err, ESR_E_CONFIG, errno, "%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  size_t cap = 4096, n = 0, got;
  char *buf = malloc(cap + 1);
  while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) {
      char *g = realloc(buf, cap * 2 + 1);
      if (!g) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = g;
      cap *= 2;
    }
  }
  fclose(f);
  if (!buf) {
    esr_error_set(err, ESR_E_NOMEM, 0, "out of memory reading %s", path);
    return NULL;
  }
  buf[n] = '\0';
  if (len) *len = n;
  return buf;
}

static const char *skip_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
  return p;
}

/* One line of the events file into t. Walks the object's members with cJSON one value at a time, so that the span of
 * "value" is known and taken byte for byte. */
static esr_code parse_event_line(const char *path, int line, const char *s, const char *end, int64_t *next, tev *t,
                                 esr_error *err) {
  memset(t, 0, sizeof *t);
  t->line = line;
  t->offset = -1;
  const char *p = skip_ws(s, end);
  const char *value = NULL, *raw_end = NULL;
  int have_raw = 0;
  if (p >= end || *p != '{') goto bad;
  p = skip_ws(p + 1, end);
  while (p < end && *p != '}') {
    const char *after = NULL;
    cJSON *name = cJSON_ParseWithLengthOpts(p, (size_t)(end - p), &after, 0);
    if (!cJSON_IsString(name)) {
      cJSON_Delete(name);
      goto bad;
    }
    p = skip_ws(after, end);
    if (p >= end || *p != ':') {
      cJSON_Delete(name);
      goto bad;
    }
    p = skip_ws(p + 1, end);
    cJSON *v = cJSON_ParseWithLengthOpts(p, (size_t)(end - p), &after, 0);
    if (!v) {
      cJSON_Delete(name);
      goto bad;
    }
    const char *k = name->valuestring;
    if (strcmp(k, "value") == 0) {
      value = p;
      raw_end = after;
    } else if (strcmp(k, "raw") == 0 && cJSON_IsString(v)) {
      t->value = strdup(v->valuestring);
      t->value_len = strlen(v->valuestring);
      have_raw = 1;
    } else if (strcmp(k, "key") == 0 && (cJSON_IsString(v) || cJSON_IsNull(v))) {
      if (cJSON_IsString(v)) {
        t->key = strdup(v->valuestring);
        t->key_len = strlen(v->valuestring);
      }
    } else if (strcmp(k, "partition") == 0 && cJSON_IsNumber(v) && v->valuedouble >= 0 &&
               v->valuedouble < MAX_PARTS) {
      t->partition = (int32_t)v->valuedouble;
    } else if (strcmp(k, "offset") == 0 && cJSON_IsNumber(v) && v->valuedouble >= 0) {
      t->offset = (int64_t)v->valuedouble;
    } else if (strcmp(k, "timestamp") != 0) {
      esr_error_set(err, ESR_E_CONFIG, 0,
                    "%s:%d: unknown or malformed member \"%s\" (key, partition < %d, offset, timestamp, value, raw)",
                    path, line, k, MAX_PARTS);
      cJSON_Delete(name);
      cJSON_Delete(v);
      return ESR_E_CONFIG;
    }
    cJSON_Delete(name);
    cJSON_Delete(v);
    p = skip_ws(after, end);
    if (p < end && *p == ',') p = skip_ws(p + 1, end);
  }
  if (value && !have_raw) {
    t->value_len = (size_t)(raw_end - value);
    if ((t->value = malloc(t->value_len + 1))) {
      memcpy(t->value, value, t->value_len);
      t->value[t->value_len] = '\0';
    }
  }
  if (!value && !have_raw)
    return esr_error_set(err, ESR_E_CONFIG, 0, "%s:%d: the message needs \"value\" (JSON) or \"raw\" (text)", path,
                         line);
  if (!t->value) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  if (t->offset < 0) t->offset = next[t->partition];
  if (t->offset < next[t->partition])
    return esr_error_set(err, ESR_E_CONFIG, 0, "%s:%d: offset %" PRId64 " of partition %d is not after the previous one",
                         path, line, t->offset, (int)t->partition);
  next[t->partition] = t->offset + 1;
  return ESR_E_OK;
bad:
  return esr_error_set(err, ESR_E_CONFIG, 0, "%s:%d: expected one JSON object per line, e.g. {\"key\": \"ada\", "
                       "\"value\": {\"type\": \"...\", \"data\": {...}}}", path, line);
}

static esr_code load_events(const char *path, tevs *out, esr_error *err) {
  char *text = read_file(path, NULL, err);
  if (!text) return err ? err->code : ESR_E_CONFIG;
  int64_t next[MAX_PARTS] = {0};
  esr_code rc = ESR_E_OK;
  int line = 0;
  for (char *s = text; *s && rc == ESR_E_OK;) {
    char *nl = strchr(s, '\n');
    char *end = nl ? nl : s + strlen(s);
    line++;
    const char *p = skip_ws(s, end);
    if (p < end && *p != '#') {
      if (out->n == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 64;
        tev *g = realloc(out->v, cap * sizeof *g);
        if (!g) {
          rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
          break;
        }
        out->v = g;
        out->cap = cap;
      }
      rc = parse_event_line(path, line, s, end, next, &out->v[out->n], err);
      if (rc == ESR_E_OK) out->n++;
      else {
        free(out->v[out->n].key);
        free(out->v[out->n].value);
      }
    }
    s = nl ? nl + 1 : end;
  }
  free(text);
  return rc;
}

/* ---- one application of the stream ---- */

typedef struct run {
  char dir[4096];
  esr_partition *parts[MAX_PARTS];
} run;

static void run_close(run *r) {
  for (int i = 0; i < MAX_PARTS; i++) esr_partition_close(r->parts[i]);
  if (r->dir[0]) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
    if (system(cmd) != 0) { /* a temporary directory left behind is not a failure of the test */
    }
  }
}

static esr_code apply_stream(const esr_handler_test_opts *o, const esr_partition_env *env, const tevs *evs, run *r,
                             esr_handler_test_result *res, esr_error *err) {
  const char *tmp = getenv("TMPDIR");
  snprintf(r->dir, sizeof r->dir, "%s/esr-handler-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(r->dir)) {
    r->dir[0] = '\0';
    return esr_error_set(err, ESR_E_IO, errno, "cannot create a temporary directory: %s", strerror(errno));
  }
  esr_partition_env e = *env;
  e.state_dir = r->dir;
  esr_code rc = ESR_E_OK;
  for (size_t i = 0; i < evs->n && rc == ESR_E_OK; i++) {
    const tev *t = &evs->v[i];
    esr_partition **p = &r->parts[t->partition];
    if (!*p && (rc = esr_partition_open(&e, o->topic ? o->topic : "events", t->partition, 0, p, err)) != ESR_E_OK)
      break;
    esr_message m = {.offset = t->offset, .key = t->key, .key_len = t->key_len, .value = t->value,
                     .value_len = t->value_len};
    rc = esr_partition_apply(*p, &m, err);
    if (rc == ESR_E_PLUGIN) esr_error_prefix(err, "%s:%d", o->events_path, t->line);
  }
  for (int i = 0; i < MAX_PARTS && rc == ESR_E_OK; i++) {
    if (!r->parts[i]) continue;
    rc = esr_partition_commit(r->parts[i], err);
    if (res && rc == ESR_E_OK) {
      res->applied += (size_t)esr_partition_committed(r->parts[i])->applied;
      res->dead += (size_t)esr_partition_committed(r->parts[i])->dead;
    }
  }
  return rc;
}

/* ---- expectations ---- */

typedef struct lines {
  char **v;
  size_t n, cap;
} lines;

static int lines_add(lines *l, const char *s, size_t len) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 16;
    char **g = realloc(l->v, cap * sizeof *g);
    if (!g) return -1;
    l->v = g;
    l->cap = cap;
  }
  if (!(l->v[l->n] = malloc(len + 1))) return -1;
  memcpy(l->v[l->n], s, len);
  l->v[l->n][len] = '\0';
  l->n++;
  return 0;
}

static void lines_free(lines *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
  memset(l, 0, sizeof *l);
}

/* One row as "a|b|NULL". */
static int row_text(sqlite3_stmt *st, lines *out) {
  char buf[8192];
  size_t n = 0;
  for (int c = 0; c < sqlite3_column_count(st); c++) {
    const char *v = sqlite3_column_type(st, c) == SQLITE_NULL ? "NULL" : (const char *)sqlite3_column_text(st, c);
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", c ? "|" : "", v ? v : "");
    if (n >= sizeof buf) n = sizeof buf - 1;
  }
  return lines_add(out, buf, n);
}

static esr_code query_all(run *r, const char *sql, int line, const char *path, lines *got, esr_error *err) {
  for (int i = 0; i < MAX_PARTS; i++) {
    if (!r->parts[i]) continue;
    sqlite3 *db = esr_store_db(esr_partition_store(r->parts[i]));
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
      return esr_error_set(err, ESR_E_CONFIG, 0, "%s:%d: query: %s", path, line, sqlite3_errmsg(db));
    if (!sqlite3_stmt_readonly(st)) {
      sqlite3_finalize(st);
      return esr_error_set(err, ESR_E_CONFIG, 0, "%s:%d: a query must only read", path, line);
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
      if (row_text(st, got) != 0) {
        sqlite3_finalize(st);
        return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
      }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return esr_error_set(err, ESR_E_CONFIG, 0, "%s:%d: query: %s", path, line, sqlite3_errmsg(db));
  }
  return ESR_E_OK;
}

/* The outbox of every partition: dead letters ("OFFSET REASON" or "P/OFFSET REASON") or emits ("TOPIC|KEY|VALUE"). */
static esr_code outbox_lines(run *r, int dead, int qualify, lines *got, esr_error *err) {
  const char *sql = dead ? "SELECT src_offset, reason FROM esr_outbox WHERE reason IS NOT NULL ORDER BY seq"
                         : "SELECT topic, CAST(key AS TEXT), CAST(value AS TEXT) FROM esr_outbox WHERE reason IS NULL "
                           "ORDER BY seq";
  for (int i = 0; i < MAX_PARTS; i++) {
    if (!r->parts[i]) continue;
    sqlite3 *db = esr_store_db(esr_partition_store(r->parts[i]));
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
      return esr_error_set(err, ESR_E_SQLITE, 0, "reading the outbox: %s", sqlite3_errmsg(db));
    while (sqlite3_step(st) == SQLITE_ROW) {
      char buf[8192];
      int n;
      if (dead && qualify)
        n = snprintf(buf, sizeof buf, "%d/%lld %s", i, (long long)sqlite3_column_int64(st, 0),
                     (const char *)sqlite3_column_text(st, 1));
      else if (dead)
        n = snprintf(buf, sizeof buf, "%lld %s", (long long)sqlite3_column_int64(st, 0),
                     (const char *)sqlite3_column_text(st, 1));
      else {
        const char *k = (const char *)sqlite3_column_text(st, 1);
        n = snprintf(buf, sizeof buf, "%s|%s|%s", (const char *)sqlite3_column_text(st, 0), k ? k : "NULL",
                     (const char *)sqlite3_column_text(st, 2));
      }
      if (lines_add(got, buf, n < (int)sizeof buf ? (size_t)n : sizeof buf - 1) != 0) {
        sqlite3_finalize(st);
        return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
      }
    }
    sqlite3_finalize(st);
  }
  return ESR_E_OK;
}

/* Prints a diff of want and got (a longest common subsequence, small inputs); returns 1 when they differ. */
static int diff(FILE *out, const char *title, const lines *want, const lines *got) {
  int same = want->n == got->n;
  for (size_t i = 0; same && i < want->n; i++) same = strcmp(want->v[i], got->v[i]) == 0;
  if (same) return 0;
  size_t n = want->n, m = got->n;
  size_t *L = calloc((n + 1) * (m + 1), sizeof *L);
  fprintf(out, "FAIL %s\n  --- expected\n  +++ actual\n", title);
  if (!L) {
    for (size_t i = 0; i < n; i++) fprintf(out, "  - %s\n", want->v[i]);
    for (size_t j = 0; j < m; j++) fprintf(out, "  + %s\n", got->v[j]);
    return 1;
  }
#define LCS(i, j) L[(i) * (m + 1) + (j)]
  for (size_t i = n; i-- > 0;)
    for (size_t j = m; j-- > 0;)
      LCS(i, j) = strcmp(want->v[i], got->v[j]) == 0 ? LCS(i + 1, j + 1) + 1
                  : LCS(i + 1, j) >= LCS(i, j + 1)    ? LCS(i + 1, j)
                                                      : LCS(i, j + 1);
  size_t i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && strcmp(want->v[i], got->v[j]) == 0) {
      fprintf(out, "    %s\n", want->v[i]);
      i++, j++;
    } else if (i < n && (j == m || LCS(i + 1, j) >= LCS(i, j + 1))) {
      fprintf(out, "  - %s\n", want->v[i++]);
    } else {
      fprintf(out, "  + %s\n", got->v[j++]);
    }
  }
#undef LCS
  free(L);
  return 1;
}

static esr_code check_expectations(const esr_handler_test_opts *o, run *r, int qualify, esr_handler_test_result *res,
                                   esr_error *err) {
  char *text = read_file(o->expect_path, NULL, err);
  if (!text) return err ? err->code : ESR_E_CONFIG;
  esr_code rc = ESR_E_OK;
  int line = 0, sections = 0;
  char *s = text;
  while (*s && rc == ESR_E_OK) {
    /* the header line of a section */
    char *nl = strchr(s, '\n');
    char *end = nl ? nl : s + strlen(s);
    line++;
    if (end == s || *s == '#') {
      s = nl ? nl + 1 : end;
      continue;
    }
    char header[8192];
    snprintf(header, sizeof header, "%.*s", (int)(end - s), s);
    int head_line = line;
    s = nl ? nl + 1 : end;
    lines want = {0}, got = {0};
    while (*s) { /* its lines, up to a blank line */
      nl = strchr(s, '\n');
      end = nl ? nl : s + strlen(s);
      line++;
      if (end == s) {
        s = nl ? nl + 1 : end;
        break;
      }
      if (*s != '#' && lines_add(&want, s, (size_t)(end - s)) != 0) rc = esr_error_set(err, ESR_E_NOMEM, 0, "oom");
      s = nl ? nl + 1 : end;
    }
    char title[8300];
    if (rc != ESR_E_OK) {
    } else if (strncmp(header, "query:", 6) == 0) {
      const char *sql = header + 6;
      while (*sql == ' ') sql++;
      rc = query_all(r, sql, head_line, o->expect_path, &got, err);
      snprintf(title, sizeof title, "%s:%d: %s", o->expect_path, head_line, sql);
    } else if (strcmp(header, "dead letters:") == 0) {
      rc = outbox_lines(r, 1, qualify, &got, err);
      snprintf(title, sizeof title, "%s:%d: dead letters (offset reason)", o->expect_path, head_line);
    } else if (strcmp(header, "emits:") == 0) {
      rc = outbox_lines(r, 0, qualify, &got, err);
      snprintf(title, sizeof title, "%s:%d: emits (topic|key|value)", o->expect_path, head_line);
    } else {
      rc = esr_error_set(err, ESR_E_CONFIG, 0,
                         "%s:%d: a section starts with 'query: SQL', 'dead letters:' or 'emits:', not '%.60s'",
                         o->expect_path, head_line, header);
    }
    if (rc == ESR_E_OK) {
      sections++;
      if (diff(o->out, title, &want, &got))
        res->failures++;
      else
        fprintf(o->out, "ok   %s\n", title);
    }
    lines_free(&want);
    lines_free(&got);
  }
  free(text);
  if (rc == ESR_E_OK && sections == 0)
    rc = esr_error_set(err, ESR_E_CONFIG, 0, "%s: no expectation (query:, dead letters:, emits:)", o->expect_path);
  return rc;
}

esr_code esr_handler_test_run(const esr_handler_test_opts *o, esr_handler_test_result *res, esr_error *err) {
  memset(res, 0, sizeof *res);
  esr_registry reg = {0};
  esr_schema_set *schemas = NULL;
  tevs evs = {0};
  run a = {0}, b = {0};
  esr_code rc = esr_registry_load(&reg, o->handlers, o->n_handlers, esr_host_api_table(), o->options, o->n_options,
                                  err);
  if (rc != ESR_E_OK) goto out;
  if (o->schemas_dir && (rc = esr_schema_set_load(o->schemas_dir, &schemas, err)) != ESR_E_OK) goto out;
  if ((rc = load_events(o->events_path, &evs, err)) != ESR_E_OK) goto out;
  res->events = evs.n;
  esr_partition_env env = {.registry = &reg, .dlq_topic = "dlq", .schemas = schemas, .batch_max = 1000};
  if ((rc = apply_stream(o, &env, &evs, &a, res, err)) != ESR_E_OK) goto out;
  if ((rc = apply_stream(o, &env, &evs, &b, NULL, err)) != ESR_E_OK) goto out;
  int qualify = 0;
  for (int i = 1; i < MAX_PARTS; i++) qualify |= a.parts[i] != NULL;
  for (int i = 0; i < MAX_PARTS; i++) { /* deterministic: the same stream, the same state */
    if (!a.parts[i]) continue;
    uint8_t da[32], db[32];
    if ((rc = esr_state_digest(esr_store_db(esr_partition_store(a.parts[i])), da, err)) != ESR_E_OK ||
        (rc = esr_state_digest(esr_store_db(esr_partition_store(b.parts[i])), db, err)) != ESR_E_OK)
      goto out;
    if (memcmp(da, db, 32) != 0) {
      fprintf(o->out, "FAIL partition %d: the same stream applied twice gave two different states: the handler is not "
                      "deterministic (a clock, randomness, or state outside the database)\n", i);
      res->failures++;
    }
  }
  for (int i = 0; i < MAX_PARTS; i++) {
    if (!a.parts[i]) continue;
    sqlite3_stmt *st = NULL;
    sqlite3 *db = esr_store_db(esr_partition_store(a.parts[i]));
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM esr_outbox WHERE reason IS NULL", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
      res->emitted += (size_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  if (o->expect_path) rc = check_expectations(o, &a, qualify, res, err);
out:
  run_close(&a);
  run_close(&b);
  tevs_free(&evs);
  esr_schema_set_free(schemas);
  esr_registry_clear(&reg);
  return rc;
}
