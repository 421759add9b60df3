/* test_recovery.c — esr/recovery.h's ladder with the remote store (esr/cplister.h), no Kafka: a live database is
 * judged by its schema, not by an error's text; a damaged remote checkpoint is set aside in the store (file:// here,
 * S3 in tests/s3) and a later checkpoint at its offset is not confused with it; an unreachable store (an S3 endpoint
 * on a closed port, whose retries take seconds) holds up neither partitions with a valid local state (they resume
 * from it at once, well within the store's retry time measured in the same test) nor, beyond the bound, a partition
 * without local state; a store that answers in time is still used. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "clock.h"
#include "cplister.h"
#include "cpstore.h"
#include "recovery.h"
#include "unit_util.h"
#include "unit_checkpoint.h"

#define TOPIC "ledger"

typedef struct fixture {
  char *dir;
  char state[4096], cps[4096], remote[4096], url[4200];
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (!f || !(f->dir = tu_mkdtemp())) return -1;
  snprintf(f->state, sizeof f->state, "%s/state", f->dir);
  snprintf(f->cps, sizeof f->cps, "%s/checkpoints", f->dir);
  snprintf(f->remote, sizeof f->remote, "%s/shared", f->dir);
  snprintf(f->url, sizeof f->url, "file://%s", f->remote);
  mkdir(f->state, 0755);
  mkdir(f->remote, 0755);
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

/* Entries of `dir` whose name starts with `prefix`. */
static int count_prefix(const char *dir, const char *prefix) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)))
    if (strncmp(de->d_name, prefix, strlen(prefix)) == 0) n++;
  closedir(d);
  return n;
}

static esr_recovery_result recover_ok(const esr_recovery_env *env, int32_t partition) {
  esr_recovery_result r;
  esr_error err = {0};
  if (esr_recover(env, TOPIC, partition, &r, &err) != ESR_E_OK) fail_msg("recover %d: %s", partition, err.msg);
  esr_recovery_result_release(&r);
  return r;
}

/* ---- the live database's schema --------------------------------------------------------------------------------- */

/* A database with tables but no esr_offsets (not a partition's, or one that lost its position) must not be resumed
 * at offset 0 over the state it holds: it is moved aside. */
static void live_without_position_is_moved_aside(void **state) {
  fixture *f = *state;
  char live[4300];
  esr_store_path(live, sizeof live, f->state, TOPIC, 0);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(live, &db), SQLITE_OK);
  cpt_exec(db, "CREATE TABLE accounts(id TEXT PRIMARY KEY, balance INTEGER); INSERT INTO accounts VALUES('a1', 70)");
  sqlite3_close(db);
  esr_recovery_env env = {.state_dir = f->state, .cp_dir = f->cps, .quick_check = 1};
  esr_recovery_result r = recover_ok(&env, 0);
  assert_int_equal(r.step, ESR_RECOVERY_LOG);
  assert_int_equal(r.next_offset, 0);
  assert_contains(r.detail, "no esr_offsets");
  assert_false(tu_file_exists(live));
  assert_int_equal(count_prefix(f->state, "ledger-0.db.corrupt-"), 1);
}

/* An empty database (created, never opened as a partition) holds nothing: it starts at 0 where it is. */
static void empty_live_starts_at_zero(void **state) {
  fixture *f = *state;
  char live[4300];
  esr_store_path(live, sizeof live, f->state, TOPIC, 0);
  assert_int_equal(tu_write_text(live, ""), 0);
  esr_recovery_env env = {.state_dir = f->state, .cp_dir = f->cps, .quick_check = 1};
  esr_recovery_result r = recover_ok(&env, 0);
  assert_int_equal(r.step, ESR_RECOVERY_LIVE);
  assert_int_equal(r.next_offset, 0);
  assert_true(tu_file_exists(live));
}

/* ---- a damaged remote checkpoint -------------------------------------------------------------------------------- */

