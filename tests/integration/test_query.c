/* test_query.c — `esr query` beside a live worker (label `integration`). A worker applies a ledger stream over 16
 * partitions (more than SQLite's 10 attached databases) while a producer keeps writing; meanwhile `esr query` runs
 * again and again, each time two statements: the partitions' positions (esr_offsets) and every account. Each run must
 * succeed and be a consistent picture: for every partition, the accounts it shows are exactly the oracle's state after
 * the events before the next_offset it shows in the same run (one read transaction per partition). The worker is not
 * disturbed: it catches up and its final state equals the oracle, and it stops cleanly. Premises asserted: the runs
 * saw the worker at different positions, and some of them mid-stream. */
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "esrt_case.h"
#include "esrt_json.h"
#include "esrt_kafka.h"
#include "esrt_ledger.h"
#include "esrt_state.h"

#define LEDGER_SO ESR_BUILD_DIR "/handlers/ledger.so"
#define P 16
#define MAX_RUNS 60

static void free_producer(void *p) { esrt_producer_free(p); }
static void free_client(void *rk) { rd_kafka_destroy(rk); }
static void free_oracle(void *o) { esrt_oracle_free(o); }

typedef struct producing {
  esrt_producer *prod;
  esrt_event *ev;
  size_t from, n;
  atomic_int done;
  int failed;
} producing;

/* Produces the rest of the stream, paced (at most 25,000 events a second). */
static void *produce_rest(void *arg) {
  producing *pr = arg;
  for (size_t i = pr->from; i < pr->n && !pr->failed; i++) {
    esrt_event *e = &pr->ev[i];
    if (esrt_produce(pr->prod, "ledger", e->partition, e->key, e->key_len, e->value, e->value_len, &e->offset) != 0)
      pr->failed = 1;
    if (i % 100 == 99) { /* a pace, so that the queries meet the worker at many positions */
      esrt_producer_poll(pr->prod, 0);
      esrt_sleep_ms(4);
    }
  }
  if (esrt_producer_flush(pr->prod, 60000) != 0) pr->failed = 1;
  atomic_store(&pr->done, 1);
  return NULL;
}

typedef struct snap_account {
  int32_t partition;
  char *id;
  int64_t balance;
} snap_account;

typedef struct snapshot {
  int64_t next[P]; /* -1: the partition had no position yet */
  snap_account *acc;
  size_t n_acc;
} snapshot;

static int cmp_acc(const void *a, const void *b) {
  const snap_account *x = a, *y = b;
  if (x->partition != y->partition) return x->partition < y->partition ? -1 : 1;
  return strcmp(x->id, y->id);
}

static void snapshot_free(snapshot *s) {
  for (size_t i = 0; i < s->n_acc; i++) free(s->acc[i].id);
  free(s->acc);
}

static int64_t jint(const esrt_jval *o, const char *name) {
  int64_t x;
  const esrt_jval *v = esrt_json_get(o, name);
  if (!v || !esrt_json_int_in(v, INT64_MIN, INT64_MAX, &x)) fail_msg("no integer %s", name);
  return x;
}

static void parse_snapshot(const char *path, snapshot *s) {
  char *text = esrt_read_file(path, NULL);
  assert_non_null(text);
  for (int p = 0; p < P; p++) s->next[p] = -1;
  size_t cap = 0;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    esrt_jval *j = esrt_json_parse(line, strlen(line));
    if (!j) fail_msg("not JSON: %s", line);
    int64_t p = jint(j, "partition");
    assert_true(p >= 0 && p < P);
    if (esrt_json_get(j, "next_offset")) {
      assert_int_equal(-1, s->next[p]); /* one position row per partition */
      s->next[p] = jint(j, "next_offset");
    } else {
      if (s->n_acc == cap) {
        cap = cap ? cap * 2 : 256;
        s->acc = realloc(s->acc, cap * sizeof *s->acc);
        assert_non_null(s->acc);
      }
      const esrt_jval *id = esrt_json_get(j, "id");
      assert_non_null(id);
      s->acc[s->n_acc].partition = (int32_t)p;
      s->acc[s->n_acc].id = strdup(id->text);
      s->acc[s->n_acc].balance = jint(j, "balance");
      s->n_acc++;
    }
    esrt_json_free(j);
  }
  free(text);
  qsort(s->acc, s->n_acc, sizeof *s->acc, cmp_acc);
}

