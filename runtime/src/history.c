/* history.c — one key's timeline: find its events, replay their partitions through the worker's apply path into a
 * temporary state, and record what each of the key's events changed with SQLite's session extension (history.h). */
#define SQLITE_ENABLE_SESSION 1 /* Debian's libsqlite3 is built with both; the header declares the API only then */
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include "history.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "envelope.h"
#include "host.h"
#include "partition.h"
#include "readback.h"
#include "registry.h"
#include "schema.h"

#define PROGRESS_EVERY 65536
#define REPLAY_BATCH 10000 /* events per transaction of the replay: the state is thrown away, only speed matters */

/* ------------------------------------------------------------------------------------------------ small helpers */

static char *dup_n(const void *p, size_t n) {
  char *s = malloc(n + 1);
  if (!s) return NULL;
  if (n) memcpy(s, p, n);
  s[n] = '\0';
  return s;
}

static char *dup_s(const char *s) { return s ? dup_n(s, strlen(s)) : NULL; }

typedef struct offsets {
  int64_t *v;
  size_t n, cap;
} offsets;

static int offsets_push(offsets *o, int64_t x) {
  if (o->n == o->cap) {
    size_t cap = o->cap ? o->cap * 2 : 16;
    int64_t *g = realloc(o->v, cap * sizeof *g);
    if (!g) return -1;
    o->v = g;
    o->cap = cap;
  }
  o->v[o->n++] = x;
  return 0;
}

static void change_clear(esr_history_change *c) {
  free(c->table);
  for (int i = 0; i < c->n_cols; i++) {
    if (c->cols) free(c->cols[i]);
    if (c->before) sqlite3_value_free(c->before[i]);
    if (c->after) sqlite3_value_free(c->after[i]);
  }
  free(c->cols);
  free(c->pk);
  free(c->before);
  free(c->after);
}

static void event_clear(esr_history_event *e) {
  free(e->type);
  free(e->id);
  free(e->time);
  free(e->reason);
  free(e->error);
  for (size_t i = 0; i < e->n_changes; i++) change_clear(&e->changes[i]);
  free(e->changes);
  for (size_t i = 0; i < e->n_emits; i++) {
    free(e->emits[i].topic);
    free(e->emits[i].key);
    free(e->emits[i].value);
  }
  free(e->emits);
}

void esr_history_free(esr_history *h) {
  if (!h) return;
  for (size_t i = 0; i < h->n_events; i++) event_clear(&h->events[i]);
  free(h->events);
  free(h->topic);
  free(h->key);
  free(h->searched);
  for (size_t i = 0; i < h->n_untracked; i++) free(h->untracked[i]);
  free(h->untracked);
  for (size_t i = 0; i < h->n_notes; i++) free(h->notes[i]);
  free(h->notes);
  free(h->stopped);
  free(h);
}

int32_t esr_history_partition_of(const char *name, const void *key, size_t key_len, int partition_count) {
  static const struct {
    const char *name;
    int random_when_empty;
    int32_t (*fn)(const rd_kafka_topic_t *, const void *, size_t, int32_t, void *, void *);
  } known[] = {{"consistent", 0, rd_kafka_msg_partitioner_consistent},
               {"consistent_random", 1, rd_kafka_msg_partitioner_consistent},
               {"murmur2", 0, rd_kafka_msg_partitioner_murmur2},
               {"murmur2_random", 1, rd_kafka_msg_partitioner_murmur2},
               {"fnv1a", 0, rd_kafka_msg_partitioner_fnv1a},
               {"fnv1a_random", 1, rd_kafka_msg_partitioner_fnv1a}};
  for (size_t i = 0; i < sizeof known / sizeof *known; i++) {
    if (strcmp(name, known[i].name) != 0) continue;
    if (key_len == 0 && known[i].random_when_empty) return -1;
    /* The keyed variants read nothing but the key (the topic handle serves only the random ones). */
    return known[i].fn(NULL, key, key_len, partition_count, NULL, NULL);
  }
  return -2;
}

/* ------------------------------------------------------------------------------------------------ the search */

typedef struct search_ctx {
  const esr_history_opts *o;
  int32_t partition;
  offsets found;
  int64_t read, started;
} search_ctx;

static void report(const esr_history_opts *o, esr_history_phase phase, int32_t partition, int64_t done, int64_t total,
                   int64_t started, int last) {
  if (!o->progress) return;
  esr_history_progress p = {phase, partition, done, total, started, last};
  o->progress(o->progress_arg, &p);
}

