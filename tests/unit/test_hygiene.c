/* test_hygiene.c — disk hygiene (esr/hygiene.h) and the metrics text (esr/promtext.h, esr/metrics.h).
 *   prune_keeps_newest      — set-aside databases (with sidecars) beyond the newest N are removed, newest kept whole;
 *                             live databases and other files untouched; a quarantined checkpoint's .db and .json go
 *                             together.
 *   drop_after_store_covers — a database this worker does not own is dropped only once its grace passed and the
 *                             remote store (file://) holds a checkpoint at or past its offset; an owned one, one whose
 *                             store copy is older and one still in its grace stay.
 *   promtext_escapes        — label values and HELP text escaped, numbers exact, histograms cumulative.
 *   metrics_count_commits   — counters count committed work only; states, readiness and health verdicts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "cplister.h"
#include "cpstore.h"
#include "hygiene.h"
#include "metrics.h"
#include "promtext.h"
#include "unit_checkpoint.h"
#include "unit_util.h"

static void touch(const char *dir, const char *name) {
  char p[4096];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  assert_non_null(f);
  fputs("x", f);
  fclose(f);
}

static int exists(const char *dir, const char *name) {
  char p[4096];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return access(p, F_OK) == 0;
}

/* The kernel's file times tick coarsely: a pause makes the next group's change time later. */
static void tick(void) { nanosleep(&(struct timespec){0, 30 * 1000 * 1000}, NULL); }

static void prune_keeps_newest(void **state) {
  (void)state;
  char *dir = tu_mkdtemp();
  touch(dir, "t-0.db");
  touch(dir, "t-0.db-wal");
  touch(dir, "notes.txt");
  const char *stamps[] = {"20260101T000001Z", "20260101T000002Z", "20260101T000003Z", "20260101T000004Z"};
  char name[256];
  for (int i = 0; i < 4; i++) {
    snprintf(name, sizeof name, "t-%d.db.corrupt-%s", i, stamps[i]);
    touch(dir, name);
    snprintf(name, sizeof name, "t-%d.db.corrupt-%s-wal", i, stamps[i]);
    touch(dir, name);
    tick();
  }
  touch(dir, "t-9.db.old-20260101T000005Z");
  assert_int_equal(esr_hygiene_prune_dir(dir, 2), 3); /* 5 groups, 2 kept */
  assert_true(exists(dir, "t-9.db.old-20260101T000005Z"));
  assert_true(exists(dir, "t-3.db.corrupt-20260101T000004Z"));
  assert_true(exists(dir, "t-3.db.corrupt-20260101T000004Z-wal"));
  for (int i = 0; i < 3; i++) {
    snprintf(name, sizeof name, "t-%d.db.corrupt-%s", i, stamps[i]);
    assert_false(exists(dir, name));
    snprintf(name, sizeof name, "t-%d.db.corrupt-%s-wal", i, stamps[i]);
    assert_false(exists(dir, name));
  }
  assert_true(exists(dir, "t-0.db") && exists(dir, "t-0.db-wal") && exists(dir, "notes.txt"));
  assert_int_equal(esr_hygiene_prune_dir(dir, 2), 0);
  /* A quarantined checkpoint: data and manifest are one group. */
  touch(dir, "00000000000000000010.db.bad-20260101T000009Z");
  touch(dir, "00000000000000000010.json.bad-20260101T000009Z");
  assert_int_equal(esr_hygiene_prune_dir(dir, 0), 3);
  assert_false(exists(dir, "00000000000000000010.json.bad-20260101T000009Z"));
  assert_true(exists(dir, "t-0.db"));
  tu_rmrf(dir);
  free(dir);
}

typedef struct owned_set {
  int owned[8];
} owned_set;

static int is_owned(void *arg, const char *topic, int32_t partition) {
  (void)topic;
  return ((owned_set *)arg)->owned[partition];
}

static void make_db(const char *dir, int32_t partition, int events) {
  cpt_part p;
  cpt_open(&p, dir, "t", partition);
  cpt_commit(&p, events);
  cpt_close(&p);
}

