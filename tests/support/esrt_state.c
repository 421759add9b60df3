/* esrt_state.c — state directory readers, the caught-up wait, and the oracle comparisons. */
#include "esrt_state.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *dup_text(const unsigned char *s) {
  if (!s) s = (const unsigned char *)"";
  char *d = strdup((const char *)s);
  if (!d) abort();
  return d;
}

static void db_path(char *buf, size_t cap, const char *dir, const char *topic, int32_t partition) {
  snprintf(buf, cap, "%s/%s-%d.db", dir, topic, (int)partition);
}

static int table_exists(sqlite3 *db, const char *name) {
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", -1, &st, NULL) !=
      SQLITE_OK)
    return -1;
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Reads position and outbox count (and the accounts into st when given) inside one read transaction. */
static int read_db(const char *dir, const char *topic, int32_t partition, esrt_part_state *ps, esrt_state *st) {
  memset(ps, 0, sizeof *ps);
  char path[2048];
  db_path(path, sizeof path, dir, topic, partition);
  if (access(path, F_OK) != 0) return 0;
  sqlite3 *db = NULL;
  int rc = -1;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
    fprintf(stderr, "esrt: open %s: %s\n", path, db ? sqlite3_errmsg(db) : "out of memory");
    goto out;
  }
  sqlite3_busy_timeout(db, 5000);
  if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) goto sql_error;
  int have = table_exists(db, "esr_offsets");
  if (have < 0) goto sql_error;
  if (!have) {
    rc = 0; /* being created */
    goto out;
  }
  sqlite3_stmt *q;
  if (sqlite3_prepare_v2(db,
                         "SELECT next_offset, applied_count, dead_count, log_digest FROM esr_offsets "
                         "WHERE topic = ?1 AND partition = ?2",
                         -1, &q, NULL) != SQLITE_OK)
    goto sql_error;
  sqlite3_bind_text(q, 1, topic, -1, SQLITE_STATIC);
  sqlite3_bind_int(q, 2, partition);
  int step = sqlite3_step(q);
  if (step == SQLITE_ROW) {
    ps->present = 1;
    ps->next_offset = sqlite3_column_int64(q, 0);
    ps->applied = sqlite3_column_int64(q, 1);
    ps->dead = sqlite3_column_int64(q, 2);
    if (sqlite3_column_bytes(q, 3) == 32) memcpy(ps->digest, sqlite3_column_blob(q, 3), 32);
  }
  sqlite3_finalize(q);
  if (step != SQLITE_ROW && step != SQLITE_DONE) goto sql_error;
  if (table_exists(db, "esr_outbox") == 1) {
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM esr_outbox", -1, &q, NULL) != SQLITE_OK) goto sql_error;
    if (sqlite3_step(q) == SQLITE_ROW) ps->outbox = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
  }
  if (st && table_exists(db, "accounts") == 1) {
    if (sqlite3_prepare_v2(db, "SELECT id, owner, balance, typeof(balance) FROM accounts", -1, &q, NULL) != SQLITE_OK)
      goto sql_error;
    while ((step = sqlite3_step(q)) == SQLITE_ROW) {
      if (st->n_accounts == st->cap_accounts) {
        st->cap_accounts = st->cap_accounts ? st->cap_accounts * 2 : 1024;
        st->accounts = realloc(st->accounts, st->cap_accounts * sizeof *st->accounts);
        if (!st->accounts) abort();
      }
      esrt_db_account *a = &st->accounts[st->n_accounts++];
      a->partition = partition;
      a->id = dup_text(sqlite3_column_text(q, 0));
      a->owner = dup_text(sqlite3_column_text(q, 1));
      a->balance = sqlite3_column_int64(q, 2);
      if (strcmp((const char *)sqlite3_column_text(q, 3), "integer") != 0) a->balance = INT64_MIN; /* not an integer */
    }
    sqlite3_finalize(q);
    if (step != SQLITE_DONE) goto sql_error;
  }
  rc = 0;
  goto out;
sql_error:
  fprintf(stderr, "esrt: reading %s: %s\n", path, sqlite3_errmsg(db));
out:
  if (db) {
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
  }
  return rc;
}

int esrt_read_position(const char *dir, const char *topic, int32_t partition, esrt_part_state *out) {
  return read_db(dir, topic, partition, out, NULL);
}