static esr_code search_one(void *arg, const rd_kafka_message_t *m, esr_error *err) {
  search_ctx *sc = arg;
  if (m->key && m->key_len == sc->o->key_len && memcmp(m->key, sc->o->key, m->key_len) == 0 &&
      offsets_push(&sc->found, m->offset) != 0)
    return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  if (++sc->read % PROGRESS_EVERY == 0) report(sc->o, ESR_HISTORY_SEARCH, sc->partition, sc->read, -1, sc->started, 0);
  return ESR_E_OK;
}

static esr_code gap(esr_error *err, const char *topic, int32_t partition, int64_t log_start) {
  return esr_error_set(err, ESR_E_GAP, 0,
                       "%s[%d]: the log starts at offset %" PRId64 " (retention deleted what came before); the "
                       "history replays the partition from offset 0",
                       topic, (int)partition, log_start);
}

/* ------------------------------------------------------------------------------------------------ the replay */

typedef struct table_cols {
  char *table;
  int n;
  char **names;
} table_cols;

typedef struct replay_ctx {
  esr_history *h;
  const esr_history_opts *o;
  esr_partition *p;
  sqlite3 *db;
  const offsets *keyed; /* offsets of the key's events in this partition, ascending */
  int64_t read, total, started;
  int since_commit;
  table_cols *tables;
  size_t n_tables;
  sqlite3_stmt *outbox;
} replay_ctx;

static int not_esr_table(void *arg, const char *table) {
  (void)arg;
  return strncmp(table, "esr_", 4) != 0 && strncmp(table, "sqlite_", 7) != 0;
}

static esr_code sql_error(sqlite3 *db, esr_error *err, const char *what) {
  return esr_error_set(err, ESR_E_SQLITE, sqlite3_extended_errcode(db), "%s: %s", what, sqlite3_errmsg(db));
}

/* The column names of a table of the replay database, cached. */
static const table_cols *columns_of(replay_ctx *rc, const char *table, esr_error *err) {
  for (size_t i = 0; i < rc->n_tables; i++)
    if (strcmp(rc->tables[i].table, table) == 0) return &rc->tables[i];
  table_cols *g = realloc(rc->tables, (rc->n_tables + 1) * sizeof *g);
  if (!g) goto nomem;
  rc->tables = g;
  table_cols *t = &g[rc->n_tables];
  memset(t, 0, sizeof *t);
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(rc->db, "SELECT name FROM pragma_table_xinfo(?1) WHERE hidden IN (0, 2, 3) ORDER BY cid", -1,
                         &st, NULL) != SQLITE_OK) {
    sql_error(rc->db, err, "reading a table's columns");
    return NULL;
  }
  sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
  int r;
  while ((r = sqlite3_step(st)) == SQLITE_ROW) {
    char **n = realloc(t->names, (size_t)(t->n + 1) * sizeof *n);
    if (!n) break;
    t->names = n;
    if (!(n[t->n] = dup_s((const char *)sqlite3_column_text(st, 0)))) break;
    t->n++;
  }
  sqlite3_finalize(st);
  if (r != SQLITE_DONE || !(t->table = dup_s(table))) {
    for (int i = 0; i < t->n; i++) free(t->names[i]);
    free(t->names);
    if (r != SQLITE_DONE && r != SQLITE_ROW) {
      sql_error(rc->db, err, "reading a table's columns");
      return NULL;
    }
    goto nomem;
  }
  rc->n_tables++;
  return t;
nomem:
  esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  return NULL;
}

