/* test_dlq_replay.c — `esr dlq replay` (label `integration`): deposits into accounts that were not open yet are
 * dead-lettered as rejected; after the "fix" (the accounts are opened), a replay of the rejected dead letters puts
 * them back into their source partitions, once each even when the dead-letter topic holds a duplicate, with a header
 * naming the dead letter; the worker applies them and the balances come out right. A dry run sends nothing; other
 * reasons are filtered out.
 * Across runs (issue 10, item 8): a second run, as an operator retrying after a timeout would, re-sends nothing and says
 * so, and no balance doubles — even when a copy of a re-sent dead letter sits in another dead-letter partition that the
 * replay reads first; a dry run then counts 0. A re-sent event that is dead-lettered again (its account still closed)
 * is a new dead letter that a later run re-sends, once. Where retention has deleted part of the partitions an earlier
 * re-send would be in, dead letters are not re-sent unless --allow-unverified. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "esrt_case.h"
#include "esrt_kafka.h"
#include "esrt_state.h"

#define LEDGER_SO ESR_BUILD_DIR "/handlers/ledger.so"
#define P 2
#define ACCOUNTS 5

static void free_producer(void *p) { esrt_producer_free(p); }
static void free_client(void *rk) { rd_kafka_destroy(rk); }

static int32_t part_of(int i) { return i % P; }

/* One case's cluster, clients and worker. */
typedef struct rig {
  esrt_case *c;
  esrt_mock mock;
  esrt_producer *prod;
  rd_kafka_t *rk;
  char state_dir[1100];
  esrt_proc worker;
} rig;

static void rig_start(rig *r, esrt_case *c, const char *const *topics) {
  r->c = c;
  assert_int_equal(0, esrt_mock_start(&r->mock, ESR_BIN, c->dir, 1, topics, 20000));
  r->prod = esrt_case_defer(c, free_producer, esrt_producer_new(r->mock.bootstrap));
  r->rk = esrt_case_defer(c, free_client, esrt_kafka_client_new(r->mock.bootstrap));
  assert_non_null(r->prod);
  assert_non_null(r->rk);
  char conf[1024];
  snprintf(r->state_dir, sizeof r->state_dir, "%s/state", c->dir);
  assert_int_equal(0, esrt_write_worker_config(conf, sizeof conf, c->dir, "worker", r->mock.bootstrap, "ledger",
                                               "ledger.dlq", r->state_dir, LEDGER_SO,
                                               "assignment = static\npartitions = 0-1\n"));
  assert_int_equal(0, esrt_start_worker(&r->worker, ESR_BIN, c->dir, "worker", conf));
}

static void rig_stop(rig *r) {
  assert_int_equal(0, esrt_stop(&r->worker, 30000));
  esrt_case_cleanup(r->c);
  assert_int_equal(0, esrt_mock_stop(&r->mock));
}

static void produce(rig *r, int32_t partition, const char *key, const char *value) {
  /* No offset slot: the delivery report comes after this frame is gone. */
  assert_int_equal(0, esrt_produce(r->prod, "ledger", partition, key, strlen(key), value, strlen(value), NULL));
}

static void flush_and_wait(rig *r) {
  assert_int_equal(0, esrt_producer_flush(r->prod, 30000));
  const char *dirs[] = {r->state_dir};
  assert_int_equal(0, esrt_wait_caught_up(r->rk, "ledger", P, dirs, 1, 60000));
}

/* Two deposits into each account b0..b4 (100+i and 200+i), which are not open yet: rejected. */
static void deposits(rig *r) {
  char key[32], value[256];
  for (int round = 1; round <= 2; round++)
    for (int i = 0; i < ACCOUNTS; i++) {
      snprintf(key, sizeof key, "b%d", i);
      snprintf(value, sizeof value,
               "{\"type\":\"account.deposited\",\"data\":{\"account\":\"b%d\",\"amount\":%d}}", i, 100 * round + i);
      produce(r, part_of(i), key, value);
    }
}

/* The fix: accounts b<first>..b<last> are opened. */
static void open_accounts(rig *r, int first, int last) {
  char key[32], value[256];
  for (int i = first; i <= last; i++) {
    snprintf(key, sizeof key, "b%d", i);
    snprintf(value, sizeof value, "{\"type\":\"account.opened\",\"data\":{\"account\":\"b%d\",\"owner\":\"o%d\"}}", i,
             i);
    produce(r, part_of(i), key, value);
  }
}