static int cmp_db_account(const void *a, const void *b) {
  const esrt_db_account *x = a, *y = b;
  if (x->partition != y->partition) return x->partition < y->partition ? -1 : 1;
  return strcmp(x->id, y->id);
}

int esrt_state_read(esrt_state *st, const char *dir, const char *topic, int partitions, int accounts) {
  if (!st->parts) {
    st->partitions = partitions;
    st->parts = calloc((size_t)partitions, sizeof *st->parts);
    if (!st->parts) abort();
  }
  for (int p = 0; p < partitions; p++) {
    esrt_part_state ps;
    if (read_db(dir, topic, p, &ps, accounts ? st : NULL) != 0) return -1;
    if (ps.present) {
      if (st->parts[p].present) {
        fprintf(stderr, "esrt: %s[%d] has a database in more than one state directory\n", topic, p);
        return -1;
      }
      st->parts[p] = ps;
    }
  }
  qsort(st->accounts, st->n_accounts, sizeof *st->accounts, cmp_db_account);
  return 0;
}

int esrt_state_read_one(esrt_state *st, const char *dir, const char *topic, int partitions, int32_t partition) {
  if (!st->parts) {
    st->partitions = partitions;
    st->parts = calloc((size_t)partitions, sizeof *st->parts);
    if (!st->parts) abort();
  }
  if (partition < 0 || partition >= st->partitions || st->parts[partition].present) {
    fprintf(stderr, "esrt: %s[%d] read twice into one state\n", topic, (int)partition);
    return -1;
  }
  esrt_part_state ps;
  if (read_db(dir, topic, partition, &ps, st) != 0) return -1;
  st->parts[partition] = ps;
  qsort(st->accounts, st->n_accounts, sizeof *st->accounts, cmp_db_account);
  return 0;
}

void esrt_state_free(esrt_state *st) {
  for (size_t i = 0; i < st->n_accounts; i++) {
    free(st->accounts[i].id);
    free(st->accounts[i].owner);
  }
  free(st->accounts);
  free(st->parts);
  memset(st, 0, sizeof *st);
}

int esrt_wait_caught_up(rd_kafka_t *rk, const char *topic, int partitions, const char *const *dirs, size_t n_dirs,
                        int timeout_ms) {
  int64_t deadline = esrt_now_ms() + timeout_ms;
  int64_t *hi = calloc((size_t)partitions, sizeof *hi);
  esrt_part_state *ps = calloc((size_t)partitions, sizeof *ps);
  if (!hi || !ps) abort();
  int rc = -1;
  for (;;) {
    int done = 1, errors = 0;
    for (int p = 0; p < partitions; p++) {
      int64_t lo;
      if (esrt_watermarks(rk, topic, p, &lo, &hi[p]) != 0) {
        errors++;
        done = 0;
        continue;
      }
      memset(&ps[p], 0, sizeof ps[p]);
      for (size_t d = 0; d < n_dirs && !ps[p].present; d++)
        if (esrt_read_position(dirs[d], topic, p, &ps[p]) != 0) errors++;
      if (ps[p].next_offset != hi[p] || ps[p].outbox != 0) done = 0;
    }
    if (done && !errors) {
      rc = 0;
      break;
    }
    if (esrt_now_ms() >= deadline) {
      fprintf(stderr, "esrt: not caught up after %d ms:\n", timeout_ms);
      for (int p = 0; p < partitions; p++)
        fprintf(stderr, "  %s[%d]: database %s, next_offset %" PRId64 " of high watermark %" PRId64
                        ", %" PRId64 " outbox rows\n",
                topic, p, ps[p].present ? "present" : "absent", ps[p].next_offset, hi[p], ps[p].outbox);
      break;
    }
    esrt_sleep_ms(10);
  }
  free(hi);
  free(ps);
  return rc;
}

/* ---------------------------------------------------------------- comparisons */

#define REPORT(...)                                  \
  do {                                               \
    if (out && (int)diffs < max_report) {            \
      fprintf(out, "  DIFF: " __VA_ARGS__);          \
      fputc('\n', out);                              \
    }                                                \
    diffs++;                                         \
  } while (0)

