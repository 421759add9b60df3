/* test_history.c — `esr history --key K` against a mock cluster (label `integration`). A seeded ledger stream with
 * bad events of every kind is produced; for the account with the most events:
 *   timeline_equals_stream — the JSON timeline lists exactly the records of the log whose Kafka key is K (partition,
 *                            offset, in order), each applied or dead-lettered as the independent oracle says (with its
 *                            reason and a message), and each row change's before/after balance is the oracle's
 *                            balance before and after that event (an open is an INSERT with balance 0, a dead letter
 *                            changes nothing). The text output shows the same events and balances; --partitioner
 *                            fnv1a (the generator's placement) and --config give the same timeline; an unknown key
 *                            is an empty timeline with exit 0 (also in HTML); a partition that does not exist, exit 2.
 *   other_rows_and_a_stop  — with the test plugin `good`: INSERT, UPDATE (its before value written by another key's
 *                            event), DELETE, a rejected event whose writes were rolled back (no change), an emit, a
 *                            blob, a table without primary key named, and ESR_FATAL ending the timeline (exit 3).
 *   html_in_chromium       — the --html page references nothing outside itself and, opened in headless Chromium,
 *                            renders every event as a visible block with its row changes (before and after balances)
 *                            and each dead letter's reason; a screenshot is kept in <build>/test-artefacts/. */
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

#include "esrt_case.h"
#include "esrt_json.h"
#include "esrt_kafka.h"
#include "esrt_ledger.h"
#include "esrt_state.h"

#define LEDGER_SO ESR_BUILD_DIR "/handlers/ledger.so"
#define GOOD_SO ESR_BUILD_DIR "/tests/plugins/good.so"
#define P 4

static void free_oracle(void *o) { esrt_oracle_free(o); }
static void free_records(void *r) {
  esrt_records_free(r);
  free(r);
}

/* What the oracle says one event of the key did. */
typedef struct expected {
  int32_t partition;
  int64_t offset;
  const char *reason; /* NULL: applied */
  int before_exists, after_exists;
  int64_t before, after; /* balances */
} expected;

/* The rig every case shares: one cluster, one produced stream, the key chosen and its expected timeline. */
typedef struct rig {
  esrt_case *c;
  esrt_mock mock;
  esrt_records *src;
  char key[64];
  expected *exp;
  size_t n_exp;
  size_t n_dead, n_insert, n_update;
  char conf[1100];
  int ok; /* cases that passed (or were skipped) */
  esrt_jval *json; /* the JSON value being checked (freed by the next, or at teardown when a check failed) */
} rig;

static rig R;

static void expected_free(void *p) { free(p); }

/* Runs `esr ARGS...` to its end; returns the exit code; the output's path goes to out. */
static int run_esr(const char *name, const char *const *args, char *out, size_t cap) {
  char *argv[32] = {(char *)ESR_BIN};
  int n = 1;
  for (const char *const *a = args; *a && n < 31; a++) argv[n++] = (char *)*a;
  argv[n] = NULL;
  esrt_proc p;
  assert_int_equal(0, esrt_spawn(&p, R.c->dir, name, argv, 0));
  if (esrt_wait(&p, 120000) != 0) fail_msg("%s did not finish", name);
  if (out) snprintf(out, cap, "%s", p.out_path);
  return esrt_exit_code(&p);
}

static int same_key(const esrt_record *r, const char *key) {
  return r->key && r->key_len == strlen(key) && memcmp(r->key, key, r->key_len) == 0;
}

