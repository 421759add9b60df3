/* test_checkpoint.c — esr/checkpoint.h: a checkpoint taken while the writer keeps committing is a consistent copy as
 * of one commit; the manifest says what the file holds; verification catches truncation, a flipped byte, a missing or
 * broken manifest; pruning keeps K; restore puts a copy in place without replaying a stale WAL; a crash between data
 * and manifest leaves nothing that is listed; the temporaries a killed writer leaves are removed when the next
 * checkpointer starts (not while another live one shares the directory), and a store that cannot work stops it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

#include "checkpoint.h"
#include "checkpointer.h"
#include "statedigest.h"
#include "unit_util.h"
#include "unit_checkpoint.h"

#define TOPIC "ledger"
#define PART 3

typedef struct fixture {
  char *dir;
  char state[4096], cps[4096], db[4096];
  cpt_part p;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (!f || !(f->dir = tu_mkdtemp())) return -1;
  snprintf(f->state, sizeof f->state, "%s/state", f->dir);
  snprintf(f->cps, sizeof f->cps, "%s/checkpoints", f->dir);
  mkdir(f->state, 0755);
  esr_store_path(f->db, sizeof f->db, f->state, TOPIC, PART);
  cpt_open(&f->p, f->state, TOPIC, PART);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  cpt_close(&f->p);
  tu_rmrf(f->dir);
  free(f->dir);
  free(f);
  return 0;
}

static esr_manifest *write_ok(fixture *f, const esr_checkpoint_opts *opts) {
  esr_manifest *m = NULL;
  esr_error err = {0};
  if (esr_checkpoint_write(f->db, f->cps, TOPIC, PART, opts, &m, &err) != ESR_E_OK)
    fail_msg("esr_checkpoint_write: %s", err.msg);
  assert_non_null(m);
  return m;
}

static const char *data_path(fixture *f, int64_t off) {
  static char buf[4096];
  return cpt_path(buf, sizeof buf, f->cps, TOPIC, PART, off, ".db");
}

static const char *manifest_path(fixture *f, int64_t off) {
  static char buf[4096];
  return cpt_path(buf, sizeof buf, f->cps, TOPIC, PART, off, ".json");
}

static size_t list_count(fixture *f, int64_t *newest) {
  esr_manifest_list *l = NULL;
  esr_error err = {0};
  if (esr_checkpoint_list(f->cps, TOPIC, PART, &l, &err) != ESR_E_OK) fail_msg("list: %s", err.msg);
  size_t n = l->n;
  if (newest) *newest = n ? l->v[0]->next_offset : -1;
  for (size_t i = 1; i < n; i++) assert_true(l->v[i - 1]->next_offset > l->v[i]->next_offset);
  esr_manifest_list_free(l);
  return n;
}

/* ---- consistency while the writer commits ---------------------------------------------------------------------- */

typedef struct interleave {
  cpt_part *p;
  int calls, commits;
} interleave;

/* Runs between VACUUM INTO's steps: the partition's writer (another connection) commits a batch now and then. */
static int commit_between_steps(void *arg) {
  interleave *in = arg;
  if (++in->calls % 3 == 0 && in->commits < 40) {
    cpt_commit(in->p, 25);
    in->commits++;
  }
  return 0;
}

static void write_while_writer_commits(void **state) {
  fixture *f = *state;
  for (int i = 0; i < 40; i++) cpt_commit(&f->p, 250); /* 10,000 rows: enough steps to interleave with */
  int64_t before = f->p.pos.next_offset;
  interleave in = {.p = &f->p};
  esr_checkpoint_opts opts = {.progress = commit_between_steps, .progress_arg = &in};
  esr_manifest *m = write_ok(f, &opts);
  /* The writer was never blocked: it committed while the copy was made... */
  assert_true(in.commits > 0);
  assert_int_equal(f->p.pos.next_offset, before + 25 * in.commits);
  /* ...and the copy is the state as of one commit (the one before the copy started), position included. */
  assert_int_equal(m->next_offset, before);
  cpt_assert_consistent(data_path(f, m->next_offset), m->next_offset);
  assert_int_equal(cpt_query(f->db, "SELECT next_offset FROM esr_offsets"), f->p.pos.next_offset);
  esr_manifest_free(m);
}

typedef struct bg_writer {
  const char *state_dir;
  atomic_int stop;
  int64_t committed;
} bg_writer;