static void hex(const uint8_t *d, char out[65]) {
  for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

size_t esrt_compare_state(esrt_oracle *o, const esrt_state *st, FILE *out, int max_report) {
  size_t diffs = 0, n_exp;
  const esrt_oracle_account *exp = esrt_oracle_accounts(o, &n_exp);
  /* both sides are sorted by (partition, id): a merge walk */
  size_t i = 0, j = 0;
  while (i < n_exp || j < st->n_accounts) {
    const esrt_oracle_account *e = i < n_exp ? &exp[i] : NULL;
    const esrt_db_account *a = j < st->n_accounts ? &st->accounts[j] : NULL;
    int c = !e ? 1 : !a ? -1 : e->partition != a->partition ? (e->partition < a->partition ? -1 : 1) : strcmp(e->id, a->id);
    if (c < 0) {
      REPORT("partition %d account %s: expected balance %" PRId64 " (owner '%s'), actual: missing from the state",
             (int)e->partition, e->id, e->balance, e->owner);
      i++;
    } else if (c > 0) {
      REPORT("partition %d account %s: expected: no such account, actual balance %" PRId64 " (owner '%s')",
             (int)a->partition, a->id, a->balance, a->owner);
      j++;
    } else {
      if (e->balance != a->balance)
        REPORT("partition %d account %s: expected balance %" PRId64 ", actual %" PRId64 "%s", (int)e->partition,
               e->id, e->balance, a->balance, a->balance == INT64_MIN ? " (not an INTEGER in SQLite)" : "");
      if (strcmp(e->owner, a->owner) != 0)
        REPORT("partition %d account %s: expected owner '%s', actual '%s'", (int)e->partition, e->id, e->owner,
               a->owner);
      i++;
      j++;
    }
  }
  int parts = esrt_oracle_partitions(o);
  for (int p = 0; p < parts && p < st->partitions; p++) {
    const esrt_oracle_part *op = esrt_oracle_part_of(o, p);
    const esrt_part_state *ps = &st->parts[p];
    if (!ps->present) {
      if (op->next_offset != 0) REPORT("partition %d: no database, expected next_offset %" PRId64, p, op->next_offset);
      continue;
    }
    if (ps->next_offset != op->next_offset)
      REPORT("partition %d: expected next_offset %" PRId64 ", actual %" PRId64, p, op->next_offset, ps->next_offset);
    if (ps->applied != op->applied)
      REPORT("partition %d: expected applied_count %" PRId64 ", actual %" PRId64, p, op->applied, ps->applied);
    if (ps->dead != op->dead)
      REPORT("partition %d: expected dead_count %" PRId64 ", actual %" PRId64, p, op->dead, ps->dead);
    if (ps->next_offset == op->next_offset && memcmp(ps->digest, op->digest, 32) != 0) {
      char a[65], b[65];
      hex(op->digest, a);
      hex(ps->digest, b);
      REPORT("partition %d: log digest at offset %" PRId64 ": expected %s, actual %s", p, op->next_offset, a, b);
    }
    if (ps->outbox != 0) REPORT("partition %d: %" PRId64 " outbox rows not published", p, ps->outbox);
  }
  return diffs;
}

const esrt_record *esrt_records_find(const esrt_records *recs, int32_t partition, int64_t offset) {
  size_t lo = 0, hi = recs->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    const esrt_record *r = &recs->v[mid];
    if (r->partition < partition || (r->partition == partition && r->offset < offset))
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo < recs->n && recs->v[lo].partition == partition && recs->v[lo].offset == offset) return &recs->v[lo];
  return NULL;
}

typedef struct seen {
  int32_t partition;
  int64_t offset;
  const char *reason; /* header value as received */
} seen;

