/* test_dlq_replay.c — `esr dlq replay` (label `integration`): deposits into accounts that were not open yet are
 * dead-lettered as rejected; after the "fix" (the accounts are opened), a replay of the rejected dead letters puts
 * them back into their source partitions, once each even when the dead-letter topic holds a duplicate, with a header
 * naming the dead letter; the worker applies them and the balances come out right. A dry run sends nothing; other
 * reasons are filtered out. */
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

static void produce(esrt_producer *prod, int32_t partition, const char *key, const char *value) {
  int64_t off;
  assert_int_equal(0, esrt_produce(prod, "ledger", partition, key, strlen(key), value, strlen(value), &off));
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

static int64_t high(rd_kafka_t *rk, const char *topic, int32_t p) {
  int64_t lo, hi;
  assert_int_equal(0, esrt_watermarks(rk, topic, p, &lo, &hi));
  return hi;
}

static void rejected_events_are_replayed_after_the_fix(void **state) {
  esrt_case *c = *state;
  esrt_mock mock;
  const char *topics[] = {"ledger:2", "ledger.dlq:1", NULL};
  assert_int_equal(0, esrt_mock_start(&mock, ESR_BIN, c->dir, 1, topics, 20000));
  esrt_producer *prod = esrt_case_defer(c, free_producer, esrt_producer_new(mock.bootstrap));
  rd_kafka_t *rk = esrt_case_defer(c, free_client, esrt_kafka_client_new(mock.bootstrap));
  assert_non_null(prod);
  assert_non_null(rk);
  char key[32], value[256];
  /* Two deposits into each account, which is not open yet: rejected. And one value that is not JSON. */
  for (int round = 1; round <= 2; round++)
    for (int i = 0; i < ACCOUNTS; i++) {
      snprintf(key, sizeof key, "b%d", i);
      snprintf(value, sizeof value,
               "{\"type\":\"account.deposited\",\"data\":{\"account\":\"b%d\",\"amount\":%d}}", i, 100 * round + i);
      produce(prod, part_of(i), key, value);
    }
  produce(prod, 0, "junk", "not json");
  assert_int_equal(0, esrt_producer_flush(prod, 30000));

  char state_dir[1100], conf[1024];
  snprintf(state_dir, sizeof state_dir, "%s/state", c->dir);
  assert_int_equal(0, esrt_write_worker_config(conf, sizeof conf, c->dir, "worker", mock.bootstrap, "ledger",
                                               "ledger.dlq", state_dir, LEDGER_SO,
                                               "assignment = static\npartitions = 0-1\n"));
  esrt_proc w;
  assert_int_equal(0, esrt_start_worker(&w, ESR_BIN, c->dir, "worker", conf));
  const char *dirs[] = {state_dir};
  assert_int_equal(0, esrt_wait_caught_up(rk, "ledger", P, dirs, 1, 60000));
  assert_int_equal(high(rk, "ledger.dlq", 0), 2 * ACCOUNTS + 1);

  /* A duplicate of the first dead letter (as a crash between delivery and outbox deletion would leave). */
  esrt_records dlq = {0};
  assert_int_equal(0, esrt_consume_all(mock.bootstrap, "ledger.dlq", &dlq, 30000));
  const esrt_record *first = &dlq.v[0];
  rd_kafka_headers_t *h = rd_kafka_headers_new(8);
  for (size_t i = 0; i < first->n_headers; i++)
    rd_kafka_header_add(h, first->headers[i].name, -1, first->headers[i].value, (ssize_t)first->headers[i].value_len);
  assert_int_equal(0, rd_kafka_producev(esrt_producer_handle(prod), RD_KAFKA_V_TOPIC("ledger.dlq"),
                                        RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_KEY(first->key, first->key_len),
                                        RD_KAFKA_V_VALUE(first->value, first->value_len),
                                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                                        RD_KAFKA_V_END));
  assert_int_equal(0, esrt_producer_flush(prod, 30000));
  esrt_records_free(&dlq);

  /* The fix: the accounts are opened. */
  for (int i = 0; i < ACCOUNTS; i++) {
    snprintf(key, sizeof key, "b%d", i);
    snprintf(value, sizeof value, "{\"type\":\"account.opened\",\"data\":{\"account\":\"b%d\",\"owner\":\"o%d\"}}", i,
             i);
    produce(prod, part_of(i), key, value);
  }
  assert_int_equal(0, esrt_producer_flush(prod, 30000));
  assert_int_equal(0, esrt_wait_caught_up(rk, "ledger", P, dirs, 1, 60000));
  int64_t before[P];
  for (int p = 0; p < P; p++) before[p] = high(rk, "ledger", p);

  /* A dry run lists and sends nothing. */
  const char *dry[] = {"--bootstrap", mock.bootstrap, "--dlq", "ledger.dlq", "--reason", "rejected", "--dry-run", NULL};
  char out[1200];
  assert_int_equal(0, run_replay(c, "replay-dry", dry, out, sizeof out));
  assert_true(esrt_file_contains(out, "would re-send 10 event(s)"));
  assert_true(esrt_file_contains(out, "1 duplicates, 1 filtered out"));
  for (int p = 0; p < P; p++) assert_true(high(rk, "ledger", p) == before[p]);

  /* The replay: the 10 rejected deposits, once each; the bad JSON is not a "rejected" one. */
  const char *real[] = {"--bootstrap", mock.bootstrap, "--dlq", "ledger.dlq", "--reason", "rejected", NULL};
  assert_int_equal(0, run_replay(c, "replay", real, out, sizeof out));
  assert_true(esrt_file_contains(out, "re-sent 10 event(s) from ledger.dlq (12 dead letters read: 1 duplicates"));
  int64_t added = 0;
  for (int p = 0; p < P; p++) added += high(rk, "ledger", p) - before[p];
  assert_int_equal(added, 2 * ACCOUNTS);
  assert_int_equal(0, esrt_wait_caught_up(rk, "ledger", P, dirs, 1, 60000));

  esrt_state st = {0};
  assert_int_equal(0, esrt_state_read(&st, state_dir, "ledger", P, 1));
  for (int i = 0; i < ACCOUNTS; i++) {
    snprintf(key, sizeof key, "b%d", i);
    int64_t want = (100 + i) + (200 + i), got = -1;
    for (size_t a = 0; a < st.n_accounts; a++)
      if (strcmp(st.accounts[a].id, key) == 0) got = st.accounts[a].balance;
    if (got != want) fail_msg("account %s: balance %" PRId64 ", want %" PRId64, key, got, want);
  }
  esrt_state_free(&st);

  /* The re-sent events sit in their source partitions, with the header naming the dead letter. */
  esrt_records src = {0};
  assert_int_equal(0, esrt_consume_all(mock.bootstrap, "ledger", &src, 30000));
  int linked = 0;
  for (size_t i = 0; i < src.n; i++) {
    const char *from = esrt_record_header(&src.v[i], "esr-replayed-from");
    if (!from) continue;
    linked++;
    assert_true(strncmp(from, "ledger.dlq/0/", 13) == 0);
    assert_int_equal(src.v[i].partition, part_of(src.v[i].key[1] - '0'));
    assert_string_equal(esrt_record_header(&src.v[i], "esr-replayed-reason"), "rejected");
  }
  assert_int_equal(linked, 2 * ACCOUNTS);
  esrt_records_free(&src);
  assert_int_equal(0, esrt_stop(&w, 30000));
  esrt_case_cleanup(c);
  assert_int_equal(0, esrt_mock_stop(&mock));
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
      cmocka_unit_test_setup_teardown(rejected_events_are_replayed_after_the_fix, setup, teardown),
  };
  return cmocka_run_group_tests_name("dlq-replay", tests, NULL, NULL);
}
