/* test_recovery.c — checkpoints and the recovery ladder of `esr run`, black box (label `integration`): a mock Kafka
 * cluster process, a producer, worker processes, their SQLite files and checkpoint directories, and their logs.
 *   ladder_under_damage        — six partitions, checkpoints every 500 events to local disk and a file:// store; while
 *                                the worker is stopped one partition's live database gets a b-tree page overwritten
 *                                (quick_check must see it), others lose their live database, their newest local
 *                                checkpoint is truncated, their newest remote one too, or their local checkpoints are
 *                                gone. On restart each partition's log line must name the ladder step the damage
 *                                leaves (live / local / remote checkpoint, at the expected offset); the corrupt file
 *                                is kept under a .corrupt- name byte for byte, the truncated checkpoint under .bad-;
 *                                and after more events every partition equals the oracle exactly.
 *   retention_restores_checkpoint — one partition produced far past the mock's retention (5 MiB) while the worker
 *                                keeps up and checkpoints; its live database is then lost: it must come back from the
 *                                local checkpoint (newer than the log start) and end exact, against an oracle fed
 *                                from the produced events (Kafka no longer has the first ones).
 *   retention_refuses_gap      — the log start moves past everything the worker has (its live database and every
 *                                checkpoint; then the live database lost too; then no checkpoint at all): each restart
 *                                must refuse the partition naming the needed offset and the log start, apply nothing,
 *                                create nothing, move nothing aside, quarantine no valid checkpoint.
 *   unreachable_store_holds_no_restart — checkpoint.store on a closed port: partitions with a valid live database
 *                                resume from it at once (together faster than one listing of the store fails), one
 *                                without local state waits no longer than recovery.store.wait.cold.ms, a stop does not
 *                                wait for uploads, and temporaries a killed checkpoint left are removed at restart.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "cpstore.h"
#include "esrt_case.h"
#include "esrt_kafka.h"
#include "esrt_ledger.h"
#include "esrt_recovery.h"
#include "esrt_state.h"

#define LEDGER_SO ESR_BUILD_DIR "/handlers/ledger.so"
#define CAUGHT_UP_MS 120000

static void free_producer(void *p) { esrt_producer_free(p); }
static void free_client(void *rk) { rd_kafka_destroy(rk); }
static void free_wlog(void *l) {
  esrt_wlog_free(l);
  free(l);
}

static int setup(void **state) {
  *state = esrt_case_new("recovery");
  return *state ? 0 : -1;
}

static int teardown(void **state) {
  esrt_case_end(*state);
  return 0;
}

/* Produces events [from, to) and waits for every delivery report. */
static void produce(esrt_producer *p, const char *topic, esrt_event *ev, size_t from, size_t to) {
  for (size_t i = from; i < to; i++)
    assert_int_equal(0, esrt_produce(p, topic, ev[i].partition, ev[i].key, ev[i].key_len, ev[i].value,
                                     ev[i].value_len, &ev[i].offset));
  assert_int_equal(0, esrt_producer_flush(p, 60000));
  for (size_t i = from; i < to; i++) assert_true(ev[i].offset >= 0);
}

/* Waits until the file contains `needle`, failing after timeout_ms (or when the process died). */
static int wait_for_log(esrt_proc *p, const char *needle, int timeout_ms) {
  int64_t deadline = esrt_now_ms() + timeout_ms;
  while (!esrt_file_contains(p->err_path, needle)) {
    if (esrt_now_ms() >= deadline) {
      fprintf(stderr, "'%s' not in %s after %d ms\n", needle, p->err_path, timeout_ms);
      return -1;
    }
    if (!esrt_alive(p) && !esrt_file_contains(p->err_path, needle)) {
      fprintf(stderr, "%s exited (code %d) without logging '%s'\n", p->name, esrt_exit_code(p), needle);
      return -1;
    }
    esrt_sleep_ms(10);
  }
  return 0;
}

static esrt_wlog *read_log(esrt_case *c, const esrt_proc *w, const char *topic) {
  esrt_wlog *l = esrt_case_defer(c, free_wlog, calloc(1, sizeof *l));
  assert_non_null(l);
  assert_int_equal(0, esrt_wlog_read(l, w->err_path, topic));
  return l;
}

/* The one assignment line of `partition` in a log (a worker started once assigns each partition once). */
static const esrt_assignment *only_assignment(const esrt_wlog *l, int32_t partition) {
  const esrt_assignment *a = NULL;
  int n = 0;
  for (size_t i = 0; i < l->n_assigned; i++)
    if (l->assigned[i].partition == partition) {
      a = &l->assigned[i];
      n++;
    }
  if (n != 1) fprintf(stderr, "partition %d: %d assignment lines, expected 1\n", (int)partition, n);
  assert_int_equal(1, n);
  return a;
}

static void expect_step(const esrt_assignment *a, const char *step, int64_t offset) {
  if (strcmp(a->step, step) != 0 || a->offset != offset)
    fprintf(stderr, "partition %d: expected recovery '%s' resuming at %" PRId64 ", the log says '%s' at %" PRId64
                    " (%s)\n",
            (int)a->partition, step, offset, a->step, a->offset, a->detail);
  assert_string_equal(step, a->step);
  assert_int_equal(offset, a->offset);
}

static void expect_detail(const esrt_assignment *a, const char *needle) {
  if (!strstr(a->detail, needle))
    fprintf(stderr, "partition %d: the recovery detail lacks '%s': '%s'\n", (int)a->partition, needle, a->detail);
  assert_non_null(strstr(a->detail, needle));
}

