/* store.c — the partition database: connection settings, esr_* tables, transactions, statement cache, guard. */
#include "store.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct stmt_entry {
  uint64_t hash;
  char *sql;
  sqlite3_stmt *stmt;
} stmt_entry;

#define RECENT 64 /* direct-mapped by the address of the caller's SQL text: handlers pass the same literals */

typedef struct stmt_cache {
  stmt_entry *v; /* open addressing, capacity a power of two */
  size_t cap, n;
  struct {
    const char *text; /* the caller's pointer, checked against the entry's copy: a pointer may be reused */
    const stmt_entry *e;
  } recent[RECENT];
} stmt_cache;

enum { ST_BEGIN, ST_COMMIT, ST_ROLLBACK, ST_SAVEPOINT, ST_RELEASE, ST_ROLLBACK_TO, ST_POSITION, ST_COUNT };

static const char *const HOST_SQL[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT esr_event",
    [ST_RELEASE] = "RELEASE esr_event",
    [ST_ROLLBACK_TO] = "ROLLBACK TO esr_event",
    [ST_POSITION] = "INSERT INTO esr_offsets(topic, partition, next_offset, log_digest, applied_count, dead_count, "
                    "updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, strftime('%Y-%m-%dT%H:%M:%fZ','now')) "
                    "ON CONFLICT(topic, partition) DO UPDATE SET next_offset = excluded.next_offset, "
                    "log_digest = excluded.log_digest, applied_count = excluded.applied_count, "
                    "dead_count = excluded.dead_count, updated_at = excluded.updated_at",
};

struct esr_store {
  sqlite3 *db;
  char *topic;
  int32_t partition;
  int in_batch;
  int guard;
  esr_position pos;
  int host_call;                /* a host service runs on behalf of the handler: the guard does not apply */
  uint64_t schema_writes;       /* statements changing the schema prepared while the guard was on */
  sqlite3_stmt *host[ST_COUNT]; /* prepared with the guard off, never handed to handlers */
  stmt_cache handler_stmts;     /* lent to handlers */
  sqlite3_stmt *lent[32];       /* lent during the current guarded callback: reset when the guard goes off */
  int n_lent;                   /* > 32: too many to track, sweep every statement instead */
  stmt_cache host_stmts;        /* the host's own (outbox, esr_handlers): never lent, so never reachable by SQL text */
  int wal_frames;               /* frames in the WAL after the last commit (at open: estimated from its size) */
  int fault;                    /* storage failure seen while the guard was last on (SQLite extended code), or 0 */
};

/* Storage failures (I/O error, full disk, out of memory, corruption) seen by SQLite on this thread since the guard was
 * last turned on. SQLite reports every failing statement to its error log (SQLITE_CONFIG_LOG), synchronously on the
 * failing thread, whatever the caller then does with the return code: a handler that swallows an SQLITE_FULL cannot
 * hide it. */
static _Thread_local int t_fault;

int esr_store_is_storage_fault(int ext) {
  switch (ext & 0xff) {
  case SQLITE_IOERR:
  case SQLITE_FULL:
  case SQLITE_NOMEM:
  case SQLITE_CORRUPT:
  case SQLITE_NOTADB:
  case SQLITE_CANTOPEN:
  case SQLITE_READONLY:
  case SQLITE_PROTOCOL:
    return 1;
  default:
    return 0;
  }
}

static void on_sqlite_log(void *arg, int code, const char *msg) {
  (void)arg;
  (void)msg;
  if (!t_fault && esr_store_is_storage_fault(code)) t_fault = code;
}

#define WAL_AUTOCHECKPOINT 1000 /* frames: SQLite's default, which the WAL hook below takes over */