static void *bg_write(void *arg) {
  bg_writer *w = arg;
  cpt_part p;
  cpt_open(&p, w->state_dir, TOPIC, PART);
  while (!atomic_load(&w->stop)) cpt_commit(&p, 10);
  w->committed = p.pos.next_offset;
  cpt_close(&p);
  return NULL;
}

static void write_from_another_thread(void **state) {
  fixture *f = *state;
  cpt_commit(&f->p, 1000);
  cpt_close(&f->p); /* the background thread is the writer now */
  bg_writer w = {.state_dir = f->state};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, bg_write, &w), 0);
  int64_t last = -1;
  for (int i = 0; i < 5; i++) {
    esr_manifest *m = write_ok(f, NULL);
    assert_true(m->next_offset >= last);
    last = m->next_offset;
    cpt_assert_consistent(data_path(f, m->next_offset), m->next_offset);
    esr_error err = {0};
    if (esr_checkpoint_verify(f->cps, m, &err) != ESR_E_OK) fail_msg("verify: %s", err.msg);
    esr_manifest_free(m);
  }
  atomic_store(&w.stop, 1);
  pthread_join(t, NULL);
  assert_true(w.committed > 1000);
  cpt_open(&f->p, f->state, TOPIC, PART);
}

/* ---- the manifest ----------------------------------------------------------------------------------------------- */

static void manifest_fields(void **state) {
  fixture *f = *state;
  cpt_commit(&f->p, 42);
  esr_manifest *m = write_ok(f, NULL);
  assert_string_equal(m->topic, TOPIC);
  assert_int_equal(m->partition, PART);
  assert_int_equal(m->next_offset, 42);
  assert_memory_equal(m->log_digest, f->p.pos.log_digest, 32);
  assert_int_equal(m->applied, 42);
  assert_string_equal(m->esr_version, ESR_VERSION);
  assert_int_equal(strlen(m->created_at), 20);
  assert_int_equal(m->created_at[10], 'T');
  assert_int_equal(m->created_at[19], 'Z');
  assert_int_equal(m->n_handlers, 1);
  assert_string_equal(m->handlers[0].name, "ledger");
  assert_string_equal(m->handlers[0].version, "1.4.0");
  assert_int_equal(m->handlers[0].schema_version, 2);
  /* Named by its offset, 20 digits; size and SHA-256 are those of the file. */
  assert_contains(data_path(f, 42), "/ledger-3/00000000000000000042.db");
  uint8_t sha[32];
  int64_t size = 0;
  esr_error err = {0};
  assert_int_equal(esr_file_sha256(data_path(f, 42), sha, &size, &err), ESR_E_OK);
  assert_int_equal(size, m->size);
  assert_memory_equal(sha, m->sha256, 32);
  /* A self-contained rollback-journal database (header bytes 18-19 are 1, not WAL's 2): no -wal goes with it. */
  size_t len = 0;
  char *bytes = tu_read_file(data_path(f, 42), &len);
  assert_true(bytes && len > 100);
  assert_int_equal(bytes[18], 1);
  assert_int_equal(bytes[19], 1);
  free(bytes);
  char *text = tu_read_file(manifest_path(f, 42), NULL);
  assert_non_null(text);
  cJSON *j = cJSON_Parse(text);
  assert_non_null(j);
  char hex[65];
  esr_digest_hex(m->sha256, hex);
  assert_string_equal(cJSON_GetObjectItem(j, "sha256")->valuestring, hex);
  esr_digest_hex(m->log_digest, hex);
  assert_string_equal(cJSON_GetObjectItem(j, "log_digest")->valuestring, hex);
  assert_int_equal((int64_t)cJSON_GetObjectItem(j, "next_offset")->valuedouble, 42);
  assert_int_equal((int64_t)cJSON_GetObjectItem(j, "size")->valuedouble, m->size);
  assert_string_equal(cJSON_GetObjectItem(j, "topic")->valuestring, TOPIC);
  assert_string_equal(cJSON_GetObjectItem(j, "esr_version")->valuestring, ESR_VERSION);
  assert_string_equal(
      cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "handlers"), 0), "name")->valuestring, "ledger");
  cJSON_Delete(j);
  /* It parses back to the same thing. */
  esr_manifest *back = NULL;
  assert_int_equal(esr_manifest_parse(text, strlen(text), &back, &err), ESR_E_OK);
  assert_int_equal(back->next_offset, 42);
  assert_int_equal(back->size, m->size);
  assert_memory_equal(back->sha256, m->sha256, 32);
  assert_string_equal(back->created_at, m->created_at);
  esr_manifest_free(back);
  free(text);
  esr_manifest_free(m);
}

