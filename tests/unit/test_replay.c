/* test_replay.c — replay.h's instants for --to TIME: RFC 3339 with a zone, fractions rounded down to the millisecond,
 * offsets from UTC, a leap second as the minute's last instant; anything without a zone or out of range refused; and
 * the formatting back to UTC. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "replay.h"
#include "unit_util.h"

static int64_t parse(const char *text) {
  int64_t ms = -42;
  if (esr_replay_parse_time(text, &ms) != 0) fail_msg("'%s' was refused", text);
  return ms;
}

static void instants_parse_to_milliseconds_since_the_epoch(void **state) {
  (void)state;
  assert_int_equal(0, parse("1970-01-01T00:00:00Z"));
  assert_int_equal(1782863999000, parse("2026-06-30T23:59:59Z"));
  assert_int_equal(1782863999250, parse("2026-06-30T23:59:59.25Z"));
  assert_int_equal(1782863999999, parse("2026-06-30T23:59:59.9999Z")); /* rounded down: still at or before */
  assert_int_equal(1782863999000 - 2 * 3600000, parse("2026-06-30T23:59:59+02:00"));
  assert_int_equal(1782863999000 + 5 * 3600000 + 30 * 60000, parse("2026-06-30T23:59:59-05:30"));
  assert_int_equal(parse("2026-06-30T23:59:59Z"), parse("2026-06-30 23:59:59z"));
  assert_int_equal(1782863999999, parse("2026-06-30T23:59:60Z")); /* a leap second: the minute's last instant */
  assert_int_equal(951782400000, parse("2000-02-29T00:00:00Z"));
}

static void what_is_not_an_instant_is_refused(void **state) {
  (void)state;
  static const char *const bad[] = {"",
                                    "2026-06-30",
                                    "2026-06-30T23:59:59",       /* no zone: ambiguous */
                                    "2026-06-30T23:59Z",
                                    "2026-13-01T00:00:00Z",
                                    "2026-02-30T00:00:00Z",
                                    "2026-02-29T00:00:00Z", /* not a leap year */
                                    "2026-06-30T24:00:00Z",
                                    "2026-06-30T23:59:59.Z",
                                    "2026-06-30T23:59:59+2:00",
                                    "2026-06-30T23:59:59Z trailing",
                                    "1234"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int64_t ms;
    if (esr_replay_parse_time(bad[i], &ms) == 0) fail_msg("'%s' was accepted", bad[i]);
  }
}

static void instants_format_back_in_utc(void **state) {
  (void)state;
  char buf[40];
  esr_replay_format_time(1782863999250, buf, sizeof buf);
  assert_string_equal("2026-06-30T23:59:59.250Z", buf);
  esr_replay_format_time(0, buf, sizeof buf);
  assert_string_equal("1970-01-01T00:00:00.000Z", buf);
  esr_replay_format_time(1782863999250, buf, sizeof buf);
  assert_int_equal(1782863999250, parse(buf)); /* and back */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(instants_parse_to_milliseconds_since_the_epoch),
      cmocka_unit_test(what_is_not_an_instant_is_refused),
      cmocka_unit_test(instants_format_back_in_utc),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
