/* test_crashguard.c — the poison-event bookkeeping of esr/crashguard.h, driven through simulated deaths: a "death" is
 * a guard closed with a batch in flight (no commit), followed by an open with or without a crash record, as the next
 * process would see it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>

#include "crashguard.h"
#include "unit_util.h"

#define RETRIES 3
#define BATCH 100

typedef struct fixture {
  char *dir;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (!f || !(f->dir = tu_mkdtemp())) return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  tu_rmrf(f->dir);
  free(f->dir);
  free(f);
  return 0;
}

static esr_guard *open_guard(fixture *f, const esr_crash_record *last) {
  esr_guard *g = NULL;
  esr_error err = {0};
  assert_int_equal(esr_guard_open(f->dir, "t", 0, RETRIES, BATCH, last, &g, &err), ESR_E_OK);
  return g;
}

static esr_crash_record record(const char *topic, int32_t partition, int64_t offset, int signo) {
  esr_crash_record r = {.n = 1};
  r.v[0] = (esr_crash_entry){.partition = partition, .offset = offset, .signo = signo};
  snprintf(r.v[0].topic, sizeof r.v[0].topic, "%s", topic);
  return r;
}

static int poison(esr_guard *g, int64_t offset) {
  char why[600] = "";
  return esr_guard_poison(g, offset, why, sizeof why);
}

/* A run that begins a batch at `first`, passes events first..at-1 and dies while processing `at`. */
static void die_at(fixture *f, const esr_crash_record *last, int64_t first, int64_t at) {
  esr_guard *g = open_guard(f, last);
  esr_guard_begin(g, first);
  for (int64_t o = first; o <= at; o++) assert_false(poison(g, o));
  esr_guard_close(g); /* no commit: the process died */
}

static void signalled_event_is_poison_after_retries(void **state) {
  fixture *f = *state;
  esr_crash_record none = {0};
  die_at(f, &none, 0, 42);
  /* Each next process finds the record of the signal on offset 42; batch boundaries move (time-based commits). */
  for (int death = 1; death <= RETRIES; death++) {
    esr_crash_record r = record("t", 0, 42, SIGSEGV);
    esr_guard *g = open_guard(f, &r);
    int64_t first = 10 * death; /* a commit moved the batch start: the count must survive it */
    esr_guard_committed(g, first);
    esr_guard_begin(g, first);
    for (int64_t o = first; o < 42; o++) assert_false(poison(g, o));
    assert_false(poison(g, 42)); /* retried: dies again */
    esr_guard_close(g);
  }
  esr_crash_record r = record("t", 0, 42, SIGSEGV);
  esr_guard *g = open_guard(f, &r);
  esr_guard_begin(g, 40);
  assert_false(poison(g, 40));
  assert_false(esr_guard_careful(g)); /* a signal names the event: no careful pass needed */
  char why[600] = "";
  assert_true(esr_guard_poison(g, 42, why, sizeof why));
  assert_contains(why, "signal 11");
  assert_false(poison(g, 43));
  esr_guard_close(g); /* the batch holding the dead letter is lost (the process died of something else) */
  g = open_guard(f, NULL);
  esr_guard_begin(g, 40);
  assert_true(poison(g, 42)); /* still poison: the verdict holds until a commit passes it */
  esr_guard_committed(g, 44);
  esr_guard_close(g);
  g = open_guard(f, NULL); /* a clean restart: nothing is poison any more */
  assert_false(poison(g, 42));
  esr_guard_close(g);
}

static void death_of_another_partition_is_not_charged(void **state) {
  fixture *f = *state;
  esr_crash_record none = {0};
  die_at(f, &none, 0, 5);
  for (int death = 0; death < 10; death++) { /* partition 1 of t keeps crashing while 0 has batches in flight */
    esr_crash_record r = record("t", 1, 7, SIGSEGV);
    die_at(f, &r, 0, 5);
  }
  esr_crash_record r = record("t", 1, 7, SIGSEGV);
  esr_guard *g = open_guard(f, &r);
  assert_false(esr_guard_begin(g, 0));
  for (int64_t o = 0; o < 50; o++) assert_false(poison(g, o));
  esr_guard_close(g);
}

