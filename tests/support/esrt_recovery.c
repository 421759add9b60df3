/* esrt_recovery.c — worker log parsing, state damage, checkpoint listings, oracles from produced events, and a
 * caught-up wait for partitions that moved between workers. */
#include "esrt_recovery.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------------ worker logs */

#define GROW(arr, n, cap)                                                                                              \
  do {                                                                                                                 \
    if ((n) == (cap)) {                                                                                                \
      (cap) = (cap) ? (cap) * 2 : 16;                                                                                  \
      (arr) = realloc((arr), (cap) * sizeof *(arr));                                                                   \
      if (!(arr)) abort();                                                                                             \
    }                                                                                                                  \
  } while (0)

typedef struct caps {
  size_t assigned, stopped, checkpoints, released;
} caps;

/* "2026-11-25T10:00:00.123Z" at s: ms since the epoch, or -1. */
static int64_t parse_ts(const char *s) {
  int Y, M, D, h, m, sec, ms;
  if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &Y, &M, &D, &h, &m, &sec, &ms) != 7) return -1;
  struct tm tm = {0};
  tm.tm_year = Y - 1900;
  tm.tm_mon = M - 1;
  tm.tm_mday = D;
  tm.tm_hour = h;
  tm.tm_min = m;
  tm.tm_sec = sec;
  return (int64_t)timegm(&tm) * 1000 + ms;
}

/* Copies s[0..len) into out, undoing JSON escapes when json. */
static void copy_text(char *out, size_t cap, const char *s, size_t len, int json) {
  size_t o = 0;
  for (size_t i = 0; i < len && o + 1 < cap; i++) {
    char c = s[i];
    if (json && c == '\\' && i + 1 < len) {
      char e = s[++i];
      if (e == 'n')
        c = '\n';
      else if (e == 't')
        c = '\t';
      else if (e == 'u' && i + 4 < len) {
        unsigned v = 0;
        sscanf(s + i + 1, "%4x", &v);
        c = (char)(v < 0x80 ? v : '?');
        i += 4;
      } else
        c = e;
    }
    out[o++] = c;
  }
  out[o] = '\0';
}

static int64_t num_after(const char *hay, const char *needle) {
  const char *p = strstr(hay, needle);
  if (!p) return -1;
  return strtoll(p + strlen(needle), NULL, 10);
}

