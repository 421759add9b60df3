/* good.c — the reference test plugin: a minimal valid handler whose every behaviour an event can choose, so that the
 * tests can drive each host service and each result code through the real ABI (in the spirit of PostgreSQL's
 * contrib/test_decoding).
 *
 * Claims `test.*` (version 1) and `testup.event` (versions 1..2, with an upcast from 1 to 2). Tables:
 *   test_events(offset, topic, part, type, version, key, id, time)  one row per event apply saw, written first
 *   test_kv(k, v)                                                   written when data has "k" (and "v")
 *   test_sql_log(offset, seq, sql, rc)                              the SQLite result code of each "sql" statement
 *   test_migrations(from_version)                                   one row per migrate call
 * apply does, in this order, what data asks for:
 *   "k": "key", "v": "value"  INSERT OR REPLACE into test_kv
 *   "sql": "SQL" or ["SQL", ...]  runs each through host->db with sqlite3_exec and logs its result code, for the
 *                             authorizer tests (COMMIT, ATTACH, PRAGMA journal_mode=DELETE ... must give SQLITE_AUTH)
 *   "emit": [{"topic": T, "key": K or null, "value": V}, ...]  host->emit each (a failed emit is ESR_FATAL)
 *   "leave_busy": true        leaves a writing statement (INSERT ... RETURNING) in the middle of its rows
 *   "error": "message"        host->error(message)
 *   "result": "ok" | "reject" | "invalid" | "fatal" | <integer>  what apply returns (default ok)
 * upcast (testup.event v1 -> v2): first, data "upcast_write": "K" writes test_kv(K, 'upcast') and "upcast_emit": true
 * tries host->emit, recording test_kv('upcast-emit', 'refused' | 'allowed'); then data "upcast": "invalid" refuses
 * it; "break" removes "data" (an invalid envelope); otherwise sets version 2 and data.upcasted_from. migrate creates test_migrate_junk and fails when the environment
 * variable ESR_TEST_GOOD_MIGRATE_FAIL is set (a test hook). Options (ABI 1.1): "version" replaces its version
 * string; any other option is refused by init with a message naming it.
 */
#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esr/handler.h"
#include "esr/json.h"

ESR_HANDLER_DECLARE_ABI;

static const esr_host_api *host;
static int user_token;

static int sql_failed(esr_ctx *ctx, const char *what) {
  host->error(ctx, "%s: %s", what, sqlite3_errmsg(host->db(ctx)));
  return ESR_FATAL;
}

static int migrate(esr_ctx *ctx, int from_version) {
  const char *fail = getenv("ESR_TEST_GOOD_MIGRATE_FAIL");
  if (fail && *fail) {
    /* writes first, so that a test can check the host rolls a failed migration back */
    sqlite3_exec(host->db(ctx), "CREATE TABLE test_migrate_junk(x)", NULL, NULL, NULL);
    host->error(ctx, "migrate refused on purpose: %s", fail);
    return ESR_FATAL;
  }
  if (from_version < 1) {
    char *msg = NULL;
    int rc = sqlite3_exec(host->db(ctx),
                          "CREATE TABLE test_events(offset INTEGER PRIMARY KEY, topic TEXT, part INTEGER, type TEXT,"
                          "  version INTEGER, key BLOB, id TEXT, time TEXT);"
                          "CREATE TABLE test_kv(k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;"
                          "CREATE TABLE test_sql_log(offset INTEGER, seq INTEGER, sql TEXT, rc INTEGER,"
                          "  PRIMARY KEY(offset, seq));"
                          "CREATE TABLE test_migrations(from_version INTEGER);",
                          NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
      host->error(ctx, "creating tables: %s", msg ? msg : sqlite3_errstr(rc));
      sqlite3_free(msg);
      return ESR_FATAL;
    }
  }
  sqlite3_stmt *st = host->stmt(ctx, "INSERT INTO test_migrations(from_version) VALUES (?1)");
  if (!st) return ESR_FATAL;
  sqlite3_bind_int(st, 1, from_version);
  if (sqlite3_step(st) != SQLITE_DONE) return sql_failed(ctx, "recording the migration");
  return ESR_OK;
}

