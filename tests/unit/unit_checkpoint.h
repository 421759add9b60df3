/* unit_checkpoint.h — partition databases for the checkpoint tests (header-only, include after cmocka.h): a real
 * esr_store with a ledger-like `entries` table holding one row per applied event, committed in batches together with
 * the position, so that a consistent copy always has exactly next_offset rows. */
#ifndef ESR_UNIT_CHECKPOINT_H
#define ESR_UNIT_CHECKPOINT_H

#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "digest.h"
#include "store.h"

typedef struct cpt_part {
  esr_store *s;
  esr_hasher *h;
  esr_position pos;
} cpt_part;

static inline void cpt_exec(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) fail_msg("%s: %s", sql, msg);
}

/* Opens (creating) the partition database of topic/partition in `dir`, with the ledger tables and a handler row. */
static inline void cpt_open(cpt_part *p, const char *dir, const char *topic, int32_t partition) {
  esr_error err = {0};
  esr_store_opts opts = {.cache_mb = 2};
  memset(p, 0, sizeof *p);
  if (esr_store_open(dir, topic, partition, &opts, &p->s, &err) != ESR_E_OK) fail_msg("esr_store_open: %s", err.msg);
  if (esr_hasher_new(&p->h, &err) != ESR_E_OK) fail_msg("esr_hasher_new: %s", err.msg);
  p->pos = *esr_store_position(p->s);
  cpt_exec(esr_store_db(p->s), "CREATE TABLE IF NOT EXISTS entries(off INTEGER PRIMARY KEY, account TEXT NOT NULL, "
                               "amount INTEGER NOT NULL)");
  if (esr_store_begin(p->s, &err) != ESR_E_OK ||
      esr_store_set_handler_version(p->s, "ledger", 2, "1.4.0", &err) != ESR_E_OK ||
      esr_store_commit(p->s, &p->pos, &err) != ESR_E_OK)
    fail_msg("handler version: %s", err.msg);
}

/* Applies `n` events in one batch: one entries row each, the position moved past them. */
static inline void cpt_commit(cpt_part *p, int n) {
  esr_error err = {0};
  if (esr_store_begin(p->s, &err) != ESR_E_OK) fail_msg("begin: %s", err.msg);
  sqlite3_stmt *st = NULL;
  sqlite3 *db = esr_store_db(p->s);
  if (sqlite3_prepare_v2(db, "INSERT INTO entries(off, account, amount) VALUES (?1, ?2, ?3)", -1, &st, NULL) !=
      SQLITE_OK)
    fail_msg("prepare: %s", sqlite3_errmsg(db));
  for (int i = 0; i < n; i++) {
    int64_t off = p->pos.next_offset;
    char key[32], value[64];
    snprintf(key, sizeof key, "a%lld", (long long)(off % 97));
    snprintf(value, sizeof value, "{\"amount\":%lld}", (long long)(off * 7 % 1000));
    sqlite3_bind_int64(st, 1, off);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, off * 7 % 1000);
    if (sqlite3_step(st) != SQLITE_DONE) fail_msg("insert: %s", sqlite3_errmsg(db));
    sqlite3_reset(st);
    esr_digest_chain(p->h, p->pos.log_digest, off, key, strlen(key), value, strlen(value));
    p->pos.next_offset++;
    p->pos.applied++;
  }
  sqlite3_finalize(st);
  if (esr_store_commit(p->s, &p->pos, &err) != ESR_E_OK) fail_msg("commit: %s", err.msg);
}

static inline void cpt_close(cpt_part *p) {
  esr_store_close(p->s);
  esr_hasher_free(p->h);
  memset(p, 0, sizeof *p);
}

/* One integer from a database file opened read-only; -1 when the query fails. */
static inline int64_t cpt_query(const char *path, const char *sql) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int64_t v = -1;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
      sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

/* The consistency of a copy: its rows are exactly the events [0, next_offset). */
static inline void cpt_assert_consistent(const char *path, int64_t next_offset) {
  assert_int_equal(cpt_query(path, "SELECT next_offset FROM esr_offsets"), next_offset);
  assert_int_equal(cpt_query(path, "SELECT count(*) FROM entries"), next_offset);
  assert_int_equal(cpt_query(path, "SELECT coalesce(max(off) + 1, 0) FROM entries"), next_offset);
}

/* Flips one byte of a file at `offset`. */
static inline void cpt_flip_byte(const char *path, long offset) {
  FILE *f = fopen(path, "r+b");
  assert_non_null(f);
  assert_int_equal(fseek(f, offset, SEEK_SET), 0);
  int c = fgetc(f);
  assert_int_equal(fseek(f, offset, SEEK_SET), 0);
  fputc(c ^ 0x5a, f);
  assert_int_equal(fclose(f), 0);
}

static inline void cpt_truncate(const char *path, long size) { assert_int_equal(truncate(path, size), 0); }

/* The data or manifest path of checkpoint `off` under `root` (a local directory or a file:// store). */
static inline const char *cpt_path(char *buf, size_t cap, const char *root, const char *topic, int32_t partition,
                                   int64_t off, const char *ext) {
  assert_int_equal(esr_checkpoint_path(buf, cap, root, topic, partition, off, ext), 0);
  return buf;
}

#endif