/* Runs `esr dlq replay ARGS...`; returns its exit code and copies its output's path into out (cap bytes). */
static int run_replay(esrt_case *c, const char *name, const char *const *args, char *out, size_t cap) {
  char *argv[16] = {(char *)ESR_BIN, "dlq", "replay"};
  int n = 3;
  for (const char *const *a = args; *a && n < 15; a++) argv[n++] = (char *)*a;
  argv[n] = NULL;
  esrt_proc p;
  assert_int_equal(0, esrt_spawn(&p, c->dir, name, argv, 0));
  assert_int_equal(0, esrt_wait(&p, 60000));
  snprintf(out, cap, "%s", p.out_path);
  return esrt_exit_code(&p);
}

/* Asserts that the replay's output holds `needle`, printing the output otherwise. */
static void says(const char *out, const char *needle) {
  if (esrt_file_contains(out, needle)) return;
  esrt_print_tail(stderr, out, 40, "replay| ");
  fail_msg("the replay's output lacks \"%s\"", needle);
}

static int64_t high(rd_kafka_t *rk, const char *topic, int32_t p) {
  int64_t lo, hi;
  assert_int_equal(0, esrt_watermarks(rk, topic, p, &lo, &hi));
  return hi;
}

static int64_t total(rd_kafka_t *rk, const char *topic, int parts) {
  int64_t n = 0;
  for (int p = 0; p < parts; p++) n += high(rk, topic, p);
  return n;
}

/* Every account b<i> with i <= last_open has both deposits once; the others have no balance row or 0. */
static void balances_are(rig *r, int last_open) {
  esrt_state st = {0};
  assert_int_equal(0, esrt_state_read(&st, r->state_dir, "ledger", P, 1));
  char key[32];
  int bad = 0;
  for (int i = 0; i < ACCOUNTS; i++) {
    snprintf(key, sizeof key, "b%d", i);
    int64_t want = i <= last_open ? (100 + i) + (200 + i) : 0, got = 0;
    for (size_t a = 0; a < st.n_accounts; a++)
      if (strcmp(st.accounts[a].id, key) == 0) got = st.accounts[a].balance;
    if (got != want) {
      fprintf(stderr, "account %s: balance %" PRId64 ", want %" PRId64 "\n", key, got, want);
      bad++;
    }
  }
  esrt_state_free(&st);
  if (bad) fail_msg("%d account(s) with a wrong balance", bad);
}

/* Copies the dead letter `rec` (key, value, headers) to another partition of the dead-letter topic. */
static void copy_dead_letter(rig *r, const esrt_record *rec, int32_t partition) {
  rd_kafka_headers_t *h = rd_kafka_headers_new(8);
  for (size_t i = 0; i < rec->n_headers; i++)
    rd_kafka_header_add(h, rec->headers[i].name, -1, rec->headers[i].value, (ssize_t)rec->headers[i].value_len);
  assert_int_equal(0, rd_kafka_producev(esrt_producer_handle(r->prod), RD_KAFKA_V_TOPIC("ledger.dlq"),
                                        RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_KEY(rec->key, rec->key_len),
                                        RD_KAFKA_V_VALUE(rec->value, rec->value_len),
                                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                                        RD_KAFKA_V_END));
  assert_int_equal(0, esrt_producer_flush(r->prod, 30000));
}