static esr_manifest *checkpoint_and_upload(const char *state_dir, const char *cps, esr_cpstore *store, cpt_part *p,
                                           int n) {
  char db[4300];
  esr_store_path(db, sizeof db, state_dir, TOPIC, 3);
  cpt_commit(p, n);
  esr_manifest *m = NULL;
  esr_error err = {0};
  if (esr_checkpoint_write(db, cps, TOPIC, 3, NULL, &m, &err) != ESR_E_OK) fail_msg("write: %s", err.msg);
  if (esr_cpstore_upload(store, cps, m, &err) != ESR_E_OK) fail_msg("upload: %s", err.msg);
  return m;
}

static void damaged_remote_set_aside(void **state, int with_lister) {
  fixture *f = *state;
  /* Node 1 uploads checkpoints at 100 and 200; the remote copy of 200 is then cut in half. */
  char n1_state[4300], n1_cps[4300];
  snprintf(n1_state, sizeof n1_state, "%s/node1-state", f->dir);
  snprintf(n1_cps, sizeof n1_cps, "%s/node1-cps", f->dir);
  mkdir(n1_state, 0755);
  esr_cpstore *store = NULL;
  esr_error err = {0};
  assert_int_equal(esr_cpstore_open(f->url, NULL, &store, &err), ESR_E_OK);
  cpt_part p1;
  cpt_open(&p1, n1_state, TOPIC, 3);
  esr_manifest_free(checkpoint_and_upload(n1_state, n1_cps, store, &p1, 100));
  esr_manifest_free(checkpoint_and_upload(n1_state, n1_cps, store, &p1, 100));
  cpt_close(&p1);
  char path[4300], dir[4300];
  cpt_truncate(cpt_path(path, sizeof path, f->remote, TOPIC, 3, 200, ".db"), 4096);
  snprintf(dir, sizeof dir, "%s/%s-3", f->remote, TOPIC);

  /* Node 2 has nothing: the ladder skips 200, sets it aside in the store, and restores 100. */
  esr_cplister *lister = NULL;
  if (with_lister) assert_int_equal(esr_cplister_new(f->url, NULL, 1, &lister, &err), ESR_E_OK);
  esr_recovery_env env = {.state_dir = f->state, .cp_dir = f->cps, .store = store, .lister = lister,
                          .store_wait_ms = 5000, .store_wait_cold_ms = 30000, .quick_check = 1};
  esr_recovery_result r = recover_ok(&env, 3);
  assert_int_equal(r.step, ESR_RECOVERY_REMOTE);
  assert_int_equal(r.next_offset, 100);
  assert_contains(r.detail, "remote checkpoint 200 not fetched");
  assert_contains(r.detail, "set aside in the store");
  assert_int_equal(count_prefix(dir, "00000000000000000200.json.bad-"), 1);
  assert_int_equal(count_prefix(dir, "00000000000000000200.db.bad-"), 1);
  assert_false(tu_file_exists(cpt_path(path, sizeof path, f->remote, TOPIC, 3, 200, ".json")));
  esr_manifest_list *l = NULL;
  assert_int_equal(esr_cpstore_list(store, TOPIC, 3, &l, &err), ESR_E_OK);
  assert_int_equal(l->n, 1);
  assert_int_equal(l->v[0]->next_offset, 100);
  esr_manifest_list_free(l);

  /* Node 2 goes on to 200 and checkpoints under the same name: the store lists the new one, which verifies, and
   * still keeps the damaged one aside. */
  cpt_part p2;
  cpt_open(&p2, f->state, TOPIC, 3);
  assert_int_equal(p2.pos.next_offset, 100);
  esr_manifest *m = checkpoint_and_upload(f->state, f->cps, store, &p2, 100);
  cpt_close(&p2);
  assert_int_equal(m->next_offset, 200);
  assert_int_equal(esr_cpstore_list(store, TOPIC, 3, &l, &err), ESR_E_OK);
  assert_int_equal(l->n, 2);
  assert_int_equal(l->v[0]->next_offset, 200);
  char node3[4300];
  snprintf(node3, sizeof node3, "%s/node3-cps", f->dir);
  if (esr_cpstore_fetch(store, l->v[0], node3, &err) != ESR_E_OK) fail_msg("fetch of the new 200: %s", err.msg);
  assert_int_equal(count_prefix(dir, "00000000000000000200.db.bad-"), 1);
  esr_manifest_list_free(l);
  esr_manifest_free(m);
  esr_cplister_free(lister);
  esr_cpstore_close(store);
}