static void parse_line(esrt_wlog *l, caps *cp, const char *line, size_t len, int line_no, const char *topic) {
  int json = line[0] == '{';
  int64_t ts = -1;
  if (json) {
    const char *t = strstr(line, "\"ts\":\"");
    if (t) ts = parse_ts(t + 6);
  } else {
    ts = parse_ts(line);
  }
  size_t end = len; /* the message ends before `"}` in JSON */
  if (json && end >= 2 && line[end - 1] == '}' && line[end - 2] == '"') end -= 2;
  char needle[300];
  snprintf(needle, sizeof needle, "%s[", topic);
  size_t nl = strlen(needle);
  const char *p = line;
  while ((p = strstr(p, needle)) != NULL && (size_t)(p - line) < end) {
    if (p > line) {
      char before = p[-1];
      if (isalnum((unsigned char)before) || before == '.' || before == '_' || before == '-') {
        p += nl;
        continue;
      }
    }
    char *q;
    long part = strtol(p + nl, &q, 10);
    if (q == p + nl || strncmp(q, "]: ", 3) != 0) {
      p += nl;
      continue;
    }
    const char *rest = q + 3;
    size_t rest_len = end > (size_t)(rest - line) ? end - (size_t)(rest - line) : 0;
    char msg[2048];
    copy_text(msg, sizeof msg, rest, rest_len, json);
    static const char A[] = "assigned; resuming at offset ", S[] = "partition stopped: ",
                      C[] = "checkpoint at offset ", R[] = "released at offset ";
    if (strncmp(msg, A, sizeof A - 1) == 0) {
      GROW(l->assigned, l->n_assigned, cp->assigned);
      esrt_assignment *a = &l->assigned[l->n_assigned];
      memset(a, 0, sizeof *a);
      a->ts_ms = ts;
      a->line = line_no;
      a->partition = (int32_t)part;
      a->offset = strtoll(msg + sizeof A - 1, NULL, 10);
      a->to_replay = -1;
      a->recovery_ms = -1;
      a->opened_ms = num_after(msg, "; opened in ");
      const char *r = strstr(msg, "; recovery: ");
      if (r) {
        r += strlen("; recovery: ");
        const char *in = strstr(r, " in ");
        if (in) {
          size_t sl = (size_t)(in - r);
          if (sl >= sizeof a->step) sl = sizeof a->step - 1;
          memcpy(a->step, r, sl);
          a->step[sl] = '\0';
          char *after;
          a->recovery_ms = strtoll(in + 4, &after, 10);
          const char *t = strncmp(after, " ms", 3) == 0 ? after + 3 : after;
          if (strncmp(t, "; ", 2) == 0 && isdigit((unsigned char)t[2])) {
            char *e2;
            long long k = strtoll(t + 2, &e2, 10);
            if (strncmp(e2, " events to replay", 17) == 0) {
              a->to_replay = k;
              t = e2 + 17;
            }
          }
          if (strncmp(t, "; ", 2) == 0) snprintf(a->detail, sizeof a->detail, "%s", t + 2);
        }
      }
      l->n_assigned++;
    } else if (strncmp(msg, S, sizeof S - 1) == 0) {
      GROW(l->stopped, l->n_stopped, cp->stopped);
      esrt_stop_line *s = &l->stopped[l->n_stopped++];
      memset(s, 0, sizeof *s);
      s->ts_ms = ts;
      s->line = line_no;
      s->partition = (int32_t)part;
      snprintf(s->text, sizeof s->text, "%s", msg + sizeof S - 1);
      s->needed = num_after(s->text, "no longer holds offset ");
      s->log_start = num_after(s->text, "the log now starts at ");
    } else if (strncmp(msg, C, sizeof C - 1) == 0) {
      GROW(l->checkpoints, l->n_checkpoints, cp->checkpoints);
      esrt_cp_line *c = &l->checkpoints[l->n_checkpoints++];
      memset(c, 0, sizeof *c);
      c->ts_ms = ts;
      c->line = line_no;
      c->partition = (int32_t)part;
      c->offset = strtoll(msg + sizeof C - 1, NULL, 10);
      c->write_ms = num_after(msg, " written in ");
      c->upload_ms = num_after(msg, ", uploaded in ");
    } else if (strncmp(msg, R, sizeof R - 1) == 0) {
      GROW(l->released, l->n_released, cp->released);
      esrt_release_line *r = &l->released[l->n_released++];
      r->ts_ms = ts;
      r->line = line_no;
      r->partition = (int32_t)part;
      r->offset = strtoll(msg + sizeof R - 1, NULL, 10);
    }
    break; /* one partition line per log line */
  }
}

int esrt_wlog_read(esrt_wlog *out, const char *path, const char *topic) {
  size_t len = 0;
  char *text = esrt_read_file(path, &len);
  if (!text) return access(path, F_OK) == 0 ? -1 : 0;
  caps cp = {out->n_assigned, out->n_stopped, out->n_checkpoints, out->n_released};
  /* the arrays may have been grown by an earlier call: re-grow to at least their size (realloc keeps the data) */
  int line_no = 0;
  char *s = text;
  while (*s) {
    char *nl = strchr(s, '\n');
    size_t n = nl ? (size_t)(nl - s) : strlen(s);
    line_no++;
    parse_line(out, &cp, s, n, line_no, topic);
    if (!nl) break;
    s = nl + 1;
  }
  free(text);
  return 0;
}

void esrt_wlog_free(esrt_wlog *l) {
  free(l->assigned);
  free(l->stopped);
  free(l->checkpoints);
  free(l->released);
  memset(l, 0, sizeof *l);
}

const esrt_assignment *esrt_wlog_last_assignment(const esrt_wlog *l, int32_t partition) {
  const esrt_assignment *last = NULL;
  for (size_t i = 0; i < l->n_assigned; i++)
    if (l->assigned[i].partition == partition && (!last || l->assigned[i].line > last->line)) last = &l->assigned[i];
  return last;
}

int esrt_wlog_owns(const esrt_wlog *l, int32_t partition) {
  const esrt_assignment *a = esrt_wlog_last_assignment(l, partition);
  if (!a) return 0;
  for (size_t i = 0; i < l->n_released; i++)
    if (l->released[i].partition == partition && l->released[i].line > a->line) return 0;
  for (size_t i = 0; i < l->n_stopped; i++)
    if (l->stopped[i].partition == partition && l->stopped[i].line > a->line) return 0;
  return 1;
}