/* Replaces SQLite's default WAL hook (which runs the auto-checkpoint) to learn the WAL's length after each commit. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames) {
  esr_store *s = arg;
  s->wal_frames = frames;
  if (frames >= WAL_AUTOCHECKPOINT) sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
  return SQLITE_OK;
}

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS esr_offsets("
    "  topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,"
    "  log_digest BLOB NOT NULL, applied_count INTEGER NOT NULL, dead_count INTEGER NOT NULL,"
    "  updated_at TEXT NOT NULL, PRIMARY KEY(topic, partition));"
    "CREATE TABLE IF NOT EXISTS esr_handlers("
    "  name TEXT PRIMARY KEY, schema_version INTEGER NOT NULL, plugin_version TEXT);"
    "CREATE TABLE IF NOT EXISTS esr_outbox("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, key BLOB, value BLOB,"
    "  src_offset INTEGER NOT NULL, src_index INTEGER NOT NULL, reason TEXT, error TEXT);"
    /* the highest acknowledged offset of each output topic-partition (esr/outputs.h) */
    "CREATE TABLE IF NOT EXISTS esr_outputs("
    "  topic TEXT NOT NULL, partition INTEGER NOT NULL, acked INTEGER NOT NULL, PRIMARY KEY(topic, partition));";

static void cache_free(stmt_cache *c);

esr_code esr_store_error(esr_store *s, esr_error *err, const char *what) {
  int code = s && s->db ? sqlite3_extended_errcode(s->db) : SQLITE_ERROR;
  const char *msg = s && s->db ? sqlite3_errmsg(s->db) : "no database";
  return esr_error_set(err, code == SQLITE_NOTADB || (code & 0xff) == SQLITE_CORRUPT ? ESR_E_CORRUPT : ESR_E_SQLITE, code,
                       "%s: %s", what, msg);
}

void esr_store_path(char *buf, size_t cap, const char *dir, const char *topic, int32_t partition) {
  snprintf(buf, cap, "%s/%s-%d.db", dir, topic, (int)partition);
}

esr_code esr_store_move_aside(const char *path, const char *tag, char *aside, size_t cap, esr_error *err) {
  char stamp[32];
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  struct stat st;
  snprintf(aside, cap, "%s.%s-%s", path, tag, stamp);
  for (int i = 1; lstat(aside, &st) == 0 && i < 1000; i++) snprintf(aside, cap, "%s.%s-%s-%d", path, tag, stamp, i);
  /* The WAL and a rollback journal hold committed or half-written pages of this file: they go with it, first, so
   * that they are never replayed into another file at `path`. The -shm is only an index of the WAL: removed. */
  static const char *const sfx[] = {"-wal", "-journal"};
  char from[4200], to[4300];
  for (int i = 0; i < 2; i++) {
    snprintf(from, sizeof from, "%s%s", path, sfx[i]);
    snprintf(to, sizeof to, "%s%s", aside, sfx[i]);
    if (rename(from, to) != 0 && errno != ENOENT)
      return esr_error_set(err, ESR_E_IO, errno, "cannot move %s aside to %s: %s", from, to, strerror(errno));
  }
  snprintf(from, sizeof from, "%s-shm", path);
  if (unlink(from) != 0 && errno != ENOENT)
    return esr_error_set(err, ESR_E_IO, errno, "cannot remove %s: %s", from, strerror(errno));
  if (rename(path, aside) != 0)
    return esr_error_set(err, ESR_E_IO, errno, "cannot move %s aside to %s: %s", path, aside, strerror(errno));
  return ESR_E_OK;
}

/* Denies what would let a handler break the batch: transaction control and attaching other databases. */
static int is_esr_table(const char *name) { return name && sqlite3_strnicmp(name, "esr_", 4) == 0; }