/* The manifest records the copy's state digest (statedigest.h), equal to the live database's at that offset; a manifest
 * written before esr recorded it still loads (without one), and a malformed one is refused. */
static void manifest_records_the_state_digest(void **state) {
  fixture *f = *state;
  cpt_commit(&f->p, 30);
  uint8_t live[32];
  esr_error err = {0};
  assert_int_equal(esr_state_digest(esr_store_db(f->p.s), live, &err), ESR_E_OK);
  esr_manifest *m = write_ok(f, NULL);
  assert_int_equal(m->has_state_digest, 1);
  assert_memory_equal(m->state_digest, live, 32);
  char *text = tu_read_file(manifest_path(f, 30), NULL);
  assert_non_null(text);
  char hex[65];
  esr_digest_hex(live, hex);
  assert_contains(text, hex);
  esr_manifest *back = NULL;
  assert_int_equal(esr_manifest_parse(text, strlen(text), &back, &err), ESR_E_OK);
  assert_int_equal(back->has_state_digest, 1);
  assert_memory_equal(back->state_digest, live, 32);
  esr_manifest_free(back);
  /* An older manifest: the same without "state_digest". */
  cJSON *j = cJSON_Parse(text);
  cJSON_DeleteItemFromObject(j, "state_digest");
  char *old = cJSON_Print(j);
  assert_int_equal(esr_manifest_parse(old, strlen(old), &back, &err), ESR_E_OK);
  assert_int_equal(back->has_state_digest, 0);
  assert_int_equal(back->next_offset, 30);
  esr_manifest_free(back);
  cJSON_free(old);
  cJSON_AddStringToObject(j, "state_digest", "12ab");
  char *broken = cJSON_Print(j);
  assert_int_equal(esr_manifest_parse(broken, strlen(broken), &back, &err), ESR_E_CORRUPT);
  assert_contains(err.msg, "state_digest");
  cJSON_free(broken);
  cJSON_Delete(j);
  free(text);
  esr_manifest_free(m);
}

static void manifest_parse_refuses(void **state) {
  (void)state;
  static const char *const bad[] = {
      "",
      "[]",
      "{\"format\":1}",
      "{\"format\":2,\"topic\":\"t\"}",
      /* one string on two lines: the parentheses say so to clang's -Wstring-concatenation */
      ("{\"format\":1,\"topic\":\"../x\",\"partition\":0,\"next_offset\":1,\"log_digest\":\"00\",\"applied\":0,"
       "\"dead\":0,\"size\":1,\"sha256\":\"00\",\"esr_version\":\"x\",\"created_at\":\"x\",\"handlers\":[]}"),
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    esr_manifest *m = NULL;
    esr_error err = {0};
    assert_int_equal(esr_manifest_parse(bad[i], strlen(bad[i]), &m, &err), ESR_E_CORRUPT);
    assert_null(m);
    assert_true(err.msg[0] != '\0');
  }
}

/* ---- what is refused, what is kept ------------------------------------------------------------------------------ */

static void write_refuses_empty_and_foreign(void **state) {
  fixture *f = *state;
  esr_manifest *m = NULL;
  esr_error err = {0};
  /* A database that never committed: no position to name a checkpoint by. */
  esr_store *empty = NULL;
  assert_int_equal(esr_store_open(f->state, TOPIC, 5, NULL, &empty, &err), ESR_E_OK);
  char empty_db[4200];
  esr_store_path(empty_db, sizeof empty_db, f->state, TOPIC, 5);
  assert_int_equal(esr_checkpoint_write(empty_db, f->cps, TOPIC, 5, NULL, &m, &err), ESR_E_STATE);
  assert_contains(err.msg, "no position");
  assert_null(m);
  esr_store_close(empty);
  cpt_commit(&f->p, 5);
  assert_int_equal(esr_checkpoint_write(f->db, f->cps, TOPIC, 4, NULL, &m, &err), ESR_E_CORRUPT);
  assert_contains(err.msg, "not of ledger-4");
  assert_int_equal(esr_checkpoint_write(f->db, f->cps, "../evil", PART, NULL, &m, &err), ESR_E_CONFIG);
  char missing[4200];
  snprintf(missing, sizeof missing, "%s/none.db", f->dir);
  assert_int_not_equal(esr_checkpoint_write(missing, f->cps, TOPIC, PART, NULL, &m, &err), ESR_E_OK);
  assert_null(m);
  assert_int_equal(list_count(f, NULL), 0);
}