/* State (every account, position, counts, log digest) and dead letters (every expected one present with its reason;
 * duplicates allowed: a restored checkpoint may hold outbox rows that were published after it was taken). */
static void expect_exact(const char *bootstrap, esrt_oracle *o, const esrt_records *src, const char *topic,
                         const char *dlq_topic, const char *dir, int partitions) {
  esrt_state st = {0};
  assert_int_equal(0, esrt_state_read(&st, dir, topic, partitions, 1));
  size_t state_diffs = esrt_compare_state(o, &st, stderr, 20);
  size_t n_acc;
  esrt_oracle_accounts(o, &n_acc);
  printf("# state: %zu accounts in the oracle, %zu in the databases, %zu differences\n", n_acc, st.n_accounts,
         state_diffs);
  esrt_state_free(&st);
  assert_int_equal(0, state_diffs);
  if (!dlq_topic) return;
  esrt_records dlq = {0};
  assert_int_equal(0, esrt_consume_all(bootstrap, dlq_topic, &dlq, 60000));
  esrt_dlq_summary sum;
  size_t dlq_diffs = esrt_compare_dlq(o, topic, src, &dlq, &sum, stderr, 20);
  printf("# dead letters: %zu expected, %zu messages, %zu distinct, %zu duplicates, %zu differences\n",
         esrt_oracle_dead_count(o), sum.messages, sum.distinct, sum.duplicates, dlq_diffs);
  esrt_records_free(&dlq);
  assert_int_equal(0, dlq_diffs);
  assert_int_equal(esrt_oracle_dead_count(o), sum.distinct);
}

static void path_of_db(char *buf, size_t cap, const char *dir, const char *topic, int p) {
  snprintf(buf, cap, "%s/%s-%d.db", dir, topic, p);
}

/* ------------------------------------------------------------------------------------------------------------ */

enum { P_LIVE, P_CORRUPT, P_DELETED, P_BAD_LOCAL, P_BAD_BOTH, P_NO_LOCAL, N_PARTS };