static void rejected_events_are_replayed_after_the_fix_once_across_runs(void **state) {
  esrt_case *c = *state;
  rig r;
  const char *topics[] = {"ledger:2", "ledger.dlq:2", NULL};
  rig_start(&r, c, topics);
  deposits(&r);
  produce(&r, 0, "junk", "not json"); /* not a "rejected" one */
  flush_and_wait(&r);
  assert_int_equal(total(r.rk, "ledger.dlq", 2), 2 * ACCOUNTS + 1);

  /* A duplicate of a rejected dead letter in its own partition (as a crash between delivery and outbox deletion would
   * leave). */
  esrt_records dlq = {0};
  assert_int_equal(0, esrt_consume_all(r.mock.bootstrap, "ledger.dlq", &dlq, 30000));
  const esrt_record *first = NULL;
  for (size_t i = 0; i < dlq.n && !first; i++)
    if (strcmp(esrt_record_header(&dlq.v[i], "esr-reason"), "rejected") == 0) first = &dlq.v[i];
  assert_non_null(first);
  copy_dead_letter(&r, first, first->partition);
  esrt_records_free(&dlq);

  open_accounts(&r, 0, ACCOUNTS - 1);
  flush_and_wait(&r);
  int64_t before[P];
  for (int p = 0; p < P; p++) before[p] = high(r.rk, "ledger", p);

  /* A dry run lists and sends nothing. */
  const char *dry[] = {"--bootstrap", r.mock.bootstrap, "--dlq", "ledger.dlq", "--reason", "rejected", "--dry-run", NULL};
  char out[1200];
  assert_int_equal(0, run_replay(c, "replay-dry", dry, out, sizeof out));
  says(out, "would re-send 10 event(s)");
  says(out, "1 duplicates, 1 filtered out, 0 without esr headers, 0 already re-sent, 0 unverified");
  for (int p = 0; p < P; p++) assert_true(high(r.rk, "ledger", p) == before[p]);

  /* The replay: the 10 rejected deposits, once each; the bad JSON is not a "rejected" one. */
  const char *real[] = {"--bootstrap", r.mock.bootstrap, "--dlq", "ledger.dlq", "--reason", "rejected", NULL};
  assert_int_equal(0, run_replay(c, "replay", real, out, sizeof out));
  says(out, "re-sent 10 event(s) from ledger.dlq (12 dead letters read: 1 duplicates, 1 filtered out, 0 without esr "
            "headers, 0 already re-sent, 0 unverified)");
  int64_t added = 0;
  for (int p = 0; p < P; p++) added += high(r.rk, "ledger", p) - before[p];
  assert_int_equal(added, 2 * ACCOUNTS);
  flush_and_wait(&r);
  balances_are(&r, ACCOUNTS - 1);

  /* The re-sent events sit in their source partitions, with the header naming the dead letter. */
  esrt_records src = {0};
  assert_int_equal(0, esrt_consume_all(r.mock.bootstrap, "ledger", &src, 30000));
  int linked = 0;
  for (size_t i = 0; i < src.n; i++) {
    const char *from = esrt_record_header(&src.v[i], "esr-replayed-from");
    if (!from) continue;
    linked++;
    assert_true(strncmp(from, "ledger.dlq/", 11) == 0);
    assert_int_equal(src.v[i].partition, part_of(src.v[i].key[1] - '0'));
    assert_string_equal(esrt_record_header(&src.v[i], "esr-replayed-reason"), "rejected");
  }
  assert_int_equal(linked, 2 * ACCOUNTS);
  esrt_records_free(&src);

  /* A copy of a re-sent dead letter of dead-letter partition 1 in partition 0, which a replay reads first: the source
   * event was re-sent through its other copy all the same. */
  assert_int_equal(0, esrt_consume_all(r.mock.bootstrap, "ledger.dlq", &dlq, 30000));
  const esrt_record *moved = NULL;
  for (size_t i = 0; i < dlq.n && !moved; i++)
    if (dlq.v[i].partition == 1 && strcmp(esrt_record_header(&dlq.v[i], "esr-reason"), "rejected") == 0)
      moved = &dlq.v[i];
  if (!moved) fail_msg("premise: no rejected dead letter in partition 1 of ledger.dlq");
  copy_dead_letter(&r, moved, 0);
  esrt_records_free(&dlq);

  /* The operator runs it again: nothing is sent again, and it says so. */
  for (int p = 0; p < P; p++) before[p] = high(r.rk, "ledger", p);
  assert_int_equal(0, run_replay(c, "replay-again", real, out, sizeof out));
  says(out, "re-sent 0 event(s) from ledger.dlq (13 dead letters read: 2 duplicates, 1 filtered out, 0 without esr "
            "headers, 10 already re-sent, 0 unverified)");
  says(out, "10 dead letter(s) were re-sent by an earlier run and were not sent again");
  for (int p = 0; p < P; p++) assert_true(high(r.rk, "ledger", p) == before[p]);
  flush_and_wait(&r);
  balances_are(&r, ACCOUNTS - 1);

  /* A dry run counts the same. */
  assert_int_equal(0, run_replay(c, "replay-dry-again", dry, out, sizeof out));
  says(out, "would re-send 0 event(s) from ledger.dlq (13 dead letters read: 2 duplicates, 1 filtered out, 0 without "
            "esr headers, 10 already re-sent, 0 unverified)");
  rig_stop(&r);
  c->passed = 1;
}