static int cancel_at_once(void *arg) {
  (void)arg;
  return 1;
}

static void write_cancelled_leaves_nothing(void **state) {
  fixture *f = *state;
  cpt_commit(&f->p, 500);
  esr_manifest *m = NULL;
  esr_error err = {0};
  esr_checkpoint_opts opts = {.progress = cancel_at_once};
  assert_int_equal(esr_checkpoint_write(f->db, f->cps, TOPIC, PART, &opts, &m, &err), ESR_E_STATE);
  assert_contains(err.msg, "cancelled");
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/ledger-3", f->cps);
  DIR *d = opendir(dir);
  struct dirent *de;
  while (d && (de = readdir(d)))
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, ".lock"))
      fail_msg("left behind: %s", de->d_name);
  if (d) closedir(d);
}

static void write_same_offset_keeps_existing(void **state) {
  fixture *f = *state;
  cpt_commit(&f->p, 10);
  esr_manifest *a = write_ok(f, NULL);
  esr_manifest *b = write_ok(f, NULL);
  assert_int_equal(a->next_offset, b->next_offset);
  assert_memory_equal(a->sha256, b->sha256, 32);
  assert_string_equal(a->created_at, b->created_at);
  /* A damaged one at that offset is replaced rather than kept. */
  cpt_truncate(data_path(f, 10), 100);
  esr_manifest *c = write_ok(f, NULL);
  esr_error err = {0};
  if (esr_checkpoint_verify(f->cps, c, &err) != ESR_E_OK) fail_msg("verify: %s", err.msg);
  assert_int_equal(list_count(f, NULL), 1);
  esr_manifest_free(a);
  esr_manifest_free(b);
  esr_manifest_free(c);
}

/* ---- verification and choosing ---------------------------------------------------------------------------------- */

typedef struct rejects {
  int n;
  int64_t offsets[8];
  char msgs[8][512];
} rejects;

static void on_reject(void *arg, const char *topic, int32_t partition, int64_t next_offset, const esr_error *why) {
  rejects *r = arg;
  assert_string_equal(topic, TOPIC);
  assert_int_equal(partition, PART);
  assert_int_equal(why->code, ESR_E_CORRUPT);
  if (r->n < 8) {
    r->offsets[r->n] = next_offset;
    snprintf(r->msgs[r->n], sizeof r->msgs[r->n], "%s", why->msg);
  }
  r->n++;
}

static int64_t newest_valid(fixture *f, rejects *r) {
  esr_manifest *m = NULL;
  esr_error err = {0};
  if (esr_checkpoint_newest_valid(f->cps, TOPIC, PART, on_reject, r, &m, &err) != ESR_E_OK)
    fail_msg("newest_valid: %s", err.msg);
  int64_t off = m ? m->next_offset : -1;
  esr_manifest_free(m);
  return off;
}