static void ladder_under_damage(void **state) {
  esrt_case *c = *state;
  const int P = N_PARTS;
  const char *topics[] = {"ledger:6", "ledger.dlq:1", NULL};
  esrt_mock mock;
  assert_int_equal(0, esrt_mock_start(&mock, ESR_BIN, c->dir, 1, topics, 20000));
  esrt_producer *prod = esrt_case_defer(c, free_producer, esrt_producer_new(mock.bootstrap));
  assert_non_null(prod);
  rd_kafka_t *rk = esrt_case_defer(c, free_client, esrt_kafka_client_new(mock.bootstrap));
  assert_non_null(rk);

  esrt_gen_opts g = {.seed = 5005, .events = 12000, .accounts = 3000, .partitions = P, .bad_share = 0.05,
                     .prefix_kinds = 1};
  size_t n;
  esrt_event *ev = esrt_ledger_generate(&g, &n);
  assert_non_null(ev);
  size_t phase1 = n * 3 / 4;

  char state_dir[1100], cp_dir[1200], store[1100], conf[1024];
  snprintf(state_dir, sizeof state_dir, "%s/state", c->dir);
  snprintf(cp_dir, sizeof cp_dir, "%s/checkpoints", state_dir);
  snprintf(store, sizeof store, "%s/store", c->dir);
  assert_int_equal(0, mkdir(store, 0755));
  assert_int_equal(0, esrt_write_worker_config(conf, sizeof conf, c->dir, "ladder", mock.bootstrap, "ledger",
                                               "ledger.dlq", state_dir, LEDGER_SO,
                                               "assignment = static\npartitions = 0-5\n"
                                               "batch.max.events = 100\nbatch.max.ms = 20\n"
                                               "checkpoint.interval.events = 500\ncheckpoint.interval.ms = 200\n"
                                               "checkpoint.keep = 3\n"
                                               "checkpoint.store = file://%s\n",
                                               store));
  esrt_proc w1;
  assert_int_equal(0, esrt_start_worker(&w1, ESR_BIN, c->dir, "worker-1", conf));
  const char *dirs[] = {state_dir};
  /* Phase 1 in three chunks; after each the worker catches up and checkpoints every partition where it stands (by
   * checkpoint.interval.ms), so that each partition has three checkpoints at distinct offsets. */
  for (int chunk = 0; chunk < 3; chunk++) {
    produce(prod, "ledger", ev, phase1 * (size_t)chunk / 3, phase1 * (size_t)(chunk + 1) / 3);
    assert_int_equal(0, esrt_wait_caught_up(rk, "ledger", P, dirs, 1, CAUGHT_UP_MS));
    int64_t deadline = esrt_now_ms() + 30000;
    for (int p = 0; p < P; p++) {
      esrt_part_state ps;
      int64_t newest = -1;
      for (;;) {
        assert_int_equal(0, esrt_read_position(state_dir, "ledger", p, &ps));
        if (esrt_checkpoint_offsets(cp_dir, "ledger", p, &newest, 1) == 1 && newest == ps.next_offset &&
            esrt_checkpoint_offsets(store, "ledger", p, &newest, 1) == 1 && newest == ps.next_offset)
          break;
        if (esrt_now_ms() >= deadline) {
          fprintf(stderr, "ledger[%d]: no checkpoint at %" PRId64 " after 30 s\n", p, ps.next_offset);
          fail();
        }
        esrt_sleep_ms(20);
      }
    }
  }
  assert_int_equal(0, esrt_stop(&w1, 60000));

  /* What the stopped worker left: positions, local and remote checkpoints (newest first). */
  int64_t live[N_PARTS], loc[N_PARTS][8], rem[N_PARTS][8];
  int n_loc[N_PARTS], n_rem[N_PARTS];
  for (int p = 0; p < P; p++) {
    esrt_part_state ps;
    assert_int_equal(0, esrt_read_position(state_dir, "ledger", p, &ps));
    assert_true(ps.present);
    live[p] = ps.next_offset;
    n_loc[p] = esrt_checkpoint_offsets(cp_dir, "ledger", p, loc[p], 8);
    n_rem[p] = esrt_checkpoint_offsets(store, "ledger", p, rem[p], 8);
    printf("# ledger[%d]: live database at %" PRId64 "; %d local checkpoints (newest %" PRId64 "), %d remote "
           "(newest %" PRId64 ")\n",
           p, live[p], n_loc[p], n_loc[p] ? loc[p][0] : -1, n_rem[p], n_rem[p] ? rem[p][0] : -1);
    /* checkpoint.keep = 3: the damage below needs two of each, and the newest at the live position */
    assert_int_equal(3, n_loc[p]);
    assert_int_equal(3, n_rem[p]);
    assert_int_equal(live[p], loc[p][0]);
    assert_int_equal(loc[p][0], rem[p][0]); /* every local checkpoint was uploaded */
    assert_int_equal(loc[p][1], rem[p][1]);
  }

  /* ---- the damage ---- */
  char path[1300], aside_expect[1300];
  /* P_CORRUPT: a b-tree page of the accounts table overwritten in the middle of the file; quick_check must see it. */
  path_of_db(path, sizeof path, state_dir, "ledger", P_CORRUPT);
  assert_int_equal(0, esrt_fold_wal(path));
  char qc[512];
  assert_int_equal(1, esrt_quick_check(path, qc, sizeof qc));
  int64_t page = 0, at = 0, size_before = esrt_file_size(path);
  assert_int_equal(0, esrt_corrupt_table_page(path, "accounts", &page, &at));
  int qrc = esrt_quick_check(path, qc, sizeof qc);
  printf("# ledger[%d]: page %" PRId64 " (bytes %" PRId64 "-%" PRId64 " of %" PRId64 ") overwritten; quick_check "
         "says: %s\n",
         P_CORRUPT, page, at, at + 11, size_before, qc);
  assert_int_equal(0, qrc); /* really damaged, as SQLite sees it */
  uint8_t corrupt_sha[32];
  assert_int_equal(0, esrt_file_sha256(path, corrupt_sha));
  snprintf(aside_expect, sizeof aside_expect, "ledger-%d.db.corrupt-", P_CORRUPT);

  /* P_DELETED .. P_NO_LOCAL: the live database gone, with its -wal and -shm. */
  for (int p = P_DELETED; p <= P_NO_LOCAL; p++) assert_true(esrt_remove_live_db(state_dir, "ledger", p) >= 1);
  /* P_BAD_LOCAL, P_BAD_BOTH: the newest local checkpoint's data file cut in half (its manifest intact). */
  int64_t bad_size[N_PARTS] = {0};
  for (int p = P_BAD_LOCAL; p <= P_BAD_BOTH; p++) {
    esrt_checkpoint_file(path, sizeof path, cp_dir, "ledger", p, loc[p][0], ".db");
    bad_size[p] = esrt_file_size(path) / 2;
    assert_true(bad_size[p] > 0);
    assert_int_equal(0, esrt_truncate_file(path, bad_size[p]));
  }
  /* P_BAD_BOTH: the newest remote checkpoint's data cut in half too. */
  esrt_checkpoint_file(path, sizeof path, store, "ledger", P_BAD_BOTH, rem[P_BAD_BOTH][0], ".db");
  assert_int_equal(0, esrt_truncate_file(path, esrt_file_size(path) / 2));
  /* P_NO_LOCAL: no local checkpoint at all (a new node). */
  snprintf(path, sizeof path, "%s/ledger-%d", cp_dir, P_NO_LOCAL);
  assert_int_equal(0, esrt_rmtree(path));

  /* More events while it is stopped, then the restart. */
  produce(prod, "ledger", ev, phase1, n);
  esrt_proc w2;
  int64_t t0 = esrt_now_ms();
  assert_int_equal(0, esrt_start_worker(&w2, ESR_BIN, c->dir, "worker-2", conf));
  assert_int_equal(0, esrt_wait_caught_up(rk, "ledger", P, dirs, 1, CAUGHT_UP_MS));
  printf("# restart with damage: caught up in %" PRId64 " ms\n", esrt_now_ms() - t0);
  assert_true(esrt_alive(&w2));
  assert_int_equal(0, esrt_stop(&w2, 60000));

  /* ---- the ladder steps, from the log ---- */
  esrt_wlog *l = read_log(c, &w2, "ledger");
  assert_int_equal(0, l->n_stopped);
  const esrt_assignment *a[N_PARTS];
  for (int p = 0; p < P; p++) {
    /* the corrupt one may be opened twice if its check runs after a first open; its last assignment counts */
    a[p] = p == P_CORRUPT ? esrt_wlog_last_assignment(l, p) : only_assignment(l, p);
    assert_non_null(a[p]);
    printf("# ledger[%d]: recovery: %s in %" PRId64 " ms, resuming at %" PRId64 ", %" PRId64 " events to replay%s%s\n",
           p, a[p]->step, a[p]->recovery_ms, a[p]->offset, a[p]->to_replay, a[p]->detail[0] ? "; " : "",
           a[p]->detail);
  }
  expect_step(a[P_LIVE], "live database", live[P_LIVE]);
  /* corrupt: moved aside, then the newest local checkpoint (equal to the newest remote one: ties go local) */
  expect_step(a[P_CORRUPT], "local checkpoint", loc[P_CORRUPT][0]);
  /* the log says why — quick_check's verdict, or the corruption SQLite reported when an event touched the damaged page,
   * whichever came first — and where the corrupt file went */
  assert_true(esrt_file_contains(w2.err_path, "quick_check") ||
              esrt_file_contains(w2.err_path, "the database is damaged"));
  assert_true(esrt_file_contains(w2.err_path, aside_expect));
  expect_step(a[P_DELETED], "local checkpoint", loc[P_DELETED][0]);
  /* the newest local checkpoint is quarantined; the remote copy of it is intact and newer than the older local one */
  expect_step(a[P_BAD_LOCAL], "remote checkpoint", rem[P_BAD_LOCAL][0]);
  char note[128];
  snprintf(note, sizeof note, "local checkpoint %" PRId64 " is invalid", loc[P_BAD_LOCAL][0]);
  expect_detail(a[P_BAD_LOCAL], note);
  expect_detail(a[P_BAD_LOCAL], "quarantined");
  /* both newest copies bad: the older local checkpoint (equal to the older remote one), then a longer replay */
  expect_step(a[P_BAD_BOTH], "local checkpoint", loc[P_BAD_BOTH][1]);
  snprintf(note, sizeof note, "local checkpoint %" PRId64 " is invalid", loc[P_BAD_BOTH][0]);
  expect_detail(a[P_BAD_BOTH], note);
  snprintf(note, sizeof note, "remote checkpoint %" PRId64 " not fetched", rem[P_BAD_BOTH][0]);
  expect_detail(a[P_BAD_BOTH], note);
  expect_step(a[P_NO_LOCAL], "remote checkpoint", rem[P_NO_LOCAL][0]);
  /* every partition had new events to apply (a live database may be resumed without asking the log's end) */
  for (int p = 0; p < P; p++) assert_true(a[p]->to_replay > 0 || (p == P_LIVE && a[p]->to_replay == -1));

  /* ---- what was set aside, never deleted ---- */
  char first[1400];
  /* the database, and its WAL when one was open (the corruption may be met by an event before quick_check) */
  int n_aside = esrt_dir_count_prefix(state_dir, aside_expect, first, sizeof first);
  assert_true(n_aside >= 1 && n_aside <= 2);
  assert_null(strstr(first + strlen(first) - 4, "-wal")); /* the first in name order is the database itself */
  uint8_t aside_sha[32];
  assert_int_equal(0, esrt_file_sha256(first, aside_sha));
  assert_memory_equal(corrupt_sha, aside_sha, 32); /* the corrupt file, byte for byte */
  for (int p = P_BAD_LOCAL; p <= P_BAD_BOTH; p++) {
    char dir[1300], prefix[64];
    snprintf(dir, sizeof dir, "%s/ledger-%d", cp_dir, p);
    snprintf(prefix, sizeof prefix, "%020" PRId64 ".db.bad-", loc[p][0]);
    assert_int_equal(1, esrt_dir_count_prefix(dir, prefix, first, sizeof first));
    assert_int_equal(bad_size[p], esrt_file_size(first));
    snprintf(prefix, sizeof prefix, "%020" PRId64 ".json.bad-", loc[p][0]);
    assert_int_equal(1, esrt_dir_count_prefix(dir, prefix, NULL, 0));
  }
  /* nothing else was set aside */
  for (int p = 0; p < P; p++) {
    char prefix[64], dir[1300];
    snprintf(prefix, sizeof prefix, "ledger-%d.db.", p);
    int aside = esrt_dir_count_prefix(state_dir, prefix, NULL, 0);
    assert_int_equal(p == P_CORRUPT ? 1 : 0, aside);
    snprintf(dir, sizeof dir, "%s/ledger-%d", cp_dir, p);
    if (p != P_BAD_LOCAL && p != P_BAD_BOTH) {
      int bad = 0;
      for (int k = 0; k < n_loc[p]; k++) {
        snprintf(prefix, sizeof prefix, "%020" PRId64 ".db.bad-", loc[p][k]);
        bad += esrt_dir_count_prefix(dir, prefix, NULL, 0) > 0;
      }
      assert_int_equal(0, bad);
    }
  }

  /* ---- the verdict ---- */
  esrt_records src = {0};
  esrt_oracle *o = esrt_ledger_oracle_from_log(mock.bootstrap, "ledger", P, ev, n, &src);
  assert_non_null(o);
  expect_exact(mock.bootstrap, o, &src, "ledger", "ledger.dlq", state_dir, P);

  esrt_oracle_free(o);
  esrt_records_free(&src);
  esrt_events_free(ev, n);
  esrt_case_cleanup(c);
  assert_int_equal(0, esrt_mock_stop(&mock));
  c->passed = 1;
}

