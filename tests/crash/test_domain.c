/* test_domain.c — the second domain under kills (label `crash`): orders (orders.yaml, a SQL process manager) drive the
 * inventory (inventory.so) by events emitted through the outbox, in one worker that consumes both topics. While orders
 * arrive (placed, cancelled, shipped, a few refused) and stock is received directly, the worker is SIGKILLed at random
 * moments and restarted; then it catches up. Independent oracles (plain C here, the JSON parser of tests/support) fold
 * both topics as Kafka holds them: every order's status and every SKU's stock, shipped count and active reservations
 * (expired by the events' own times) must equal the databases. Every order placed must have reached the inventory (its
 * stock.reserved is in the inventory log); a command emitted twice after a kill is rejected there, never applied twice.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <sqlite3.h>

#include "esrt_case.h"
#include "esrt_json.h"
#include "esrt_kafka.h"
#include "esrt_state.h"

#define INVENTORY_SO ESR_BUILD_DIR "/handlers/inventory.so"
#define ORDERS_YAML ESR_SOURCE_DIR "/handlers/orders/orders.yaml"
#define SCHEMAS ESR_SOURCE_DIR "/schemas"
#define P 4
#define SKUS 12
#define ORDERS 500
#define KILLS 8

static void free_producer(void *p) { esrt_producer_free(p); }
static void free_client(void *rk) { rd_kafka_destroy(rk); }

static uint64_t mix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/* ---- the stream ---- */

typedef struct msg {
  const char *topic;
  int32_t partition;
  char key[32];
  char value[400];
} msg;

static int32_t orders_partition(const char *key) { /* FNV-1a, as esrt_ledger_partition */
  uint32_t h = 2166136261u;
  for (const char *c = key; *c; c++) h = (h ^ (unsigned char)*c) * 16777619u;
  return (int32_t)(h % P);
}

/* Where esr's outbox publisher (librdkafka's default partitioner) puts a key: stock received directly must land in
 * the partition the emitted commands of its SKU land in. */
static int32_t inventory_partition(const char *key) {
  return rd_kafka_msg_partitioner_consistent_random(NULL, key, strlen(key), P, NULL, NULL);
}

