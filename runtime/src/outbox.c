/* outbox.c — the esr_outbox table: add in the batch, scan after commit, delete when acknowledged. */
#include "outbox.h"

#include <sqlite3.h>

esr_code esr_outbox_add(esr_store *s, esr_outbox_row *row, esr_error *err) {
  sqlite3_stmt *st = esr_store_host_stmt(s,
                                    "INSERT INTO esr_outbox(topic, key, value, src_offset, src_index, reason, error) "
                                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                                    err);
  if (!st) return err ? err->code : ESR_E_SQLITE;
  sqlite3_bind_text(st, 1, row->topic, -1, SQLITE_STATIC);
  if (row->key)
    sqlite3_bind_blob(st, 2, row->key, (int)row->key_len, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, 2);
  if (row->value) /* an empty value stays empty; no value (a tombstone) stays NULL */
    sqlite3_bind_blob(st, 3, row->value_len ? row->value : "", (int)row->value_len, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, 3);
  sqlite3_bind_int64(st, 4, row->src_offset);
  sqlite3_bind_int(st, 5, row->src_index);
  sqlite3_bind_text(st, 6, row->reason, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 7, row->error, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return esr_store_error(s, err, "adding an outbox row");
  row->seq = sqlite3_last_insert_rowid(esr_store_db(s));
  return ESR_E_OK;
}

esr_code esr_outbox_scan(esr_store *s, int64_t after, int limit, int (*fn)(void *arg, const esr_outbox_row *row),
                         void *arg, int64_t *last, esr_error *err) {
  sqlite3_stmt *st = esr_store_host_stmt(s,
                                    "SELECT seq, topic, key, value, src_offset, src_index, reason, error "
                                    "FROM esr_outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                                    err);
  if (!st) return err ? err->code : ESR_E_SQLITE;
  sqlite3_bind_int64(st, 1, after);
  sqlite3_bind_int(st, 2, limit);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    esr_outbox_row row = {
        .seq = sqlite3_column_int64(st, 0),
        .topic = (const char *)sqlite3_column_text(st, 1),
        .key = sqlite3_column_blob(st, 2),
        .key_len = (size_t)sqlite3_column_bytes(st, 2),
        .value = sqlite3_column_blob(st, 3),
        .value_len = (size_t)sqlite3_column_bytes(st, 3),
        .src_offset = sqlite3_column_int64(st, 4),
        .src_index = sqlite3_column_int(st, 5),
        .reason = (const char *)sqlite3_column_text(st, 6),
        .error = (const char *)sqlite3_column_text(st, 7),
    };
    /* SQLite returns NULL for an empty blob: an empty key or value is not a missing one. */
    if (sqlite3_column_type(st, 2) == SQLITE_NULL) row.key = NULL;
    else if (!row.key) row.key = "";
    if (sqlite3_column_type(st, 3) == SQLITE_NULL) row.value = NULL;
    else if (!row.value) row.value = "";
    *last = row.seq;
    if (fn(arg, &row)) {
      rc = SQLITE_DONE;
      break;
    }
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return esr_store_error(s, err, "reading the outbox");
  return ESR_E_OK;
}

esr_code esr_outbox_delete(esr_store *s, const int64_t *seqs, size_t n, esr_error *err) {
  sqlite3_stmt *st = esr_store_host_stmt(s, "DELETE FROM esr_outbox WHERE seq = ?1", err);
  if (!st) return err ? err->code : ESR_E_SQLITE;
  for (size_t i = 0; i < n; i++) {
    sqlite3_bind_int64(st, 1, seqs[i]);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return esr_store_error(s, err, "deleting an outbox row");
  }
  return ESR_E_OK;
}

esr_code esr_outbox_count(esr_store *s, int64_t *count, esr_error *err) {
  sqlite3_stmt *st = esr_store_host_stmt(s, "SELECT count(*) FROM esr_outbox", err);
  if (!st) return err ? err->code : ESR_E_SQLITE;
  int rc = sqlite3_step(st);
  *count = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  sqlite3_reset(st);
  if (rc != SQLITE_ROW) return esr_store_error(s, err, "counting the outbox");
  return ESR_E_OK;
}

esr_code esr_outbox_first_src(esr_store *s, int64_t after, int64_t *src, esr_error *err) {
  sqlite3_stmt *st =
      esr_store_host_stmt(s, "SELECT src_offset FROM esr_outbox WHERE seq > ?1 ORDER BY seq LIMIT 1", err);
  if (!st) return err ? err->code : ESR_E_SQLITE;
  sqlite3_bind_int64(st, 1, after);
  int rc = sqlite3_step(st);
  *src = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
  sqlite3_reset(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return esr_store_error(s, err, "reading the outbox");
  return ESR_E_OK;
}

esr_code esr_outbox_topics(esr_store *s, int64_t after, int (*fn)(void *arg, const char *topic), void *arg,
                           esr_error *err) {
  sqlite3_stmt *st = esr_store_host_stmt(s, "SELECT DISTINCT topic FROM esr_outbox WHERE seq > ?1", err);
  if (!st) return err ? err->code : ESR_E_SQLITE;
  sqlite3_bind_int64(st, 1, after);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *topic = (const char *)sqlite3_column_text(st, 0);
    if (topic && fn(arg, topic)) {
      rc = SQLITE_DONE;
      break;
    }
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return esr_store_error(s, err, "reading the outbox");
  return ESR_E_OK;
}