/* ------------------------------------------------------------------------------------------------------------ */

/* ~1 KiB events on one partition: the mock keeps 5 MiB of it. */
static esrt_event *big_stream(uint64_t seed, int events, size_t *n) {
  esrt_gen_opts g = {.seed = seed, .events = events, .accounts = 40, .partitions = 1, .bad_share = 0.02,
                     .pad_bytes = 1000, .prefix_kinds = 1};
  esrt_event *ev = esrt_ledger_generate(&g, n);
  assert_non_null(ev);
  return ev;
}

static void retention_restores_checkpoint(void **state) {
  esrt_case *c = *state;
  const char *topics[] = {"reta:1", "reta.dlq:1", NULL};
  esrt_mock mock;
  assert_int_equal(0, esrt_mock_start(&mock, ESR_BIN, c->dir, 1, topics, 20000));
  esrt_producer *prod = esrt_case_defer(c, free_producer, esrt_producer_new(mock.bootstrap));
  assert_non_null(prod);
  rd_kafka_t *rk = esrt_case_defer(c, free_client, esrt_kafka_client_new(mock.bootstrap));
  assert_non_null(rk);
  size_t n;
  esrt_event *ev = big_stream(9119, 8000, &n);
  size_t phase1 = n - 300;

  char state_dir[1100], cp_dir[1200], conf[1024];
  snprintf(state_dir, sizeof state_dir, "%s/state", c->dir);
  snprintf(cp_dir, sizeof cp_dir, "%s/checkpoints", state_dir);
  assert_int_equal(0, esrt_write_worker_config(conf, sizeof conf, c->dir, "reta", mock.bootstrap, "reta", "reta.dlq",
                                               state_dir, LEDGER_SO,
                                               "assignment = static\npartitions = 0\nbatch.max.events = 100\n"
                                               "checkpoint.interval.events = 500\n"));
  esrt_proc w1;
  assert_int_equal(0, esrt_start_worker(&w1, ESR_BIN, c->dir, "worker-1", conf));
  const char *dirs[] = {state_dir};
  /* In chunks, the worker catching up after each: retention only ever deletes events it has applied. */
  for (size_t from = 0; from < phase1; from += 500) {
    size_t to = from + 500 < phase1 ? from + 500 : phase1;
    produce(prod, "reta", ev, from, to);
    assert_int_equal(0, esrt_wait_caught_up(rk, "reta", 1, dirs, 1, CAUGHT_UP_MS));
  }
  assert_int_equal(0, esrt_stop(&w1, 60000));
  int64_t lo1, hi1;
  assert_int_equal(0, esrt_watermarks(rk, "reta", 0, &lo1, &hi1));
  int64_t cps[8];
  int n_cp = esrt_checkpoint_offsets(cp_dir, "reta", 0, cps, 8);
  assert_true(n_cp >= 1);
  printf("# reta: %zu events produced; the log now spans [%" PRId64 ", %" PRId64 "); newest checkpoint at %" PRId64
         "\n",
         phase1, lo1, hi1, cps[0]);
  assert_int_equal((int64_t)phase1, hi1);
  assert_true(lo1 > 0);          /* retention deleted the log's start */
  assert_true(cps[0] >= lo1);    /* the checkpoint needs only what the log still holds */

  /* The live database is lost; more events arrive; the log start moves on, still below the checkpoint. */
  assert_true(esrt_remove_live_db(state_dir, "reta", 0) >= 1);
  produce(prod, "reta", ev, phase1, n);
  int64_t lo2, hi2;
  assert_int_equal(0, esrt_watermarks(rk, "reta", 0, &lo2, &hi2));
  printf("# reta: live database deleted; %zu more events; the log now spans [%" PRId64 ", %" PRId64 ")\n",
         n - phase1, lo2, hi2);
  assert_true(lo2 > 0 && lo2 <= cps[0]);

  esrt_proc w2;
  int64_t t0 = esrt_now_ms();
  assert_int_equal(0, esrt_start_worker(&w2, ESR_BIN, c->dir, "worker-2", conf));
  assert_int_equal(0, esrt_wait_caught_up(rk, "reta", 1, dirs, 1, CAUGHT_UP_MS));
  printf("# reta: restored and caught up in %" PRId64 " ms\n", esrt_now_ms() - t0);
  assert_int_equal(0, esrt_stop(&w2, 60000));
  esrt_wlog *l = read_log(c, &w2, "reta");
  assert_int_equal(0, l->n_stopped);
  const esrt_assignment *a = only_assignment(l, 0);
  printf("# reta[0]: recovery: %s in %" PRId64 " ms, resuming at %" PRId64 ", %" PRId64 " events to replay%s%s\n",
         a->step, a->recovery_ms, a->offset, a->to_replay, a->detail[0] ? "; " : "", a->detail);
  expect_step(a, "local checkpoint", cps[0]);
  assert_int_equal(hi2 - cps[0], a->to_replay);

  /* Exact against an oracle of everything produced: the state's log digest chains from offset 0, events Kafka no
   * longer has included. */
  esrt_oracle *o = esrt_oracle_from_events(ev, n, 1);
  assert_non_null(o);
  expect_exact(mock.bootstrap, o, NULL, "reta", NULL, state_dir, 1);
  esrt_oracle_free(o);
  esrt_events_free(ev, n);
  esrt_case_cleanup(c);
  assert_int_equal(0, esrt_mock_stop(&mock));
  c->passed = 1;
}