static void stamp(char *buf, size_t cap, int64_t seconds) {
  time_t t = (time_t)(1772355600 + seconds); /* 2026-03-01T09:00:00Z */
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static msg *generate(uint64_t seed, size_t *n_out) {
  msg *v = calloc(ORDERS * 3 + SKUS * 8, sizeof *v);
  assert_non_null(v);
  size_t n = 0;
  int64_t clock = 0;
  char t[32];
  for (int s = 0; s < SKUS; s++) { /* opening stock */
    msg *m = &v[n++];
    m->topic = "inventory";
    snprintf(m->key, sizeof m->key, "sku-%02d", s);
    m->partition = inventory_partition(m->key);
    stamp(t, sizeof t, clock);
    snprintf(m->value, sizeof m->value, "{\"type\":\"stock.received\",\"time\":\"%s\",\"data\":{\"sku\":\"%s\",\"qty\":40}}",
             t, m->key);
  }
  int status[ORDERS] = {0}; /* 0 none, 1 placed, 2 ended */
  for (int step = 0; step < ORDERS * 2; step++) {
    clock += 20; /* reservations (15 minutes) expire after about 45 steps */
    stamp(t, sizeof t, clock);
    uint64_t r = mix(&seed);
    int o = (int)(r % ORDERS);
    msg *m = &v[n++];
    m->topic = "orders";
    snprintf(m->key, sizeof m->key, "o-%04d", o);
    m->partition = orders_partition(m->key);
    const char *type;
    if (step % 40 == 39) { /* restock a SKU */
      m->topic = "inventory";
      snprintf(m->key, sizeof m->key, "sku-%02d", (int)((r >> 20) % SKUS));
      m->partition = inventory_partition(m->key);
      snprintf(m->value, sizeof m->value, "{\"type\":\"stock.received\",\"time\":\"%s\",\"data\":{\"sku\":\"%s\",\"qty\":%d}}",
               t, m->key, 5 + (int)((r >> 30) % 20));
      continue;
    }
    if (status[o] == 0 || (r >> 40) % 50 == 0) { /* placed (now and then twice: refused) */
      snprintf(m->value, sizeof m->value,
               "{\"type\":\"order.placed\",\"time\":\"%s\",\"data\":{\"order\":\"%s\",\"sku\":\"sku-%02d\",\"qty\":%d}}", t,
               m->key, (int)((r >> 20) % SKUS), 1 + (int)((r >> 32) % 6));
      if (!status[o]) status[o] = 1;
      continue;
    }
    type = (r >> 44) % 3 == 0 ? "order.cancelled" : "order.shipped"; /* an ended order ends again: refused */
    snprintf(m->value, sizeof m->value, "{\"type\":\"%s\",\"time\":\"%s\",\"data\":{\"order\":\"%s\"}}", type, t,
             m->key);
    status[o] = 2;
  }
  *n_out = n;
  return v;
}

/* ---- the oracles ---- */

typedef struct order_o {
  char id[32], sku[32];
  int64_t qty;
  int status; /* 0 none, 1 placed, 2 cancelled, 3 shipped */
} order_o;

typedef struct resv_o {
  char id[32];
  int64_t qty;
  char expires[32];
} resv_o;

typedef struct sku_o {
  char sku[32];
  int64_t on_hand, shipped;
  resv_o *r;
  int n_r;
  int seen;
} sku_o;

static order_o *order_of(order_o *v, const char *id) {
  int i = atoi(id + 2);
  return i >= 0 && i < ORDERS ? &v[i] : NULL;
}

static const char *jstr(const esrt_jval *obj, const char *name) {
  const esrt_jval *v = esrt_json_get(obj, name);
  return v && v->type == ESRT_J_STRING ? v->text : NULL;
}

static void fold_orders(const esrt_records *log, order_o *orders, int *placed_applied) {
  for (size_t i = 0; i < log->n; i++) {
    esrt_jval *env = esrt_json_parse(log->v[i].value, log->v[i].value_len);
    assert_non_null(env);
    const char *type = jstr(env, "type");
    const esrt_jval *data = esrt_json_get(env, "data");
    order_o *o = order_of(orders, jstr(data, "order"));
    assert_non_null(o);
    if (strcmp(type, "order.placed") == 0) {
      if (o->status == 0) {
        snprintf(o->id, sizeof o->id, "%s", jstr(data, "order"));
        snprintf(o->sku, sizeof o->sku, "%s", jstr(data, "sku"));
        assert_true(esrt_json_int_in(esrt_json_get(data, "qty"), 1, 1000, &o->qty));
        o->status = 1;
        (*placed_applied)++;
      }
    } else if (o->status == 1) {
      o->status = strcmp(type, "order.cancelled") == 0 ? 2 : 3;
    }
    esrt_json_free(env);
  }
}

static sku_o *sku_of(sku_o *v, const char *sku) {
  int i = atoi(sku + 4);
  return i >= 0 && i < SKUS ? &v[i] : NULL;
}

/* The inventory handler's rules (inventory.c), folded independently: expiry by the event's own time, undone with the
 * event when it is refused. Also counts the reservations of each order seen in the log. */
static void fold_inventory(const esrt_records *log, sku_o *skus, int *reserved_seen) {
  for (size_t i = 0; i < log->n; i++) {
    esrt_jval *env = esrt_json_parse(log->v[i].value, log->v[i].value_len);
    assert_non_null(env);
    const char *type = jstr(env, "type"), *now = jstr(env, "time");
    const esrt_jval *data = esrt_json_get(env, "data");
    sku_o *s = sku_of(skus, jstr(data, "sku"));
    assert_non_null(s);
    snprintf(s->sku, sizeof s->sku, "%s", jstr(data, "sku"));
    s->seen = 1;
    resv_o kept[2 * ORDERS];
    int n_kept = 0;
    for (int k = 0; k < s->n_r; k++)
      if (strcmp(s->r[k].expires, now) > 0) kept[n_kept++] = s->r[k];
    const char *id = jstr(data, "reservation");
    int at = -1;
    for (int k = 0; id && k < n_kept && at < 0; k++)
      if (strcmp(kept[k].id, id) == 0) at = k;
    int64_t qty = 0, on_hand = s->on_hand, shipped = s->shipped, held = 0;
    esrt_json_int_in(esrt_json_get(data, "qty"), 1, 1000000000, &qty);
    for (int k = 0; k < n_kept; k++) held += kept[k].qty;
    int applied = 1;
    if (strcmp(type, "stock.received") == 0) {
      on_hand += qty;
    } else if (strcmp(type, "stock.reserved") == 0) {
      (*reserved_seen)++;
      if (at >= 0 || on_hand - held < qty) {
        applied = 0;
      } else {
        resv_o *r = &kept[n_kept++];
        snprintf(r->id, sizeof r->id, "%s", id);
        r->qty = qty;
        snprintf(r->expires, sizeof r->expires, "%s", jstr(data, "expires_at"));
      }
    } else if (at < 0) { /* released or shipped: the reservation must be active */
      applied = 0;
    } else {
      if (strcmp(type, "stock.shipped") == 0) {
        on_hand -= kept[at].qty;
        shipped += kept[at].qty;
      }
      kept[at] = kept[--n_kept];
    }
    if (applied) {
      s->on_hand = on_hand;
      s->shipped = shipped;
      s->r = realloc(s->r, (size_t)(n_kept ? n_kept : 1) * sizeof *s->r);
      memcpy(s->r, kept, (size_t)n_kept * sizeof *kept);
      s->n_r = n_kept;
    }
    esrt_json_free(env);
  }
}

/* ---- the databases ---- */

static void read_db_rows(const char *state, const char *topic, const char *sql, void (*row)(sqlite3_stmt *, void *),
                         void *arg) {
  for (int p = 0; p < P; p++) {
    char path[1300];
    snprintf(path, sizeof path, "%s/%s-%d.db", state, topic, p);
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
      sqlite3_close(db);
      continue;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK)
      while (sqlite3_step(st) == SQLITE_ROW) row(st, arg);
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
}

typedef struct diffs {
  order_o *orders;
  sku_o *skus;
  int n, rows;
} diffs;

static void order_row(sqlite3_stmt *st, void *arg) {
  diffs *d = arg;
  d->rows++;
  const char *id = (const char *)sqlite3_column_text(st, 0), *status = (const char *)sqlite3_column_text(st, 3);
  order_o *o = order_of(d->orders, id);
  static const char *const names[] = {"none", "placed", "cancelled", "shipped"};
  if (!o || strcmp(o->sku, (const char *)sqlite3_column_text(st, 1)) != 0 || o->qty != sqlite3_column_int64(st, 2) ||
      strcmp(names[o->status], status) != 0) {
    if (d->n++ < 10) fprintf(stderr, "order %s: database %s, oracle %s\n", id, status, o ? names[o->status] : "-");
  }
}

static void stock_row(sqlite3_stmt *st, void *arg) {
  diffs *d = arg;
  d->rows++;
  const char *sku = (const char *)sqlite3_column_text(st, 0);
  sku_o *s = sku_of(d->skus, sku);
  if (!s || s->on_hand != sqlite3_column_int64(st, 1) || s->shipped != sqlite3_column_int64(st, 2)) {
    if (d->n++ < 10)
      fprintf(stderr, "stock %s: database %lld on hand, %lld shipped; oracle %lld, %lld\n", sku,
              (long long)sqlite3_column_int64(st, 1), (long long)sqlite3_column_int64(st, 2),
              s ? (long long)s->on_hand : -1LL, s ? (long long)s->shipped : -1LL);
  }
}

static void resv_row(sqlite3_stmt *st, void *arg) {
  diffs *d = arg;
  d->rows++;
  const char *id = (const char *)sqlite3_column_text(st, 0), *sku = (const char *)sqlite3_column_text(st, 1);
  sku_o *s = sku_of(d->skus, sku);
  int found = 0;
  for (int k = 0; s && k < s->n_r && !found; k++) found = strcmp(s->r[k].id, id) == 0 && s->r[k].qty == sqlite3_column_int64(st, 2);
  if (!found && d->n++ < 10) fprintf(stderr, "reservation %s of %s: in the database, not in the oracle\n", id, sku);
}

/* ---- the run ---- */

static void produce(esrt_producer *prod, msg *m) {
  assert_int_equal(0, esrt_produce(prod, m->topic, m->partition, m->key, strlen(m->key), m->value, strlen(m->value),
                                   NULL));
}

static void domain_survives_kills(void **state) {
  esrt_case *c = *state;
  uint64_t seed = ((uint64_t)time(NULL) << 16) ^ (uint64_t)getpid();
  printf("# seed %" PRIu64 "\n", seed);
  esrt_mock mock;
  const char *topics[] = {"orders:4", "inventory:4", "domain.dlq:1", NULL};
  assert_int_equal(0, esrt_mock_start(&mock, ESR_BIN, c->dir, 1, topics, 20000));
  esrt_producer *prod = esrt_case_defer(c, free_producer, esrt_producer_new(mock.bootstrap));
  assert_non_null(prod);
  rd_kafka_t *rk = esrt_case_defer(c, free_client, esrt_kafka_client_new(mock.bootstrap));
  assert_non_null(rk);
  size_t n;
  msg *stream = generate(seed, &n);
  char state_dir[1100], conf[1200];
  snprintf(state_dir, sizeof state_dir, "%s/state", c->dir);
  assert_int_equal(0, esrt_write_worker_config(conf, sizeof conf, c->dir, "worker", mock.bootstrap, "orders,inventory",
                                               "domain.dlq", state_dir, ORDERS_YAML "," INVENTORY_SO,
                                               "assignment = static\npartitions = 0-3\nschemas.dir = %s\n"
                                               "batch.max.events = 50\n",
                                               SCHEMAS));
  size_t produced = 0;
  int busy = 0;
  uint64_t rng = seed;
  for (int k = 0; k < KILLS; k++) { /* a worker lives 100-700 ms while its share of the stream arrives, then dies */
    esrt_proc w;
    char name[32];
    snprintf(name, sizeof name, "worker-%02d", k);
    assert_int_equal(0, esrt_start_worker(&w, ESR_BIN, c->dir, name, conf));
    int64_t kill_at = esrt_now_ms() + 100 + (int64_t)(mix(&rng) % 600);
    size_t share = (n * (size_t)(k + 1)) / (KILLS + 1);
    while (esrt_now_ms() < kill_at) {
      if (produced < share) produce(prod, &stream[produced++]);
      esrt_producer_poll(prod, produced < share ? 0 : 5);
    }
    /* a burst just before the kill: the worker dies with work in hand (asserted below from the state and the log) */
    for (int b = 0; b < 30 && produced < n; b++) produce(prod, &stream[produced++]);
    esrt_producer_poll(prod, (int)(mix(&rng) % 6));
    assert_true(esrt_alive(&w));
    assert_int_equal(128 + SIGKILL, esrt_kill9(&w));
    esrt_producer_flush(prod, 10000);
    int64_t applied = 0, logged = 0;
    for (int p = 0; p < P; p++) {
      esrt_part_state ps;
      int64_t lo, hi;
      if (esrt_read_position(state_dir, "orders", p, &ps) == 0) applied += ps.next_offset;
      if (esrt_watermarks(rk, "orders", p, &lo, &hi) == 0) logged += hi;
    }
    busy += applied < logged; /* the kill struck with orders delivered and not yet applied */
    while (produced < share) produce(prod, &stream[produced++]);
  }
  while (produced < n) produce(prod, &stream[produced++]);
  assert_int_equal(0, esrt_producer_flush(prod, 60000));
  esrt_proc w;
  assert_int_equal(0, esrt_start_worker(&w, ESR_BIN, c->dir, "worker-final", conf));
  const char *dirs[] = {state_dir};
  assert_int_equal(0, esrt_wait_caught_up(rk, "orders", P, dirs, 1, 120000)); /* and every command published */
  assert_int_equal(0, esrt_wait_caught_up(rk, "inventory", P, dirs, 1, 120000));
  assert_int_equal(0, esrt_stop(&w, 30000));

  esrt_records olog = {0}, ilog = {0};
  assert_int_equal(0, esrt_consume_all(mock.bootstrap, "orders", &olog, 60000));
  assert_int_equal(0, esrt_consume_all(mock.bootstrap, "inventory", &ilog, 60000));
  order_o *orders = calloc(ORDERS, sizeof *orders);
  sku_o *skus = calloc(SKUS, sizeof *skus);
  assert_non_null(orders);
  assert_non_null(skus);
  int placed = 0, reserved_seen = 0;
  fold_orders(&olog, orders, &placed);
  fold_inventory(&ilog, skus, &reserved_seen);
  /* every order placed reached the inventory: the outbox published its command (once, or again after a kill) */
  int missing = 0;
  for (int i = 0; i < ORDERS; i++) {
    if (orders[i].status == 0) continue;
    int found = 0;
    for (size_t k = 0; k < ilog.n && !found; k++)
      found = strstr(ilog.v[k].value, "\"stock.reserved\"") && strstr(ilog.v[k].value, orders[i].id) &&
              strstr(ilog.v[k].value, "\"reservation\":\"") != NULL;
    missing += !found;
  }
  diffs d = {.orders = orders, .skus = skus};
  read_db_rows(state_dir, "orders", "SELECT id, sku, qty, status FROM orders", order_row, &d);
  int order_rows = d.rows;
  d.rows = 0;
  read_db_rows(state_dir, "inventory", "SELECT sku, on_hand, shipped FROM stock", stock_row, &d);
  int stock_rows = d.rows;
  d.rows = 0;
  read_db_rows(state_dir, "inventory", "SELECT id, sku, qty FROM reservations", resv_row, &d);
  int active = 0;
  for (int s = 0; s < SKUS; s++) active += skus[s].n_r;
  printf("# %zu messages (%d kills): %d orders placed, %zu inventory events (%d reservations asked); databases: %d "
         "orders, %d SKUs, %d active reservations (oracle %d); %d differences, %d orders never reached the inventory\n",
         n, KILLS, placed, ilog.n, reserved_seen, order_rows, stock_rows, d.rows, active, d.n, missing);
  printf("# %d of %d kills struck while delivered orders were not yet applied\n", busy, KILLS);
  assert_true(busy >= KILLS / 2); /* the premise: the kills interrupted work */
  assert_int_equal(order_rows, placed);
  assert_int_equal(stock_rows, SKUS);
  assert_int_equal(d.rows, active);
  assert_int_equal(d.n, 0);
  assert_int_equal(missing, 0);
  assert_true(placed > ORDERS / 2 && active >= 0);
  for (int s = 0; s < SKUS; s++) free(skus[s].r);
  free(skus);
  free(orders);
  free(stream);
  esrt_records_free(&olog);
  esrt_records_free(&ilog);
  esrt_case_cleanup(c);
  assert_int_equal(0, esrt_mock_stop(&mock));
  c->passed = 1;
}

static int setup(void **state) {
  *state = esrt_case_new("domain");
  return *state ? 0 : -1;
}

static int teardown(void **state) {
  esrt_case_end(*state);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test_setup_teardown(domain_survives_kills, setup, teardown)};
  return cmocka_run_group_tests_name("domain", tests, NULL, NULL);
}
