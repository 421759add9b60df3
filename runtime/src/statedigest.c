/* statedigest.c — the canonical SHA-256 of a partition's state (statetables.h says what is hashed, in which order). */
#include "statedigest.h"

#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "statetables.h"

#define FLUSH_AT (64 * 1024)

typedef struct hasher {
  EVP_MD_CTX *ctx;
  esr_st_buf buf;
} hasher;

static void flush(hasher *h) {
  if (h->buf.n) EVP_DigestUpdate(h->ctx, h->buf.p, h->buf.n);
  h->buf.n = 0;
}

static void be64(uint8_t *out, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8) out[i] = (uint8_t)v;
}

/* One row's encoding ("R" and each value in select order) appended to b. */
static int encode_row(esr_st_buf *b, sqlite3_stmt *st, int n_cols) {
  if (esr_st_buf_put(b, "R", 1)) return -1;
  for (int i = 0; i < n_cols; i++)
    if (esr_st_encode(b, st, i)) return -1;
  return 0;
}

typedef struct span {
  size_t off, len;
} span;

static int span_cmp(const void *x, const void *y, void *arg) {
  const uint8_t *base = arg;
  const span *a = x, *b = y;
  size_t n = a->len < b->len ? a->len : b->len;
  int c = memcmp(base + a->off, base + b->off, n);
  if (c) return c;
  return a->len < b->len ? -1 : a->len > b->len;
}

static esr_code hash_table(sqlite3 *db, hasher *h, const esr_st_table *t, esr_error *err) {
  sqlite3_stmt *st = NULL;
  esr_st_buf rows = {0};
  span *spans = NULL;
  size_t n_spans = 0, cap_spans = 0;
  esr_code rc = ESR_E_OK;
  int64_t count = 0;
  if (esr_st_encode_table(&h->buf, t)) goto oom;
  if (sqlite3_prepare_v2(db, t->select_sql, -1, &st, NULL) != SQLITE_OK) {
    rc = esr_st_error(db, err, "reading a table");
    goto done;
  }
  int step;
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    count++;
    if (t->n_pk) {
      if (encode_row(&h->buf, st, t->n_cols)) goto oom;
      if (h->buf.n >= FLUSH_AT) flush(h);
      continue;
    }
    /* No declared key: the rows' order is the page layout's; sort their encodings instead. */
    size_t at = rows.n;
    if (encode_row(&rows, st, t->n_cols)) goto oom;
    if (n_spans == cap_spans) {
      cap_spans = cap_spans ? cap_spans * 2 : 256;
      span *g = realloc(spans, cap_spans * sizeof *g);
      if (!g) goto oom;
      spans = g;
    }
    spans[n_spans++] = (span){at, rows.n - at};
  }
  if (step != SQLITE_DONE) {
    rc = esr_st_error(db, err, "reading a table");
    goto done;
  }
  if (n_spans) {
    qsort_r(spans, n_spans, sizeof *spans, span_cmp, rows.p);
    for (size_t i = 0; i < n_spans; i++) {
      if (esr_st_buf_put(&h->buf, rows.p + spans[i].off, spans[i].len)) goto oom;
      if (h->buf.n >= FLUSH_AT) flush(h);
    }
  }
  uint8_t end[9] = {'E'};
  be64(end + 1, (uint64_t)count);
  if (esr_st_buf_put(&h->buf, end, sizeof end)) goto oom;
  goto done;
oom:
  rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory hashing table %s", t->name);
done:
  sqlite3_finalize(st);
  esr_st_buf_free(&rows);
  free(spans);
  return rc;
}

esr_code esr_state_digest(sqlite3 *db, uint8_t out[32], esr_error *err) {
  esr_st_tables tables;
  esr_code rc = esr_st_tables_read(db, &tables, err);
  if (rc != ESR_E_OK) return rc;
  hasher h = {EVP_MD_CTX_new(), {0}};
  if (!h.ctx || !EVP_DigestInit_ex(h.ctx, EVP_sha256(), NULL)) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "cannot set up SHA-256 (libcrypto)");
    goto done;
  }
  static const char magic[] = "esr-state-digest-1\n";
  EVP_DigestUpdate(h.ctx, magic, sizeof magic - 1);
  for (size_t i = 0; i < tables.n && rc == ESR_E_OK; i++) rc = hash_table(db, &h, &tables.v[i], err);
  if (rc == ESR_E_OK) {
    flush(&h);
    unsigned int n = 32;
    EVP_DigestFinal_ex(h.ctx, out, &n);
  }
done:
  EVP_MD_CTX_free(h.ctx);
  esr_st_buf_free(&h.buf);
  esr_st_tables_free(&tables);
  return rc;
}

/* esr_offsets' row, if the table and a row exist. */
static esr_code read_position(sqlite3 *db, esr_state_summary *out, esr_error *err) {
  sqlite3_stmt *st = NULL;
  /* No such table: a database that never was a partition's; its state can still be digested. */
  if (sqlite3_prepare_v2(db, "SELECT 1 FROM main.sqlite_schema WHERE type = 'table' AND name = 'esr_offsets'", -1, &st,
                         NULL) != SQLITE_OK)
    return esr_st_error(db, err, "reading the schema");
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  st = NULL;
  if (rc == SQLITE_DONE) return ESR_E_OK;
  if (rc != SQLITE_ROW) return esr_st_error(db, err, "reading the schema");
  if (sqlite3_prepare_v2(db,
                         "SELECT topic, partition, next_offset, log_digest, applied_count, dead_count "
                         "FROM main.esr_offsets",
                         -1, &st, NULL) != SQLITE_OK)
    return esr_st_error(db, err, "reading esr_offsets");
  int rows = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (++rows > 1) break;
    const char *topic = (const char *)sqlite3_column_text(st, 0);
    snprintf(out->topic, sizeof out->topic, "%s", topic ? topic : "");
    out->partition = sqlite3_column_int(st, 1);
    out->next_offset = sqlite3_column_int64(st, 2);
    if (sqlite3_column_bytes(st, 3) == 32) memcpy(out->log_digest, sqlite3_column_blob(st, 3), 32);
    out->applied = sqlite3_column_int64(st, 4);
    out->dead = sqlite3_column_int64(st, 5);
    out->has_position = 1;
  }
  esr_code code = ESR_E_OK;
  if (rows > 1)
    code = esr_error_set(err, ESR_E_CORRUPT, 0, "%s: esr_offsets holds more than one position",
                         sqlite3_db_filename(db, "main"));
  else if (rc != SQLITE_DONE && rc != SQLITE_ROW)
    code = esr_st_error(db, err, "reading esr_offsets");
  sqlite3_finalize(st);
  return code;
}

esr_code esr_state_summarize(sqlite3 *db, esr_state_summary *out, esr_error *err) {
  memset(out, 0, sizeof *out);
  int own = sqlite3_get_autocommit(db); /* in the caller's transaction, or in one of its own */
  if (own && sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) return esr_st_error(db, err, "BEGIN");
  esr_code rc = read_position(db, out, err);
  if (rc == ESR_E_OK) rc = esr_state_digest(db, out->state_digest, err);
  if (own) sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  return rc;
}

esr_code esr_state_summarize_file(const char *path, esr_state_summary *out, esr_error *err) {
  sqlite3 *db = NULL;
  esr_code rc = esr_st_open_ro(path, &db, err);
  if (rc == ESR_E_OK) rc = esr_state_summarize(db, out, err);
  sqlite3_close(db);
  return rc;
}