/* Turns a session's changeset into the event's changes. */
static esr_code read_changeset(replay_ctx *rc, sqlite3_session *sess, esr_history_event *e, esr_error *err) {
  int n = 0;
  void *cs = NULL;
  sqlite3_changeset_iter *it = NULL;
  int r = sqlite3session_changeset(sess, &n, &cs);
  if (r != SQLITE_OK) return esr_error_set(err, ESR_E_SQLITE, r, "recording an event's changes: %s", sqlite3_errstr(r));
  esr_code rc_ = ESR_E_OK;
  if (n == 0) goto out;
  if ((r = sqlite3changeset_start(&it, n, cs)) != SQLITE_OK) {
    rc_ = esr_error_set(err, ESR_E_SQLITE, r, "reading an event's changes: %s", sqlite3_errstr(r));
    goto out;
  }
  while ((r = sqlite3changeset_next(it)) == SQLITE_ROW) {
    const char *table;
    int ncol, op, indirect;
    unsigned char *pk;
    int npk;
    sqlite3changeset_op(it, &table, &ncol, &op, &indirect);
    sqlite3changeset_pk(it, &pk, &npk);
    const table_cols *tc = columns_of(rc, table, err);
    if (!tc) {
      rc_ = err ? err->code : ESR_E_SQLITE;
      goto out;
    }
    esr_history_change *g = realloc(e->changes, (e->n_changes + 1) * sizeof *g);
    if (!g) goto nomem;
    e->changes = g;
    esr_history_change *c = &g[e->n_changes];
    memset(c, 0, sizeof *c);
    e->n_changes++;
    c->op = op;
    c->n_cols = ncol;
    if (!(c->table = dup_s(table)) || !(c->cols = calloc((size_t)ncol, sizeof *c->cols)) ||
        !(c->pk = calloc((size_t)ncol, 1)) || !(c->before = calloc((size_t)ncol, sizeof *c->before)) ||
        !(c->after = calloc((size_t)ncol, sizeof *c->after)))
      goto nomem;
    for (int i = 0; i < ncol; i++) {
      char fallback[24];
      snprintf(fallback, sizeof fallback, "column%d", i + 1);
      if (!(c->cols[i] = dup_s(i < tc->n ? tc->names[i] : fallback))) goto nomem;
      c->pk[i] = pk[i] ? 1 : 0;
      sqlite3_value *v = NULL;
      if (op != SQLITE_INSERT && sqlite3changeset_old(it, i, &v) == SQLITE_OK && v &&
          !(c->before[i] = sqlite3_value_dup(v)))
        goto nomem;
      v = NULL;
      if (op != SQLITE_DELETE && sqlite3changeset_new(it, i, &v) == SQLITE_OK && v &&
          !(c->after[i] = sqlite3_value_dup(v)))
        goto nomem;
    }
  }
  if (r != SQLITE_DONE) rc_ = esr_error_set(err, ESR_E_SQLITE, r, "reading an event's changes: %s", sqlite3_errstr(r));
out:
  if (it) sqlite3changeset_finalize(it);
  sqlite3_free(cs);
  return rc_;
nomem:
  rc_ = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  goto out;
}

/* What the replay wrote to the outbox for the event at `offset`: its dead letter and its emits. */
static esr_code read_outbox(replay_ctx *rc, esr_history_event *e, esr_error *err) {
  if (!rc->outbox && sqlite3_prepare_v2(rc->db,
                                        "SELECT src_index, topic, key, value, reason, error FROM esr_outbox "
                                        "WHERE src_offset = ?1 ORDER BY src_index, seq",
                                        -1, &rc->outbox, NULL) != SQLITE_OK)
    return sql_error(rc->db, err, "reading the outbox");
  sqlite3_stmt *st = rc->outbox;
  sqlite3_bind_int64(st, 1, e->offset);
  int r;
  esr_code code = ESR_E_OK;
  while ((r = sqlite3_step(st)) == SQLITE_ROW) {
    if (sqlite3_column_int(st, 0) == 0) {
      if (e->outcome == ESR_HISTORY_DEAD) continue; /* a duplicate cannot exist, but one verdict is enough */
      e->outcome = ESR_HISTORY_DEAD;
      if (!(e->reason = dup_s((const char *)sqlite3_column_text(st, 4))) ||
          !(e->error = dup_s((const char *)sqlite3_column_text(st, 5))))
        goto nomem;
      continue;
    }
    esr_history_emit *g = realloc(e->emits, (e->n_emits + 1) * sizeof *g);
    if (!g) goto nomem;
    e->emits = g;
    esr_history_emit *m = &g[e->n_emits];
    memset(m, 0, sizeof *m);
    e->n_emits++;
    if (!(m->topic = dup_s((const char *)sqlite3_column_text(st, 1)))) goto nomem;
    if (sqlite3_column_type(st, 2) != SQLITE_NULL) {
      m->key_len = (size_t)sqlite3_column_bytes(st, 2);
      if (!(m->key = dup_n(sqlite3_column_blob(st, 2), m->key_len))) goto nomem;
    }
    if (sqlite3_column_type(st, 3) != SQLITE_NULL) {
      m->value_len = (size_t)sqlite3_column_bytes(st, 3);
      if (!(m->value = dup_n(sqlite3_column_blob(st, 3), m->value_len))) goto nomem;
    }
  }
  if (r != SQLITE_DONE) code = sql_error(rc->db, err, "reading the outbox");
  sqlite3_reset(st);
  return code;
nomem:
  sqlite3_reset(st);
  return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
}