uint64_t esrt_wlog_owned_mask(const esrt_wlog *l) {
  uint64_t m = 0;
  for (size_t i = 0; i < l->n_assigned; i++) {
    int32_t p = l->assigned[i].partition;
    if (p >= 0 && p < 64 && esrt_wlog_owns(l, p)) m |= (uint64_t)1 << p;
  }
  return m;
}

/* ------------------------------------------------------------------------------------------------------ files */

int esrt_file_sha256(const char *path, uint8_t out[32]) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
    fclose(f);
    EVP_MD_CTX_free(ctx);
    return -1;
  }
  unsigned char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) EVP_DigestUpdate(ctx, buf, n);
  int err = ferror(f);
  fclose(f);
  unsigned int len = 32;
  int ok = EVP_DigestFinal_ex(ctx, out, &len) == 1;
  EVP_MD_CTX_free(ctx);
  return ok && !err ? 0 : -1;
}

int64_t esrt_file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

int esrt_truncate_file(const char *path, int64_t size) {
  if (truncate(path, (off_t)size) != 0) {
    fprintf(stderr, "esrt: truncate %s: %s\n", path, strerror(errno));
    return -1;
  }
  return 0;
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int esrt_dir_count_prefix(const char *dir, const char *prefix, char *first, size_t cap) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  char **names = NULL;
  size_t n = 0, c = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, prefix, strlen(prefix)) != 0) continue;
    GROW(names, n, c);
    names[n] = strdup(e->d_name);
    if (!names[n]) abort();
    n++;
  }
  closedir(d);
  if (n) qsort(names, n, sizeof *names, cmp_name);
  if (first && cap) {
    if (n)
      snprintf(first, cap, "%s/%s", dir, names[0]);
    else
      first[0] = '\0';
  }
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  return (int)n;
}

int esrt_remove_live_db(const char *dir, const char *topic, int32_t partition) {
  static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
  int removed = 0;
  for (int i = 0; i < 4; i++) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s-%d.db%s", dir, topic, (int)partition, sfx[i]);
    if (unlink(path) == 0) removed++;
  }
  return removed;
}

/* ------------------------------------------------------------------------------------------------ checkpoints */

void esrt_checkpoint_file(char *buf, size_t cap, const char *root, const char *topic, int32_t partition,
                          int64_t offset, const char *ext) {
  snprintf(buf, cap, "%s/%s-%d/%020" PRId64 "%s", root, topic, (int)partition, offset, ext);
}

static int cmp_desc(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x > y ? -1 : x < y;
}

int esrt_checkpoint_offsets(const char *root, const char *topic, int32_t partition, int64_t *offsets, int cap) {
  char dir[2048];
  snprintf(dir, sizeof dir, "%s/%s-%d", root, topic, (int)partition);
  DIR *d = opendir(dir);
  if (!d) return 0;
  int64_t *all = NULL;
  size_t n = 0, c = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    const char *name = e->d_name;
    if (strlen(name) != 25 || strcmp(name + 20, ".json") != 0) continue;
    int digits = 1;
    for (int i = 0; i < 20; i++) digits &= isdigit((unsigned char)name[i]) != 0;
    if (!digits) continue;
    int64_t off = strtoll(name, NULL, 10);
    char data[2300];
    snprintf(data, sizeof data, "%s/%020" PRId64 ".db", dir, off);
    if (access(data, F_OK) != 0) continue;
    GROW(all, n, c);
    all[n++] = off;
  }
  closedir(d);
  if (n) qsort(all, n, sizeof *all, cmp_desc);
  int k = 0;
  for (size_t i = 0; i < n && k < cap; i++) offsets[k++] = all[i];
  free(all);
  return k;
}

/* ----------------------------------------------------------------------------------------------------- SQLite */