static int setup_rig(void **state) {
  (void)state;
  memset(&R, 0, sizeof R);
  if (!(R.c = esrt_case_new("history"))) return -1;
  const char *topics[] = {"ledger:4", "ledger.dlq:1", NULL};
  if (esrt_mock_start(&R.mock, ESR_BIN, R.c->dir, 1, topics, 20000) != 0) return -1;
  esrt_gen_opts g = {.seed = 1207, .events = 2400, .accounts = 24, .partitions = P, .bad_share = 0.15,
                     .prefix_kinds = 1};
  size_t n;
  esrt_event *ev = esrt_ledger_generate(&g, &n);
  esrt_producer *prod = esrt_producer_new(R.mock.bootstrap);
  if (!ev || !prod) return -1;
  for (size_t i = 0; i < n; i++)
    if (esrt_produce(prod, "ledger", ev[i].partition, ev[i].key, ev[i].key_len, ev[i].value, ev[i].value_len,
                     &ev[i].offset) != 0)
      return -1;
  if (esrt_producer_flush(prod, 60000) != 0) return -1;
  esrt_producer_free(prod);
  R.src = esrt_case_defer(R.c, free_records, calloc(1, sizeof *R.src));
  /* The log holds exactly what was produced, and the oracle agrees with the generator's intent for every event. */
  esrt_oracle *check = esrt_ledger_oracle_from_log(R.mock.bootstrap, "ledger", P, ev, n, R.src);
  if (!check) return -1;
  esrt_oracle_free(check);

  /* The key: the account with the most events among those with an applied and a dead-lettered one. */
  size_t best = 0;
  for (size_t i = 0; i < n; i++) {
    if (!ev[i].key || strncmp(ev[i].key, "acct-", 5) != 0) continue;
    size_t count = 0, dead = 0;
    for (size_t j = 0; j < n; j++)
      if (ev[j].key && strcmp(ev[j].key, ev[i].key) == 0) count++, dead += ev[j].intent[0] != '\0';
    if (dead > 0 && dead < count && count > best) {
      best = count;
      snprintf(R.key, sizeof R.key, "%s", ev[i].key);
    }
  }
  esrt_events_free(ev, n);
  if (!R.key[0]) return -1;

  /* The expected timeline: fold the whole log through a fresh oracle, noting each event of the key. */
  esrt_oracle *o = esrt_case_defer(R.c, free_oracle, esrt_oracle_new(P));
  R.exp = esrt_case_defer(R.c, expected_free, calloc(R.src->n + 1, sizeof *R.exp));
  if (!o || !R.exp) return -1;
  for (size_t i = 0; i < R.src->n; i++) {
    const esrt_record *r = &R.src->v[i];
    const esrt_oracle_account *a = esrt_oracle_account_get(o, r->partition, R.key);
    expected e = {.partition = r->partition, .offset = r->offset, .before_exists = a != NULL,
                  .before = a ? a->balance : 0};
    const char *why = esrt_oracle_feed(o, r->partition, r->offset, r->key, r->key_len, r->value, r->value_len);
    if (!same_key(r, R.key)) continue;
    a = esrt_oracle_account_get(o, r->partition, R.key);
    e.reason = why;
    e.after_exists = a != NULL;
    e.after = a ? a->balance : 0;
    R.n_dead += why != NULL;
    R.n_insert += !e.before_exists && e.after_exists;
    R.n_update += e.before_exists && e.after_exists && e.before != e.after;
    R.exp[R.n_exp++] = e;
  }
  printf("# key %s: %zu events in the log (%zu dead-lettered, %zu opens, %zu balance changes)\n", R.key, R.n_exp,
         R.n_dead, R.n_insert, R.n_update);
  char state_dir[1100];
  snprintf(state_dir, sizeof state_dir, "%s/state", R.c->dir);
  return esrt_write_worker_config(R.conf, sizeof R.conf, R.c->dir, "worker", R.mock.bootstrap, "ledger", "ledger.dlq",
                                  state_dir, LEDGER_SO, "assignment = static\npartitions = 0-%d\n", P - 1);
}

static int teardown_rig(void **state) {
  (void)state;
  esrt_json_free(R.json);
  esrt_case_cleanup(R.c);
  esrt_mock_stop(&R.mock);
  R.c->passed = R.ok == 3; /* otherwise the logs and files are kept */
  esrt_case_end(R.c);
  return 0;
}

/* The before or after balance of the accounts row of the key in one change object, or -1 when absent. */
static int change_balance(const esrt_jval *change, const char *side, int64_t *balance) {
  const esrt_jval *v = esrt_json_get(esrt_json_get(change, side), "balance");
  if (!v) return -1;
  return esrt_json_int_in(v, INT64_MIN, INT64_MAX, balance) ? 0 : -1;
}