static void verify_catches_damage(void **state) {
  fixture *f = *state;
  esr_manifest *ms[5];
  for (int i = 0; i < 5; i++) {
    cpt_commit(&f->p, 100);
    ms[i] = write_ok(f, NULL); /* 100, 200, 300, 400, 500 */
  }
  esr_error err = {0};
  for (int i = 0; i < 5; i++) assert_int_equal(esr_checkpoint_verify(f->cps, ms[i], &err), ESR_E_OK);

  /* 500: truncated. */
  cpt_truncate(data_path(f, 500), ms[4]->size / 2);
  assert_int_equal(esr_checkpoint_verify(f->cps, ms[4], &err), ESR_E_CORRUPT);
  assert_contains(err.msg, "truncated");
  /* 400: one byte flipped, size unchanged. */
  cpt_flip_byte(data_path(f, 400), 4096 + 17);
  assert_int_equal(esr_checkpoint_verify(f->cps, ms[3], &err), ESR_E_CORRUPT);
  assert_contains(err.msg, "SHA-256");
  /* 300: the manifest does not parse (cut short as by a torn write): not listed. */
  cpt_truncate(manifest_path(f, 300), 40);
  /* 200: no manifest at all (data written, crash before the manifest): ignored, not even reported. */
  assert_int_equal(unlink(manifest_path(f, 200)), 0);

  int64_t newest = 0;
  assert_int_equal(list_count(f, &newest), 3); /* 500, 400, 100: listed, since listing reads manifests only */
  assert_int_equal(newest, 500);
  rejects r = {0};
  assert_int_equal(newest_valid(f, &r), 100);
  assert_int_equal(r.n, 3);
  assert_int_equal(r.offsets[0], 500);
  assert_contains(r.msgs[0], "truncated");
  assert_int_equal(r.offsets[1], 400);
  assert_contains(r.msgs[1], "SHA-256");
  assert_int_equal(r.offsets[2], 300);
  assert_contains(r.msgs[2], "does not parse");

  /* A data file whose manifest vouches for other content (swapped files) fails on esr_offsets or SHA-256. */
  char from[4200];
  snprintf(from, sizeof from, "%s", data_path(f, 100));
  assert_int_equal(rename(from, data_path(f, 500)), 0);
  assert_int_equal(esr_checkpoint_verify(f->cps, ms[4], &err), ESR_E_CORRUPT);
  assert_int_equal(esr_checkpoint_verify(f->cps, ms[0], &err), ESR_E_CORRUPT); /* and 100 is gone */
  memset(&r, 0, sizeof r);
  assert_int_equal(newest_valid(f, &r), -1);

  /* Quarantine sets them aside: no longer listed, files kept. */
  for (int64_t off = 100; off <= 500; off += 100)
    assert_int_equal(esr_checkpoint_quarantine(f->cps, TOPIC, PART, off, &err), ESR_E_OK);
  assert_int_equal(list_count(f, NULL), 0);
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/ledger-3", f->cps);
  DIR *d = opendir(dir);
  struct dirent *de;
  int bad = 0;
  while ((de = readdir(d))) bad += strstr(de->d_name, ".bad-") != NULL;
  closedir(d);
  assert_int_equal(bad, 8); /* manifests of 100, 300, 400, 500; data of 200, 300, 400, 500 (100's moved onto 500) */
  for (int i = 0; i < 5; i++) esr_manifest_free(ms[i]);
}

static void crash_between_data_and_manifest(void **state) {
  fixture *f = *state;
  cpt_commit(&f->p, 10);
  esr_manifest *old = write_ok(f, NULL);
  cpt_commit(&f->p, 10);
  esr_manifest *m = write_ok(f, NULL);
  /* As if the process died after renaming the data file into place, before the manifest: the data is there, the
   * manifest is not; and a temporary file of a copy under way. */
  assert_int_equal(unlink(manifest_path(f, 20)), 0);
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s/ledger-3/.tmp-abc123", f->cps);
  assert_int_equal(tu_write_text(tmp, "partial"), 0);
  int64_t newest = 0;
  assert_int_equal(list_count(f, &newest), 1);
  assert_int_equal(newest, 10);
  rejects r = {0};
  assert_int_equal(newest_valid(f, &r), 10);
  assert_int_equal(r.n, 0);
  /* The next write at that offset completes it. */
  esr_manifest *again = write_ok(f, NULL);
  assert_int_equal(again->next_offset, 20);
  assert_int_equal(list_count(f, &newest), 2);
  assert_int_equal(newest, 20);
  esr_manifest_free(old);
  esr_manifest_free(m);
  esr_manifest_free(again);
}

/* ---- pruning ---------------------------------------------------------------------------------------------------- */

