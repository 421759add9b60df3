/* hygiene.c — pruning set-aside files and dropping released partitions' databases (see hygiene.h). */
#include "hygiene.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"

#define PASS_MS 5000
#define RETRY_MS 60000 /* a partition the store does not cover yet is looked at again after this */

typedef struct cand {
  size_t topic;
  int32_t partition;
  int64_t unowned_since;
  int64_t offset; /* the database's position, read when the listing is asked */
  esr_cplist_ticket *ticket;
  int seen; /* found by the current pass */
} cand;

struct esr_hygiene {
  esr_hygiene_opts o;
  int64_t next_pass;
  cand *c;
  size_t n, cap;
};

esr_hygiene *esr_hygiene_new(const esr_hygiene_opts *opts) {
  esr_hygiene *h = calloc(1, sizeof *h);
  if (h) h->o = *opts;
  return h;
}

void esr_hygiene_free(esr_hygiene *h) {
  if (!h) return;
  for (size_t i = 0; i < h->n; i++) esr_cplister_drop(h->c[i].ticket);
  free(h->c);
  free(h);
}

/* ---- pruning ---- */

typedef struct aside {
  char key[512]; /* the base name: sidecars (-wal, -shm, -journal) and a checkpoint's .json share it */
  time_t ctime;
} aside;

static int is_aside(const char *name) {
  return strstr(name, ".corrupt-") || strstr(name, ".old-") || strstr(name, ".bad-");
}

static void group_key(const char *name, char *key, size_t cap) {
  snprintf(key, cap, "%s", name);
  static const char *const sfx[] = {"-wal", "-shm", "-journal"};
  char *dash = strrchr(key, '-');
  for (int i = 0; dash && i < 3; i++)
    if (strcmp(dash, sfx[i]) == 0) *dash = '\0';
  char *j = strstr(key, ".json.bad-");
  if (j) memmove(j + 3, j + 5, strlen(j + 5) + 1), memcpy(j, ".db", 3); /* <offset>.json.bad-T -> <offset>.db.bad-T */
}

static int cmp_aside(const void *a, const void *b) {
  const aside *x = a, *y = b;
  if (x->ctime != y->ctime) return x->ctime < y->ctime ? 1 : -1; /* newest first */
  return strcmp(y->key, x->key);
}

int esr_hygiene_prune_dir(const char *dir, int keep) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  aside *v = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  char path[4096];
  while ((e = readdir(d))) {
    if (!is_aside(e->d_name)) continue;
    char key[512];
    group_key(e->d_name, key, sizeof key);
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
    size_t i = 0;
    while (i < n && strcmp(v[i].key, key) != 0) i++;
    if (i == n) {
      if (n == cap) {
        size_t nc = cap ? cap * 2 : 16;
        aside *g = realloc(v, nc * sizeof *g);
        if (!g) break;
        v = g;
        cap = nc;
      }
      snprintf(v[n].key, sizeof v[n].key, "%s", key);
      v[n].ctime = st.st_ctime;
      n++;
    } else if (st.st_ctime > v[i].ctime) {
      v[i].ctime = st.st_ctime;
    }
  }
  int removed = 0;
  if ((size_t)keep < n) {
    qsort(v, n, sizeof *v, cmp_aside);
    rewinddir(d);
    while ((e = readdir(d))) {
      if (!is_aside(e->d_name)) continue;
      char key[512];
      group_key(e->d_name, key, sizeof key);
      for (size_t i = (size_t)keep; i < n; i++) {
        if (strcmp(v[i].key, key) != 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0 && errno != ENOENT)
          esr_log(ESR_LOG_WARN, "hygiene", "cannot remove %s: %s", path, strerror(errno));
        break;
      }
    }
    removed = (int)(n - (size_t)keep);
    for (size_t i = (size_t)keep; i < n; i++)
      esr_log(ESR_LOG_INFO, "hygiene", "removed %s/%s (set aside; newer ones are kept: state.aside.keep = %d)", dir,
              v[i].key, keep);
  }
  closedir(d);
  free(v);
  return removed;
}

static void prune(esr_hygiene *h) {
  int removed = esr_hygiene_prune_dir(h->o.state_dir, h->o.aside_keep);
  DIR *d = opendir(h->o.cp_dir);
  if (d) {
    struct dirent *e;
    char sub[4096];
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.') continue;
      snprintf(sub, sizeof sub, "%s/%s", h->o.cp_dir, e->d_name);
      struct stat st;
      if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode)) removed += esr_hygiene_prune_dir(sub, h->o.aside_keep);
    }
    closedir(d);
  }
  if (removed) esr_metrics_pruned(removed);
}

/* ---- dropping ---- */

/* "<topic>-<p>.db" of a configured topic: its index and partition. */
static int live_name(const esr_hygiene *h, const char *name, size_t *topic, int32_t *partition) {
  size_t len = strlen(name);
  if (len < 6 || strcmp(name + len - 3, ".db") != 0) return 0;
  for (size_t t = 0; t < h->o.n_topics; t++) {
    size_t tl = strlen(h->o.topics[t]);
    if (len <= tl + 4 || strncmp(name, h->o.topics[t], tl) != 0 || name[tl] != '-') continue;
    char *end;
    long p = strtol(name + tl + 1, &end, 10);
    if (end != name + len - 3 || end == name + tl + 1 || p < 0 || p > INT32_MAX) continue;
    *topic = t;
    *partition = (int32_t)p;
    return 1;
  }
  return 0;
}