static int authorize(void *arg, int action, const char *a, const char *b, const char *c, const char *d) {
  esr_store *s = arg;
  if (!s->guard || s->host_call) return SQLITE_OK;
  switch (action) { /* a change of the schema is not a row change: counted for esr_store_write_mark */
  case SQLITE_CREATE_INDEX: case SQLITE_CREATE_TABLE: case SQLITE_CREATE_TEMP_INDEX: case SQLITE_CREATE_TEMP_TABLE:
  case SQLITE_CREATE_TEMP_TRIGGER: case SQLITE_CREATE_TEMP_VIEW: case SQLITE_CREATE_TRIGGER: case SQLITE_CREATE_VIEW:
  case SQLITE_DROP_INDEX: case SQLITE_DROP_TABLE: case SQLITE_DROP_TEMP_INDEX: case SQLITE_DROP_TEMP_TABLE:
  case SQLITE_DROP_TEMP_TRIGGER: case SQLITE_DROP_TEMP_VIEW: case SQLITE_DROP_TRIGGER: case SQLITE_DROP_VIEW:
  case SQLITE_ALTER_TABLE: case SQLITE_CREATE_VTABLE: case SQLITE_DROP_VTABLE:
    s->schema_writes++;
    break;
  default:
    break;
  }
  switch (action) {
  /* esr's own tables (position, outbox, handler versions) are the host's: a handler may read them, never change them. */
  case SQLITE_INSERT:
  case SQLITE_UPDATE:
  case SQLITE_DELETE:
  case SQLITE_DROP_TABLE:
  case SQLITE_DROP_TEMP_TABLE:
    return is_esr_table(a) ? SQLITE_DENY : SQLITE_OK;
  case SQLITE_ALTER_TABLE:
  case SQLITE_CREATE_INDEX:
  case SQLITE_DROP_INDEX:
  case SQLITE_CREATE_TRIGGER:
  case SQLITE_CREATE_TEMP_TRIGGER:
  case SQLITE_DROP_TRIGGER:
    return is_esr_table(b) ? SQLITE_DENY : SQLITE_OK;
  case SQLITE_TRANSACTION:
  case SQLITE_SAVEPOINT:
  case SQLITE_ATTACH:
  case SQLITE_DETACH:
    return SQLITE_DENY;
  case SQLITE_PRAGMA: {
    /* These would change the durability contract or the schema under the host; reading pragmas stays allowed. */
    static const char *const denied[] = {"journal_mode", "synchronous", "locking_mode", "writable_schema",
                                         "schema_version", "wal_checkpoint", "query_only", NULL};
    for (int i = 0; denied[i]; i++)
      if (a && sqlite3_stricmp(a, denied[i]) == 0) return SQLITE_DENY;
    return SQLITE_OK;
  }
  default:
    return SQLITE_OK;
  }
}

/* While handler code runs, nothing may commit: the authorizer denies COMMIT, but after SQLite rolled the whole
 * transaction back on its own (a full disk, an I/O error) every later write of the handler would run in autocommit
 * mode and be durable at once, outside the batch. Returning non-zero turns such a commit into a rollback. */
static int refuse_guarded_commit(void *arg) {
  const esr_store *s = arg;
  return s->guard;
}

static esr_code exec(esr_store *s, const char *sql, esr_error *err) {
  char *msg = NULL;
  if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    int ext = sqlite3_extended_errcode(s->db);
    esr_code code = ext == SQLITE_NOTADB || (ext & 0xff) == SQLITE_CORRUPT ? ESR_E_CORRUPT : ESR_E_SQLITE;
    esr_error_set(err, code, ext, "%.60s...: %s", sql, msg ? msg : "error");
    sqlite3_free(msg);
    return code;
  }
  return ESR_E_OK;
}

static esr_code read_position(esr_store *s, esr_error *err) {
  sqlite3_stmt *st = NULL;
  memset(&s->pos, 0, sizeof s->pos);
  if (sqlite3_prepare_v2(s->db,
                         "SELECT topic, partition, next_offset, log_digest, applied_count, dead_count FROM esr_offsets",
                         -1, &st, NULL) != SQLITE_OK)
    return esr_store_error(s, err, "reading esr_offsets");
  esr_code rc = ESR_E_OK;
  int step;
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    const char *topic = (const char *)sqlite3_column_text(st, 0);
    int32_t partition = sqlite3_column_int(st, 1);
    if (!topic || strcmp(topic, s->topic) != 0 || partition != s->partition) {
      rc = esr_error_set(err, ESR_E_CORRUPT, 0, "the database holds the position of %s-%d, not of %s-%d",
                         topic ? topic : "?", partition, s->topic, s->partition);
      break;
    }
    s->pos.next_offset = sqlite3_column_int64(st, 2);
    if (sqlite3_column_bytes(st, 3) == ESR_DIGEST_LEN)
      memcpy(s->pos.log_digest, sqlite3_column_blob(st, 3), ESR_DIGEST_LEN);
    s->pos.applied = sqlite3_column_int64(st, 4);
    s->pos.dead = sqlite3_column_int64(st, 5);
  }
  if (rc == ESR_E_OK && step != SQLITE_DONE && step != SQLITE_ROW) rc = esr_store_error(s, err, "reading esr_offsets");
  sqlite3_finalize(st);
  return rc;
}