static void unexplained_deaths_lead_to_a_careful_pass_and_two_deaths_on_one_event(void **state) {
  fixture *f = *state;
  /* SIGKILLs (no record) in the same stretch: more than RETRIES of them start a careful pass. */
  die_at(f, NULL, 200, 230);
  for (int death = 1; death <= RETRIES; death++) die_at(f, NULL, 200 + 5 * death, 230);
  esr_guard *g = open_guard(f, NULL);
  assert_true(esr_guard_begin(g, 220));
  /* careful: one event per transaction; the process dies while 230 is in flight */
  for (int64_t o = 220; o < 230; o++) {
    assert_false(poison(g, o));
    esr_guard_committed(g, o + 1);
    assert_true(esr_guard_begin(g, o + 1));
  }
  assert_false(poison(g, 230));
  esr_guard_close(g);
  /* one death on 230: could be a coincidence, 230 is retried */
  g = open_guard(f, NULL);
  assert_true(esr_guard_begin(g, 230));
  assert_false(poison(g, 230));
  esr_guard_close(g);
  /* a second death on 230 in the careful pass: poison */
  g = open_guard(f, NULL);
  assert_true(esr_guard_begin(g, 230));
  char why[600] = "";
  assert_true(esr_guard_poison(g, 230, why, sizeof why));
  assert_contains(why, "without a recorded signal");
  esr_guard_committed(g, 231);
  /* the careful pass covers one batch's stretch from the first death's batch start: [200, 300) */
  for (int64_t o = 231; o < 200 + BATCH; o++) {
    assert_true(esr_guard_begin(g, o));
    assert_false(poison(g, o));
    esr_guard_committed(g, o + 1);
  }
  assert_false(esr_guard_begin(g, 200 + BATCH));
  esr_guard_close(g);
}

static void a_random_kill_in_a_careful_pass_does_not_convict(void **state) {
  fixture *f = *state;
  for (int death = 0; death <= RETRIES; death++) die_at(f, NULL, 0, 10);
  esr_guard *g = open_guard(f, NULL);
  assert_true(esr_guard_begin(g, 0));
  for (int64_t o = 0; o < 12; o++) {
    assert_false(poison(g, o));
    esr_guard_committed(g, o + 1);
    esr_guard_begin(g, o + 1);
  }
  assert_false(poison(g, 12)); /* killed once while 12 is in flight */
  esr_guard_close(g);
  g = open_guard(f, NULL);
  esr_guard_begin(g, 12);
  assert_false(poison(g, 12)); /* survives this time */
  esr_guard_committed(g, 13);
  esr_guard_close(g);
  g = open_guard(f, NULL); /* and a later single death elsewhere convicts nothing */
  esr_guard_begin(g, 13);
  assert_false(poison(g, 13));
  esr_guard_close(g);
  g = open_guard(f, NULL);
  esr_guard_begin(g, 13);
  assert_false(poison(g, 12));
  esr_guard_close(g);
}

static void committed_batches_clear_the_marker(void **state) {
  fixture *f = *state;
  for (int i = 0; i < 20; i++) { /* many healthy batches; a clean stop between each */
    esr_guard *g = open_guard(f, NULL);
    assert_false(esr_guard_begin(g, i * 10));
    esr_guard_committed(g, i * 10 + 10);
    esr_guard_close(g);
  }
  esr_guard *g = open_guard(f, NULL);
  assert_false(esr_guard_begin(g, 200));
  esr_guard_close(g);
}

/* Two threads crashed at nearly the same moment: each partition is charged its own event. */
static void two_crashing_threads_are_both_charged(void **state) {
  fixture *f = *state;
  esr_crash_record none = {0};
  die_at(f, &none, 0, 9);
  for (int death = 1; death <= RETRIES + 1; death++) {
    esr_crash_record r = record("other", 3, 77, SIGABRT);
    r.v[r.n++] = record("t", 0, 9, SIGSEGV).v[0];
    esr_guard *g = open_guard(f, &r);
    esr_guard_begin(g, 0);
    if (death <= RETRIES) {
      assert_false(poison(g, 9));
    } else {
      assert_true(poison(g, 9));
    }
    esr_guard_close(g);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(signalled_event_is_poison_after_retries, setup, teardown),
      cmocka_unit_test_setup_teardown(death_of_another_partition_is_not_charged, setup, teardown),
      cmocka_unit_test_setup_teardown(unexplained_deaths_lead_to_a_careful_pass_and_two_deaths_on_one_event, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(a_random_kill_in_a_careful_pass_does_not_convict, setup, teardown),
      cmocka_unit_test_setup_teardown(committed_batches_clear_the_marker, setup, teardown),
      cmocka_unit_test_setup_teardown(two_crashing_threads_are_both_charged, setup, teardown),
  };
  return cmocka_run_group_tests_name("crashguard", tests, NULL, NULL);
}