static void a_re_sent_event_dead_lettered_again_is_re_sent_by_a_later_run(void **state) {
  esrt_case *c = *state;
  rig r;
  const char *topics[] = {"ledger:2", "ledger.dlq:1", "other:2", NULL};
  rig_start(&r, c, topics);
  deposits(&r);
  flush_and_wait(&r);
  assert_int_equal(high(r.rk, "ledger.dlq", 0), 2 * ACCOUNTS);

  /* A partial fix: b0..b2 only. The deposits into b3 and b4 are rejected again when re-sent: 4 new dead letters. */
  open_accounts(&r, 0, 2);
  flush_and_wait(&r);
  const char *real[] = {"--bootstrap", r.mock.bootstrap, "--dlq", "ledger.dlq", "--reason", "rejected", NULL};
  char out[1200];
  assert_int_equal(0, run_replay(c, "replay-1", real, out, sizeof out));
  says(out, "re-sent 10 event(s)");
  flush_and_wait(&r);
  assert_int_equal(high(r.rk, "ledger.dlq", 0), 2 * ACCOUNTS + 4);
  balances_are(&r, 2);

  /* The rest of the fix, then a replay: only the 4 new dead letters go out. */
  open_accounts(&r, 3, 4);
  flush_and_wait(&r);
  const char *dry[] = {"--bootstrap", r.mock.bootstrap, "--dlq", "ledger.dlq", "--reason", "rejected", "--dry-run", NULL};
  assert_int_equal(0, run_replay(c, "replay-2-dry", dry, out, sizeof out));
  says(out, "would re-send 4 event(s) from ledger.dlq (14 dead letters read: 0 duplicates, 0 filtered out, 0 without "
            "esr headers, 10 already re-sent, 0 unverified)");
  assert_int_equal(0, run_replay(c, "replay-2", real, out, sizeof out));
  says(out, "re-sent 4 event(s) from ledger.dlq (14 dead letters read: 0 duplicates, 0 filtered out, 0 without esr "
            "headers, 10 already re-sent, 0 unverified)");
  flush_and_wait(&r);
  balances_are(&r, ACCOUNTS - 1);

  /* And a third run finds everything re-sent. */
  int64_t before = total(r.rk, "ledger", P);
  assert_int_equal(0, run_replay(c, "replay-3", real, out, sizeof out));
  says(out, "re-sent 0 event(s) from ledger.dlq (14 dead letters read: 0 duplicates, 0 filtered out, 0 without esr "
            "headers, 14 already re-sent, 0 unverified)");
  assert_int_equal(total(r.rk, "ledger", P), before);
  flush_and_wait(&r);
  balances_are(&r, ACCOUNTS - 1);

  /* To another topic whose log start has moved (the mock keeps 5 MiB per partition): an earlier re-send there could
   * have been deleted, so nothing is sent unless the operator allows it. */
  size_t size = 256 * 1024;
  char *big = malloc(size);
  assert_non_null(big);
  memset(big, 'x', size);
  for (int p = 0; p < P; p++)
    for (int i = 0; i < 24; i++) {
      assert_int_equal(0, esrt_produce(r.prod, "other", p, NULL, 0, big, size, NULL));
      assert_int_equal(0, esrt_producer_flush(r.prod, 30000)); /* one message set each */
    }
  free(big);
  for (int p = 0; p < P; p++) {
    int64_t lo, hi;
    assert_int_equal(0, esrt_watermarks(r.rk, "other", p, &lo, &hi));
    assert_true(lo > 0); /* the premise */
  }
  const char *to[] = {"--bootstrap", r.mock.bootstrap, "--dlq", "ledger.dlq", "--to", "other", "--dry-run", NULL};
  assert_int_equal(0, run_replay(c, "replay-to", to, out, sizeof out));
  says(out, "would re-send 0 event(s) from ledger.dlq (14 dead letters read: 0 duplicates, 0 filtered out, 0 without "
            "esr headers, 0 already re-sent, 14 unverified)");
  says(out, "--allow-unverified re-sends them");
  const char *to_anyway[] = {"--bootstrap", r.mock.bootstrap, "--dlq",   "ledger.dlq",          "--to",
                             "other",       "--dry-run",       "--allow-unverified", NULL};
  assert_int_equal(0, run_replay(c, "replay-to-anyway", to_anyway, out, sizeof out));
  says(out, "would re-send 14 event(s)");
  rig_stop(&r);
  c->passed = 1;
}

static int setup(void **state) {
  *state = esrt_case_new("dlq-replay");
  return *state ? 0 : -1;
}

static int teardown(void **state) {
  esrt_case_end(*state);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(rejected_events_are_replayed_after_the_fix_once_across_runs, setup, teardown),
      cmocka_unit_test_setup_teardown(a_re_sent_event_dead_lettered_again_is_re_sent_by_a_later_run, setup, teardown),
  };
  return cmocka_run_group_tests_name("dlq-replay", tests, NULL, NULL);
}