/* The differences between a snapshot and the oracle fed every record below the snapshot's positions. */
static size_t compare_snapshot(const snapshot *s, const esrt_records *src) {
  esrt_oracle *o = esrt_oracle_new(P);
  assert_non_null(o);
  for (size_t i = 0; i < src->n; i++) {
    const esrt_record *r = &src->v[i];
    if (r->offset < s->next[r->partition])
      esrt_oracle_feed(o, r->partition, r->offset, r->key, r->key_len, r->value, r->value_len);
  }
  size_t n_exp, diffs = 0;
  const esrt_oracle_account *exp = esrt_oracle_accounts(o, &n_exp);
  size_t i = 0, k = 0;
  while (i < n_exp || k < s->n_acc) {
    int c = i == n_exp ? 1 : k == s->n_acc ? -1
                                            : (exp[i].partition != s->acc[k].partition
                                                   ? (exp[i].partition < s->acc[k].partition ? -1 : 1)
                                                   : strcmp(exp[i].id, s->acc[k].id));
    if (c == 0 && exp[i].balance == s->acc[k].balance) {
      i++, k++;
      continue;
    }
    if (diffs++ < 5) {
      if (c < 0)
        fprintf(stderr, "  [%d] %s: expected balance %" PRId64 ", absent\n", (int)exp[i].partition, exp[i].id,
                exp[i].balance);
      else if (c > 0)
        fprintf(stderr, "  [%d] %s: not expected (balance %" PRId64 ")\n", (int)s->acc[k].partition, s->acc[k].id,
                s->acc[k].balance);
      else
        fprintf(stderr, "  [%d] %s: expected %" PRId64 ", shown %" PRId64 "\n", (int)exp[i].partition, exp[i].id,
                exp[i].balance, s->acc[k].balance);
    }
    if (c <= 0) i++;
    if (c >= 0) k++;
  }
  esrt_oracle_free(o);
  return diffs;
}

