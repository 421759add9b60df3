/* test_readback.c — esr/readback.h against the mock cluster (label `integration`): an empty partition and an empty
 * range end at once; header values are collected by name and prefix (several per message, duplicates once), only in
 * [start, end); a start below the log start (the mock's retention moved it) reads from the log start and says so; an
 * unknown partition, a broker that is down and a full set end with an error code within the timeout, and the reader works
 * again afterwards; several ranges read at once each get their own messages, start, end and counts. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "clock.h"
#include "config.h"
#include "readback.h"
#include "strset.h"
#include "esrt_case.h"
#include "esrt_kafka.h"

typedef struct fixture {
  esrt_case *c;
  esrt_mock mock;
  int mock_up;
  esrt_producer *prod;
  rd_kafka_t *rk;
  esr_config *cfg;
  esr_readback *rb;
  esr_strset *set;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (!f || !(f->c = esrt_case_new("readback"))) return -1;
  const char *topics[] = {"rb:3", NULL};
  esr_error err = {0};
  if (esrt_mock_start(&f->mock, ESR_BIN, f->c->dir, 1, topics, 20000) != 0) return -1;
  f->mock_up = 1;
  if (!(f->prod = esrt_producer_new(f->mock.bootstrap)) || !(f->rk = esrt_kafka_client_new(f->mock.bootstrap)) ||
      !(f->cfg = esr_config_new()) ||
      esr_config_set(f->cfg, "kafka.bootstrap.servers", f->mock.bootstrap, "test", &err) != ESR_E_OK ||
      /* back soon after the broker is (KAFKA-NOTES) */
      esr_config_set(f->cfg, "kafka.reconnect.backoff.max.ms", "500", "test", &err) != ESR_E_OK ||
      esr_readback_new(f->cfg, &f->rb, &err) != ESR_E_OK || esr_strset_new(0, &f->set, &err) != ESR_E_OK)
    return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  esr_strset_free(f->set);
  esr_readback_free(f->rb);
  esr_config_free(f->cfg);
  if (f->rk) rd_kafka_destroy(f->rk);
  esrt_producer_free(f->prod);
  if (f->mock_up) esrt_mock_stop(&f->mock);
  esrt_case_end(f->c);
  free(f);
  return 0;
}

/* Produces one message to rb[partition] with the headers given as name, value pairs (NULL-terminated). */
static void produce(fixture *f, int32_t partition, const void *value, size_t len, ...) {
  rd_kafka_headers_t *h = rd_kafka_headers_new(4);
  va_list ap;
  va_start(ap, len);
  for (const char *name; (name = va_arg(ap, const char *));)
    rd_kafka_header_add(h, name, -1, va_arg(ap, const char *), -1);
  va_end(ap);
  assert_int_equal(0, rd_kafka_producev(esrt_producer_handle(f->prod), RD_KAFKA_V_TOPIC("rb"),
                                        RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_VALUE((void *)value, len),
                                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                                        RD_KAFKA_V_END));
}

static int has(const esr_strset *s, const char *v) { return esr_strset_has(s, v, strlen(v)); }

static void empty_partition_and_empty_range_end_at_once(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  esr_readback_result res;
  esr_readback_range r = {.topic = "rb", .partition = 1, .start = 0, .end = -1, .timeout_ms = 5000};
  int64_t t0 = esr_now_ms();
  assert_int_equal(ESR_E_OK, esr_readback_collect(f->rb, &r, "esr-source", NULL, f->set, &res, &err));
  assert_true(esr_now_ms() - t0 < 3000);
  assert_int_equal(res.read, 0);
  assert_int_equal(res.from, 0);
  assert_int_equal(res.end, 0);
  assert_int_equal(res.truncated, 0);
  assert_int_equal(esr_strset_count(f->set), 0);

  /* A start at or past the end of a partition that has messages: nothing to read either. */
  produce(f, 0, "x", 1, "esr-source", "rb/0/1/0", NULL);
  assert_int_equal(0, esrt_producer_flush(f->prod, 10000));
  r.partition = 0;
  r.start = 1;
  assert_int_equal(ESR_E_OK, esr_readback_collect(f->rb, &r, "esr-source", NULL, f->set, &res, &err));
  assert_int_equal(res.read, 0);
  assert_int_equal(res.end, 1);
  r.start = 7;
  assert_int_equal(ESR_E_OK, esr_readback_collect(f->rb, &r, "esr-source", NULL, f->set, &res, &err));
  assert_int_equal(res.read, 0);
  assert_int_equal(esr_strset_count(f->set), 0);
  /* ... while from 0 the message is there. */
  r.start = 0;
  assert_int_equal(ESR_E_OK, esr_readback_collect(f->rb, &r, "esr-source", NULL, f->set, &res, &err));
  assert_int_equal(res.read, 1);
  assert_true(has(f->set, "rb/0/1/0"));
  f->c->passed = 1;
}