static int record_event(esr_ctx *ctx, const esr_event *ev) {
  sqlite3_stmt *st = host->stmt(ctx, "INSERT INTO test_events(offset, topic, part, type, version, key, id, time) "
                                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  if (!st) return ESR_FATAL;
  sqlite3_bind_int64(st, 1, ev->offset);
  sqlite3_bind_text(st, 2, ev->topic, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 3, ev->partition);
  sqlite3_bind_text(st, 4, ev->type, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 5, ev->version);
  if (ev->key)
    sqlite3_bind_blob(st, 6, ev->key, (int)ev->key_len, SQLITE_STATIC);
  if (ev->id) sqlite3_bind_text(st, 7, ev->id, -1, SQLITE_STATIC);
  if (ev->time) sqlite3_bind_text(st, 8, ev->time, -1, SQLITE_STATIC);
  if (sqlite3_step(st) != SQLITE_DONE) return sql_failed(ctx, "recording the event");
  return ESR_OK;
}

static int run_sql(esr_ctx *ctx, const esr_event *ev, int seq, const char *sql) {
  int rc = sqlite3_exec(host->db(ctx), sql, NULL, NULL, NULL);
  sqlite3_stmt *st = host->stmt(ctx, "INSERT INTO test_sql_log(offset, seq, sql, rc) VALUES (?1, ?2, ?3, ?4)");
  if (!st) return ESR_FATAL;
  sqlite3_bind_int64(st, 1, ev->offset);
  sqlite3_bind_int(st, 2, seq);
  sqlite3_bind_text(st, 3, sql, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 4, rc);
  if (sqlite3_step(st) != SQLITE_DONE) return sql_failed(ctx, "logging a statement");
  return ESR_OK;
}

static int apply(esr_ctx *ctx, const esr_event *ev) {
  if (host->user(ctx) != &user_token) {
    host->error(ctx, "host->user did not return the pointer set by init");
    return ESR_FATAL;
  }
  const cJSON *d = ev->data;
  int rc = record_event(ctx, ev);
  if (rc != ESR_OK) return rc;

  const char *k = esr_json_string(d, "k");
  if (k) {
    sqlite3_stmt *st = host->stmt(ctx, "INSERT OR REPLACE INTO test_kv(k, v) VALUES (?1, ?2)");
    if (!st) return ESR_FATAL;
    sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
    const char *v = esr_json_string(d, "v");
    if (v) sqlite3_bind_text(st, 2, v, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) return sql_failed(ctx, "writing test_kv");
  }

  const cJSON *sql = cJSON_GetObjectItemCaseSensitive(d, "sql");
  if (cJSON_IsString(sql)) {
    if ((rc = run_sql(ctx, ev, 0, sql->valuestring)) != ESR_OK) return rc;
  } else if (cJSON_IsArray(sql)) {
    int seq = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, sql) {
      if (cJSON_IsString(item) && (rc = run_sql(ctx, ev, seq++, item->valuestring)) != ESR_OK) return rc;
    }
  }

  const cJSON *emit = cJSON_GetObjectItemCaseSensitive(d, "emit");
  const cJSON *e;
  cJSON_ArrayForEach(e, emit) {
    const char *topic = esr_json_string(e, "topic");
    const char *key = esr_json_string(e, "key");
    const char *value = esr_json_string(e, "value");
    if (!topic || !value) {
      host->error(ctx, "emit needs topic and value");
      return ESR_INVALID;
    }
    if (host->emit(ctx, topic, key, key ? strlen(key) : 0, value, strlen(value)) != 0) return ESR_FATAL;
  }

  if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "leave_busy"))) {
    sqlite3_stmt *st = host->stmt(ctx, "INSERT INTO test_kv(k, v) VALUES ('busy1', 'x'), ('busy2', 'y') "
                                       "ON CONFLICT(k) DO UPDATE SET v = excluded.v RETURNING k");
    if (!st) return ESR_FATAL;
    if (sqlite3_step(st) != SQLITE_ROW) return sql_failed(ctx, "leave_busy");
    /* and return with the statement mid-step, as a careless handler would */
  }

  const char *error = esr_json_string(d, "error");
  if (error) host->error(ctx, "%s", error);

  const cJSON *result = cJSON_GetObjectItemCaseSensitive(d, "result");
  if (cJSON_IsNumber(result)) return result->valueint;
  const char *r = cJSON_IsString(result) ? result->valuestring : "ok";
  if (strcmp(r, "reject") == 0) return ESR_REJECT;
  if (strcmp(r, "invalid") == 0) return ESR_INVALID;
  if (strcmp(r, "fatal") == 0) return ESR_FATAL;
  return ESR_OK;
}