static const char *jstr(const esrt_jval *obj, const char *name) {
  const esrt_jval *v = esrt_json_get(obj, name);
  return v && v->type == ESRT_J_STRING ? v->text : NULL;
}

static int64_t jint(const esrt_jval *obj, const char *name) {
  int64_t x = -1;
  const esrt_jval *v = esrt_json_get(obj, name);
  if (!v || !esrt_json_int_in(v, INT64_MIN, INT64_MAX, &x)) fail_msg("no integer '%s'", name);
  return x;
}

/* Checks one JSON timeline (the output file of a run) against the expected one. */
static void check_json(const char *path) {
  char *text = esrt_read_file(path, NULL);
  assert_non_null(text);
  size_t i = 0;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), i++) {
    esrt_json_free(R.json);
    esrt_jval *j = R.json = esrt_json_parse(line, strlen(line));
    if (!j) fail_msg("not JSON: %s", line);
    if (i >= R.n_exp) fail_msg("more events than the log holds for %s: %s", R.key, line);
    const expected *e = &R.exp[i];
    assert_int_equal(e->partition, jint(j, "partition"));
    assert_int_equal(e->offset, jint(j, "offset"));
    const char *outcome = jstr(j, "outcome");
    assert_non_null(outcome);
    const esrt_jval *changes = esrt_json_get(j, "changes");
    assert_non_null(changes);
    assert_int_equal(ESRT_J_ARRAY, changes->type);
    if (e->reason) {
      assert_string_equal("dead-lettered", outcome);
      assert_string_equal(e->reason, jstr(j, "reason"));
      assert_non_null(jstr(j, "error"));
      assert_true(strlen(jstr(j, "error")) > 0);
      assert_int_equal(0, changes->n); /* its savepoint was rolled back */
      continue;
    }
    assert_string_equal("applied", outcome);
    /* The change to the key's accounts row. */
    const esrt_jval *mine = NULL;
    for (size_t k = 0; k < changes->n; k++) {
      const esrt_jval *ch = &changes->items[k];
      const char *id = jstr(esrt_json_get(ch, "pk"), "id");
      assert_non_null(jstr(ch, "table"));
      if (strcmp(jstr(ch, "table"), "accounts") == 0 && id && strcmp(id, R.key) == 0) {
        assert_null(mine);
        mine = ch;
      } else {
        fail_msg("%s@%" PRId64 " changed another row: %s", R.key, e->offset, line);
      }
    }
    int64_t b = -1, a = -1;
    if (!e->before_exists && e->after_exists) {
      assert_non_null(mine);
      assert_string_equal("INSERT", jstr(mine, "op"));
      assert_int_equal(-1, change_balance(mine, "before", &b));
      assert_int_equal(0, change_balance(mine, "after", &a));
      assert_int_equal(e->after, a);
    } else if (e->before != e->after) {
      assert_non_null(mine);
      assert_string_equal("UPDATE", jstr(mine, "op"));
      assert_int_equal(0, change_balance(mine, "before", &b));
      assert_int_equal(0, change_balance(mine, "after", &a));
      assert_int_equal(e->before, b);
      assert_int_equal(e->after, a);
    } else {
      fail_msg("the oracle sees no change at %s@%" PRId64 " although the event was applied", R.key, e->offset);
    }
  }
  assert_int_equal(R.n_exp, i);
  esrt_json_free(R.json);
  R.json = NULL;
  free(text);
}

