/* test_outbox.c — esr/outbox.h: rows added in the batch, scanned in order (limit, after, early stop), deleted, counted;
 * key and value kept byte for byte, a NULL key distinct from an empty one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "outbox.h"
#include "store.h"
#include "unit_util.h"

typedef struct fixture {
  char *dir;
  esr_store *s;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (!f || !(f->dir = tu_mkdtemp())) return -1;
  esr_error err = {0};
  if (esr_store_open(f->dir, "src", 1, NULL, &f->s, &err) != ESR_E_OK) return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  esr_store_close(f->s);
  tu_rmrf(f->dir);
  free(f->dir);
  free(f);
  return 0;
}

static void reopen(fixture *f) {
  esr_store_close(f->s);
  f->s = NULL;
  esr_error err = {0};
  if (esr_store_open(f->dir, "src", 1, NULL, &f->s, &err) != ESR_E_OK) fail_msg("reopen: %s", err.msg);
}

static void commit(fixture *f, int64_t next) {
  esr_position pos = {.next_offset = next};
  esr_error err = {0};
  if (esr_store_commit(f->s, &pos, &err) != ESR_E_OK) fail_msg("commit: %s", err.msg);
}

/* A deep copy of the rows a scan passed, so they can be checked after it. */
typedef struct copied {
  int64_t seq;
  char *topic;
  void *key;
  size_t key_len;
  int key_null;
  void *value;
  size_t value_len;
  int64_t src_offset;
  int src_index;
  char *reason, *error;
  int value_null;
} copied;

typedef struct collector {
  copied rows[64];
  int n;
  int stop_after; /* stop once this many were seen (0: never) */
} collector;

static void *dup_bytes(const void *p, size_t n) {
  void *c = malloc(n ? n : 1);
  if (n) memcpy(c, p, n);
  return c;
}

static int collect(void *arg, const esr_outbox_row *row) {
  collector *c = arg;
  assert_true(c->n < 64);
  copied *r = &c->rows[c->n++];
  r->seq = row->seq;
  r->topic = row->topic ? strdup(row->topic) : NULL;
  r->key_null = row->key == NULL;
  r->key = row->key ? dup_bytes(row->key, row->key_len) : NULL;
  r->key_len = row->key_len;
  r->value_null = row->value == NULL;
  r->value = row->value ? dup_bytes(row->value, row->value_len) : NULL;
  r->value_len = row->value_len;
  r->src_offset = row->src_offset;
  r->src_index = row->src_index;
  r->reason = row->reason ? strdup(row->reason) : NULL;
  r->error = row->error ? strdup(row->error) : NULL;
  return c->stop_after && c->n >= c->stop_after;
}

static void collector_free(collector *c) {
  for (int i = 0; i < c->n; i++) {
    free(c->rows[i].topic);
    free(c->rows[i].key);
    free(c->rows[i].value);
    free(c->rows[i].reason);
    free(c->rows[i].error);
  }
  c->n = 0;
}

static int64_t count(fixture *f) {
  int64_t n = -1;
  esr_error err = {0};
  assert_int_equal(esr_outbox_count(f->s, &n, &err), ESR_E_OK);
  return n;
}

static int64_t add(fixture *f, const char *topic, const void *key, size_t key_len, const void *value, size_t value_len,
                   int64_t src_offset, int src_index, const char *reason, const char *error) {
  esr_outbox_row row = {.topic = topic,
                        .key = key,
                        .key_len = key_len,
                        .value = value,
                        .value_len = value_len,
                        .src_offset = src_offset,
                        .src_index = src_index,
                        .reason = reason,
                        .error = error};
  esr_error err = {0};
  if (esr_outbox_add(f->s, &row, &err) != ESR_E_OK) fail_msg("add: %s", err.msg);
  return row.seq;
}