static void prune_keeps_k(void **state) {
  fixture *f = *state;
  for (int i = 0; i < 6; i++) {
    cpt_commit(&f->p, 10);
    esr_manifest_free(write_ok(f, NULL)); /* 10 .. 60 */
  }
  /* An orphan data file below what will be kept, one above it, and a quarantined checkpoint. */
  assert_int_equal(unlink(manifest_path(f, 20)), 0);
  esr_error err = {0};
  assert_int_equal(esr_checkpoint_quarantine(f->cps, TOPIC, PART, 10, &err), ESR_E_OK);
  assert_int_equal(unlink(manifest_path(f, 60)), 0);
  assert_int_equal(esr_checkpoint_prune(f->cps, TOPIC, PART, 2, &err), ESR_E_OK);
  int64_t newest = 0;
  assert_int_equal(list_count(f, &newest), 2);
  assert_int_equal(newest, 50);
  assert_true(tu_file_exists(data_path(f, 50)) && tu_file_exists(data_path(f, 40)));
  assert_true(!tu_file_exists(data_path(f, 30)) && !tu_file_exists(manifest_path(f, 30)));
  assert_true(!tu_file_exists(data_path(f, 20)));
  assert_true(tu_file_exists(data_path(f, 60))); /* newer than the kept ones: maybe a write under way */
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/ledger-3", f->cps);
  DIR *d = opendir(dir);
  struct dirent *de;
  int bad = 0;
  while ((de = readdir(d))) bad += strstr(de->d_name, ".bad-") != NULL;
  closedir(d);
  assert_int_equal(bad, 2); /* quarantined files are never pruned */
  assert_int_equal(esr_checkpoint_prune(f->cps, TOPIC, PART, 0, &err), ESR_E_CONFIG);
  /* A partition without checkpoints prunes to nothing, quietly. */
  assert_int_equal(esr_checkpoint_prune(f->cps, TOPIC, 9, 1, &err), ESR_E_OK);
}

/* ---- restore ---------------------------------------------------------------------------------------------------- */

/* As a worker SIGKILLed after committing `n` more events: its last commits are only in the WAL, which stays behind.
 * The fixture's own connection is closed first (the last connection to close would checkpoint the WAL away). */
static void killed_writer_commits(fixture *f, int n) {
  cpt_close(&f->p);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    cpt_part p;
    cpt_open(&p, f->state, TOPIC, PART);
    cpt_exec(esr_store_db(p.s), "PRAGMA wal_autocheckpoint=0");
    cpt_commit(&p, n);
    raise(SIGKILL);
    _exit(1);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL); /* and not a failed assertion in the child */
}

static void restore_replaces_live_without_stale_wal(void **state) {
  fixture *f = *state;
  cpt_commit(&f->p, 100);
  esr_manifest *m = write_ok(f, NULL);
  killed_writer_commits(f, 50);
  char wal[4200], shm[4200];
  snprintf(wal, sizeof wal, "%s-wal", f->db);
  snprintf(shm, sizeof shm, "%s-shm", f->db);
  /* The old database's WAL holds committed frames: replayed into the restored file, they would corrupt it. */
  assert_true(tu_file_exists(wal) && tu_file_exists(shm));

  char moved[4200];
  esr_error err = {0};
  if (esr_checkpoint_restore(f->cps, m, f->state, 0, moved, sizeof moved, &err) != ESR_E_OK)
    fail_msg("restore: %s", err.msg);
  assert_string_equal(moved, "");
  assert_false(tu_file_exists(wal));
  assert_false(tu_file_exists(shm));
  cpt_assert_consistent(f->db, 100);
  assert_int_equal(cpt_query(f->db, "SELECT count(*) FROM pragma_quick_check WHERE quick_check <> 'ok'"), 0);
  /* The worker's store opens it and resumes at the checkpoint's position. */
  cpt_open(&f->p, f->state, TOPIC, PART);
  assert_int_equal(f->p.pos.next_offset, 100);
  assert_memory_equal(f->p.pos.log_digest, m->log_digest, 32);
  /* The checkpoint itself is untouched. */
  assert_int_equal(esr_checkpoint_verify(f->cps, m, &err), ESR_E_OK);
  esr_manifest_free(m);
}

static void restore_keeps_old_aside(void **state) {
  fixture *f = *state;
  cpt_commit(&f->p, 30);
  esr_manifest *m = write_ok(f, NULL);
  killed_writer_commits(f, 12);
  char moved[4200];
  esr_error err = {0};
  if (esr_checkpoint_restore(f->cps, m, f->state, ESR_RESTORE_KEEP_OLD, moved, sizeof moved, &err) != ESR_E_OK)
    fail_msg("restore: %s", err.msg);
  assert_contains(moved, ".db.old-");
  char moved_wal[4300];
  snprintf(moved_wal, sizeof moved_wal, "%s-wal", moved);
  assert_true(tu_file_exists(moved_wal));
  /* The old database, with the WAL that went along, still holds all it had (42 events): nothing was lost. */
  cpt_assert_consistent(moved, 42);
  cpt_assert_consistent(f->db, 30);
  cpt_open(&f->p, f->state, TOPIC, PART);
  assert_int_equal(f->p.pos.next_offset, 30);
  esr_manifest_free(m);
}