static void timeline_equals_stream(void **state) {
  (void)state;
  /* Premises: the key has events of each sort the timeline shows. */
  assert_true(R.n_exp >= 20);
  assert_true(R.n_dead >= 1);
  assert_int_equal(1, R.n_insert);
  assert_true(R.n_update >= 5);

  char out[1100], out2[1100];
  const char *json_args[] = {"history", "--bootstrap", R.mock.bootstrap, "--handlers", LEDGER_SO, "--topic", "ledger",
                             "--key", R.key, "--json", NULL};
  assert_int_equal(0, run_esr("history-json", json_args, out, sizeof out));
  check_json(out);

  /* The text timeline: the same events, in order, with the same balances. */
  const char *text_args[] = {"history", "--bootstrap", R.mock.bootstrap, "--handlers", LEDGER_SO, "--topic", "ledger",
                             "--key", R.key, NULL};
  assert_int_equal(0, run_esr("history-text", text_args, out, sizeof out));
  char *text = esrt_read_file(out, NULL);
  assert_non_null(text);
  char head[200];
  snprintf(head, sizeof head, "history of key \"%s\" in topic ledger: %zu event(s), %zu applied, %zu dead-lettered",
           R.key, R.n_exp, R.n_exp - R.n_dead, R.n_dead);
  if (!strstr(text, head)) fail_msg("expected \"%s\" in:\n%s", head, text);
  const char *at = text;
  for (size_t i = 0; i < R.n_exp; i++) {
    const expected *e = &R.exp[i];
    char line[200];
    snprintf(line, sizeof line, "\nledger[%d]@%" PRId64 "  ", (int)e->partition, e->offset);
    const char *found = strstr(at, line);
    if (!found) fail_msg("no \"%s\" after the previous event in the text timeline", line + 1);
    const char *next = strstr(found + 1, "\nledger[");
    size_t block = next ? (size_t)(next - found) : strlen(found);
    char want[200], want2[200];
    if (e->reason)
      snprintf(want, sizeof want, "dead-lettered (%s): ", e->reason);
    else if (!e->before_exists)
      snprintf(want, sizeof want, "balance = %" PRId64 ",", e->after);
    else
      snprintf(want, sizeof want, "balance %" PRId64 " -> %" PRId64 ",", e->before, e->after);
    snprintf(want2, sizeof want2, "%.*s\n", (int)strlen(want) - 1, want); /* the last change of its line */
    char *blk = strndup(found, block);
    if (!strstr(blk, want) && (e->reason || !strstr(blk, want2))) fail_msg("expected \"%s\" in:\n%s", want, blk);
    if (e->reason) assert_non_null(strstr(blk, "no row changed"));
    free(blk);
    at = found + 1;
  }
  free(text);

  /* The producer's partitioner instead of a search: the generator placed keys by FNV-1a, as librdkafka's fnv1a. */
  const char *fnv_args[] = {"history", "--bootstrap", R.mock.bootstrap, "--handlers", LEDGER_SO, "--topic", "ledger",
                            "--key", R.key, "--partitioner", "fnv1a", "--json", NULL};
  assert_int_equal(0, run_esr("history-fnv1a", fnv_args, out2, sizeof out2));
  check_json(out2);
  /* A worker's configuration as the source. */
  const char *conf_args[] = {"history", "--config", R.conf, "--key", R.key, "--json", NULL};
  assert_int_equal(0, run_esr("history-config", conf_args, out2, sizeof out2));
  check_json(out2);

  /* A partition that does not hold the key: an empty timeline. One that does not exist: a usage error. */
  char other[16];
  snprintf(other, sizeof other, "%d", (int)((R.exp[0].partition + 1) % P));
  const char *other_args[] = {"history", "--bootstrap", R.mock.bootstrap, "--handlers", LEDGER_SO, "--topic", "ledger",
                              "--key", R.key, "--partition", other, NULL};
  assert_int_equal(0, run_esr("history-other-partition", other_args, out2, sizeof out2));
  assert_true(esrt_file_contains(out2, ": no events (partitions searched: "));
  const char *bad_args[] = {"history", "--bootstrap", R.mock.bootstrap, "--handlers", LEDGER_SO, "--topic", "ledger",
                            "--key", R.key, "--partition", "99", NULL};
  assert_int_equal(2, run_esr("history-bad-partition", bad_args, NULL, 0));

  /* An unknown key: an empty timeline, exit 0, in every form. */
  char html[1200];
  snprintf(html, sizeof html, "%s/unknown.html", R.c->dir);
  const char *unknown_args[] = {"history", "--bootstrap", R.mock.bootstrap, "--handlers", LEDGER_SO, "--topic",
                                "ledger", "--key", "no-such-account", "--html", html, NULL};
  assert_int_equal(0, run_esr("history-unknown", unknown_args, out2, sizeof out2));
  assert_true(esrt_file_contains(out2, "history of key \"no-such-account\" in topic ledger: no events (partitions "
                                       "searched: 0-3; 0 event(s) replayed)"));
  assert_true(esrt_file_contains(html, "No event carries this key."));
  assert_false(esrt_file_contains(html, "<section"));
  const char *unknown_json[] = {"history", "--bootstrap", R.mock.bootstrap, "--handlers", LEDGER_SO, "--topic",
                                "ledger", "--key", "no-such-account", "--json", NULL};
  assert_int_equal(0, run_esr("history-unknown-json", unknown_json, out2, sizeof out2));
  size_t len = 99;
  free(esrt_read_file(out2, &len));
  assert_int_equal(0, len);
  R.ok++;
}