static void add_scan_order_and_fields(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  assert_int_equal(count(f), 0);
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  static const char bin[] = {'v', 0, '\xff', 'x'};
  int64_t s1 = add(f, "dlq", "k1", 2, bin, sizeof bin, 7, 0, "bad-json", "not valid JSON");
  int64_t s2 = add(f, "out", "k2", 2, "{\"a\":1}", 7, 8, 1, NULL, NULL);
  int64_t s3 = add(f, "out", "k2", 2, "{\"a\":2}", 7, 8, 2, NULL, NULL);
  assert_true(s1 > 0);
  assert_true(s2 > s1);
  assert_true(s3 > s2);
  assert_int_equal(count(f), 3);
  commit(f, 9);

  collector c = {0};
  int64_t last = -5;
  assert_int_equal(esr_outbox_scan(f->s, 0, 100, collect, &c, &last, &err), ESR_E_OK);
  assert_int_equal(c.n, 3);
  assert_true(last == s3);
  assert_true(c.rows[0].seq == s1);
  assert_true(c.rows[1].seq == s2);
  assert_true(c.rows[2].seq == s3);
  assert_string_equal(c.rows[0].topic, "dlq");
  assert_int_equal(c.rows[0].key_len, 2);
  assert_memory_equal(c.rows[0].key, "k1", 2);
  assert_int_equal(c.rows[0].value_len, sizeof bin);
  assert_memory_equal(c.rows[0].value, bin, sizeof bin);
  assert_int_equal(c.rows[0].src_offset, 7);
  assert_int_equal(c.rows[0].src_index, 0);
  assert_string_equal(c.rows[0].reason, "bad-json");
  assert_string_equal(c.rows[0].error, "not valid JSON");
  assert_string_equal(c.rows[2].topic, "out");
  assert_int_equal(c.rows[2].src_offset, 8);
  assert_int_equal(c.rows[2].src_index, 2);
  assert_null(c.rows[2].reason);
  assert_null(c.rows[2].error);
  assert_memory_equal(c.rows[2].value, "{\"a\":2}", 7);
  collector_free(&c);
}

static void scan_limit_after_and_early_stop(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  int64_t seq[6];
  for (int i = 0; i < 6; i++) seq[i] = add(f, "out", "k", 1, "v", 1, 100 + i, 1, NULL, NULL);
  commit(f, 106);

  collector c = {0};
  int64_t last = -1;
  assert_int_equal(esr_outbox_scan(f->s, 0, 2, collect, &c, &last, &err), ESR_E_OK);
  assert_int_equal(c.n, 2);
  assert_true(last == seq[1]);
  assert_int_equal(c.rows[0].src_offset, 100);
  collector_free(&c);

  /* the next page starts after the last seq seen */
  assert_int_equal(esr_outbox_scan(f->s, last, 3, collect, &c, &last, &err), ESR_E_OK);
  assert_int_equal(c.n, 3);
  assert_true(c.rows[0].seq == seq[2]);
  assert_true(last == seq[4]);
  collector_free(&c);

  /* fn returning non-zero stops the scan; last is the row it stopped on */
  c.stop_after = 1;
  assert_int_equal(esr_outbox_scan(f->s, 0, 100, collect, &c, &last, &err), ESR_E_OK);
  assert_int_equal(c.n, 1);
  assert_true(last == seq[0]);
  collector_free(&c);
  c.stop_after = 0;

  /* nothing after the last row: fn not called, last unchanged */
  last = 12345;
  assert_int_equal(esr_outbox_scan(f->s, seq[5], 100, collect, &c, &last, &err), ESR_E_OK);
  assert_int_equal(c.n, 0);
  assert_true(last == 12345);
}

static void delete_and_count(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  int64_t seq[5];
  for (int i = 0; i < 5; i++) seq[i] = add(f, "out", NULL, 0, "v", 1, i, 1, NULL, NULL);
  commit(f, 5);
  assert_int_equal(count(f), 5);

  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  int64_t del[] = {seq[1], seq[3], 999999 /* unknown: ignored */};
  assert_int_equal(esr_outbox_delete(f->s, del, 3, &err), ESR_E_OK);
  assert_int_equal(count(f), 3);
  commit(f, 5);

  /* a delete in a rolled-back transaction did not happen */
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  assert_int_equal(esr_outbox_delete(f->s, &seq[0], 1, &err), ESR_E_OK);
  assert_int_equal(count(f), 2);
  assert_int_equal(esr_store_rollback(f->s, &err), ESR_E_OK);
  assert_int_equal(count(f), 3);

  reopen(f);
  assert_int_equal(count(f), 3);
  collector c = {0};
  int64_t last = 0;
  assert_int_equal(esr_outbox_scan(f->s, 0, 100, collect, &c, &last, &err), ESR_E_OK);
  assert_int_equal(c.n, 3);
  assert_true(c.rows[0].seq == seq[0]);
  assert_true(c.rows[1].seq == seq[2]);
  assert_true(c.rows[2].seq == seq[4]);
  collector_free(&c);
}