static int cmp_seen(const void *a, const void *b) {
  const seen *x = a, *y = b;
  if (x->partition != y->partition) return x->partition < y->partition ? -1 : 1;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int same_bytes(const char *a, size_t alen, const char *b, size_t blen) {
  return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

size_t esrt_compare_dlq(const esrt_oracle *o, const char *src_topic, const esrt_records *source,
                        const esrt_records *dlq, esrt_dlq_summary *sum, FILE *out, int max_report) {
  size_t diffs = 0;
  seen *s = calloc(dlq->n ? dlq->n : 1, sizeof *s);
  if (!s) abort();
  size_t n = 0;
  for (size_t i = 0; i < dlq->n; i++) {
    const esrt_record *r = &dlq->v[i];
    const char *src = esrt_record_header(r, "esr-source"), *reason = esrt_record_header(r, "esr-reason");
    const char *h_topic = esrt_record_header(r, "esr-topic"), *h_part = esrt_record_header(r, "esr-partition");
    const char *h_off = esrt_record_header(r, "esr-offset"), *h_err = esrt_record_header(r, "esr-error");
    char topic[256];
    int part, idx;
    long long off;
    if (!src || sscanf(src, "%255[^/]/%d/%lld/%d", topic, &part, &off, &idx) != 4) {
      REPORT("dead letter at DLQ offset %d/%" PRId64 ": esr-source header missing or malformed ('%s')",
             (int)r->partition, r->offset, src ? src : "(none)");
      continue;
    }
    if (strcmp(topic, src_topic) != 0 || idx != 0) {
      REPORT("dead letter %s: expected source topic %s and index 0", src, src_topic);
      continue;
    }
    char want[32];
    if (!h_topic || strcmp(h_topic, src_topic) != 0) REPORT("dead letter %s: esr-topic is '%s'", src, h_topic ? h_topic : "(none)");
    snprintf(want, sizeof want, "%d", part);
    if (!h_part || strcmp(h_part, want) != 0) REPORT("dead letter %s: esr-partition is '%s'", src, h_part ? h_part : "(none)");
    snprintf(want, sizeof want, "%lld", off);
    if (!h_off || strcmp(h_off, want) != 0) REPORT("dead letter %s: esr-offset is '%s'", src, h_off ? h_off : "(none)");
    if (!h_err || !*h_err) REPORT("dead letter %s: esr-error is missing or empty", src);
    const char *expect = esrt_oracle_reason(o, part, off);
    if (!expect)
      REPORT("dead letter %s (reason %s): expected: no dead letter (the oracle applies that event)", src,
             reason ? reason : "(none)");
    else if (!reason || strcmp(reason, expect) != 0)
      REPORT("dead letter %s: expected esr-reason %s, actual %s", src, expect, reason ? reason : "(none)");
    const esrt_record *orig = esrt_records_find(source, part, off);
    if (!orig) {
      REPORT("dead letter %s: no such source record", src);
    } else {
      if ((orig->key == NULL) != (r->key == NULL) || !same_bytes(orig->key, orig->key_len, r->key, r->key_len))
        REPORT("dead letter %s: key differs from the source record's (%zu vs %zu bytes)", src, r->key_len,
               orig->key_len);
      /* An empty value may come back as a null one (zero bytes either way); the bytes must match. */
      if (!same_bytes(orig->value, orig->value_len, r->value, r->value_len))
        REPORT("dead letter %s: value differs from the source record's (%zu vs %zu bytes)", src, r->value_len,
               orig->value_len);
    }
    s[n++] = (seen){part, off, reason};
  }
  qsort(s, n, sizeof *s, cmp_seen);
  size_t distinct = 0, dups = 0;
  for (size_t i = 0; i < n; i++) {
    if (i > 0 && s[i].partition == s[i - 1].partition && s[i].offset == s[i - 1].offset) {
      dups++;
      if ((s[i].reason == NULL) != (s[i - 1].reason == NULL) ||
          (s[i].reason && strcmp(s[i].reason, s[i - 1].reason) != 0))
        REPORT("dead letter %s/%d/%" PRId64 " published twice with different reasons", src_topic, (int)s[i].partition,
               s[i].offset);
      continue;
    }
    s[distinct++] = s[i];
  }
  /* the expected set, in the same order: a merge walk */
  size_t n_exp = esrt_oracle_dead_count(o), i = 0, j = 0;
  while (i < n_exp || j < distinct) {
    int32_t ep = -1;
    int64_t eo = -1;
    const char *er = NULL;
    if (i < n_exp) esrt_oracle_dead_at(o, i, &ep, &eo, &er);
    int c = i >= n_exp ? 1 : j >= distinct ? -1 : ep != s[j].partition ? (ep < s[j].partition ? -1 : 1)
                                                : (eo < s[j].offset ? -1 : eo > s[j].offset);
    if (c < 0) {
      REPORT("source %s/%d/%" PRId64 ": expected a dead letter (%s), actual: none in the DLQ", src_topic, (int)ep, eo,
             er);
      i++;
    } else if (c > 0) {
      j++; /* already reported above as unexpected */
    } else {
      i++;
      j++;
    }
  }
  if (sum) {
    sum->messages = dlq->n;
    sum->distinct = distinct;
    sum->duplicates = dups;
  }
  free(s);
  return diffs;
}

size_t esrt_compare_emits(const esrt_oracle *o, const char *src_topic, const esrt_records *source,
                          const esrt_records *out, esrt_dlq_summary *sum, FILE *rep, int max_report) {
  size_t diffs = 0;
  seen *s = calloc(out->n ? out->n : 1, sizeof *s);
  if (!s) abort();
  size_t n = 0;
  for (size_t i = 0; i < out->n; i++) {
    const esrt_record *r = &out->v[i];
    const char *src = esrt_record_header(r, "esr-source");
    char topic[256];
    int part, idx;
    long long off;
#define REPORT_E(...)                                                                                                  \
  do {                                                                                                                 \
    if (rep && (int)diffs < max_report) {                                                                              \
      fprintf(rep, "  DIFF: " __VA_ARGS__);                                                                            \
      fputc('\n', rep);                                                                                                \
    }                                                                                                                  \
    diffs++;                                                                                                           \
  } while (0)
    if (!src || sscanf(src, "%255[^/]/%d/%lld/%d", topic, &part, &off, &idx) != 4) {
      REPORT_E("emitted event at %d/%" PRId64 ": esr-source header missing or malformed ('%s')", (int)r->partition,
               r->offset, src ? src : "(none)");
      continue;
    }
    if (strcmp(topic, src_topic) != 0 || idx != 1) {
      REPORT_E("emitted event %s: expected source topic %s and index 1", src, src_topic);
      continue;
    }
    if (part < 0 || part >= esrt_oracle_partitions(o) || off < 0 || off >= esrt_oracle_part_of(o, part)->next_offset) {
      REPORT_E("emitted event %s: no such source event", src);
      continue;
    }
    const char *reason = esrt_oracle_reason(o, part, off);
    if (reason) REPORT_E("emitted event %s: the oracle dead-letters that event (%s): nothing may be emitted", src, reason);
    char want[64];
    int wn = snprintf(want, sizeof want, "{\"offset\":%lld}", off);
    if (!r->value || r->value_len != (size_t)wn || memcmp(r->value, want, (size_t)wn) != 0)
      REPORT_E("emitted event %s: value '%.*s', expected '%s'", src, (int)(r->value_len > 60 ? 60 : r->value_len),
               r->value ? r->value : "", want);
    const esrt_record *orig = esrt_records_find(source, part, off);
    if (orig && ((orig->key == NULL) != (r->key == NULL) || !same_bytes(orig->key, orig->key_len, r->key, r->key_len)))
      REPORT_E("emitted event %s: key differs from the source record's", src);
    s[n++] = (seen){part, off, NULL};
  }
  qsort(s, n, sizeof *s, cmp_seen);
  size_t distinct = 0, dups = 0;
  for (size_t i = 0; i < n; i++) {
    if (i > 0 && s[i].partition == s[i - 1].partition && s[i].offset == s[i - 1].offset) {
      dups++;
      continue;
    }
    s[distinct++] = s[i];
  }
  /* every applied event has its emit: a walk over each partition's offsets */
  size_t j = 0;
  for (int p = 0; p < esrt_oracle_partitions(o); p++) {
    const esrt_oracle_part *op = esrt_oracle_part_of(o, p);
    for (int64_t off = 0; off < op->next_offset; off++) {
      if (esrt_oracle_reason(o, p, off)) continue;
      while (j < distinct && (s[j].partition < p || (s[j].partition == p && s[j].offset < off))) j++;
      if (j < distinct && s[j].partition == p && s[j].offset == off) continue;
      REPORT_E("source %s/%d/%" PRId64 ": applied, but no event emitted for it", src_topic, p, off);
    }
  }
#undef REPORT_E
  if (sum) {
    sum->messages = out->n;
    sum->distinct = distinct;
    sum->duplicates = dups;
  }
  free(s);
  return diffs;
}

int esrt_outbox_keys(const char *dir, const char *topic, int32_t partition, void (*fn)(void *arg, const char *key),
                     void *arg) {
  char path[2048];
  db_path(path, sizeof path, dir, topic, partition);
  if (access(path, F_OK) != 0) return 0;
  sqlite3 *db = NULL;
  int rc = -1;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) goto out;
  sqlite3_busy_timeout(db, 5000);
  int have = table_exists(db, "esr_outbox");
  if (have <= 0) {
    rc = have == 0 ? 0 : -1;
    goto out;
  }
  sqlite3_stmt *q;
  if (sqlite3_prepare_v2(db, "SELECT src_offset, src_index FROM esr_outbox", -1, &q, NULL) != SQLITE_OK) goto out;
  int step;
  while ((step = sqlite3_step(q)) == SQLITE_ROW) {
    char key[512];
    snprintf(key, sizeof key, "%s/%d/%lld/%d", topic, (int)partition, (long long)sqlite3_column_int64(q, 0),
             sqlite3_column_int(q, 1));
    fn(arg, key);
  }
  sqlite3_finalize(q);
  rc = step == SQLITE_DONE ? 0 : -1;
out:
  if (rc != 0) fprintf(stderr, "esrt: reading the outbox of %s: %s\n", path, db ? sqlite3_errmsg(db) : "cannot open");
  if (db) sqlite3_close(db);
  return rc;
}

int esrt_oracle_feed_records(esrt_oracle *o, const esrt_records *recs) {
  for (size_t i = 0; i < recs->n; i++) {
    const esrt_record *r = &recs->v[i];
    const esrt_oracle_part *op = esrt_oracle_part_of(o, r->partition);
    if (op && op->next_offset != r->offset) {
      fprintf(stderr, "esrt: the oracle needs every partition from offset 0 without holes; got partition %d offset %" PRId64
                      " where %" PRId64 " was expected\n",
              (int)r->partition, r->offset, op->next_offset);
      return -1;
    }
    const char *why = esrt_oracle_feed(o, r->partition, r->offset, r->key, r->key_len, r->value, r->value_len);
    if (why && strcmp(why, "order") == 0) {
      fprintf(stderr, "esrt: the oracle needs every partition from offset 0 without holes; got partition %d offset %" PRId64
                      " after %" PRId64 "\n",
              (int)r->partition, r->offset, esrt_oracle_part_of(o, r->partition) ? esrt_oracle_part_of(o, r->partition)->next_offset : -1);
      return -1;
    }
  }
  return 0;
}

esrt_oracle *esrt_ledger_oracle_from_log(const char *bootstrap, const char *topic, int partitions,
                                         const esrt_event *ev, size_t n, esrt_records *src) {
  if (esrt_consume_all(bootstrap, topic, src, 120000) != 0) return NULL;
  size_t problems = 0;
  if (src->n != n) {
    fprintf(stderr, "esrt: %s holds %zu records, %zu were produced\n", topic, src->n, n);
    problems++;
  }
  for (size_t i = 0; i < n && problems < 10; i++) {
    const esrt_record *r = esrt_records_find(src, ev[i].partition, ev[i].offset);
    if (!r || !r->key || r->key_len != ev[i].key_len || memcmp(r->key, ev[i].key, r->key_len) != 0 ||
        r->value_len != ev[i].value_len || (r->value_len && memcmp(r->value, ev[i].value, r->value_len) != 0)) {
      fprintf(stderr, "esrt: event %zu (%s) is not in %s[%d] at offset %" PRId64 " as produced\n", i, ev[i].kind,
              topic, (int)ev[i].partition, ev[i].offset);
      problems++;
    }
  }
  esrt_oracle *o = esrt_oracle_new(partitions);
  if (!o) return NULL;
  if (problems || esrt_oracle_feed_records(o, src) != 0) {
    esrt_oracle_free(o);
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    const char *r = esrt_oracle_reason(o, ev[i].partition, ev[i].offset);
    if (strcmp(r ? r : "", ev[i].intent) != 0) {
      if (problems < 10)
        fprintf(stderr, "esrt: event %zu (%s, %s[%d]@%" PRId64 "): the generator meant '%s', the oracle says '%s': %.*s\n",
                i, ev[i].kind, topic, (int)ev[i].partition, ev[i].offset, ev[i].intent, r ? r : "",
                (int)(ev[i].value_len > 200 ? 200 : ev[i].value_len), ev[i].value);
      problems++;
    }
  }
  if (problems) {
    fprintf(stderr, "esrt: %zu disagreements between the generator and the oracle\n", problems);
    esrt_oracle_free(o);
    return NULL;
  }
  return o;
}