static int add_note(esr_history *h, const char *note) {
  char **g = realloc(h->notes, (h->n_notes + 1) * sizeof *g);
  if (!g) return -1;
  h->notes = g;
  if (!(g[h->n_notes] = dup_s(note))) return -1;
  h->n_notes++;
  return 0;
}

static esr_history_event *new_event(esr_history *h) {
  if (h->n_events == h->cap_events) {
    size_t cap = h->cap_events ? h->cap_events * 2 : 16;
    esr_history_event *g = realloc(h->events, cap * sizeof *g);
    if (!g) return NULL;
    h->events = g;
    h->cap_events = cap;
  }
  esr_history_event *e = &h->events[h->n_events++];
  memset(e, 0, sizeof *e);
  return e;
}

/* Applies one event of the key inside a session, and records it. */
static esr_code apply_keyed(replay_ctx *rc, const rd_kafka_message_t *m, const esr_message *msg, esr_error *err) {
  esr_history_event *e = new_event(rc->h);
  if (!e) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  e->partition = esr_partition_id(rc->p);
  e->offset = m->offset;
  rd_kafka_timestamp_type_t tstype;
  e->timestamp = rd_kafka_message_timestamp(m, &tstype);
  e->timestamp_type = (int)tstype;
  if (tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE) e->timestamp = -1;
  esr_envelope env;
  char why[256];
  if (esr_envelope_parse(m->payload, m->len, &env, why, sizeof why) == ESR_ENVELOPE_OK) {
    e->version = env.version;
    if (!(e->type = dup_s(env.type)) || (env.id && !(e->id = dup_s(env.id))) ||
        (env.time && !(e->time = dup_s(env.time)))) {
      esr_envelope_clear(&env);
      return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    }
  }
  esr_envelope_clear(&env);

  sqlite3_session *sess = NULL;
  int r = sqlite3session_create(rc->db, "main", &sess);
  if (r != SQLITE_OK) return esr_error_set(err, ESR_E_SQLITE, r, "starting a session: %s", sqlite3_errstr(r));
  sqlite3session_table_filter(sess, not_esr_table, NULL);
  if ((r = sqlite3session_attach(sess, NULL)) != SQLITE_OK) {
    sqlite3session_delete(sess);
    return esr_error_set(err, ESR_E_SQLITE, r, "starting a session: %s", sqlite3_errstr(r));
  }
  esr_code code = esr_partition_apply(rc->p, msg, err);
  if (code == ESR_E_OK) code = read_changeset(rc, sess, e, err);
  sqlite3session_delete(sess);
  if (code == ESR_E_PLUGIN && esr_partition_stopped(rc->p)) {
    e->outcome = ESR_HISTORY_STOPPED;
    if (!(e->error = dup_s(esr_partition_stopped(rc->p)))) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    return code;
  }
  if (code != ESR_E_OK) return code;
  return read_outbox(rc, e, err);
}

static esr_code replay_one(void *arg, const rd_kafka_message_t *m, esr_error *err) {
  replay_ctx *rc = arg;
  esr_message msg = {.offset = m->offset, .key = m->key, .key_len = m->key_len, .value = m->payload,
                     .value_len = m->len};
  esr_code code;
  int keyed = m->key && m->key_len == rc->o->key_len && memcmp(m->key, rc->o->key, m->key_len) == 0;
  if (keyed)
    code = apply_keyed(rc, m, &msg, err);
  else
    code = esr_partition_apply(rc->p, &msg, err);
  if (code == ESR_E_PLUGIN && esr_partition_stopped(rc->p)) return code;
  if (code != ESR_E_OK) return code;
  rc->h->replayed++;
  if (++rc->since_commit >= REPLAY_BATCH || esr_partition_commit_due(rc->p)) {
    if ((code = esr_partition_commit(rc->p, err)) != ESR_E_OK) return code;
    rc->since_commit = 0;
  }
  if (++rc->read % PROGRESS_EVERY == 0)
    report(rc->o, ESR_HISTORY_REPLAY, esr_partition_id(rc->p), rc->read, rc->total, rc->started, 0);
  return ESR_E_OK;
}

