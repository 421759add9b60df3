/* bench_limits.c — the three single-threaded limits esr is compared with, measured on the same events:
 *   consume: a plain librdkafka consumer reading every partition from offset 0 to its end, discarding the messages;
 *   parse:   esr_envelope_parse (cJSON + envelope check) of the values, already in memory;
 *   store:   the ledger handler's SQL (handlers/ledger/ledger.c) on real files with the store's pragmas
 *            (runtime/src/store.c), one database per partition, batch.max.events events per transaction with the
 *            esr_offsets row, events pre-parsed so that only SQLite is timed. */
#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "envelope.h"
#include "esr/json.h"

/* ---------------------------------------------------------------------------------------------------- consume */

static void conf_set(rd_kafka_conf_t *conf, const char *k, const char *v) {
  char errstr[512];
  if (rd_kafka_conf_set(conf, k, v, errstr, sizeof errstr) != RD_KAFKA_CONF_OK)
    bench_fail("consumer: %s=%s: %s", k, v, errstr);
}

double bench_consume_limit(const char *bootstrap, const char *topic, const bench_stream *s, int run, double *cpu_s) {
  int64_t total = (int64_t)s->n;
  char group[64];
  snprintf(group, sizeof group, "esr-bench-consume-%d", run); /* 2.0.2 needs a group handle for assign; none joined */
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  conf_set(conf, "bootstrap.servers", bootstrap);
  conf_set(conf, "group.id", group);
  conf_set(conf, "enable.auto.commit", "false");
  conf_set(conf, "enable.auto.offset.store", "false");
  conf_set(conf, "enable.partition.eof", "false");
  conf_set(conf, "auto.offset.reset", "error");
  /* KAFKA-NOTES: with the default 100000, 2.0.2 pauses fetching for a fixed second whenever more is queued. */
  conf_set(conf, "queued.min.messages", "1000000");
  conf_set(conf, "fetch.wait.max.ms", "25"); /* as esr's consumer */
  conf_set(conf, "log_level", "3");
  char errstr[512];
  double t0 = bench_now_s(), c0 = bench_cpu_self_s();
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (!rk) bench_fail("consumer: %s", errstr);
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(s->partitions);
  for (int p = 0; p < s->partitions; p++)
    rd_kafka_topic_partition_list_add(l, topic, p)->offset = 0; /* absolute: OFFSET_BEGINNING costs ~0.5 s */
  rd_kafka_resp_err_t e = rd_kafka_assign(rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (e) bench_fail("consumer: assign: %s", rd_kafka_err2str(e));
  int64_t got = 0;
  double deadline = t0 + 300;
  while (got < total) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
    if (!m) {
      if (bench_now_s() > deadline) bench_fail("consumer: %lld of %lld messages after 300 s", (long long)got,
                                               (long long)total);
      continue;
    }
    if (m->err) bench_fail("consumer: %s", rd_kafka_message_errstr(m));
    got++;
    rd_kafka_message_destroy(m);
  }
  double t1 = bench_now_s();
  *cpu_s = bench_cpu_self_s() - c0;
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return t1 - t0;
}

/* ---------------------------------------------------------------------------------------------------- parse */

double bench_parse_limit(const bench_stream *s, size_t *ok_out, double *cpu_s) {
  size_t ok = 0;
  char msg[300];
  double t0 = bench_now_s(), c0 = bench_cpu_self_s();
  for (size_t i = 0; i < s->n; i++) {
    esr_envelope env;
    if (esr_envelope_parse(bench_value(s, i), s->v[i].vlen, &env, msg, sizeof msg) == ESR_ENVELOPE_OK) ok++;
    esr_envelope_clear(&env);
  }
  double t1 = bench_now_s();
  *cpu_s = bench_cpu_self_s() - c0;
  *ok_out = ok;
  return t1 - t0;
}

/* ---------------------------------------------------------------------------------------------------- store */

enum { OP_NONE = 0, OP_OPEN, OP_DEPOSIT, OP_WITHDRAW };