/* ------------------------------------------------------------------------------------------------------------ */

/* Starts a worker that must refuse partition 0 of `topic` needing `need`, with the log starting at `lo`; it must stay
 * up and stop cleanly. The refusal may come from the ladder (before the partition is assigned) or, when the ladder
 * resumes a live database without asking for the log's bounds, from the consumer's first fetch (auto.offset.reset =
 * error): then the partition was assigned at exactly `need` — never anywhere else, the log start or end included. */
static void expect_refusal(esrt_case *c, const char *name, const char *conf, const char *topic, int64_t need,
                           int64_t lo) {
  esrt_proc w;
  assert_int_equal(0, esrt_start_worker(&w, ESR_BIN, c->dir, name, conf));
  char line[128];
  snprintf(line, sizeof line, "%s[0]: partition stopped: ", topic);
  assert_int_equal(0, wait_for_log(&w, line, 30000));
  assert_true(esrt_alive(&w));
  assert_int_equal(0, esrt_stop(&w, 30000));
  esrt_wlog *l = read_log(c, &w, topic);
  assert_int_equal(1, l->n_stopped);
  assert_true(l->n_assigned <= 1);
  if (l->n_assigned) {
    printf("# %s: assigned at %" PRId64 " (%s), stopped at the first fetch\n", name, l->assigned[0].offset,
           l->assigned[0].step);
    assert_int_equal(need, l->assigned[0].offset);
    assert_true(l->assigned[0].line < l->stopped[0].line);
  }
  printf("# %s: %s\n", name, l->stopped[0].text);
  assert_true(strstr(l->stopped[0].text, "refused") || strstr(l->stopped[0].text, "Refusing"));
  assert_int_equal(need, l->stopped[0].needed);
  assert_int_equal(lo, l->stopped[0].log_start);
}