/* ------------------------------------------------------------------------------------------------ other rows */

/* The test plugin `good` (tests/plugins/good.c) does what each event's data asks: the timeline shows an INSERT, an
 * UPDATE whose before value another key's event wrote, a DELETE, a rejection whose writes were rolled back, an emit, a
 * table the session extension cannot see, and a stop (ESR_FATAL) that ends the timeline with exit 3. */
static void other_rows_and_a_stop(void **state) {
  (void)state;
  assert_int_equal(0, esrt_mock_control(&R.mock, "topic test 1", 10000));
  esrt_producer *prod = esrt_producer_new(R.mock.bootstrap);
  assert_non_null(prod);
  static const char *const events[][2] = {
      {"k1", "{\"type\":\"test.a\",\"data\":{\"k\":\"a\",\"v\":\"1\"}}"},
      {"k2", "{\"type\":\"test.a\",\"data\":{\"k\":\"a\",\"v\":\"5\"}}"},
      {"k1", "{\"type\":\"test.a\",\"data\":{\"k\":\"a\",\"v\":\"2\",\"result\":\"reject\",\"error\":\"no thanks\"}}"},
      {"k1", "{\"type\":\"test.a\",\"data\":{\"sql\":\"UPDATE test_kv SET v = v || '+' WHERE k = 'a'\"}}"},
      {"k1", "{\"type\":\"test.a\",\"data\":{\"emit\":[{\"topic\":\"out\",\"key\":\"x\",\"value\":\"hello\"}]}}"},
      {"k1", "{\"type\":\"test.a\",\"data\":{\"sql\":\"DELETE FROM test_kv WHERE k = 'a'\"}}"},
      {"k1", "{\"type\":\"test.a\",\"data\":{\"result\":\"fatal\",\"error\":\"boom\"}}"},
      {"k1", "{\"type\":\"test.a\",\"data\":{}}"},
  };
  for (size_t i = 0; i < sizeof events / sizeof *events; i++)
    assert_int_equal(0, esrt_produce(prod, "test", 0, events[i][0], 2, events[i][1], strlen(events[i][1]), NULL));
  assert_int_equal(0, esrt_producer_flush(prod, 30000));
  esrt_producer_free(prod);

  char out[1100];
  const char *args[] = {"history", "--bootstrap", R.mock.bootstrap, "--handlers", GOOD_SO, "--topic", "test", "--key",
                        "k1", "--json", NULL};
  assert_int_equal(3, run_esr("history-good-json", args, out, sizeof out));
  char *text = esrt_read_file(out, NULL);
  assert_non_null(text);
  /* Offsets 0, 2, 3, 4, 5, 6: k1's events up to the stop; never k2's, never what follows the stop. */
  static const char *const want[] = {
      "\"offset\":0,",
      "\"outcome\":\"applied\"",
      "\"key\":{\"hex\":\"6b31\"}", /* test_events.key, a blob */
      "{\"table\":\"test_kv\",\"op\":\"INSERT\",\"pk\":{\"k\":\"a\"},\"before\":{},\"after\":{\"k\":\"a\",\"v\":\"1\"}}",
      "\"offset\":2,",
      "\"outcome\":\"dead-lettered\",\"reason\":\"rejected\",\"error\":\"handler good: no thanks\",\"changes\":[]",
      "\"offset\":3,",
      "{\"table\":\"test_kv\",\"op\":\"UPDATE\",\"pk\":{\"k\":\"a\"},\"before\":{\"v\":\"5\"},\"after\":{\"v\":\"5+\"}}",
      "\"offset\":4,",
      "\"emits\":[{\"topic\":\"out\",\"key\":\"x\",\"value\":\"hello\"}]",
      "\"offset\":5,",
      "{\"table\":\"test_kv\",\"op\":\"DELETE\",\"pk\":{\"k\":\"a\"},\"before\":{\"k\":\"a\",\"v\":\"5+\"},\"after\":{}}",
      "\"offset\":6,",
      "\"outcome\":\"stopped\"",
  };
  const char *at = text;
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
    const char *hit = strstr(at, want[i]);
    if (!hit) fail_msg("expected, in order, \"%s\" in:\n%s", want[i], text);
    at = hit;
  }
  assert_non_null(strstr(at, "boom"));
  assert_null(strstr(text, "\"offset\":1,"));
  assert_null(strstr(text, "\"offset\":7,"));
  size_t lines = 0;
  for (const char *p = text; *p; p++) lines += *p == '\n';
  assert_int_equal(6, lines);
  free(text);

  const char *targs[] = {"history", "--bootstrap", R.mock.bootstrap, "--handlers", GOOD_SO, "--topic", "test", "--key",
                         "k1", NULL};
  assert_int_equal(3, run_esr("history-good-text", targs, out, sizeof out));
  assert_true(esrt_file_contains(out, "test_kv UPDATE k='a': v '5' -> '5+'"));
  assert_true(esrt_file_contains(out, "the handler stopped the partition; the timeline ends there: "));
  assert_true(esrt_file_contains(out, "note: table test_migrations has no primary key"));
  R.ok++;
}

