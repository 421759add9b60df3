/* audit.c — `esr verify`: two states compared, and a worker's state proved against a replay of the log (audit.h). */
#include "audit.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "digest.h"
#include "statediff.h"
#include "hygiene.h"
#include "statedigest.h"
#include "statetables.h"

#define SHORT 16 /* hex digits of a digest shown side by side (the comparison uses all 64) */

typedef struct out {
  esr_audit_fn fn;
  void *arg;
} out;

static void say(const out *o, esr_audit_kind kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(const out *o, esr_audit_kind kind, const char *fmt, ...) {
  if (!o->fn) return;
  char line[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  o->fn(o->arg, kind, line);
}

static void short_hex(const uint8_t d[32], char *buf) {
  char full[65];
  esr_digest_hex(d, full);
  memcpy(buf, full, SHORT);
  buf[SHORT] = '\0';
}

/* ---- differences, row by row ------------------------------------------------------------------------------------ */

typedef struct detail_ctx {
  const out *o;
  const char *la, *lb; /* what A and B are called */
} detail_ctx;

static void on_diff(void *arg, const esr_diff_item *d) {
  const detail_ctx *c = arg;
  switch (d->kind) {
  case ESR_DIFF_TABLE_ONLY_A:
  case ESR_DIFF_TABLE_ONLY_B:
    say(c->o, ESR_AUDIT_DETAIL, "  table %s: only in %s", d->table, d->kind == ESR_DIFF_TABLE_ONLY_A ? c->la : c->lb);
    break;
  case ESR_DIFF_COLUMNS:
    say(c->o, ESR_AUDIT_DETAIL, "  table %s: the columns differ: %s (%s), %s (%s)", d->table, c->la, d->a, c->lb, d->b);
    break;
  case ESR_DIFF_ROW_ONLY_A:
  case ESR_DIFF_ROW_ONLY_B:
    say(c->o, ESR_AUDIT_DETAIL, "  table %s, row %s: only in %s", d->table, d->key,
        d->kind == ESR_DIFF_ROW_ONLY_A ? c->la : c->lb);
    break;
  case ESR_DIFF_VALUE:
    say(c->o, ESR_AUDIT_DETAIL, "  table %s, row %s, column %s: %s %s, %s %s", d->table, d->key, d->column, c->la, d->a,
        c->lb, d->b);
    break;
  }
}

/* Rows that differ between two open databases (each in its read transaction), reported under their partition. */
static esr_code report_rows(const out *o, sqlite3 *a, sqlite3 *b, const char *la, const char *lb, int max_rows,
                            esr_error *err) {
  detail_ctx c = {o, la, lb};
  esr_diff_counts n;
  esr_code rc = esr_state_diff(a, b, max_rows, on_diff, &c, &n, err);
  if (rc != ESR_E_OK) return rc;
  if (n.rows > n.shown)
    say(o, ESR_AUDIT_DETAIL, "  ... %" PRId64 " differing rows in all (%" PRId64 " shown; --max-rows N shows more)",
        n.rows, n.shown);
  return ESR_E_OK;
}

static esr_code open_pair(const char *pa, const char *pb, sqlite3 **a, sqlite3 **b, esr_error *err) {
  *a = *b = NULL;
  esr_code rc = esr_st_open_ro(pa, a, err);
  if (rc == ESR_E_OK) rc = esr_st_open_ro(pb, b, err);
  if (rc == ESR_E_OK && sqlite3_exec(*a, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) rc = esr_st_error(*a, err, "BEGIN");
  if (rc == ESR_E_OK && sqlite3_exec(*b, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) rc = esr_st_error(*b, err, "BEGIN");
  if (rc != ESR_E_OK) {
    sqlite3_close(*a);
    sqlite3_close(*b);
    *a = *b = NULL;
  }
  return rc;
}

static void close_pair(sqlite3 *a, sqlite3 *b) {
  if (a) sqlite3_exec(a, "COMMIT", NULL, NULL, NULL);
  if (b) sqlite3_exec(b, "COMMIT", NULL, NULL, NULL);
  sqlite3_close(a);
  sqlite3_close(b);
}

/* ---- esr verify A B --------------------------------------------------------------------------------------------- */

static int is_partition_db(const char *name) {
  size_t n = strlen(name);
  if (name[0] == '.' || n < 5 || strcmp(name + n - 3, ".db") != 0) return 0;
  size_t i = n - 3, digits = 0;
  while (i > 0 && name[i - 1] >= '0' && name[i - 1] <= '9') i--, digits++;
  return digits > 0 && i > 1 && name[i - 1] == '-';
}

typedef struct names {
  char **v;
  size_t n, cap;
} names;

static void names_free(names *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
  memset(l, 0, sizeof *l);
}

static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static esr_code list_dbs(const char *dir, names *l, esr_error *err) {
  memset(l, 0, sizeof *l);
  DIR *d = opendir(dir);
  if (!d)
    return esr_error_set(err, errno == ENOENT || errno == ENOTDIR ? ESR_E_CONFIG : ESR_E_IO, errno, "%s: %s", dir,
                         strerror(errno));
  struct dirent *de;
  esr_code rc = ESR_E_OK;
  while ((de = readdir(d))) {
    if (!is_partition_db(de->d_name)) continue;
    if (l->n == l->cap) {
      l->cap = l->cap ? l->cap * 2 : 32;
      char **g = realloc(l->v, l->cap * sizeof *g);
      if (!g) {
        rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
        break;
      }
      l->v = g;
    }
    if (!(l->v[l->n] = strdup(de->d_name))) {
      rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
      break;
    }
    l->n++;
  }
  closedir(d);
  if (rc != ESR_E_OK) names_free(l);
  else if (l->n) qsort(l->v, l->n, sizeof *l->v, str_cmp);
  return rc;
}

static esr_code compare_one(const out *o, const char *dir_a, const char *dir_b, const char *name, int max_rows,
                            int *differs, esr_error *err) {
  char pa[4400], pb[4400];
  snprintf(pa, sizeof pa, "%s/%s", dir_a, name);
  snprintf(pb, sizeof pb, "%s/%s", dir_b, name);
  sqlite3 *a, *b;
  esr_code rc = open_pair(pa, pb, &a, &b, err);
  if (rc != ESR_E_OK) return rc;
  esr_state_summary sa, sb;
  if ((rc = esr_state_summarize(a, &sa, err)) != ESR_E_OK || (rc = esr_state_summarize(b, &sb, err)) != ESR_E_OK)
    goto done;
  char ha[SHORT + 1], hb[SHORT + 1];
  short_hex(sa.state_digest, ha);
  short_hex(sb.state_digest, hb);
  char pos[200] = "";
  if (sa.has_position && sb.has_position)
    snprintf(pos, sizeof pos, "A at offset %" PRId64 ", B at offset %" PRId64, sa.next_offset, sb.next_offset);
  *differs = memcmp(sa.state_digest, sb.state_digest, 32) != 0;
  say(o, *differs ? ESR_AUDIT_DIFFERENT : ESR_AUDIT_EQUAL, "%s: A %s  B %s  %s%s%s%s", name, ha, hb,
      *differs ? "DIFFERENT" : "equal", pos[0] ? " (" : "", pos, pos[0] ? ")" : "");
  if (sa.has_position && sb.has_position && sa.next_offset == sb.next_offset &&
      memcmp(sa.log_digest, sb.log_digest, 32) != 0)
    say(o, ESR_AUDIT_NOTE, "  %s: the log digests differ at the same offset: the two states were made from different "
                           "events",
        name);
  if (*differs) rc = report_rows(o, a, b, "A", "B", max_rows, err);
done:
  close_pair(a, b);
  if (rc != ESR_E_OK) esr_error_prefix(err, "%s", name);
  return rc;
}

esr_code esr_audit_compare(const char *a, const char *b, int max_rows, esr_audit_fn fn, void *arg, int *differences,
                           esr_error *err) {
  out o = {fn, arg};
  *differences = 0;
  names la, lb;
  esr_code rc = list_dbs(a, &la, err);
  if (rc != ESR_E_OK) return rc;
  if ((rc = list_dbs(b, &lb, err)) != ESR_E_OK) {
    names_free(&la);
    return rc;
  }
  if (!la.n && !lb.n) {
    names_free(&la);
    names_free(&lb);
    return esr_error_set(err, ESR_E_CONFIG, 0, "neither %s nor %s holds a partition database (<topic>-<partition>.db)",
                         a, b);
  }
  size_t i = 0, j = 0;
  while (rc == ESR_E_OK && (i < la.n || j < lb.n)) {
    int c = i >= la.n ? 1 : j >= lb.n ? -1 : strcmp(la.v[i], lb.v[j]);
    if (c) {
      say(&o, ESR_AUDIT_DIFFERENT, "%s: only in %s", c < 0 ? la.v[i] : lb.v[j], c < 0 ? "A" : "B");
      (*differences)++;
      if (c < 0) i++;
      else j++;
      continue;
    }
    int differs = 0;
    rc = compare_one(&o, a, b, la.v[i], max_rows, &differs, err);
    *differences += differs;
    i++, j++;
  }
  names_free(&la);
  names_free(&lb);
  return rc;
}

/* ---- esr verify --live ------------------------------------------------------------------------------------------ */

/* A consistent copy of a live database, from a read-only connection in one read transaction. */
static esr_code snapshot(const char *live, const char *copy, esr_error *err) {
  sqlite3 *src = NULL, *dst = NULL;
  esr_code rc = esr_st_open_ro(live, &src, err);
  if (rc != ESR_E_OK) return rc;
  if (sqlite3_open_v2(copy, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
      SQLITE_OK) {
    rc = esr_error_set(err, ESR_E_IO, 0, "cannot create %s: %s", copy, dst ? sqlite3_errmsg(dst) : "out of memory");
    goto done;
  }
  sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
  if (!b) {
    rc = esr_st_error(dst, err, "snapshot");
    goto done;
  }
  int step;
  for (int tries = 0; (step = sqlite3_backup_step(b, -1)) == SQLITE_BUSY || step == SQLITE_LOCKED; tries++) {
    if (tries >= 100) break;
    sqlite3_sleep(50); /* the source is being recovered or checkpointed: a moment */
  }
  sqlite3_backup_finish(b);
  if (step != SQLITE_DONE)
    rc = esr_error_set(err, (step & 0xff) == SQLITE_CORRUPT || step == SQLITE_NOTADB ? ESR_E_CORRUPT : ESR_E_SQLITE,
                       step, "snapshot of %s: %s", live, sqlite3_errstr(step));
done:
  sqlite3_close(src);
  sqlite3_close(dst);
  return rc;
}

typedef struct live_part {
  int32_t partition;
  char file[300];
  esr_state_summary live;
  int differs;
} live_part;

/* Replays `n` partitions of topic to their live offsets into dir. */
static esr_code replay_to(esr_replayer *rp, const esr_audit_live_opts *o, const char *topic, const live_part *lp,
                          const int *only, size_t n, const char *dir, esr_replay_report *rep, esr_error *err) {
  int32_t *parts = calloc(n + 1, sizeof *parts);
  int64_t *to = calloc(n + 1, sizeof *to);
  size_t k = 0;
  esr_code rc = ESR_E_OK;
  if (!parts || !to) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto done;
  }
  for (size_t i = 0; i < n; i++) {
    if (only && !only[i]) continue;
    parts[k] = lp[i].partition;
    to[k] = lp[i].live.has_position ? lp[i].live.next_offset : 0;
    k++;
  }
  esr_replay_opts ro = {.topic = topic,
                        .partitions = parts,
                        .n_partitions = k,
                        .target = ESR_REPLAY_TO_EACH,
                        .to_each = to,
                        .out_dir = dir,
                        .force = 1, /* our own work directory, shared by the topics */
                        .checkpoints = o->from_checkpoints,
                        .threads = o->threads,
                        .note = o->replay_note,
                        .progress = o->replay_progress,
                        .cb_arg = o->replay_arg};
  rc = esr_replayer_run(rp, &ro, rep, err);
done:
  free(parts);
  free(to);
  return rc;
}

static const esr_replay_part *part_of(const esr_replay_report *rep, int32_t partition) {
  for (size_t i = 0; i < rep->n; i++)
    if (rep->parts[i].partition == partition) return &rep->parts[i];
  return NULL;
}

/* Where they differ: the rows of the live snapshot against the replay. */
static esr_code rows_between(const out *o, const char *dir_a, const char *dir_b, const char *file, const char *la,
                             const char *lb, int max_rows, esr_error *err) {
  char pa[4400], pb[4400];
  snprintf(pa, sizeof pa, "%s/%s", dir_a, file);
  snprintf(pb, sizeof pb, "%s/%s", dir_b, file);
  sqlite3 *a, *b;
  esr_code rc = open_pair(pa, pb, &a, &b, err);
  if (rc != ESR_E_OK) return rc;
  rc = report_rows(o, a, b, la, lb, max_rows, err);
  close_pair(a, b);
  return rc;
}

static esr_code live_topic(esr_replayer *rp, const esr_audit_live_opts *o, const out *w, const char *topic,
                           const char *work, int *differences, esr_error *err) {
  const esr_config *cfg = o->cfg;
  char live_dir[4200], replay_dir[4200], replay2_dir[4200];
  snprintf(live_dir, sizeof live_dir, "%s/live", work);
  snprintf(replay_dir, sizeof replay_dir, "%s/replay", work);
  snprintf(replay2_dir, sizeof replay2_dir, "%s/replay-2", work);
  mkdir(live_dir, 0755);
  names all;
  esr_code rc = list_dbs(cfg->state_dir, &all, err);
  if (rc != ESR_E_OK) return rc;
  live_part *lp = calloc(all.n + 1, sizeof *lp);
  int *redo = calloc(all.n + 1, sizeof *redo);
  size_t n = 0;
  esr_replay_report rep = {0}, rep2 = {0};
  if (!lp || !redo) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto done;
  }
  size_t tl = strlen(topic);
  for (size_t i = 0; i < all.n; i++) {
    const char *name = all.v[i];
    if (strncmp(name, topic, tl) != 0 || name[tl] != '-' || !is_partition_db(name)) continue;
    char *end;
    long part = strtol(name + tl + 1, &end, 10);
    if (strcmp(end, ".db") != 0) continue; /* another topic whose name starts with this one and a dash */
    live_part *p = &lp[n];
    p->partition = (int32_t)part;
    snprintf(p->file, sizeof p->file, "%s", name);
    char src[4400], copy[4400];
    snprintf(src, sizeof src, "%s/%s", cfg->state_dir, name);
    snprintf(copy, sizeof copy, "%s/%s", live_dir, name);
    if ((rc = snapshot(src, copy, err)) != ESR_E_OK) goto done;
    if ((rc = esr_state_summarize_file(copy, &p->live, err)) != ESR_E_OK) goto done;
    n++;
  }
  if (!n) {
    say(w, ESR_AUDIT_NOTE, "%s: no partition database in %s", topic, cfg->state_dir);
    goto done;
  }
  if ((rc = replay_to(rp, o, topic, lp, NULL, n, replay_dir, &rep, err)) != ESR_E_OK) goto done;
  int any = 0;
  for (size_t i = 0; i < n; i++) {
    live_part *p = &lp[i];
    const esr_replay_part *r = part_of(&rep, p->partition);
    if (!r) continue;
    char hl[SHORT + 1], hr[SHORT + 1];
    short_hex(p->live.state_digest, hl);
    short_hex(r->state_digest, hr);
    int log_differs = p->live.has_position && memcmp(p->live.log_digest, r->pos.log_digest, 32) != 0;
    p->differs = memcmp(p->live.state_digest, r->state_digest, 32) != 0 || log_differs;
    char from[64] = "";
    if (r->from_checkpoint) snprintf(from, sizeof from, ", replayed from checkpoint %" PRId64, r->from);
    say(w, p->differs ? ESR_AUDIT_DIFFERENT : ESR_AUDIT_EQUAL, "%s[%d] at offset %" PRId64 ": live %s  replay %s  %s%s",
        topic, (int)p->partition, r->target, hl, hr, p->differs ? "DIFFERENT" : "equal", from);
    if (log_differs)
      say(w, ESR_AUDIT_DETAIL, "  the log digests differ: the live state was not made from the events the log holds "
                               "now at offsets [0, %" PRId64 ") (topic recreated, or state from another cluster?)",
          r->target);
    if (!p->differs) continue;
    (*differences)++;
    any = 1;
    if ((rc = rows_between(w, live_dir, replay_dir, p->file, "live", "replay", o->max_rows, err)) != ESR_E_OK)
      goto done;
    redo[i] = 1;
  }
  if (any) {
    /* Is it the state, or the handler? Two replays of the same events must be equal. */
    if ((rc = replay_to(rp, o, topic, lp, redo, n, replay2_dir, &rep2, err)) != ESR_E_OK) goto done;
    for (size_t i = 0; i < n; i++) {
      if (!redo[i]) continue;
      const esr_replay_part *r1 = part_of(&rep, lp[i].partition), *r2 = part_of(&rep2, lp[i].partition);
      if (!r1 || !r2) continue;
      if (memcmp(r1->state_digest, r2->state_digest, 32) == 0) {
        say(w, ESR_AUDIT_NOTE, "%s[%d]: a second replay gives the same state as the first: the live state differs "
                               "from what the log says",
            topic, (int)lp[i].partition);
        continue;
      }
      char h1[SHORT + 1], h2[SHORT + 1];
      short_hex(r1->state_digest, h1);
      short_hex(r2->state_digest, h2);
      say(w, ESR_AUDIT_DIFFERENT, "%s[%d]: two replays of the same events differ (%s, %s): a handler is not "
                                  "deterministic (it reads the clock, randomness or something outside the database "
                                  "and the event)",
          topic, (int)lp[i].partition, h1, h2);
      if ((rc = rows_between(w, replay_dir, replay2_dir, lp[i].file, "replay 1", "replay 2", o->max_rows, err)) !=
          ESR_E_OK)
        goto done;
    }
  }
done:
  esr_replay_report_clear(&rep);
  esr_replay_report_clear(&rep2);
  free(lp);
  free(redo);
  names_free(&all);
  return rc;
}

esr_code esr_audit_live(const esr_audit_live_opts *o, int *differences, esr_error *err) {
  out w = {o->fn, o->arg};
  *differences = 0;
  const esr_config *cfg = o->cfg;
  if (!cfg->state_dir) return esr_error_set(err, ESR_E_CONFIG, 0, "config: state.dir is required for --live");
  struct stat st;
  if (stat(cfg->state_dir, &st) != 0 || !S_ISDIR(st.st_mode))
    return esr_error_set(err, ESR_E_CONFIG, errno, "config: state.dir = %s: not a directory", cfg->state_dir);
  char work[4200];
  int temp = !o->work_dir;
  if (temp) {
    const char *tmp = getenv("TMPDIR");
    snprintf(work, sizeof work, "%s/esr-verify-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(work)) return esr_error_set(err, ESR_E_IO, errno, "cannot create %s: %s", work, strerror(errno));
  } else {
    snprintf(work, sizeof work, "%s", o->work_dir);
    if (mkdir(work, 0755) != 0 && errno != EEXIST)
      return esr_error_set(err, ESR_E_IO, errno, "--work %s: %s", work, strerror(errno));
  }
  esr_replayer *rp = NULL;
  esr_code rc = esr_replayer_new(cfg, &rp, err);
  if (rc == ESR_E_OK) {
    say(&w, ESR_AUDIT_NOTE, "%s", o->from_checkpoints
                                      ? "replaying from the worker's own checkpoints where they allow (--from-checkpoints): "
                                        "this proves the events after each checkpoint, and trusts the checkpoint"
                                      : "replaying every partition from offset 0: the proof covers every event");
    for (size_t t = 0; t < cfg->n_topics && rc == ESR_E_OK; t++)
      rc = live_topic(rp, o, &w, cfg->topics[t], work, differences, err);
  }
  esr_replayer_free(rp);
  if (o->keep || (*differences && rc == ESR_E_OK))
    say(&w, ESR_AUDIT_NOTE, "the snapshots of the live state (live/) and the replays (replay/) are kept in %s", work);
  else if (temp)
    esr_remove_tree(work);
  return rc;
}