void esr_store_init_library(void) {
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  sqlite3_config(SQLITE_CONFIG_LOG, on_sqlite_log, NULL);
}

esr_code esr_store_open(const char *dir, const char *topic, int32_t partition, const esr_store_opts *opts,
                        esr_store **out, esr_error *err) {
  *out = NULL;
  char path[4096];
  esr_store_path(path, sizeof path, dir, topic, partition);
  esr_store *s = calloc(1, sizeof *s);
  if (!s) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  s->partition = partition;
  s->topic = strdup(topic);
  esr_code rc = ESR_E_OK;
  if (!s->topic) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto fail;
  }
  if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
      SQLITE_OK) {
    rc = esr_store_error(s, err, "open");
    goto fail;
  }
  sqlite3_extended_result_codes(s->db, 1);
  sqlite3_busy_timeout(s->db, 5000);
  char pragmas[256], cache[64] = ""; /* the page cache: sqlite.cache.mb, else SQLite's own default */
  if (opts && opts->cache_mb > 0) snprintf(cache, sizeof cache, "PRAGMA cache_size=-%d;", opts->cache_mb * 1024);
  snprintf(pragmas, sizeof pragmas,
           "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; %s PRAGMA temp_store=MEMORY; PRAGMA secure_delete=OFF;",
           cache);
  if ((rc = exec(s, pragmas, err)) != ESR_E_OK) goto fail;
  if ((rc = exec(s, SCHEMA, err)) != ESR_E_OK) goto fail;
  if ((rc = read_position(s, err)) != ESR_E_OK) goto fail;
  sqlite3_wal_hook(s->db, wal_hook, s);
  char wal[4200];
  struct stat st;
  snprintf(wal, sizeof wal, "%s-wal", path);
  if (stat(wal, &st) == 0) s->wal_frames = (int)(st.st_size / (4096 + 24)); /* a crash's WAL: an upper bound */
  for (int i = 0; i < ST_COUNT; i++) {
    if (sqlite3_prepare_v3(s->db, HOST_SQL[i], -1, SQLITE_PREPARE_PERSISTENT, &s->host[i], NULL) != SQLITE_OK) {
      rc = esr_store_error(s, err, "prepare");
      goto fail;
    }
  }
  sqlite3_set_authorizer(s->db, authorize, s);
  sqlite3_commit_hook(s->db, refuse_guarded_commit, s);
  *out = s;
  return ESR_E_OK;
fail:
  esr_error_prefix(err, "%s", path);
  esr_store_close(s);
  return rc;
}

void esr_store_close(esr_store *s) {
  if (!s) return;
  if (s->in_batch) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
  for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(s->host[i]);
  cache_free(&s->handler_stmts);
  cache_free(&s->host_stmts);
  sqlite3_close(s->db);
  free(s->topic);
  free(s);
}

sqlite3 *esr_store_db(esr_store *s) { return s->db; }
const char *esr_store_topic(const esr_store *s) { return s->topic; }
int32_t esr_store_partition(const esr_store *s) { return s->partition; }
const esr_position *esr_store_position(const esr_store *s) { return &s->pos; }
int esr_store_in_batch(const esr_store *s) { return s->in_batch; }
int esr_store_wal_frames(const esr_store *s) { return s->wal_frames; }
/* Resets every statement of the connection that is mid-step. */
static void sweep(esr_store *s) {
  for (sqlite3_stmt *st = sqlite3_next_stmt(s->db, NULL); st; st = sqlite3_next_stmt(s->db, st))
    if (sqlite3_stmt_busy(st)) sqlite3_reset(st);
}

void esr_store_guard(esr_store *s, int on) {
  s->guard = on;
  if (on) {
    s->n_lent = 0;
    t_fault = 0;
    s->fault = 0;
    return;
  }
  s->fault = t_fault;
  /* Statements lent to the handler are borrowed only during its callback: one left mid-step (a RETURNING row not
   * read to the end, say) would block RELEASE and COMMIT. A statement the handler prepared itself and left busy is
   * caught when RELEASE or COMMIT report it (run_host sweeps and retries). */
  if (s->n_lent > (int)(sizeof s->lent / sizeof *s->lent)) {
    sweep(s);
  } else {
    for (int i = 0; i < s->n_lent; i++)
      if (sqlite3_stmt_busy(s->lent[i])) sqlite3_reset(s->lent[i]);
  }
  s->n_lent = 0;
}