/* ------------------------------------------------------------------------------------------------ the page */

/* The test's page: loads the history in an iframe and reports, for each event block, whether it is rendered visibly,
 * and the text of its reason and of every before/after cell. */
static const char HARNESS[] =
    "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body><pre id=\"result\">pending</pre>\n"
    "<iframe id=\"f\" src=\"history.html\" style=\"width:1200px;height:900px\"></iframe>\n"
    "<script>\n"
    "document.getElementById('f').addEventListener('load', function () {\n"
    "  var d = this.contentDocument, w = d.defaultView, out = [];\n"
    "  function shown(el) { var r = el.getBoundingClientRect(), s = w.getComputedStyle(el);\n"
    "    return r.width > 0 && r.height > 0 && s.display != 'none' && s.visibility != 'hidden' && s.opacity != '0'; }\n"
    "  d.querySelectorAll('section.event').forEach(function (s) {\n"
    "    var rows = [];\n"
    "    s.querySelectorAll('table.change tr[data-column]').forEach(function (tr) {\n"
    "      var t = tr.closest('table'), b = tr.querySelector('td.before'), a = tr.querySelector('td.after');\n"
    "      rows.push({table: t.dataset.table, op: t.dataset.op, column: tr.dataset.column, before: b.innerText,\n"
    "                 after: a.innerText, shown: shown(b) && shown(a)});\n"
    "    });\n"
    "    var why = s.querySelector('.why');\n"
    "    out.push({partition: +s.dataset.partition, offset: +s.dataset.offset, outcome: s.dataset.outcome,\n"
    "              shown: shown(s), why: why ? why.innerText : null, whyShown: why ? shown(why) : false, rows: rows});\n"
    "  });\n"
    "  document.getElementById('result').textContent = JSON.stringify({events: out});\n"
    "});\n"
    "</script></body></html>\n";