/* Tables of the replay database that the session extension cannot see (no primary key). */
static esr_code note_untracked(esr_history *h, sqlite3 *db, esr_error *err) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db,
                         "SELECT name FROM sqlite_schema s WHERE type = 'table' AND name NOT LIKE 'esr\\_%' ESCAPE '\\' "
                         "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                         "AND NOT EXISTS (SELECT 1 FROM pragma_table_info(s.name) WHERE pk > 0) ORDER BY name",
                         -1, &st, NULL) != SQLITE_OK)
    return sql_error(db, err, "listing the tables");
  int r;
  while ((r = sqlite3_step(st)) == SQLITE_ROW) {
    const char *name = (const char *)sqlite3_column_text(st, 0);
    int seen = 0;
    for (size_t i = 0; i < h->n_untracked; i++) seen |= strcmp(h->untracked[i], name) == 0;
    if (seen) continue;
    char **g = realloc(h->untracked, (h->n_untracked + 1) * sizeof *g);
    if (!g || !(g[h->n_untracked] = dup_s(name))) {
      if (g) h->untracked = g;
      sqlite3_finalize(st);
      return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    }
    h->untracked = g;
    h->n_untracked++;
  }
  sqlite3_finalize(st);
  return r == SQLITE_DONE ? ESR_E_OK : sql_error(db, err, "listing the tables");
}

static esr_code replay_partition(esr_history *h, const esr_history_opts *o, esr_readback *rb,
                                 const esr_partition_env *env, int32_t partition, const offsets *keyed, esr_error *err) {
  replay_ctx rc = {.h = h, .o = o, .keyed = keyed};
  esr_code code = esr_partition_open(env, h->topic, partition, (uint64_t)partition, &rc.p, err);
  if (code != ESR_E_OK) return code;
  rc.db = esr_store_db(esr_partition_store(rc.p));
  rc.total = keyed->v[keyed->n - 1] + 1;
  rc.started = esr_now_ms();
  esr_readback_range range = {.topic = h->topic, .partition = partition, .start = 0, .end = rc.total};
  esr_readback_result res;
  code = esr_readback_scan(rb, &range, replay_one, &rc, &res, err);
  if (code == ESR_E_OK && (res.truncated || res.from > 0)) code = gap(err, h->topic, partition, res.log_start);
  if (code == ESR_E_PLUGIN && esr_partition_stopped(rc.p)) {
    if ((h->stopped = dup_s(esr_partition_stopped(rc.p))))
      code = ESR_E_OK;
    else
      code = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  }
  if (code == ESR_E_OK) report(o, ESR_HISTORY_REPLAY, partition, rc.read, rc.total, rc.started, 1);
  if (code == ESR_E_OK) code = note_untracked(h, rc.db, err);
  sqlite3_finalize(rc.outbox);
  for (size_t i = 0; i < rc.n_tables; i++) {
    for (int j = 0; j < rc.tables[i].n; j++) free(rc.tables[i].names[j]);
    free(rc.tables[i].names);
    free(rc.tables[i].table);
  }
  free(rc.tables);
  esr_partition_close(rc.p); /* rolls back the last batch: the state is thrown away */
  return code;
}

/* ------------------------------------------------------------------------------------------------ the whole */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

