/* test_strset.c — esr/strset.h: members are byte strings (a NUL inside counts, a prefix is another string), adding twice
 * keeps one, the table grows past many members, the walk visits each member once, and the byte bound refuses an
 * addition (ESR_E_NOMEM, lib_code E2BIG) without changing the set. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "strset.h"

static void members_are_byte_strings(void **state) {
  (void)state;
  esr_error err = {0};
  esr_strset *s;
  assert_int_equal(ESR_E_OK, esr_strset_new(0, &s, &err));
  assert_non_null(s);
  int added = -1;
  assert_int_equal(ESR_E_OK, esr_strset_add(s, "a\0b", 3, &added, &err));
  assert_int_equal(added, 1);
  assert_int_equal(ESR_E_OK, esr_strset_add(s, "a", 1, &added, &err));
  assert_int_equal(added, 1);
  assert_int_equal(ESR_E_OK, esr_strset_add(s, "", 0, &added, &err));
  assert_int_equal(added, 1);
  assert_int_equal(ESR_E_OK, esr_strset_add(s, "a\0b", 3, &added, &err));
  assert_int_equal(added, 0);
  assert_int_equal(esr_strset_count(s), 3);
  assert_true(esr_strset_has(s, "a\0b", 3));
  assert_true(esr_strset_has(s, "a", 1));
  assert_true(esr_strset_has(s, "", 0));
  assert_false(esr_strset_has(s, "a\0", 2));
  assert_false(esr_strset_has(s, "ab", 2));
  esr_strset_free(s);
  esr_strset_free(NULL);
}

typedef struct walk {
  int seen[5000];
  int visits;
} walk;

static int visit(void *arg, const char *s, size_t len) {
  walk *w = arg;
  int i = -1;
  assert_int_equal(s[len], '\0');
  assert_int_equal(sscanf(s, "member-%d", &i), 1);
  assert_in_range(i, 0, 4999);
  w->seen[i]++;
  w->visits++;
  return 0;
}

static void it_grows_and_walks_each_member_once(void **state) {
  (void)state;
  esr_error err = {0};
  esr_strset *s;
  assert_int_equal(ESR_E_OK, esr_strset_new(0, &s, &err));
  assert_non_null(s);
  char buf[32];
  for (int round = 0; round < 2; round++)
    for (int i = 0; i < 5000; i++) {
      int n = snprintf(buf, sizeof buf, "member-%d", i);
      assert_int_equal(ESR_E_OK, esr_strset_add(s, buf, (size_t)n, NULL, &err));
    }
  assert_int_equal(esr_strset_count(s), 5000);
  for (int i = 0; i < 5000; i++) {
    int n = snprintf(buf, sizeof buf, "member-%d", i);
    assert_true(esr_strset_has(s, buf, (size_t)n));
  }
  assert_false(esr_strset_has(s, "member-5000", 11));
  static walk w;
  memset(&w, 0, sizeof w);
  esr_strset_each(s, visit, &w);
  assert_int_equal(w.visits, 5000);
  for (int i = 0; i < 5000; i++) assert_int_equal(w.seen[i], 1);
  esr_strset_free(s);
}

static void the_bound_refuses_without_change(void **state) {
  (void)state;
  esr_error err = {0};
  esr_strset *s;
  assert_int_equal(ESR_E_OK, esr_strset_new(4096, &s, &err));
  assert_non_null(s);
  char buf[64];
  int i = 0, n = 0;
  esr_code rc;
  for (;; i++) {
    n = snprintf(buf, sizeof buf, "a fairly long member string number %d", i);
    if ((rc = esr_strset_add(s, buf, (size_t)n, NULL, &err)) != ESR_E_OK) break;
    assert_true(esr_strset_bytes(s) <= 4096);
    assert_true(i < 4096); /* the bound must stop it */
  }
  assert_int_equal(rc, ESR_E_NOMEM);
  assert_int_equal(err.lib_code, E2BIG);
  assert_true(i > 10);
  assert_int_equal(esr_strset_count(s), (size_t)i);
  assert_false(esr_strset_has(s, buf, (size_t)n));
  assert_true(esr_strset_has(s, "a fairly long member string number 0", 36));
  int added = -1; /* a member already there is still found: nothing to add */
  assert_int_equal(ESR_E_OK, esr_strset_add(s, "a fairly long member string number 0", 36, &added, NULL));
  assert_int_equal(added, 0);
  assert_int_equal(ESR_E_NOMEM, esr_strset_add(s, buf, (size_t)n, NULL, NULL)); /* err may be NULL */
  esr_strset_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(members_are_byte_strings),
      cmocka_unit_test(it_grows_and_walks_each_member_once),
      cmocka_unit_test(the_bound_refuses_without_change),
  };
  return cmocka_run_group_tests_name("strset", tests, NULL, NULL);
}