static char *find_chromium(void) {
  const char *path = getenv("PATH");
  if (!path) return NULL;
  char *copy = strdup(path), *save = NULL;
  for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
    char cand[4096];
    snprintf(cand, sizeof cand, "%s/chromium", d);
    if (access(cand, X_OK) == 0) {
      free(copy);
      return strdup(cand);
    }
  }
  free(copy);
  return NULL;
}

/* Runs headless Chromium with the `extra` arguments (NULL-terminated) on `url`; returns its exit code; its stdout's
 * path goes to out. A fresh profile each time. */
static int chromium(const char *bin, const char *name, const char *const *extra, const char *url, char *out,
                    size_t cap) {
  char profile[1200];
  snprintf(profile, sizeof profile, "--user-data-dir=%s/chromium-%s", R.c->dir, name);
  char *argv[32] = {(char *)bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync", profile};
  int n = 10;
  for (const char *const *e = extra; *e && n < 30; e++) argv[n++] = (char *)*e;
  argv[n++] = (char *)url;
  argv[n] = NULL;
  esrt_proc p;
  assert_int_equal(0, esrt_spawn(&p, R.c->dir, name, argv, 0));
  if (esrt_wait(&p, 180000) != 0) fail_msg("chromium (%s) did not finish in 180 s", name);
  if (out) snprintf(out, cap, "%s", p.out_path);
  return esrt_exit_code(&p);
}

static long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void html_in_chromium(void **state) {
  (void)state;
  char *bin = find_chromium();
  if (!bin) {
    printf("# chromium is not installed (scripts/setup.sh installs it): the page is not checked\n");
    R.ok++;
    skip();
  }
  char html[1200], harness[1200], url[1300], out[1100];
  snprintf(html, sizeof html, "%s/history.html", R.c->dir);
  const char *args[] = {"history", "--bootstrap", R.mock.bootstrap, "--handlers", LEDGER_SO, "--topic", "ledger",
                        "--key", R.key, "--html", html, NULL};
  assert_int_equal(0, run_esr("history-html", args, NULL, 0));

  /* Self-contained: nothing it could fetch. */
  char *page = esrt_read_file(html, NULL);
  assert_non_null(page);
  static const char *const outside[] = {"http:", "https:", "ftp:", "file:", "<script", "<link", "<img",
                                        "<iframe", "<object", "src=", "href=", "url(", "@import"};
  for (size_t i = 0; i < sizeof outside / sizeof *outside; i++)
    if (strstr(page, outside[i])) fail_msg("the page holds \"%s\": %.80s", outside[i], strstr(page, outside[i]));
  free(page);

  snprintf(harness, sizeof harness, "%s/harness.html", R.c->dir);
  assert_int_equal(0, esrt_write_file(harness, "%s", HARNESS));
  snprintf(url, sizeof url, "file://%s", harness);
  /* The iframe's document is the harness's to read only with file access between files. */
  const char *dom_args[] = {"--allow-file-access-from-files", "--virtual-time-budget=15000", "--dump-dom", NULL};
  assert_int_equal(0, chromium(bin, "dom", dom_args, url, out, sizeof out));
  char *dom = esrt_read_file(out, NULL);
  assert_non_null(dom);
  char *start = strstr(dom, "<pre id=\"result\">"), *end = start ? strstr(start, "</pre>") : NULL;
  if (!start || !end) fail_msg("no result in Chromium's DOM: %.300s", dom);
  start += strlen("<pre id=\"result\">");
  *end = '\0';
  /* The <pre>'s text is HTML-escaped in the dump: only &quot; &amp; &lt; &gt; can occur. */
  char *w = start;
  for (char *r = start; *r;) {
    static const char *const ent[][2] = {{"&quot;", "\""}, {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}};
    size_t k;
    for (k = 0; k < 4 && strncmp(r, ent[k][0], strlen(ent[k][0])) != 0; k++) {
    }
    if (k < 4) {
      *w++ = ent[k][1][0];
      r += strlen(ent[k][0]);
    } else {
      *w++ = *r++;
    }
  }
  *w = '\0';
  esrt_json_free(R.json);
  esrt_jval *res = R.json = esrt_json_parse(start, strlen(start));
  if (!res) fail_msg("the harness did not report (Chromium ran no script?): %.300s", start);
  free(dom);
  const esrt_jval *events = esrt_json_get(res, "events");
  assert_non_null(events);
  assert_int_equal(R.n_exp, events->n);
  size_t balance_rows = 0;
  for (size_t i = 0; i < R.n_exp; i++) {
    const expected *e = &R.exp[i];
    const esrt_jval *ev = &events->items[i];
    assert_int_equal(e->partition, jint(ev, "partition"));
    assert_int_equal(e->offset, jint(ev, "offset"));
    assert_int_equal(ESRT_J_TRUE, esrt_json_get(ev, "shown")->type);
    const esrt_jval *rows = esrt_json_get(ev, "rows");
    if (e->reason) {
      assert_string_equal("dead", jstr(ev, "outcome"));
      assert_non_null(jstr(ev, "why"));
      assert_true(strncmp(jstr(ev, "why"), e->reason, strlen(e->reason)) == 0);
      assert_int_equal(ESRT_J_TRUE, esrt_json_get(ev, "whyShown")->type);
      assert_int_equal(0, rows->n);
      continue;
    }
    assert_string_equal("applied", jstr(ev, "outcome"));
    char before[32], after[32];
    snprintf(before, sizeof before, "%" PRId64, e->before);
    snprintf(after, sizeof after, "%" PRId64, e->after);
    int seen = 0;
    for (size_t k = 0; k < rows->n; k++) {
      const esrt_jval *row = &rows->items[k];
      assert_int_equal(ESRT_J_TRUE, esrt_json_get(row, "shown")->type);
      if (strcmp(jstr(row, "column"), "balance") != 0) continue;
      seen++;
      assert_string_equal("accounts", jstr(row, "table"));
      if (e->before_exists) assert_string_equal(before, jstr(row, "before"));
      assert_string_equal(after, jstr(row, "after"));
    }
    assert_int_equal(1, seen);
    balance_rows++;
  }
  assert_int_equal(R.n_exp - R.n_dead, balance_rows);

  /* A screenshot among the test artefacts, with one of an empty page beside it: the page must not look empty. */
  char dir[1200], shot[1300], blank[1300], arg[1400], blank_html[1200];
  snprintf(dir, sizeof dir, "%s/test-artefacts", ESR_BUILD_DIR);
  mkdir(dir, 0755);
  snprintf(shot, sizeof shot, "%s/history.png", dir);
  snprintf(blank, sizeof blank, "%s/blank.png", R.c->dir);
  remove(shot);
  snprintf(arg, sizeof arg, "--screenshot=%s", shot);
  snprintf(url, sizeof url, "file://%s", html);
  const char *shot_args[] = {arg, "--window-size=1280,2000", NULL};
  assert_int_equal(0, chromium(bin, "shot", shot_args, url, NULL, 0));
  snprintf(blank_html, sizeof blank_html, "%s/blank.html", R.c->dir);
  assert_int_equal(0, esrt_write_file(blank_html, "<!DOCTYPE html><html><body></body></html>\n"));
  snprintf(arg, sizeof arg, "--screenshot=%s", blank);
  snprintf(url, sizeof url, "file://%s", blank_html);
  assert_int_equal(0, chromium(bin, "blank", shot_args, url, NULL, 0));
  size_t n = 0;
  char *png = esrt_read_file(shot, &n);
  assert_non_null(png);
  assert_true(n > 8 && memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0);
  free(png);
  printf("# screenshot %s: %ld bytes (an empty page: %ld)\n", shot, file_size(shot), file_size(blank));
  assert_true(file_size(shot) > 4 * file_size(blank));
  free(bin);
  R.ok++;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(timeline_equals_stream),
      cmocka_unit_test(other_rows_and_a_stop),
      cmocka_unit_test(html_in_chromium),
  };
  return cmocka_run_group_tests(tests, setup_rig, teardown_rig);
}