static esr_code run_host(esr_store *s, int which, esr_error *err) {
  sqlite3_stmt *st = s->host[which];
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc == SQLITE_BUSY && which != ST_BEGIN && which != ST_POSITION) {
    /* "SQL statements in progress": one the handler prepared and left mid-step. */
    sweep(s);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
  }
  if (rc != SQLITE_DONE) return esr_store_error(s, err, HOST_SQL[which]);
  return ESR_E_OK;
}

esr_code esr_store_begin(esr_store *s, esr_error *err) {
  if (s->in_batch) return esr_error_set(err, ESR_E_STATE, 0, "a batch is already open");
  esr_code rc = run_host(s, ST_BEGIN, err);
  if (rc == ESR_E_OK) s->in_batch = 1;
  return rc;
}

esr_code esr_store_commit(esr_store *s, const esr_position *pos, esr_error *err) {
  if (!s->in_batch) return esr_error_set(err, ESR_E_STATE, 0, "no batch is open");
  sqlite3_stmt *st = s->host[ST_POSITION];
  sqlite3_bind_text(st, 1, s->topic, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 2, s->partition);
  sqlite3_bind_int64(st, 3, pos->next_offset);
  sqlite3_bind_blob(st, 4, pos->log_digest, ESR_DIGEST_LEN, SQLITE_STATIC);
  sqlite3_bind_int64(st, 5, pos->applied);
  sqlite3_bind_int64(st, 6, pos->dead);
  esr_code rc = run_host(s, ST_POSITION, err);
  if (rc == ESR_E_OK) rc = run_host(s, ST_COMMIT, err);
  if (rc != ESR_E_OK) {
    /* After a failed COMMIT SQLite may have rolled back already; ROLLBACK then reports "no transaction": harmless. */
    if (!sqlite3_get_autocommit(s->db)) sqlite3_step(s->host[ST_ROLLBACK]), sqlite3_reset(s->host[ST_ROLLBACK]);
    s->in_batch = 0;
    return rc;
  }
  s->in_batch = 0;
  s->pos = *pos;
  return ESR_E_OK;
}

esr_code esr_store_rollback(esr_store *s, esr_error *err) {
  if (!s->in_batch) return ESR_E_OK;
  s->in_batch = 0;
  if (sqlite3_get_autocommit(s->db)) return ESR_E_OK; /* SQLite already rolled back (e.g. after SQLITE_FULL) */
  return run_host(s, ST_ROLLBACK, err);
}

uint64_t esr_store_write_mark(const esr_store *s) {
  return (uint64_t)sqlite3_total_changes64(s->db) + s->schema_writes;
}

esr_code esr_store_savepoint(esr_store *s, esr_error *err) { return run_host(s, ST_SAVEPOINT, err); }
esr_code esr_store_release(esr_store *s, esr_error *err) { return run_host(s, ST_RELEASE, err); }

esr_code esr_store_rollback_to(esr_store *s, esr_error *err) {
  esr_code rc = run_host(s, ST_ROLLBACK_TO, err);
  if (rc == ESR_E_OK) rc = run_host(s, ST_RELEASE, err);
  return rc;
}

static void cache_free(stmt_cache *c) {
  for (size_t i = 0; i < c->cap; i++) {
    if (c->v[i].sql) {
      sqlite3_finalize(c->v[i].stmt);
      free(c->v[i].sql);
    }
  }
  free(c->v);
  memset(c, 0, sizeof *c);
}

esr_code esr_store_wal_truncate(esr_store *s, esr_error *err) {
  if (s->in_batch) return esr_error_set(err, ESR_E_STATE, 0, "a batch is open");
  sqlite3_busy_timeout(s->db, 0); /* a reader holding the WAL: try another time rather than wait */
  int rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
  sqlite3_busy_timeout(s->db, 5000);
  if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) return esr_error_set(err, ESR_E_STATE, rc, "the WAL is in use");
  if (rc != SQLITE_OK) return esr_store_error(s, err, "wal_checkpoint(TRUNCATE)");
  s->wal_frames = 0;
  return ESR_E_OK;
}

static uint64_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