/* Writes a checkpoint of the database as it is and uploads it to the store. */
static void upload(esr_cpstore *store, const char *state, const char *cp, int32_t partition) {
  char db[4096];
  esr_store_path(db, sizeof db, state, "t", partition);
  esr_manifest *m = NULL;
  esr_error err = {0};
  esr_checkpoint_opts o = {0};
  if (esr_checkpoint_write(db, cp, "t", partition, &o, &m, &err) != ESR_E_OK) fail_msg("write: %s", err.msg);
  if (esr_cpstore_upload(store, cp, m, &err) != ESR_E_OK) fail_msg("upload: %s", err.msg);
  esr_manifest_free(m);
}

static void drop_after_store_covers(void **state) {
  (void)state;
  char *root = tu_mkdtemp();
  char sdir[4096], cp[4096], remote[4096], url[4200];
  snprintf(sdir, sizeof sdir, "%s/state", root);
  snprintf(cp, sizeof cp, "%s/state/checkpoints", root);
  snprintf(remote, sizeof remote, "%s/remote", root);
  mkdir(sdir, 0750);
  mkdir(remote, 0750);
  snprintf(url, sizeof url, "file://%s", remote);
  esr_cpstore *store = NULL;
  esr_error err = {0};
  assert_int_equal(esr_cpstore_open(url, NULL, &store, &err), ESR_E_OK);
  /* 0: covered, not owned -> dropped; 1: covered but owned -> kept; 2: the store's copy is older -> kept. */
  for (int p = 0; p < 3; p++) make_db(sdir, p, 5);
  for (int p = 0; p < 3; p++) upload(store, sdir, cp, p);
  make_db(sdir, 2, 3); /* 8 now, the store holds 5 */
  esr_cplister *lister = NULL;
  assert_int_equal(esr_cplister_new(url, NULL, 1, &lister, &err), ESR_E_OK);
  char *topics[] = {"t"};
  owned_set own = {.owned = {0, 1, 0}};
  esr_hygiene_opts o = {.state_dir = sdir, .cp_dir = cp, .topics = topics, .n_topics = 1, .aside_keep = 3,
                        .drop_after_ms = 300, .lister = lister, .owned = is_owned, .arg = &own};
  esr_hygiene *h = esr_hygiene_new(&o);
  assert_non_null(h);
  int64_t now = esr_now_ms();
  esr_hygiene_tick(h, now); /* first seen unowned: the grace starts */
  /* Within the grace nothing goes, whatever the store holds. */
  esr_hygiene_tick(h, now + 5000 - 4900 + 5000);
  assert_true(exists(sdir, "t-0.db"));
  /* Past the grace: the listing is asked, then (polled, never waited for) acted upon. */
  int64_t deadline = esr_now_ms() + 10000, t = now + 5000;
  while (exists(sdir, "t-0.db") && esr_now_ms() < deadline) {
    t += 5000;
    esr_hygiene_tick(h, t);
    nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
  }
  assert_false(exists(sdir, "t-0.db"));
  assert_false(exists(sdir, "t-0.db-wal"));
  assert_true(exists(sdir, "t-1.db")); /* owned */
  assert_true(exists(sdir, "t-2.db")); /* the store's copy is older than the database */
  esr_hygiene_free(h);
  esr_cplister_free(lister);
  esr_cpstore_close(store);
  tu_rmrf(root);
  free(root);
}