static void rows_added_in_rolled_back_batch_vanish(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  add(f, "dlq", "k", 1, "v", 1, 0, 0, "rejected", "no");
  assert_int_equal(count(f), 1);
  assert_int_equal(esr_store_rollback(f->s, &err), ESR_E_OK);
  assert_int_equal(count(f), 0);
  /* seq never goes back: a row added later gets a new one (AUTOINCREMENT), so a delivery report for an old seq can
   * never delete a new row */
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  int64_t a = add(f, "dlq", "k", 1, "v", 1, 0, 0, "rejected", "no");
  commit(f, 1);
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  assert_int_equal(esr_outbox_delete(f->s, &a, 1, &err), ESR_E_OK);
  commit(f, 1);
  reopen(f);
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  int64_t b = add(f, "dlq", "k", 1, "v", 1, 1, 0, "rejected", "no");
  commit(f, 2);
  assert_true(b > a);
}

static void null_key_and_empty_key_preserved(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  add(f, "out", NULL, 0, "no key", 6, 1, 1, NULL, NULL);
  add(f, "out", "", 0, "empty key", 9, 2, 1, NULL, NULL);
  add(f, "out", "\0k", 2, "", 0, 3, 1, NULL, NULL); /* a key starting with NUL; an empty value */
  commit(f, 4);
  reopen(f);
  collector c = {0};
  int64_t last = 0;
  assert_int_equal(esr_outbox_scan(f->s, 0, 100, collect, &c, &last, &err), ESR_E_OK);
  assert_int_equal(c.n, 3);
  assert_true(c.rows[0].key_null);
  assert_int_equal(c.rows[0].key_len, 0);
  assert_false(c.rows[1].key_null);
  assert_int_equal(c.rows[1].key_len, 0);
  assert_false(c.rows[2].key_null);
  assert_int_equal(c.rows[2].key_len, 2);
  assert_memory_equal(c.rows[2].key, "\0k", 2);
  assert_int_equal(c.rows[2].value_len, 0);
  assert_false(c.rows[2].value_null); /* an empty value is not a tombstone */
  collector_free(&c);
}

/* A dead letter of a tombstone (no value) is a tombstone; of an empty value, an empty value. */
static void null_value_and_empty_value_preserved(void **state) {
  fixture *f = *state;
  esr_error err = {0};
  assert_int_equal(esr_store_begin(f->s, &err), ESR_E_OK);
  add(f, "out", "k", 1, NULL, 0, 1, 0, "bad-json", "empty value");
  add(f, "out", "k", 1, "", 0, 2, 0, "bad-json", "empty value");
  commit(f, 3);
  reopen(f);
  collector c = {0};
  int64_t last = 0;
  assert_int_equal(esr_outbox_scan(f->s, 0, 100, collect, &c, &last, &err), ESR_E_OK);
  assert_int_equal(c.n, 2);
  assert_true(c.rows[0].value_null);
  assert_false(c.rows[1].value_null);
  assert_int_equal(c.rows[1].value_len, 0);
  collector_free(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(add_scan_order_and_fields, setup, teardown),
      cmocka_unit_test_setup_teardown(scan_limit_after_and_early_stop, setup, teardown),
      cmocka_unit_test_setup_teardown(delete_and_count, setup, teardown),
      cmocka_unit_test_setup_teardown(rows_added_in_rolled_back_batch_vanish, setup, teardown),
      cmocka_unit_test_setup_teardown(null_key_and_empty_key_preserved, setup, teardown),
      cmocka_unit_test_setup_teardown(null_value_and_empty_value_preserved, setup, teardown),
  };
  return cmocka_run_group_tests_name("outbox", tests, NULL, NULL);
}