static void restore_refuses_damaged_copy(void **state) {
  fixture *f = *state;
  cpt_commit(&f->p, 20);
  esr_manifest *m = write_ok(f, NULL);
  cpt_commit(&f->p, 5);
  cpt_flip_byte(data_path(f, 20), 100);
  esr_error err = {0};
  assert_int_equal(esr_checkpoint_restore(f->cps, m, f->state, 0, NULL, 0, &err), ESR_E_CORRUPT);
  assert_contains(err.msg, "SHA-256");
  /* The live database is untouched and no temporary file is left next to it. */
  assert_int_equal(cpt_query(f->db, "SELECT next_offset FROM esr_offsets"), 25);
  DIR *d = opendir(f->state);
  struct dirent *de;
  while ((de = readdir(d))) assert_null(strstr(de->d_name, ".restore-"));
  closedir(d);
  /* A restore into an empty state directory (a new node) needs no old database. */
  char fresh[4200];
  snprintf(fresh, sizeof fresh, "%s/fresh", f->dir);
  cpt_flip_byte(data_path(f, 20), 100); /* flipped back */
  assert_int_equal(esr_checkpoint_restore(f->cps, m, fresh, ESR_RESTORE_KEEP_OLD, NULL, 0, &err), ESR_E_OK);
  char live[4300];
  esr_store_path(live, sizeof live, fresh, TOPIC, PART);
  cpt_assert_consistent(live, 20);
  esr_manifest_free(m);
}

/* ---- temporaries left by killed writers (issue 10, item 5) ------------------------------------------------------- */

static int kill_mid_copy(void *arg) {
  int *calls = arg;
  if (++*calls == 3) raise(SIGKILL); /* a SIGKILL during the checkpoint: VACUUM INTO's copy half written */
  return 0;
}

/* Entries of `dir` whose name starts with `prefix`. */
static int count_prefixed(const char *dir, const char *prefix) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)))
    if (strncmp(de->d_name, prefix, strlen(prefix)) == 0) n++;
  closedir(d);
  return n;
}

/* Leftovers as a real kill makes them (a writer killed inside VACUUM INTO: its copy and SQLite's -journal of it), and
 * a restore's copy in the state directory. */
static void make_leftovers(fixture *f, const char *part_dir) {
  cpt_commit(&f->p, 3000);
  cpt_close(&f->p); /* reopened below: the child must not share its connection */
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int calls = 0;
    esr_checkpoint_opts o = {.progress = kill_mid_copy, .progress_arg = &calls};
    esr_manifest *m = NULL;
    esr_checkpoint_write(f->db, f->cps, TOPIC, PART, &o, &m, NULL);
    _exit(1); /* not killed: the premise failed */
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  cpt_open(&f->p, f->state, TOPIC, PART);
  /* the premise: the kill left its copy and SQLite's journal of it behind (as the issue found them) */
  assert_int_equal(count_prefixed(part_dir, ".tmp-"), 2);
  DIR *d = opendir(part_dir);
  int journals = 0;
  for (struct dirent *de; d && (de = readdir(d));)
    journals += strncmp(de->d_name, ".tmp-", 5) == 0 && strstr(de->d_name, "-journal") != NULL;
  if (d) closedir(d);
  assert_int_equal(journals, 1);
  char path[4300];
  snprintf(path, sizeof path, "%s/ledger-3.db.restore-XyZ789", f->state);
  assert_int_equal(tu_write_text(path, "restore"), 0);
}

static void checkpointer_removes_leftovers_at_start(void **state) {
  fixture *f = *state;
  esr_manifest *m = write_ok(f, NULL); /* a checkpoint that must stay */
  char part_dir[4300], bad[4400];
  snprintf(part_dir, sizeof part_dir, "%s/%s-%d", f->cps, TOPIC, PART);
  snprintf(bad, sizeof bad, "%s/00000000000000000000.db.bad-20260101T000000Z", part_dir);
  assert_int_equal(tu_write_text(bad, "kept for inspection"), 0);
  make_leftovers(f, part_dir);
  assert_int_equal(count_prefixed(part_dir, ".tmp-"), 2);
  esr_checkpointer_opts o = {.state_dir = f->state, .cp_dir = f->cps, .keep = 3};
  esr_checkpointer *c = NULL;
  esr_error err = {0};
  assert_int_equal(esr_checkpointer_new(&o, &c, &err), ESR_E_OK);
  assert_int_equal(count_prefixed(part_dir, ".tmp-"), 0);
  assert_int_equal(count_prefixed(f->state, "ledger-3.db.restore-"), 0);
  assert_true(tu_file_exists(bad));                              /* set aside: never removed */
  assert_true(tu_file_exists(data_path(f, m->next_offset)));     /* checkpoints untouched */
  assert_true(tu_file_exists(manifest_path(f, m->next_offset)));
  assert_true(tu_file_exists(f->db));
  esr_checkpointer_free(c);
  esr_manifest_free(m);
}