static void damaged_remote_set_aside_listed_here(void **state) { damaged_remote_set_aside(state, 0); }
static void damaged_remote_set_aside_listed_by_lister(void **state) { damaged_remote_set_aside(state, 1); }

/* ---- an unreachable store --------------------------------------------------------------------------------------- */

/* A loopback port nobody listens on: every connection is refused at once, and the store retries with backoff. */
static int closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

typedef struct down_store {
  char endpoint[64];
  esr_cpstore_opts opts; /* 4 attempts (the default), backoff from 100 ms (200 by default, to keep the test short) */
  esr_cpstore *store;
  int64_t retry_ms; /* how long one listing takes to fail, measured */
} down_store;

static void down_store_open(down_store *d) {
  snprintf(d->endpoint, sizeof d->endpoint, "http://127.0.0.1:%d", closed_port());
  d->opts = (esr_cpstore_opts){.endpoint = d->endpoint, .access_key_id = "AKIDEXAMPLE",
                               .secret_access_key = "secret-never-shown", .backoff_ms = 100};
  esr_error err = {0};
  assert_int_equal(esr_cpstore_open("s3://bucket/cp", &d->opts, &d->store, &err), ESR_E_OK);
  esr_manifest_list *l = NULL;
  int64_t t0 = esr_now_ms();
  assert_int_equal(esr_cpstore_list(d->store, TOPIC, 0, &l, &err), ESR_E_IO);
  d->retry_ms = esr_now_ms() - t0;
  assert_contains(err.msg, "after 4 attempts"); /* the premise: the store's own retries are what takes time */
  printf("# the unreachable store's listing fails after %" PRId64 " ms of retries\n", d->retry_ms);
}

/* Partitions with a valid live database are not held up: each resumes from it, and all of them together take less
 * than one listing of the store takes to fail (before, each waited for the store's retries). */
static void unreachable_store_does_not_hold_valid_partitions(void **state) {
  fixture *f = *state;
  enum { N = 8 };
  for (int p = 0; p < N; p++) {
    cpt_part cp;
    cpt_open(&cp, f->state, TOPIC, p);
    cpt_commit(&cp, 10 + p);
    cpt_close(&cp);
  }
  down_store d;
  down_store_open(&d);
  esr_cplister *lister = NULL;
  esr_error err = {0};
  assert_int_equal(esr_cplister_new("s3://bucket/cp", &d.opts, 2, &lister, &err), ESR_E_OK);
  esr_recovery_env env = {.state_dir = f->state, .cp_dir = f->cps, .store = d.store, .lister = lister,
                          .store_wait_ms = 200, .store_wait_cold_ms = 30000, .quick_check = 1};
  int64_t total = 0;
  for (int p = 0; p < N; p++) {
    esr_recovery_result r = recover_ok(&env, p);
    printf("# ledger[%d]: %s at %" PRId64 " in %" PRId64 " ms; %s\n", p, esr_recovery_step_name(r.step),
           r.next_offset, r.elapsed_ms, r.detail);
    assert_int_equal(r.step, ESR_RECOVERY_LIVE);
    assert_int_equal(r.next_offset, 10 + p);
    assert_contains(r.detail, "not consulted");
    total += r.elapsed_ms;
  }
  printf("# %d partitions recovered in %" PRId64 " ms together\n", N, total);
  assert_true(total < d.retry_ms);
  /* Stopping does not wait for the store's retries either (a probe listing may be under way). */
  int64_t t0 = esr_now_ms();
  esr_cplister_free(lister);
  assert_true(esr_now_ms() - t0 < d.retry_ms);
  esr_cpstore_close(d.store);
}