static void retention_refuses_gap(void **state) {
  esrt_case *c = *state;
  const char *topics[] = {"retb:1", "retb.dlq:1", NULL};
  esrt_mock mock;
  assert_int_equal(0, esrt_mock_start(&mock, ESR_BIN, c->dir, 1, topics, 20000));
  esrt_producer *prod = esrt_case_defer(c, free_producer, esrt_producer_new(mock.bootstrap));
  assert_non_null(prod);
  rd_kafka_t *rk = esrt_case_defer(c, free_client, esrt_kafka_client_new(mock.bootstrap));
  assert_non_null(rk);
  size_t n;
  esrt_event *ev = big_stream(4242, 8000, &n);
  size_t phase1 = 1000;

  char state_dir[1100], cp_dir[1200], conf[1024], conf_none[1024], empty_cp[1100];
  snprintf(state_dir, sizeof state_dir, "%s/state", c->dir);
  snprintf(cp_dir, sizeof cp_dir, "%s/checkpoints", state_dir);
  snprintf(empty_cp, sizeof empty_cp, "%s/no-checkpoints", c->dir);
  assert_int_equal(0, esrt_write_worker_config(conf, sizeof conf, c->dir, "retb", mock.bootstrap, "retb", "retb.dlq",
                                               state_dir, LEDGER_SO,
                                               "assignment = static\npartitions = 0\nbatch.max.events = 100\n"
                                               "checkpoint.interval.events = 300\n"));
  assert_int_equal(0, esrt_write_worker_config(conf_none, sizeof conf_none, c->dir, "retb-none", mock.bootstrap,
                                               "retb", "retb.dlq", state_dir, LEDGER_SO,
                                               "assignment = static\npartitions = 0\ncheckpoint.dir = %s\n"
                                               "checkpoint.interval.events = 0\ncheckpoint.interval.ms = 0\n"
                                               "checkpoint.on.release = false\n",
                                               empty_cp));
  esrt_proc w1;
  assert_int_equal(0, esrt_start_worker(&w1, ESR_BIN, c->dir, "worker-1", conf));
  const char *dirs[] = {state_dir};
  /* In chunks, the worker catching up after each: its periodic checkpoints are taken at distinct offsets (all at once,
   * a fast worker may be past the last chunk before the checkpointer copies the first). */
  for (size_t from = 0; from < phase1; from += 300) {
    produce(prod, "retb", ev, from, from + 300 < phase1 ? from + 300 : phase1);
    assert_int_equal(0, esrt_wait_caught_up(rk, "retb", 1, dirs, 1, CAUGHT_UP_MS));
  }
  assert_int_equal(0, esrt_stop(&w1, 60000));
  esrt_records dlq_before = {0};
  assert_int_equal(0, esrt_consume_all(mock.bootstrap, "retb.dlq", &dlq_before, 30000));

  esrt_part_state before;
  assert_int_equal(0, esrt_read_position(state_dir, "retb", 0, &before));
  assert_int_equal((int64_t)phase1, before.next_offset);
  int64_t cps[8];
  int n_cp = esrt_checkpoint_offsets(cp_dir, "retb", 0, cps, 8);
  assert_true(n_cp >= 1); /* interval checkpoints may coalesce into the one at release when the worker is fast */
  assert_int_equal((int64_t)phase1, cps[0]); /* the checkpoint at release */

  /* While it is stopped: ~7 MiB more, past the mock's retention, far past every state the worker has. */
  produce(prod, "retb", ev, phase1, n);
  int64_t lo, hi;
  assert_int_equal(0, esrt_watermarks(rk, "retb", 0, &lo, &hi));
  printf("# retb: the worker has offset %" PRId64 " (live) and checkpoints up to %" PRId64 "; the log now spans [%" PRId64
         ", %" PRId64 ")\n",
         before.next_offset, cps[0], lo, hi);
  assert_int_equal((int64_t)n, hi);
  assert_true(lo > cps[0]);

  /* 1: behind (live database and checkpoints all below the log start) */
  expect_refusal(c, "worker-behind", conf, "retb", before.next_offset, lo);
  esrt_part_state after;
  assert_int_equal(0, esrt_read_position(state_dir, "retb", 0, &after));
  assert_int_equal(before.next_offset, after.next_offset);
  assert_int_equal(before.applied, after.applied);
  assert_memory_equal(before.digest, after.digest, 32);
  assert_int_equal(0, esrt_dir_count_prefix(state_dir, "retb-0.db.", NULL, 0)); /* nothing moved aside */

  /* 2: the live database lost; only checkpoints below the log start */
  assert_true(esrt_remove_live_db(state_dir, "retb", 0) >= 1);
  expect_refusal(c, "worker-lost-live", conf, "retb", cps[0], lo);
  char path[1300];
  path_of_db(path, sizeof path, state_dir, "retb", 0);
  assert_int_equal(-1, esrt_file_size(path)); /* nothing created, nothing applied */
  int64_t cps_after[8];
  assert_int_equal(n_cp, esrt_checkpoint_offsets(cp_dir, "retb", 0, cps_after, 8));
  assert_memory_equal(cps, cps_after, (size_t)n_cp * sizeof *cps);
  char cpd[1300];
  snprintf(cpd, sizeof cpd, "%s/retb-0", cp_dir);
  for (int k = 0; k < n_cp; k++) { /* valid, merely too old: not quarantined */
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%020" PRId64 ".", cps[k]);
    assert_int_equal(2, esrt_dir_count_prefix(cpd, prefix, NULL, 0));
  }

  /* 3: no checkpoint at all (checkpoints off, another checkpoint.dir): the log would be needed from 0 */
  expect_refusal(c, "worker-no-checkpoint", conf_none, "retb", 0, lo);
  assert_int_equal(-1, esrt_file_size(path));

  /* and nothing was dead-lettered by any of them */
  esrt_records dlq_after = {0};
  assert_int_equal(0, esrt_consume_all(mock.bootstrap, "retb.dlq", &dlq_after, 30000));
  assert_int_equal(dlq_before.n, dlq_after.n);
  esrt_records_free(&dlq_before);
  esrt_records_free(&dlq_after);
  esrt_events_free(ev, n);
  esrt_case_cleanup(c);
  assert_int_equal(0, esrt_mock_stop(&mock));
  c->passed = 1;
}