typedef struct store_ev {
  int64_t amount;
  uint8_t op;
  char account[23];
  char owner[32];
  char time[32];
} store_ev;

struct bench_store_input {
  int partitions;
  store_ev *ev;      /* grouped by partition, in offset order */
  size_t *start;     /* partition p: ev[start[p] .. start[p+1]) */
  size_t n, by_op[4];
};

static int copy_str(char *dst, size_t cap, const char *src) {
  if (!src || strlen(src) >= cap) return 0;
  strcpy(dst, src);
  return 1;
}

/* What the ledger handler would bind for this event, or OP_NONE when it runs no SQL (bad JSON or envelope, unknown
 * type, invalid data: dead letters, whose outbox row is the runtime's, not the ledger's). */
static void parse_one(const bench_stream *s, size_t i, store_ev *out) {
  memset(out, 0, sizeof *out);
  esr_envelope env;
  char msg[300];
  if (esr_envelope_parse(bench_value(s, i), s->v[i].vlen, &env, msg, sizeof msg) != ESR_ENVELOPE_OK) return;
  const char *account = esr_json_string(env.data, "account");
  int op = !strcmp(env.type, "account.opened")      ? OP_OPEN
           : !strcmp(env.type, "account.deposited") ? OP_DEPOSIT
           : !strcmp(env.type, "account.withdrawn") ? OP_WITHDRAW
                                                    : OP_NONE;
  if (env.version != 1 || !account || !*account || strcmp(account, bench_key(s, i)) != 0) op = OP_NONE;
  if (op == OP_OPEN) {
    const char *owner = esr_json_string(env.data, "owner");
    if (!owner || !*owner || !copy_str(out->owner, sizeof out->owner, owner)) op = OP_NONE;
  } else if (op != OP_NONE) {
    if (!esr_json_int53(cJSON_GetObjectItemCaseSensitive(env.data, "amount"), 1, ESR_INT53_MAX, &out->amount))
      op = OP_NONE;
  }
  if (op != OP_NONE && (!copy_str(out->account, sizeof out->account, account) ||
                        !copy_str(out->time, sizeof out->time, env.time ? env.time : "")))
    bench_fail("store: event %zu has fields longer than the pre-parsed record holds", i);
  out->op = (uint8_t)op;
  esr_envelope_clear(&env);
}

bench_store_input *bench_store_prepare(const bench_stream *s) {
  bench_store_input *in = calloc(1, sizeof *in);
  if (!in) bench_fail("out of memory");
  in->partitions = s->partitions;
  in->n = s->n;
  in->ev = malloc(s->n * sizeof *in->ev);
  in->start = calloc((size_t)s->partitions + 1, sizeof *in->start);
  size_t *fill = calloc((size_t)s->partitions, sizeof *fill);
  if (!in->ev || !in->start || !fill) bench_fail("out of memory");
  for (int p = 0; p < s->partitions; p++) in->start[p + 1] = in->start[p] + (size_t)s->per_part[p];
  for (size_t i = 0; i < s->n; i++) {
    int p = s->v[i].partition;
    store_ev *e = &in->ev[in->start[p] + fill[p]++];
    parse_one(s, i, e);
    in->by_op[e->op]++;
  }
  free(fill);
  return in;
}

void bench_store_input_free(bench_store_input *in) {
  if (!in) return;
  free(in->ev);
  free(in->start);
  free(in);
}

/* The same text as runtime/src/store.c (esr_store_open) and handlers/ledger/ledger.c: keep them in step. */
static const char PRAGMAS[] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-%d; "
                              "PRAGMA temp_store=MEMORY; PRAGMA secure_delete=OFF;";