int esrt_quick_check(const char *path, char *msg, size_t cap) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int rc = -1;
  if (msg && cap) msg[0] = '\0';
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
    if (msg) snprintf(msg, cap, "open: %s", db ? sqlite3_errmsg(db) : "out of memory");
    goto out;
  }
  if (sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &st, NULL) != SQLITE_OK) {
    if (msg) snprintf(msg, cap, "prepare: %s", sqlite3_errmsg(db));
    goto out;
  }
  int step = sqlite3_step(st);
  if (step != SQLITE_ROW) {
    /* a check that cannot even read the schema is damage too */
    if (msg) snprintf(msg, cap, "quick_check failed: %s", sqlite3_errmsg(db));
    rc = (sqlite3_extended_errcode(db) & 0xff) == SQLITE_CORRUPT || sqlite3_errcode(db) == SQLITE_NOTADB ? 0 : -1;
    goto out;
  }
  const char *res = (const char *)sqlite3_column_text(st, 0);
  if (msg) snprintf(msg, cap, "%s", res ? res : "(null)");
  rc = res && strcmp(res, "ok") == 0 ? 1 : 0;
out:
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rc;
}

int esrt_fold_wal(const char *path) {
  sqlite3 *db = NULL;
  int rc = -1;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) goto out;
  sqlite3_busy_timeout(db, 5000);
  if (sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL) != SQLITE_OK) goto out;
  rc = 0;
out:
  if (rc) fprintf(stderr, "esrt: folding the WAL of %s: %s\n", path, db ? sqlite3_errmsg(db) : "out of memory");
  sqlite3_close(db); /* the last connection removes the -wal of a WAL database */
  char wal[2100];
  snprintf(wal, sizeof wal, "%s-wal", path);
  if (rc == 0 && esrt_file_size(wal) > 0) {
    fprintf(stderr, "esrt: %s still has a non-empty WAL\n", path);
    rc = -1;
  }
  return rc;
}