static void query_beside_live_worker(void **state) {
  esrt_case *c = *state;
  const char *topics[] = {"ledger:16", "ledger.dlq:1", NULL};
  esrt_mock mock;
  assert_int_equal(0, esrt_mock_start(&mock, ESR_BIN, c->dir, 1, topics, 20000));
  esrt_gen_opts g = {.seed = 4242, .events = 40000, .accounts = 800, .partitions = P, .bad_share = 0.05,
                     .prefix_kinds = 1};
  size_t n;
  esrt_event *ev = esrt_ledger_generate(&g, &n);
  assert_non_null(ev);
  esrt_producer *prod = esrt_case_defer(c, free_producer, esrt_producer_new(mock.bootstrap));
  rd_kafka_t *rk = esrt_case_defer(c, free_client, esrt_kafka_client_new(mock.bootstrap));
  assert_non_null(prod);
  assert_non_null(rk);

  char state_dir[1100], conf[1100];
  snprintf(state_dir, sizeof state_dir, "%s/state", c->dir);
  assert_int_equal(0, esrt_write_worker_config(conf, sizeof conf, c->dir, "worker", mock.bootstrap, "ledger",
                                               "ledger.dlq", state_dir, LEDGER_SO,
                                               "assignment = static\npartitions = 0-%d\nbatch.max.events = 200\n",
                                               P - 1));
  esrt_proc worker;
  assert_int_equal(0, esrt_start_worker(&worker, ESR_BIN, c->dir, "worker", conf));

  /* A first part, until every partition has committed a position (so that each run sees all 16). */
  size_t first = 2000;
  for (size_t i = 0; i < first; i++)
    assert_int_equal(0, esrt_produce(prod, "ledger", ev[i].partition, ev[i].key, ev[i].key_len, ev[i].value,
                                     ev[i].value_len, &ev[i].offset));
  assert_int_equal(0, esrt_producer_flush(prod, 60000));
  int64_t deadline = esrt_now_ms() + 60000;
  for (int p = 0; p < P; p++) {
    esrt_part_state ps;
    while (esrt_read_position(state_dir, "ledger", p, &ps) != 0 || !ps.present) {
      if (esrt_now_ms() > deadline) fail_msg("partition %d has no position after 60 s", p);
      esrt_sleep_ms(20);
    }
  }

  /* The rest while `esr query` runs again and again. */
  producing pr = {.prod = prod, .ev = ev, .from = first, .n = n};
  pthread_t th;
  assert_int_equal(0, pthread_create(&th, NULL, produce_rest, &pr));
  char outs[MAX_RUNS + 1][1100];
  int runs = 0, caught_up = 0;
  const char *sql = "SELECT partition, next_offset FROM esr_offsets; SELECT partition, id, balance FROM accounts";
  char *argv[] = {ESR_BIN, "query", "--format", "json", state_dir, (char *)sql, NULL};
  while (runs < MAX_RUNS) {
    int last = atomic_load(&pr.done);
    if (last) {
      /* One more run once the worker has caught up. */
      const char *dirs[] = {state_dir};
      assert_int_equal(0, esrt_wait_caught_up(rk, "ledger", P, dirs, 1, 60000));
      caught_up = 1;
    }
    esrt_proc q;
    assert_int_equal(0, esrt_spawn(&q, c->dir, "query", argv, 0));
    assert_int_equal(0, esrt_wait(&q, 60000));
    if (esrt_exit_code(&q) != 0) {
      esrt_print_tail(stderr, q.err_path, 5, "query| ");
      fail_msg("esr query exited %d beside the worker", esrt_exit_code(&q));
    }
    snprintf(outs[runs++], sizeof outs[0], "%s", q.out_path);
    if (caught_up) break;
  }
  pthread_join(th, NULL);
  assert_false(pr.failed);
  if (!caught_up) {
    const char *dirs[] = {state_dir};
    assert_int_equal(0, esrt_wait_caught_up(rk, "ledger", P, dirs, 1, 60000));
  }

  /* Every run against the oracle at the positions it showed. */
  esrt_records src = {0};
  assert_int_equal(0, esrt_consume_all(mock.bootstrap, "ledger", &src, 60000));
  assert_int_equal(n, src.n);
  int64_t total = (int64_t)n, prev_sum = -1;
  int distinct = 0, mid = 0;
  for (int r = 0; r < runs; r++) {
    snapshot s = {0};
    parse_snapshot(outs[r], &s);
    int64_t sum = 0;
    for (int p = 0; p < P; p++) {
      if (s.next[p] < 0) fail_msg("run %d shows no position for partition %d", r, p);
      sum += s.next[p];
    }
    size_t diffs = compare_snapshot(&s, &src);
    if (diffs) fail_msg("run %d (%s): %zu accounts differ from the oracle at the positions it shows", r, outs[r], diffs);
    distinct += sum != prev_sum;
    mid += sum > 0 && sum < total;
    prev_sum = sum;
    snapshot_free(&s);
  }
  printf("# %d runs of esr query beside the worker: %d distinct positions, %d mid-stream, all consistent\n", runs,
         distinct, mid);
  assert_true(runs >= 3);
  assert_true(distinct >= 2);
  assert_true(mid >= 1);

  /* The worker went on undisturbed: its final state is the oracle's, and it stops cleanly. */
  esrt_oracle *o = esrt_case_defer(c, free_oracle, esrt_oracle_new(P));
  assert_int_equal(0, esrt_oracle_feed_records(o, &src));
  esrt_state st = {0};
  assert_int_equal(0, esrt_state_read(&st, state_dir, "ledger", P, 1));
  size_t diffs = esrt_compare_state(o, &st, stderr, 10);
  esrt_state_free(&st);
  assert_int_equal(0, diffs);
  assert_int_equal(0, esrt_stop(&worker, 30000));
  esrt_records_free(&src);
  esrt_events_free(ev, n);
  esrt_case_cleanup(c);
  assert_int_equal(0, esrt_mock_stop(&mock));
  c->passed = 1;
}

static int setup(void **state) {
  *state = esrt_case_new("query");
  return *state ? 0 : -1;
}

static int teardown(void **state) {
  esrt_case_end(*state);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(query_beside_live_worker, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