static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS esr_offsets("
    "  topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,"
    "  log_digest BLOB NOT NULL, applied_count INTEGER NOT NULL, dead_count INTEGER NOT NULL,"
    "  updated_at TEXT NOT NULL, PRIMARY KEY(topic, partition));"
    "CREATE TABLE accounts("
    "  id TEXT PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL,"
    "  opened_at TEXT, updated_at TEXT, currency TEXT NOT NULL DEFAULT 'EUR') WITHOUT ROWID";
enum { Q_BEGIN, Q_COMMIT, Q_POSITION, Q_OPEN, Q_DEPOSIT, Q_WITHDRAW, Q_BALANCE, Q_COUNT };
static const char *const SQL[Q_COUNT] = {
    [Q_BEGIN] = "BEGIN",
    [Q_COMMIT] = "COMMIT",
    [Q_POSITION] = "INSERT INTO esr_offsets(topic, partition, next_offset, log_digest, applied_count, dead_count, "
                   "updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, strftime('%Y-%m-%dT%H:%M:%fZ','now')) "
                   "ON CONFLICT(topic, partition) DO UPDATE SET next_offset = excluded.next_offset, "
                   "log_digest = excluded.log_digest, applied_count = excluded.applied_count, "
                   "dead_count = excluded.dead_count, updated_at = excluded.updated_at",
    [Q_OPEN] = "INSERT INTO accounts(id, owner, balance, opened_at, updated_at) "
               "VALUES (?1, ?2, 0, ?3, ?3) ON CONFLICT(id) DO NOTHING",
    [Q_DEPOSIT] = "UPDATE accounts SET balance = balance + ?2, updated_at = ?3 "
                  "WHERE id = ?1 AND currency = ?4 AND balance <= 9223372036854775807 - ?2",
    [Q_WITHDRAW] = "UPDATE accounts SET balance = balance - ?2, updated_at = ?3 WHERE id = ?1 AND balance >= ?2",
    [Q_BALANCE] = "SELECT balance, currency FROM accounts WHERE id = ?1",
};

typedef struct sdb {
  sqlite3 *db;
  sqlite3_stmt *q[Q_COUNT];
  int64_t applied, dead;
} sdb;

static void sql_fail(sqlite3 *db, const char *what) { bench_fail("store: %s: %s", what, sqlite3_errmsg(db)); }

static void step_done(sdb *d, int q) {
  if (sqlite3_step(d->q[q]) != SQLITE_DONE) sql_fail(d->db, SQL[q]);
  sqlite3_reset(d->q[q]);
}

/* A handler statement as host->stmt lends it: reset, bindings cleared. */
static sqlite3_stmt *lend(sdb *d, int q) {
  sqlite3_reset(d->q[q]);
  sqlite3_clear_bindings(d->q[q]);
  return d->q[q];
}

/* Returns 1 when the event was applied, 0 when the ledger would reject it. */
static int apply_sql(sdb *d, const store_ev *e, size_t *statements) {
  sqlite3_stmt *st;
  int rc;
  switch (e->op) {
  case OP_OPEN:
    st = lend(d, Q_OPEN);
    sqlite3_bind_text(st, 1, e->account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, e->owner, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, e->time, -1, SQLITE_STATIC);
    ++*statements;
    if (sqlite3_step(st) != SQLITE_DONE) sql_fail(d->db, "opening");
    return sqlite3_changes(d->db) != 0;
  case OP_DEPOSIT:
    st = lend(d, Q_DEPOSIT);
    sqlite3_bind_text(st, 1, e->account, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, e->amount);
    sqlite3_bind_text(st, 3, e->time, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, "EUR", -1, SQLITE_STATIC);
    ++*statements;
    if (sqlite3_step(st) != SQLITE_DONE) sql_fail(d->db, "depositing");
    if (sqlite3_changes(d->db)) return 1;
    goto refused;
  case OP_WITHDRAW:
    st = lend(d, Q_WITHDRAW);
    sqlite3_bind_text(st, 1, e->account, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, e->amount);
    sqlite3_bind_text(st, 3, e->time, -1, SQLITE_STATIC);
    ++*statements;
    if (sqlite3_step(st) != SQLITE_DONE) sql_fail(d->db, "withdrawing");
    if (sqlite3_changes(d->db)) return 1;
  refused: /* as the ledger does on this rare path: look at the account to say why */
    st = lend(d, Q_BALANCE);
    sqlite3_bind_text(st, 1, e->account, -1, SQLITE_STATIC);
    ++*statements;
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) sql_fail(d->db, "reading the balance");
    return 0;
  default: return 0;
  }
}