/* ------------------------------------------------------------------------------------------------------------ */

/* A loopback port nobody listens on: an S3 endpoint there refuses every connection, and the store retries. */
static int closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

/* Issue 10, item 5: with `checkpoint.store = s3://...` unreachable, a restart is not held up: every partition with a
 * valid live database resumes from it at once (all of them together in less time than one listing of the store
 * takes to fail, measured here with the worker's own store settings), a partition without local state waits for the
 * store no longer than recovery.store.wait.cold.ms, the stop before it does not wait for uploads, and the temporary
 * files a killed checkpoint left are gone after the restart. */
static void unreachable_store_holds_no_restart(void **state) {
  esrt_case *c = *state;
  enum { P = 16, COLD = 15, COLD_WAIT_MS = 400 };
  const char *topics[] = {"unr:16", "unr.dlq:1", NULL};
  esrt_mock mock;
  assert_int_equal(0, esrt_mock_start(&mock, ESR_BIN, c->dir, 1, topics, 20000));
  esrt_producer *prod = esrt_case_defer(c, free_producer, esrt_producer_new(mock.bootstrap));
  assert_non_null(prod);
  rd_kafka_t *rk = esrt_case_defer(c, free_client, esrt_kafka_client_new(mock.bootstrap));
  assert_non_null(rk);
  esrt_gen_opts g = {.seed = 1010, .events = 6000, .accounts = 800, .partitions = P, .bad_share = 0.02,
                     .prefix_kinds = 1};
  size_t n;
  esrt_event *ev = esrt_ledger_generate(&g, &n);
  assert_non_null(ev);

  char endpoint[64], state_dir[1100], cp_dir[1200], conf[1024];
  snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", closed_port());
  setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1); /* the worker inherits them */
  setenv("AWS_SECRET_ACCESS_KEY", "secret-of-a-store-that-is-down", 1);
  snprintf(state_dir, sizeof state_dir, "%s/state", c->dir);
  snprintf(cp_dir, sizeof cp_dir, "%s/checkpoints", state_dir);
  assert_int_equal(0, esrt_write_worker_config(conf, sizeof conf, c->dir, "unr", mock.bootstrap, "unr", "unr.dlq",
                                               state_dir, LEDGER_SO,
                                               "assignment = static\npartitions = 0-15\napply.threads = 2\n"
                                               "batch.max.events = 100\ncheckpoint.interval.events = 0\n"
                                               "checkpoint.interval.ms = 0\ncheckpoint.store = s3://esr-down/cp\n"
                                               "checkpoint.s3.endpoint = %s\nrecovery.store.wait.cold.ms = %d\n",
                                               endpoint, COLD_WAIT_MS));
  /* How long one listing of this store takes to fail: its retries, with the settings the worker has. */
  esr_cpstore_opts so = {.endpoint = endpoint};
  esr_cpstore *store = NULL;
  esr_error err = {0};
  assert_int_equal(ESR_E_OK, esr_cpstore_open("s3://esr-down/cp", &so, &store, &err));
  esr_manifest_list *l = NULL;
  int64_t t0 = esrt_now_ms();
  assert_int_equal(ESR_E_IO, esr_cpstore_list(store, "unr", 0, &l, &err));
  int64_t retry_ms = esrt_now_ms() - t0;
  esr_cpstore_close(store);
  printf("# the store's listing fails after %" PRId64 " ms of retries: %s\n", retry_ms, err.msg);
  assert_non_null(strstr(err.msg, "after 4 attempts")); /* the premise: retries are what takes the time */

  /* Worker 1 applies everything; the store is unreachable all along (a warning at start, not an exit). */
  produce(prod, "unr", ev, 0, n / 2);
  esrt_proc w1;
  assert_int_equal(0, esrt_start_worker(&w1, ESR_BIN, c->dir, "worker-1", conf));
  const char *dirs[] = {state_dir};
  assert_int_equal(0, esrt_wait_caught_up(rk, "unr", P, dirs, 1, CAUGHT_UP_MS));
  assert_true(esrt_file_contains(w1.err_path, "the checkpoint store cannot be reached now"));
  /* Its stop checkpoints all 16 partitions on release; their uploads go on in the background and do not hold the
   * stop (before: 16 uploads' retries one after the other). */
  t0 = esrt_now_ms();
  assert_int_equal(0, esrt_stop(&w1, 120000));
  int64_t stop_ms = esrt_now_ms() - t0;
  printf("# worker 1 stopped in %" PRId64 " ms, 16 release checkpoints included\n", stop_ms);
  for (int p = 0; p < P; p++) {
    int64_t newest = -1;
    assert_int_equal(1, esrt_checkpoint_offsets(cp_dir, "unr", p, &newest, 1)); /* written locally */
  }
  assert_true(stop_ms < 4 * retry_ms);

  /* While it is stopped: a checkpoint killed mid-way left its temporaries; one partition loses all its local state. */
  char path[1400];
  static const char *const leftovers[] = {"unr-3/.tmp-Kq81zX", "unr-3/.tmp-Kq81zX-journal", "unr-9/.tmp-p0Ow2m"};
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%s", cp_dir, leftovers[i]);
    assert_int_equal(0, esrt_write_file(path, "half a copy"));
  }
  snprintf(path, sizeof path, "%s/unr-3.db.restore-Zr55aQ", state_dir);
  assert_int_equal(0, esrt_write_file(path, "half a restore"));
  assert_true(esrt_remove_live_db(state_dir, "unr", COLD) >= 1);
  snprintf(path, sizeof path, "%s/unr-%d", cp_dir, COLD);
  assert_int_equal(0, esrt_rmtree(path));
  int64_t live[P];
  for (int p = 0; p < P; p++) {
    esrt_part_state ps;
    assert_int_equal(0, esrt_read_position(state_dir, "unr", p, &ps));
    live[p] = p == COLD ? 0 : ps.next_offset;
  }
  produce(prod, "unr", ev, n / 2, n);

  esrt_proc w2;
  assert_int_equal(0, esrt_start_worker(&w2, ESR_BIN, c->dir, "worker-2", conf));
  assert_int_equal(0, esrt_wait_caught_up(rk, "unr", P, dirs, 1, CAUGHT_UP_MS));
  assert_int_equal(0, esrt_stop(&w2, 120000));
  esrt_wlog *wl = read_log(c, &w2, "unr");
  assert_int_equal(0, wl->n_stopped);
  const esrt_assignment *a[P];
  int64_t together = 0;
  for (int p = 0; p < P; p++) {
    a[p] = only_assignment(wl, p);
    printf("# unr[%d]: %s at %" PRId64 " in %" PRId64 " ms (opened in %" PRId64 " ms); %s\n", p, a[p]->step,
           a[p]->offset, a[p]->recovery_ms, a[p]->opened_ms, a[p]->detail);
    if (p != COLD) together += a[p]->recovery_ms;
  }
  printf("# %d partitions with a valid live database: %" PRId64 " ms of recovery together, against %" PRId64
         " ms for one listing of the store to fail\n",
         P - 1, together, retry_ms);
  assert_true(together < retry_ms);
  assert_true(a[COLD]->recovery_ms <= COLD_WAIT_MS + 100); /* the bound, and no more */
  assert_true(a[COLD]->recovery_ms < retry_ms);
  for (int p = 0; p < P; p++) {
    if (p == COLD) {
      expect_step(a[p], "log replay from offset 0", 0);
      expect_detail(a[p], "no answer within 400 ms");
    } else {
      expect_step(a[p], "live database", live[p]);
      expect_detail(a[p], "not consulted");
    }
  }

  /* the leftovers are gone, and said so */
  assert_int_equal(0, esrt_dir_count_prefix(state_dir, "unr-3.db.restore-", NULL, 0));
  for (int p = 0; p < P; p++) {
    snprintf(path, sizeof path, "%s/unr-%d", cp_dir, p);
    assert_int_equal(0, esrt_dir_count_prefix(path, ".tmp-", NULL, 0));
  }
  assert_true(esrt_file_contains(w2.err_path, "removed 4 temporary files left by a killed worker"));

  esrt_records src = {0};
  esrt_oracle *o = esrt_ledger_oracle_from_log(mock.bootstrap, "unr", P, ev, n, &src);
  assert_non_null(o);
  expect_exact(mock.bootstrap, o, &src, "unr", "unr.dlq", state_dir, P);
  esrt_oracle_free(o);
  esrt_records_free(&src);
  esrt_events_free(ev, n);
  esrt_case_cleanup(c);
  assert_int_equal(0, esrt_mock_stop(&mock));
  c->passed = 1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(ladder_under_damage, setup, teardown),
      cmocka_unit_test_setup_teardown(retention_restores_checkpoint, setup, teardown),
      cmocka_unit_test_setup_teardown(retention_refuses_gap, setup, teardown),
      cmocka_unit_test_setup_teardown(unreachable_store_holds_no_restart, setup, teardown),
  };
  return cmocka_run_group_tests_name("recovery", tests, NULL, NULL);
}