static void promtext_escapes(void **state) {
  (void)state;
  esr_prom p = ESR_PROM_INIT;
  esr_prom_family(&p, "x_total", "counter", "a \\ b\nc");
  esr_prom_sample(&p, "x_total", (const char *const[]){"l", "q\"\\\nz", NULL}, 3);
  esr_prom_sample(&p, "x_total", NULL, 0.1);
  esr_prom_sample_int(&p, "x_total", NULL, 9007199254740993LL);
  esr_prom_histogram(&p, "h", NULL, (const double[]){0.5, 1}, 2, (const int64_t[]){1, 2, 3}, 4.25);
  size_t len;
  char *text = esr_prom_take(&p, &len);
  assert_non_null(text);
  assert_string_equal(text, "# HELP x_total a \\\\ b\\nc\n"
                            "# TYPE x_total counter\n"
                            "x_total{l=\"q\\\"\\\\\\nz\"} 3\n"
                            "x_total 0.1\n"
                            "x_total 9007199254740993\n"
                            "h_bucket{le=\"0.5\"} 1\n"
                            "h_bucket{le=\"1\"} 3\n"
                            "h_bucket{le=\"+Inf\"} 6\n"
                            "h_sum 4.25\n"
                            "h_count 6\n");
  assert_int_equal(len, strlen(text));
  free(text);
}

static void metrics_count_commits(void **state) {
  (void)state;
  esr_metrics_reset();
  char why[200];
  assert_false(esr_metrics_ready(why, sizeof why));
  assert_string_equal(why, "starting");
  esr_metrics_phase(ESR_PHASE_RUNNING);
  assert_true(esr_metrics_ready(why, sizeof why));
  esr_pmetrics *m = esr_metrics_partition("t", 3);
  assert_ptr_equal(m, esr_metrics_partition("t", 3));
  esr_metrics_state(m, ESR_PSTATE_RUNNING);
  int dead[ESR_DL_N] = {0};
  dead[esr_metrics_reason_index("schema")] = 2;
  dead[esr_metrics_reason_index("no-such")] = 1;
  esr_metrics_committed(m, 10, 7, dead, esr_now_ms());
  esr_metrics_state(m, ESR_PSTATE_PAUSED);
  assert_false(esr_metrics_ready(why, sizeof why));
  assert_string_equal(why, "t[3] is paused");
  esr_metrics_rolled_back(ESR_E_SQLITE, SQLITE_FULL);
  size_t len;
  char *text = esr_metrics_render(NULL, &len);
  assert_non_null(text);
  assert_non_null(strstr(text, "esr_events_applied_total{topic=\"t\",partition=\"3\"} 7\n"));
  assert_non_null(strstr(text, "esr_dead_letters_total{topic=\"t\",partition=\"3\",reason=\"schema\"} 2\n"));
  assert_non_null(strstr(text, "esr_dead_letters_total{topic=\"t\",partition=\"3\",reason=\"other\"} 1\n"));
  assert_non_null(strstr(text, "esr_partition_state{topic=\"t\",partition=\"3\",state=\"paused\"} 1\n"));
  assert_non_null(strstr(text, "esr_partition_next_offset{topic=\"t\",partition=\"3\"} 10\n"));
  assert_non_null(strstr(text, "esr_batches_rolled_back_total{cause=\"full\"} 1\n"));
  assert_non_null(strstr(text, "esr_ready 0\n"));
  assert_non_null(strstr(text, "process_open_fds "));
  free(text);
  /* Released: counters stay, the gauges of an owned partition go. */
  esr_metrics_state(m, ESR_PSTATE_UNOWNED);
  assert_true(esr_metrics_ready(why, sizeof why));
  text = esr_metrics_render(NULL, &len);
  assert_non_null(strstr(text, "esr_events_applied_total{topic=\"t\",partition=\"3\"} 7\n"));
  assert_null(strstr(text, "esr_partition_next_offset{"));
  free(text);
  esr_metrics_appliers(2);
  assert_true(esr_metrics_healthy(esr_now_ms(), 1000, why, sizeof why));
  esr_metrics_beat(1, esr_now_ms() - 5000);
  assert_false(esr_metrics_healthy(esr_now_ms(), 1000, why, sizeof why));
  assert_non_null(strstr(why, "apply thread 1"));
  esr_metrics_reset();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(prune_keeps_newest),
      cmocka_unit_test(drop_after_store_covers),
      cmocka_unit_test(promtext_escapes),
      cmocka_unit_test(metrics_count_commits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