/* The event, then what the runtime does when the handler returns (esr_store_guard off): statements left mid-step (a
 * RETURNING row) are reset. */
static int apply(sdb *d, const store_ev *e, size_t *statements) {
  int applied = apply_sql(d, e, statements);
  for (int q = Q_OPEN; q < Q_COUNT; q++)
    if (sqlite3_stmt_busy(d->q[q])) sqlite3_reset(d->q[q]);
  return applied;
}

double bench_store_limit(const bench_store_input *in, const char *dir, int batch_events, int cache_mb,
                         size_t *statements_out, double *cpu_s) {
  int P = in->partitions;
  sdb *dbs = calloc((size_t)P, sizeof *dbs);
  size_t *pos = calloc((size_t)P, sizeof *pos);
  if (!dbs || !pos) bench_fail("out of memory");
  char pragmas[300];
  snprintf(pragmas, sizeof pragmas, PRAGMAS, cache_mb * 1024);
  for (int p = 0; p < P; p++) {
    char path[2048];
    snprintf(path, sizeof path, "%s/bench-%d.db", dir, p);
    sdb *d = &dbs[p];
    if (sqlite3_open_v2(path, &d->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK)
      sql_fail(d->db, path);
    sqlite3_extended_result_codes(d->db, 1);
    sqlite3_busy_timeout(d->db, 5000);
    if (sqlite3_exec(d->db, pragmas, NULL, NULL, NULL) != SQLITE_OK) sql_fail(d->db, "pragmas");
    if (sqlite3_exec(d->db, SCHEMA, NULL, NULL, NULL) != SQLITE_OK) sql_fail(d->db, "schema");
    for (int q = 0; q < Q_COUNT; q++)
      if (sqlite3_prepare_v3(d->db, SQL[q], -1, SQLITE_PREPARE_PERSISTENT, &d->q[q], NULL) != SQLITE_OK)
        sql_fail(d->db, SQL[q]);
  }
  static const uint8_t digest[32]; /* the digest's cost is the runtime's, not SQLite's: a constant here */
  size_t statements = 0;
  double t0 = bench_now_s(), c0 = bench_cpu_self_s();
  for (int open = 1; open;) { /* rounds: one batch of every partition that has events left, as a worker sees them */
    open = 0;
    for (int p = 0; p < P; p++) {
      size_t begin = in->start[p] + pos[p], end = in->start[p + 1];
      if (begin >= end) continue;
      open = 1;
      if (end - begin > (size_t)batch_events) end = begin + (size_t)batch_events;
      sdb *d = &dbs[p];
      step_done(d, Q_BEGIN);
      for (size_t i = begin; i < end; i++) {
        if (apply(d, &in->ev[i], &statements))
          d->applied++;
        else
          d->dead++;
      }
      pos[p] += end - begin;
      sqlite3_stmt *st = d->q[Q_POSITION];
      sqlite3_bind_text(st, 1, "bench", -1, SQLITE_STATIC);
      sqlite3_bind_int(st, 2, p);
      sqlite3_bind_int64(st, 3, (int64_t)pos[p]);
      sqlite3_bind_blob(st, 4, digest, 32, SQLITE_STATIC);
      sqlite3_bind_int64(st, 5, d->applied);
      sqlite3_bind_int64(st, 6, d->dead);
      step_done(d, Q_POSITION);
      step_done(d, Q_COMMIT);
      statements += 3;
    }
  }
  double t1 = bench_now_s();
  *cpu_s = bench_cpu_self_s() - c0;
  for (int p = 0; p < P; p++) {
    for (int q = 0; q < Q_COUNT; q++) sqlite3_finalize(dbs[p].q[q]);
    sqlite3_close(dbs[p].db);
  }
  free(dbs);
  free(pos);
  *statements_out = statements;
  return t1 - t0;
}