esr_code esr_history_build(const esr_config *cfg, const esr_history_opts *o, esr_history **out, esr_error *err) {
  *out = NULL;
  esr_code code;
  esr_history *h = calloc(1, sizeof *h);
  esr_registry reg = {0};
  esr_schema_set *schemas = NULL;
  esr_readback *rb = NULL;
  offsets *found = NULL;
  size_t n_search = 0;
  char tmp[4096] = "";
  if (!h) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  if (!o->topic || !*o->topic) {
    code = esr_error_set(err, ESR_E_CONFIG, 0, "a topic is needed (--topic)");
    goto fail;
  }
  if (!o->key) {
    code = esr_error_set(err, ESR_E_CONFIG, 0, "a key is needed (--key)");
    goto fail;
  }
  if (!(h->topic = dup_s(o->topic)) || !(h->key = dup_n(o->key, o->key_len))) goto nomem;
  h->key_len = o->key_len;

  if (cfg->schemas_dir && (code = esr_schema_set_load(cfg->schemas_dir, &schemas, err)) != ESR_E_OK) {
    esr_error_prefix(err, "schemas.dir = %s", cfg->schemas_dir);
    goto fail;
  }
  if ((code = esr_registry_load(&reg, cfg->handlers, cfg->n_handlers, esr_host_api_table(), cfg->handler_opts,
                                cfg->n_handler_opts, err)) != ESR_E_OK)
    goto fail;
  if ((code = esr_readback_new(cfg, &rb, err)) != ESR_E_OK) goto fail;
  if ((code = esr_readback_partition_count(rb, o->topic, 0, &h->partition_count, err)) != ESR_E_OK) {
    if (esr_readback_unknown(err)) code = esr_error_set(err, ESR_E_CONFIG, 0, "topic %s does not exist", o->topic);
    goto fail;
  }

  /* Which partitions to read. */
  int32_t only = o->partition;
  if (only >= h->partition_count) {
    code = esr_error_set(err, ESR_E_CONFIG, 0, "topic %s has %d partitions: there is no partition %d", o->topic,
                         h->partition_count, (int)only);
    goto fail;
  }
  if (only < 0 && o->partitioner) {
    only = esr_history_partition_of(o->partitioner, o->key, o->key_len, h->partition_count);
    if (only == -2) {
      code = esr_error_set(err, ESR_E_CONFIG, 0,
                           "unknown partitioner '%s': consistent, consistent_random, murmur2, murmur2_random, fnv1a "
                           "or fnv1a_random",
                           o->partitioner);
      goto fail;
    }
  }
  size_t n = only >= 0 ? 1 : (size_t)h->partition_count;
  if (!(h->searched = calloc(n, sizeof *h->searched)) || !(found = calloc(n, sizeof *found))) goto nomem;
  h->n_searched = n_search = n;
  for (size_t i = 0; i < n_search; i++) h->searched[i] = only >= 0 ? only : (int32_t)i;

  /* Pass 1: where the key's events are. */
  for (size_t i = 0; i < n_search; i++) {
    search_ctx sc = {.o = o, .partition = h->searched[i], .started = esr_now_ms()};
    esr_readback_range range = {.topic = o->topic, .partition = h->searched[i], .start = 0, .end = -1};
    esr_readback_result res;
    code = esr_readback_scan(rb, &range, search_one, &sc, &res, err);
    found[i] = sc.found;
    if (code != ESR_E_OK) goto fail;
    if (res.truncated || res.from > 0) {
      if (sc.found.n) {
        code = gap(err, o->topic, h->searched[i], res.log_start);
        goto fail;
      }
      char note[300];
      snprintf(note, sizeof note,
               "partition %d starts at offset %" PRId64 ": events of the key before it were deleted by retention",
               (int)h->searched[i], res.log_start);
      if (add_note(h, note) != 0) goto nomem;
    }
    report(o, ESR_HISTORY_SEARCH, sc.partition, sc.read, res.end - res.from, sc.started, 1);
  }

  /* Pass 2: replay each partition that holds some, up to its last event of the key. */
  int any = 0;
  for (size_t i = 0; i < n_search; i++) any |= found[i].n > 0;
  if (any) {
    const char *base = o->tmp_dir ? o->tmp_dir : getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    if ((size_t)snprintf(tmp, sizeof tmp, "%s/esr-history-XXXXXX", base) >= sizeof tmp || !mkdtemp(tmp)) {
      code = esr_error_set(err, ESR_E_IO, errno, "cannot make a temporary directory in %s: %s", base, strerror(errno));
      tmp[0] = '\0';
      goto fail;
    }
    esr_partition_env env = {.registry = &reg,
                             .publisher = NULL,
                             .state_dir = tmp,
                             .dlq_topic = cfg->dlq_topic ? cfg->dlq_topic : "(dead letters)",
                             .store = {.cache_mb = cfg->sqlite_cache_mb},
                             .max_crash_retries = cfg->max_crash_retries,
                             .batch_max = REPLAY_BATCH,
                             .last_crash = NULL,
                             .schemas = schemas};
    for (size_t i = 0; i < n_search && !h->stopped; i++) {
      if (!found[i].n) continue;
      if ((code = replay_partition(h, o, rb, &env, h->searched[i], &found[i], err)) != ESR_E_OK) goto fail;
    }
  }
  code = ESR_E_OK;
  *out = h;
  h = NULL;
  goto done;
nomem:
  code = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
fail:
  esr_history_free(h);
done:
  if (found)
    for (size_t i = 0; i < n_search; i++) free(found[i].v);
  free(found);
  esr_readback_free(rb);
  esr_registry_clear(&reg);
  esr_schema_set_free(schemas);
  if (tmp[0]) nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return code;
}