/* Another live worker shares the checkpoint directory: its temporaries may be in use, so a worker starting beside it
 * leaves them alone; once it is gone, the next start removes them. */
static void leftovers_of_a_live_neighbour_are_left_alone(void **state) {
  fixture *f = *state;
  char part_dir[4300], other_state[4300];
  snprintf(part_dir, sizeof part_dir, "%s/%s-%d", f->cps, TOPIC, PART);
  snprintf(other_state, sizeof other_state, "%s/other-state", f->dir);
  mkdir(other_state, 0755);
  esr_checkpointer_opts other = {.state_dir = other_state, .cp_dir = f->cps, .keep = 3};
  esr_checkpointer *neighbour = NULL, *c = NULL;
  esr_error err = {0};
  assert_int_equal(esr_checkpointer_new(&other, &neighbour, &err), ESR_E_OK);
  make_leftovers(f, part_dir);
  esr_checkpointer_opts o = {.state_dir = f->state, .cp_dir = f->cps, .keep = 3};
  assert_int_equal(esr_checkpointer_new(&o, &c, &err), ESR_E_OK);
  assert_int_equal(count_prefixed(part_dir, ".tmp-"), 2);
  esr_checkpointer_free(c);
  esr_checkpointer_free(neighbour);
  assert_int_equal(esr_checkpointer_new(&o, &c, &err), ESR_E_OK);
  assert_int_equal(count_prefixed(part_dir, ".tmp-"), 0);
  esr_checkpointer_free(c);
}

/* A store that cannot work stops the start, naming the key and the fix. */
static void checkpointer_refuses_a_store_that_cannot_work(void **state) {
  fixture *f = *state;
  char url[4300];
  snprintf(url, sizeof url, "file://%s/not-mounted", f->dir);
  esr_checkpointer_opts o = {.state_dir = f->state, .cp_dir = f->cps, .keep = 3, .store_url = url};
  esr_checkpointer *c = NULL;
  esr_error err = {0};
  assert_int_equal(esr_checkpointer_new(&o, &c, &err), ESR_E_CONFIG);
  assert_null(c);
  assert_contains(err.msg, "checkpoint.store");
  assert_contains(err.msg, "create it");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(write_while_writer_commits, setup, teardown),
      cmocka_unit_test_setup_teardown(write_from_another_thread, setup, teardown),
      cmocka_unit_test_setup_teardown(manifest_fields, setup, teardown),
      cmocka_unit_test_setup_teardown(manifest_records_the_state_digest, setup, teardown),
      cmocka_unit_test(manifest_parse_refuses),
      cmocka_unit_test_setup_teardown(write_refuses_empty_and_foreign, setup, teardown),
      cmocka_unit_test_setup_teardown(write_cancelled_leaves_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(write_same_offset_keeps_existing, setup, teardown),
      cmocka_unit_test_setup_teardown(verify_catches_damage, setup, teardown),
      cmocka_unit_test_setup_teardown(crash_between_data_and_manifest, setup, teardown),
      cmocka_unit_test_setup_teardown(prune_keeps_k, setup, teardown),
      cmocka_unit_test_setup_teardown(restore_replaces_live_without_stale_wal, setup, teardown),
      cmocka_unit_test_setup_teardown(restore_keeps_old_aside, setup, teardown),
      cmocka_unit_test_setup_teardown(restore_refuses_damaged_copy, setup, teardown),
      cmocka_unit_test_setup_teardown(checkpointer_removes_leftovers_at_start, setup, teardown),
      cmocka_unit_test_setup_teardown(leftovers_of_a_live_neighbour_are_left_alone, setup, teardown),
      cmocka_unit_test_setup_teardown(checkpointer_refuses_a_store_that_cannot_work, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