static int cache_grow(stmt_cache *c) {
  size_t cap = c->cap ? c->cap * 2 : 32;
  stmt_entry *t = calloc(cap, sizeof *t);
  if (!t) return -1;
  for (size_t i = 0; i < c->cap; i++) {
    if (!c->v[i].sql) continue;
    size_t j = c->v[i].hash & (cap - 1);
    while (t[j].sql) j = (j + 1) & (cap - 1);
    t[j] = c->v[i];
  }
  free(c->v);
  c->v = t;
  c->cap = cap;
  memset(c->recent, 0, sizeof c->recent); /* the entries moved */
  return 0;
}

static sqlite3_stmt *lend(sqlite3_stmt *st) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return st;
}

static sqlite3_stmt *cache_get(esr_store *s, stmt_cache *c, const char *sql, esr_error *err) {
  size_t r = ((uintptr_t)sql >> 3) & (RECENT - 1);
  if (c->recent[r].text == sql && strcmp(c->recent[r].e->sql, sql) == 0) return lend(c->recent[r].e->stmt);
  uint64_t h = fnv1a(sql);
  if (c->cap) {
    for (size_t j = h & (c->cap - 1); c->v[j].sql; j = (j + 1) & (c->cap - 1)) {
      if (c->v[j].hash == h && strcmp(c->v[j].sql, sql) == 0) {
        c->recent[r].text = sql;
        c->recent[r].e = &c->v[j];
        return lend(c->v[j].stmt);
      }
    }
  }
  if ((c->n + 1) * 2 > c->cap && cache_grow(c) != 0) {
    esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    return NULL;
  }
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
    esr_store_error(s, err, "prepare");
    return NULL;
  }
  char *copy = strdup(sql);
  if (!copy) {
    sqlite3_finalize(st);
    esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    return NULL;
  }
  size_t j = h & (c->cap - 1);
  while (c->v[j].sql) j = (j + 1) & (c->cap - 1);
  c->v[j] = (stmt_entry){h, copy, st};
  c->n++;
  return st;
}

int esr_store_guard_fault(const esr_store *s) { return s->fault; }

sqlite3_stmt *esr_store_stmt(esr_store *s, const char *sql, esr_error *err) {
  sqlite3_stmt *st = cache_get(s, &s->handler_stmts, sql, err);
  if (!st && !t_fault && esr_store_is_storage_fault(sqlite3_extended_errcode(s->db)))
    t_fault = sqlite3_extended_errcode(s->db); /* a prepare that ran out of memory is not the handler's verdict */
  if (st && s->guard) {
    if (s->n_lent < (int)(sizeof s->lent / sizeof *s->lent))
      s->lent[s->n_lent] = st;
    if (s->n_lent <= (int)(sizeof s->lent / sizeof *s->lent)) s->n_lent++;
  }
  return st;
}

sqlite3_stmt *esr_store_host_stmt(esr_store *s, const char *sql, esr_error *err) {
  int was = s->host_call;
  s->host_call = 1; /* prepared (and authorized) as the host's */
  sqlite3_stmt *st = cache_get(s, &s->host_stmts, sql, err);
  s->host_call = was;
  return st;
}

void esr_store_host_call(esr_store *s, int on) { s->host_call = on; }

esr_code esr_store_handler_version(esr_store *s, const char *name, int *version, esr_error *err) {
  *version = 0;
  sqlite3_stmt *st = esr_store_host_stmt(s, "SELECT schema_version FROM esr_handlers WHERE name = ?1", err);
  if (!st) return err ? err->code : ESR_E_SQLITE;
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) *version = sqlite3_column_int(st, 0);
  sqlite3_reset(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return esr_store_error(s, err, "reading esr_handlers");
  return ESR_E_OK;
}

esr_code esr_store_set_handler_version(esr_store *s, const char *name, int version, const char *plugin_version,
                                       esr_error *err) {
  sqlite3_stmt *st = esr_store_host_stmt(
      s, "INSERT OR REPLACE INTO esr_handlers(name, schema_version, plugin_version) VALUES (?1, ?2, ?3)", err);
  if (!st) return err ? err->code : ESR_E_SQLITE;
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 2, version);
  sqlite3_bind_text(st, 3, plugin_version, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return esr_store_error(s, err, "writing esr_handlers");
  return ESR_E_OK;
}