static int upcast_kv(esr_ctx *ctx, const char *k, const char *v) {
  sqlite3_stmt *st = host->stmt(ctx, "INSERT OR REPLACE INTO test_kv(k, v) VALUES (?1, ?2)");
  if (!st) return ESR_FATAL;
  sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, v, -1, SQLITE_STATIC);
  return sqlite3_step(st) == SQLITE_DONE ? ESR_OK : sql_failed(ctx, "upcast write");
}

static int upcast(esr_ctx *ctx, cJSON *envelope, int from_version) {
  cJSON *data = cJSON_GetObjectItemCaseSensitive(envelope, "data");
  const char *write = esr_json_string(data, "upcast_write");
  if (write && upcast_kv(ctx, write, "upcast") != ESR_OK) return ESR_FATAL;
  if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(data, "upcast_emit"))) {
    int rc = host->emit(ctx, "out", "k", 1, "v", 1);
    if (upcast_kv(ctx, "upcast-emit", rc == 0 ? "allowed" : "refused") != ESR_OK) return ESR_FATAL;
  }
  const char *how = esr_json_string(data, "upcast");
  if (how && strcmp(how, "invalid") == 0) {
    host->error(ctx, "cannot upcast this one from version %d", from_version);
    return ESR_INVALID;
  }
  if (how && strcmp(how, "break") == 0) {
    cJSON_DeleteItemFromObjectCaseSensitive(envelope, "data");
    return ESR_OK;
  }
  cJSON_DeleteItemFromObjectCaseSensitive(envelope, "version");
  cJSON_AddNumberToObject(envelope, "version", 2);
  cJSON_AddNumberToObject(data, "upcasted_from", from_version);
  return ESR_OK;
}

static void fini(void *user) { (void)user; }

static const esr_event_type TYPES[] = {
    {"test.*", 1, 1},
    {"testup.event", 1, 2},
    {NULL, 0, 0},
};

static char version[64] = "1.2.3";

int esr_handler_init(const esr_host_api *h, esr_handler *out) {
  if (ESR_HANDLER_ABI_MAJOR_OF(h->abi_version) != ESR_HANDLER_ABI_MAJOR || h->struct_size < sizeof *h) return -1;
  if (out->struct_size < sizeof *out) return -2;
  /* One option: "version" replaces the version string (copied: options live during init only). */
  static const char *const known[] = {"version", NULL};
  const char *unknown = esr_handler_unknown_option(out, known);
  if (unknown) {
    esr_handler_init_error(out, "unknown option '%s' (good knows: version)", unknown);
    return -3;
  }
  const char *v = esr_handler_option_get(out, "version");
  snprintf(version, sizeof version, "%s", v ? v : "1.2.3");
  host = h;
  out->abi_version = ESR_HANDLER_ABI;
  out->name = "good";
  out->version = version;
  out->schema_version = 1;
  out->types = TYPES;
  out->user = &user_token;
  out->migrate = migrate;
  out->apply = apply;
  out->upcast = upcast;
  out->fini = fini;
  return 0;
}