int esrt_corrupt_table_page(const char *path, const char *table, int64_t *page, int64_t *at) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int64_t pgno = -1, page_size = 0;
  int64_t *leaves = NULL;
  size_t n = 0, c = 0;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) goto fail;
  if (sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &st, NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW)
    goto fail;
  page_size = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  st = NULL;
  if (sqlite3_prepare_v2(db, "SELECT pageno FROM dbstat WHERE name = ?1 AND pagetype = 'leaf' ORDER BY pageno", -1,
                         &st, NULL) == SQLITE_OK) {
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
      GROW(leaves, n, c);
      leaves[n++] = sqlite3_column_int64(st, 0);
    }
  }
  sqlite3_finalize(st);
  st = NULL;
  if (n) {
    pgno = leaves[n / 2];
  } else {
    if (sqlite3_prepare_v2(db, "SELECT rootpage FROM sqlite_master WHERE name = ?1", -1, &st, NULL) != SQLITE_OK)
      goto fail;
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) pgno = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    st = NULL;
  }
  sqlite3_close(db);
  db = NULL;
  free(leaves);
  leaves = NULL;
  if (pgno <= 1 || page_size <= 0) {
    fprintf(stderr, "esrt: %s: no page of table %s found\n", path, table);
    return -1;
  }
  int64_t off = (pgno - 1) * page_size;
  unsigned char junk[12];
  memset(junk, 0xff, sizeof junk);
  int fd = open(path, O_WRONLY);
  if (fd < 0 || pwrite(fd, junk, sizeof junk, (off_t)off) != (ssize_t)sizeof junk || fsync(fd) != 0) {
    fprintf(stderr, "esrt: overwriting page %" PRId64 " of %s: %s\n", pgno, path, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  close(fd);
  if (page) *page = pgno;
  if (at) *at = off;
  return 0;
fail:
  fprintf(stderr, "esrt: reading %s: %s\n", path, db ? sqlite3_errmsg(db) : "out of memory");
  sqlite3_finalize(st);
  sqlite3_close(db);
  free(leaves);
  return -1;
}

/* ---------------------------------------------------------------------------------------------------- oracles */

static const esrt_event *g_sort_ev;
static int cmp_ev_index(const void *a, const void *b) {
  const esrt_event *x = &g_sort_ev[*(const size_t *)a], *y = &g_sort_ev[*(const size_t *)b];
  if (x->partition != y->partition) return x->partition < y->partition ? -1 : 1;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

esrt_oracle *esrt_oracle_from_events(const esrt_event *ev, size_t n, int partitions) {
  size_t *idx = malloc((n ? n : 1) * sizeof *idx);
  if (!idx) abort();
  for (size_t i = 0; i < n; i++) idx[i] = i;
  g_sort_ev = ev;
  qsort(idx, n, sizeof *idx, cmp_ev_index);
  esrt_oracle *o = esrt_oracle_new(partitions);
  if (!o) abort();
  size_t problems = 0;
  int64_t expect = 0;
  int32_t part = -1;
  for (size_t k = 0; k < n; k++) {
    const esrt_event *e = &ev[idx[k]];
    if (e->partition != part) {
      part = e->partition;
      expect = 0;
    }
    if (e->offset != expect) {
      fprintf(stderr, "esrt: produced events of partition %d: offset %" PRId64 " where %" PRId64 " was expected\n",
              (int)part, e->offset, expect);
      problems++;
      break;
    }
    expect++;
    const char *why = esrt_oracle_feed(o, e->partition, e->offset, e->key, e->key_len, e->value, e->value_len);
    if (strcmp(why ? why : "", e->intent) != 0 && problems++ < 10)
      fprintf(stderr, "esrt: event (%s, partition %d @%" PRId64 "): the generator meant '%s', the oracle says '%s'\n",
              e->kind, (int)e->partition, e->offset, e->intent, why ? why : "");
  }
  free(idx);
  if (problems) {
    esrt_oracle_free(o);
    return NULL;
  }
  return o;
}

esrt_oracle *esrt_oracle_prefix(const esrt_records *recs, int partitions, int32_t partition, int64_t upto) {
  esrt_oracle *o = esrt_oracle_new(partitions);
  if (!o) abort();
  int64_t expect = 0;
  for (size_t i = 0; i < recs->n; i++) {
    const esrt_record *r = &recs->v[i];
    if (r->partition != partition || r->offset >= upto) continue;
    if (r->offset != expect) {
      fprintf(stderr, "esrt: prefix oracle of partition %d: record %" PRId64 " where %" PRId64 " was expected\n",
              (int)partition, r->offset, expect);
      esrt_oracle_free(o);
      return NULL;
    }
    expect++;
    esrt_oracle_feed(o, r->partition, r->offset, r->key, r->key_len, r->value, r->value_len);
  }
  if (expect != upto) {
    fprintf(stderr, "esrt: prefix oracle of partition %d: the records end at %" PRId64 ", below %" PRId64 "\n",
            (int)partition, expect, upto);
    esrt_oracle_free(o);
    return NULL;
  }
  return o;
}

/* ------------------------------------------------------------------------------------------- moving partitions */

int esrt_wait_caught_up_any(rd_kafka_t *rk, const char *topic, int partitions, const char *const *dirs, size_t n_dirs,
                            int timeout_ms) {
  int64_t deadline = esrt_now_ms() + timeout_ms;
  int64_t *hi = calloc((size_t)partitions, sizeof *hi), *best = calloc((size_t)partitions, sizeof *best);
  int64_t *outbox = calloc((size_t)partitions, sizeof *outbox);
  if (!hi || !best || !outbox) abort();
  int rc = -1;
  for (;;) {
    int done = 1;
    for (int p = 0; p < partitions; p++) {
      int64_t lo;
      best[p] = -1;
      outbox[p] = 0;
      if (esrt_watermarks(rk, topic, p, &lo, &hi[p]) != 0) {
        done = 0;
        continue;
      }
      int ok = hi[p] == 0;
      for (size_t d = 0; d < n_dirs && !ok; d++) {
        esrt_part_state ps;
        if (esrt_read_position(dirs[d], topic, p, &ps) != 0 || !ps.present) continue;
        if (ps.next_offset > best[p]) {
          best[p] = ps.next_offset;
          outbox[p] = ps.outbox;
        }
        ok = ps.next_offset == hi[p] && ps.outbox == 0;
      }
      if (!ok) done = 0;
    }
    if (done) {
      rc = 0;
      break;
    }
    if (esrt_now_ms() >= deadline) {
      fprintf(stderr, "esrt: not caught up after %d ms:\n", timeout_ms);
      for (int p = 0; p < partitions; p++)
        fprintf(stderr, "  %s[%d]: furthest database at %" PRId64 " (%" PRId64 " outbox rows) of high watermark %" PRId64
                        "\n",
                topic, p, best[p], outbox[p], hi[p]);
      break;
    }
    esrt_sleep_ms(20);
  }
  free(hi);
  free(best);
  free(outbox);
  return rc;
}