/* A partition without local state waits for the store, but no longer than the bound, then goes on without it. */
static void unreachable_store_bounds_a_cold_partition(void **state) {
  fixture *f = *state;
  down_store d;
  down_store_open(&d);
  esr_cplister *lister = NULL;
  esr_error err = {0};
  assert_int_equal(esr_cplister_new("s3://bucket/cp", &d.opts, 1, &lister, &err), ESR_E_OK);
  const int bound = 250;
  assert_true(d.retry_ms > 2 * bound); /* the premise: without the bound it would wait longer */
  esr_recovery_env env = {.state_dir = f->state, .cp_dir = f->cps, .store = d.store, .lister = lister,
                          .store_wait_ms = 100, .store_wait_cold_ms = bound, .quick_check = 1};
  esr_recovery_result r = recover_ok(&env, 5);
  printf("# a partition without local state: %s in %" PRId64 " ms; %s\n", esr_recovery_step_name(r.step),
         r.elapsed_ms, r.detail);
  assert_int_equal(r.step, ESR_RECOVERY_LOG);
  assert_contains(r.detail, "no answer within 250 ms");
  assert_true(r.elapsed_ms >= bound - 5); /* it did wait for the store */
  assert_true(r.elapsed_ms < d.retry_ms);
  assert_true(r.elapsed_ms < bound + 700);
  /* The store is now known to be down: the next one waits no longer than what is left of the bound. */
  r = recover_ok(&env, 6);
  assert_int_equal(r.step, ESR_RECOVERY_LOG);
  assert_true(r.elapsed_ms < bound);
  esr_cplister_free(lister);
  esr_cpstore_close(d.store);
}

/* ---- a store that answers in time is used --------------------------------------------------------------------- */

static void answering_store_is_used(void **state) {
  fixture *f = *state;
  char n1_state[4300], n1_cps[4300];
  snprintf(n1_state, sizeof n1_state, "%s/node1-state", f->dir);
  snprintf(n1_cps, sizeof n1_cps, "%s/node1-cps", f->dir);
  mkdir(n1_state, 0755);
  esr_cpstore *store = NULL;
  esr_error err = {0};
  assert_int_equal(esr_cpstore_open(f->url, NULL, &store, &err), ESR_E_OK);
  cpt_part p1;
  cpt_open(&p1, n1_state, TOPIC, 3);
  esr_manifest_free(checkpoint_and_upload(n1_state, n1_cps, store, &p1, 100));
  cpt_close(&p1);
  /* Here: a live database of the same partition at 40 (it ran here before), older than the store's 100. */
  cpt_part p2;
  cpt_open(&p2, f->state, TOPIC, 3);
  cpt_commit(&p2, 40);
  cpt_close(&p2);
  esr_cplister *lister = NULL;
  assert_int_equal(esr_cplister_new(f->url, NULL, 2, &lister, &err), ESR_E_OK);
  esr_recovery_env env = {.state_dir = f->state, .cp_dir = f->cps, .store = store, .lister = lister,
                          .store_wait_ms = 5000, .store_wait_cold_ms = 30000, .quick_check = 1};
  esr_recovery_result r = recover_ok(&env, 3);
  assert_int_equal(r.step, ESR_RECOVERY_REMOTE);
  assert_int_equal(r.next_offset, 100);
  /* and without any local state */
  r = recover_ok(&env, 4); /* nothing anywhere: the log */
  assert_int_equal(r.step, ESR_RECOVERY_LOG);
  char live[4300];
  esr_store_path(live, sizeof live, f->state, TOPIC, 3);
  assert_int_equal(unlink(live), 0);
  tu_rmrf(f->cps);
  r = recover_ok(&env, 3);
  assert_int_equal(r.step, ESR_RECOVERY_REMOTE);
  assert_int_equal(r.next_offset, 100);
  esr_cplister_free(lister);
  esr_cpstore_close(store);
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(live_without_position_is_moved_aside),
      T(empty_live_starts_at_zero),
      T(damaged_remote_set_aside_listed_here),
      T(damaged_remote_set_aside_listed_by_lister),
      T(unreachable_store_does_not_hold_valid_partitions),
      T(unreachable_store_bounds_a_cold_partition),
      T(answering_store_is_used),
  };
#undef T
  return cmocka_run_group_tests_name("recovery", tests, NULL, NULL);
}