static int64_t db_offset(const char *path) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int64_t off = -1;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
      sqlite3_prepare_v2(db, "SELECT next_offset FROM esr_offsets", -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    off = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return off;
}

static void drop(esr_hygiene *h, cand *c, int64_t covered) {
  const char *topic = h->o.topics[c->topic];
  char path[4096];
  snprintf(path, sizeof path, "%s/%s-%d.db", h->o.state_dir, topic, (int)c->partition);
  static const char *const sfx[] = {"-wal", "-shm", ""};
  int failed = 0;
  for (int i = 0; i < 3; i++) { /* the database last: a crash half-way leaves it whole */
    char p[4200];
    snprintf(p, sizeof p, "%s%s", path, sfx[i]);
    if (unlink(p) != 0 && errno != ENOENT) {
      esr_log(ESR_LOG_WARN, "hygiene", "cannot remove %s: %s", p, strerror(errno));
      failed = 1;
    }
  }
  snprintf(path, sizeof path, "%s/%s-%d.inflight", h->o.state_dir, topic, (int)c->partition);
  unlink(path);
  if (failed) return;
  esr_metrics_dropped();
  esr_log(ESR_LOG_INFO, "hygiene",
          "%s[%d]: database dropped: not owned for %d ms or more, at offset %" PRId64
          ", and the store holds a checkpoint at offset %" PRId64,
          topic, (int)c->partition, h->o.drop_after_ms, c->offset, covered);
}

/* Advances one candidate: ask the store once its grace has passed, drop once the listing covers it. */
static void advance(esr_hygiene *h, cand *c, int64_t now) {
  const char *topic = h->o.topics[c->topic];
  if (!c->ticket) {
    if (now - c->unowned_since < h->o.drop_after_ms) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s-%d.db", h->o.state_dir, topic, (int)c->partition);
    c->offset = db_offset(path);
    c->ticket = esr_cplister_ask(h->o.lister, topic, c->partition);
    return;
  }
  if (!esr_cplister_wait(c->ticket, 0)) return;
  esr_manifest_list *l = NULL;
  esr_error err;
  int64_t covered = -1;
  if (esr_cplister_result(c->ticket, &l, &err) == ESR_E_OK && l && l->n > 0) covered = l->v[0]->next_offset;
  esr_manifest_list_free(l);
  esr_cplister_drop(c->ticket);
  c->ticket = NULL;
  if (c->offset >= 0 && covered >= c->offset && !h->o.owned(h->o.arg, topic, c->partition)) {
    drop(h, c, covered);
    c->seen = 0; /* forgotten at the end of the pass */
    return;
  }
  c->unowned_since = now - h->o.drop_after_ms + RETRY_MS; /* not covered (yet): look again later */
}

static cand *find_cand(esr_hygiene *h, size_t t, int32_t p) {
  for (size_t i = 0; i < h->n; i++)
    if (h->c[i].topic == t && h->c[i].partition == p) return &h->c[i];
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 16;
    cand *g = realloc(h->c, cap * sizeof *g);
    if (!g) return NULL;
    h->c = g;
    h->cap = cap;
  }
  h->c[h->n] = (cand){.topic = t, .partition = p, .unowned_since = -1};
  return &h->c[h->n++];
}

static void drops(esr_hygiene *h, int64_t now) {
  DIR *d = opendir(h->o.state_dir);
  if (!d) return;
  for (size_t i = 0; i < h->n; i++) h->c[i].seen = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t t;
    int32_t p;
    if (!live_name(h, e->d_name, &t, &p)) continue;
    cand *c = find_cand(h, t, p);
    if (!c) break;
    if (h->o.owned(h->o.arg, h->o.topics[t], p)) {
      esr_cplister_drop(c->ticket);
      c->ticket = NULL;
      c->unowned_since = -1;
      c->seen = 1;
      continue;
    }
    c->seen = 1;
    if (c->unowned_since < 0) c->unowned_since = now;
    advance(h, c, now);
  }
  closedir(d);
  size_t k = 0; /* forget what is gone or owned */
  for (size_t i = 0; i < h->n; i++) {
    if (h->c[i].seen && h->c[i].unowned_since >= 0) {
      h->c[k++] = h->c[i];
    } else {
      esr_cplister_drop(h->c[i].ticket);
    }
  }
  h->n = k;
}

void esr_hygiene_tick(esr_hygiene *h, int64_t now) {
  if (!h || now < h->next_pass) return;
  h->next_pass = now + PASS_MS;
  prune(h);
  if (h->o.lister && h->o.drop_after_ms > 0) drops(h, now);
}

void esr_remove_tree(const char *path) {
  DIR *d = opendir(path);
  if (d) {
    struct dirent *de;
    while ((de = readdir(d))) {
      if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
      char sub[4400];
      snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
      struct stat st;
      if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
        esr_remove_tree(sub);
      else
        unlink(sub);
    }
    closedir(d);
  }
  rmdir(path);
}