static void header_values_by_name_and_prefix_within_the_range(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  produce(f, 0, "m0", 2, "esr-source", "src/0/10/0", NULL);
  produce(f, 0, "m1", 2, "esr-source", "src/1/11/0", NULL);
  produce(f, 0, "m2", 2, NULL);
  produce(f, 0, "m3", 2, "esr-topic", "src", "esr-source", "src/0/12/0", "esr-source", "src/0/12/1", NULL);
  produce(f, 0, "m4", 2, "esr-source", "src/0/10/0", NULL);
  produce(f, 0, "m5", 2, "esr-source", "other/0/1/0", NULL);
  produce(f, 0, "m6", 2, "esr-replayed-from", "src/0/99/0", NULL);
  produce(f, 0, "m7", 2, "esr-source", "src/0/13/0", NULL);
  produce(f, 0, "m8", 2, "esr-source", "src/00/1/0", NULL);
  assert_int_equal(0, esrt_producer_flush(f->prod, 10000));

  esr_readback_result res;
  esr_readback_range r = {.topic = "rb", .partition = 0, .start = 0, .end = -1, .timeout_ms = 10000};
  assert_int_equal(ESR_E_OK, esr_readback_collect(f->rb, &r, "esr-source", "src/0/", f->set, &res, &err));
  assert_int_equal(res.read, 9);
  assert_int_equal(res.end, 9);
  assert_int_equal(res.collected, 5); /* src/0/10/0 twice, 12/0, 12/1, 13/0 */
  assert_int_equal(esr_strset_count(f->set), 4);
  assert_true(has(f->set, "src/0/10/0"));
  assert_true(has(f->set, "src/0/12/0"));
  assert_true(has(f->set, "src/0/12/1"));
  assert_true(has(f->set, "src/0/13/0"));

  /* No prefix, and only [3, 6). */
  esr_strset *all;
  assert_int_equal(ESR_E_OK, esr_strset_new(0, &all, &err));
  assert_non_null(all);
  r.start = 3;
  r.end = 6;
  esr_code rc = esr_readback_collect(f->rb, &r, "esr-source", NULL, all, &res, &err);
  size_t n = esr_strset_count(all);
  int ok = has(all, "src/0/12/0") && has(all, "src/0/12/1") && has(all, "src/0/10/0") && has(all, "other/0/1/0");
  esr_strset_free(all);
  assert_int_equal(rc, ESR_E_OK);
  assert_int_equal(res.read, 3);
  assert_int_equal(res.from, 3);
  assert_int_equal(res.end, 6);
  assert_int_equal(n, 4);
  assert_true(ok);
  f->c->passed = 1;
}

static void a_start_below_the_log_start_reads_from_the_log_start(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  /* The mock keeps at most 5 MiB per partition: 40 messages of 256 KiB move the log start. */
  size_t size = 256 * 1024;
  char *big = malloc(size);
  assert_non_null(big);
  memset(big, 'x', size);
  char v[32];
  for (int i = 0; i < 40; i++) {
    snprintf(v, sizeof v, "big/%d", i);
    produce(f, 2, big, size, "esr-source", v, NULL);
    assert_int_equal(0, esrt_producer_flush(f->prod, 10000)); /* one message set each */
  }
  free(big);
  int64_t lo, hi;
  assert_int_equal(0, esrt_watermarks(f->rk, "rb", 2, &lo, &hi));
  assert_int_equal(hi, 40);
  assert_true(lo > 0); /* the premise: retention deleted the first offsets */

  esr_readback_result res;
  esr_readback_range r = {.topic = "rb", .partition = 2, .start = 0, .end = -1, .timeout_ms = 10000};
  assert_int_equal(ESR_E_OK, esr_readback_collect(f->rb, &r, "esr-source", "big/", f->set, &res, &err));
  assert_int_equal(res.truncated, 1);
  assert_int_equal(res.log_start, lo);
  assert_int_equal(res.from, lo);
  assert_int_equal(res.read, 40 - lo);
  assert_int_equal(esr_strset_count(f->set), (size_t)(40 - lo));
  snprintf(v, sizeof v, "big/%" PRId64, lo);
  assert_true(has(f->set, v));
  assert_true(has(f->set, "big/39"));
  assert_false(has(f->set, "big/0"));

  /* From the log start on, nothing is missing. */
  r.start = lo;
  assert_int_equal(ESR_E_OK, esr_readback_collect(f->rb, &r, "esr-source", "big/", f->set, &res, &err));
  assert_int_equal(res.truncated, 0);
  assert_int_equal(res.read, 40 - lo);
  f->c->passed = 1;
}

typedef struct seen_msgs {
  int n;
  int32_t partition[32];
  int64_t offset[32];
} seen_msgs;

static esr_code remember(void *arg, const rd_kafka_message_t *m, esr_error *err) {
  (void)err;
  seen_msgs *s = arg;
  if (s->n < 32) {
    s->partition[s->n] = m->partition;
    s->offset[s->n] = m->offset;
  }
  s->n++;
  return ESR_E_OK;
}

static void several_ranges_read_at_once(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  for (int i = 0; i < 5; i++) produce(f, 0, "a", 1, NULL);
  for (int i = 0; i < 3; i++) produce(f, 2, "c", 1, NULL);
  assert_int_equal(0, esrt_producer_flush(f->prod, 10000));
  esr_readback_range rs[] = {{.topic = "rb", .partition = 0, .start = 1, .end = 4, .timeout_ms = 10000},
                             {.topic = "rb", .partition = 1, .start = 0, .end = -1, .timeout_ms = 10000},
                             {.topic = "rb", .partition = 2, .start = 2, .end = -1, .timeout_ms = 10000}};
  esr_readback_result res[3];
  seen_msgs seen = {0};
  assert_int_equal(ESR_E_OK, esr_readback_scan_many(f->rb, rs, 3, remember, &seen, res, &err));
  assert_int_equal(res[0].read, 3); /* [1, 4) */
  assert_int_equal(res[0].from, 1);
  assert_int_equal(res[0].end, 4);
  assert_int_equal(res[1].read, 0); /* empty */
  assert_int_equal(res[1].end, 0);
  assert_int_equal(res[2].read, 1); /* [2, 3) */
  assert_int_equal(res[2].end, 3);
  assert_int_equal(seen.n, 4);
  int64_t next[3] = {1, 0, 2};
  for (int i = 0; i < seen.n; i++) { /* each range in offset order, nothing outside its range */
    int32_t p = seen.partition[i];
    assert_true(p == 0 || p == 2);
    assert_int_equal(seen.offset[i], next[p]);
    next[p]++;
  }
  f->c->passed = 1;
}

static void kafka_failures_are_error_codes_within_the_timeout(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  esr_readback_result res;
  produce(f, 0, "m", 1, "esr-source", "a/0/0/0", NULL);
  produce(f, 0, "m", 1, "esr-source", "a/0/1/0", NULL);
  assert_int_equal(0, esrt_producer_flush(f->prod, 10000));

  /* A partition that does not exist (not a topic: the mock creates any topic a metadata request names). */
  esr_readback_range r = {.topic = "rb", .partition = 7, .start = 0, .end = -1, .timeout_ms = 3000};
  int64_t t0 = esr_now_ms();
  esr_code rc = esr_readback_collect(f->rb, &r, "esr-source", NULL, f->set, &res, &err);
  assert_int_equal(rc, ESR_E_KAFKA);
  assert_true(esr_readback_unknown(&err));
  assert_true(esr_now_ms() - t0 < 10000);

  /* A set that is full. */
  esr_strset *tiny;
  assert_int_equal(ESR_E_OK, esr_strset_new(64, &tiny, &err));
  assert_non_null(tiny);
  r.partition = 0;
  rc = esr_readback_collect(f->rb, &r, "esr-source", NULL, tiny, &res, &err);
  int lib = err.lib_code;
  esr_strset_free(tiny);
  assert_int_equal(rc, ESR_E_NOMEM);
  assert_int_equal(lib, E2BIG);

  /* The only broker down: the read ends with an error once the timeout passes without progress. */
  assert_int_equal(0, esrt_mock_control(&f->mock, "broker-down 1", 5000));
  t0 = esr_now_ms();
  rc = esr_readback_collect(f->rb, &r, "esr-source", NULL, f->set, &res, &err);
  int64_t took = esr_now_ms() - t0;
  assert_int_equal(rc, ESR_E_KAFKA);
  assert_false(esr_readback_unknown(&err));
  if (took > 3000 + 5000) fail_msg("the read took %" PRId64 " ms with a timeout of 3000 ms", took);

  /* Back up: the same reader reads again. */
  assert_int_equal(0, esrt_mock_control(&f->mock, "broker-up 1", 5000));
  r.timeout_ms = 20000;
  rc = esr_readback_collect(f->rb, &r, "esr-source", NULL, f->set, &res, &err);
  if (rc != ESR_E_OK) fail_msg("after the broker came back: %s", err.msg);
  assert_int_equal(res.read, 2);
  assert_true(has(f->set, "a/0/1/0"));
  f->c->passed = 1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(empty_partition_and_empty_range_end_at_once, setup, teardown),
      cmocka_unit_test_setup_teardown(header_values_by_name_and_prefix_within_the_range, setup, teardown),
      cmocka_unit_test_setup_teardown(a_start_below_the_log_start_reads_from_the_log_start, setup, teardown),
      cmocka_unit_test_setup_teardown(several_ranges_read_at_once, setup, teardown),
      cmocka_unit_test_setup_teardown(kafka_failures_are_error_codes_within_the_timeout, setup, teardown),
  };
  return cmocka_run_group_tests_name("readback", tests, NULL, NULL);
}
