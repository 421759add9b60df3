/* replay_run.c — a topic's partitions replayed in parallel into an isolated output directory (replay_run.h). */
#include "replay_run.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "clock.h"
#include "cpstore.h"
#include "host.h"
#include "json_arena.h"
#include "partition.h"
#include "registry.h"
#include "schema.h"
#include "hygiene.h"
#include "statedigest.h"

#define FETCH_DIR ".esr-fetch" /* remote checkpoints are downloaded here, inside the output, then removed */
#define PROGRESS_MS 250

struct esr_replayer {
  const esr_config *cfg;
  esr_registry registry;
  esr_schema_set *schemas;
  esr_replay_handler_info *handlers;
  size_t n_handlers;
  int has_schemas_hash;
  uint8_t schemas_hash[32];
  char cp_dir[4096]; /* "" when there is none */
};

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* SHA-256 over "<name>\0<8-byte length><content>" of every *.json file of dir, in name order. */
static esr_code hash_schemas(const char *dir, uint8_t out[32], esr_error *err) {
  DIR *d = opendir(dir);
  if (!d) return esr_error_set(err, ESR_E_CONFIG, errno, "config: schemas.dir = %s: %s", dir, strerror(errno));
  char **names = NULL;
  size_t n = 0, cap = 0;
  esr_code rc = ESR_E_OK;
  struct dirent *de;
  while ((de = readdir(d))) {
    size_t len = strlen(de->d_name);
    if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0 || de->d_name[0] == '.') continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 32;
      char **g = realloc(names, cap * sizeof *g);
      if (!g) break;
      names = g;
    }
    if (!(names[n] = strdup(de->d_name))) break;
    n++;
  }
  closedir(d);
  if (n) qsort(names, n, sizeof *names, name_cmp);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
  for (size_t i = 0; i < n && rc == ESR_E_OK; i++) {
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    uint8_t sha[32];
    int64_t size = 0;
    if ((rc = esr_file_sha256(path, sha, &size, err)) != ESR_E_OK) break;
    uint8_t len[8];
    for (int k = 0; k < 8; k++) len[k] = (uint8_t)((uint64_t)size >> (56 - 8 * k));
    EVP_DigestUpdate(ctx, names[i], strlen(names[i]) + 1);
    EVP_DigestUpdate(ctx, len, sizeof len);
    EVP_DigestUpdate(ctx, sha, sizeof sha); /* the content, through its own hash */
  }
  unsigned int olen = 32;
  EVP_DigestFinal_ex(ctx, out, &olen);
  EVP_MD_CTX_free(ctx);
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  return rc;
}

esr_code esr_replayer_new(const esr_config *cfg, esr_replayer **out, esr_error *err) {
  *out = NULL;
  esr_replayer *rp = calloc(1, sizeof *rp);
  if (!rp) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  rp->cfg = cfg;
  esr_code rc;
  if (cfg->schemas_dir) {
    if ((rc = esr_schema_set_load(cfg->schemas_dir, &rp->schemas, err)) != ESR_E_OK) {
      esr_error_prefix(err, "config: schemas.dir = %s", cfg->schemas_dir);
      goto fail;
    }
    if ((rc = hash_schemas(cfg->schemas_dir, rp->schemas_hash, err)) != ESR_E_OK) goto fail;
    rp->has_schemas_hash = 1;
  }
  if ((rc = esr_registry_load(&rp->registry, cfg->handlers, cfg->n_handlers, esr_host_api_table(), cfg->handler_opts,
                              cfg->n_handler_opts, err)) != ESR_E_OK)
    goto fail;
  if (!(rp->handlers = calloc(rp->registry.n + 1, sizeof *rp->handlers))) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto fail;
  }
  for (size_t i = 0; i < rp->registry.n; i++) {
    const esr_plugin *pl = rp->registry.plugins[i];
    esr_replay_handler_info *h = &rp->handlers[rp->n_handlers++];
    snprintf(h->name, sizeof h->name, "%s", pl->handler.name);
    snprintf(h->version, sizeof h->version, "%s", pl->handler.version ? pl->handler.version : "");
    snprintf(h->path, sizeof h->path, "%s", pl->path);
    int64_t size;
    if ((rc = esr_file_sha256(pl->path, h->sha256, &size, err)) != ESR_E_OK) goto fail;
  }
  if (cfg->checkpoint_dir)
    snprintf(rp->cp_dir, sizeof rp->cp_dir, "%s", cfg->checkpoint_dir);
  else if (cfg->state_dir)
    snprintf(rp->cp_dir, sizeof rp->cp_dir, "%s/checkpoints", cfg->state_dir);
  esr_json_arena_install(); /* as the worker: cJSON of an event comes from its thread's arena */
  *out = rp;
  return ESR_E_OK;
fail:
  esr_replayer_free(rp);
  return rc;
}

void esr_replayer_free(esr_replayer *rp) {
  if (!rp) return;
  esr_registry_clear(&rp->registry);
  esr_schema_set_free(rp->schemas);
  free(rp->handlers);
  free(rp);
}

const esr_replay_handler_info *esr_replayer_handlers(const esr_replayer *rp, size_t *n) {
  *n = rp->n_handlers;
  return rp->handlers;
}

int esr_replayer_schemas_hash(const esr_replayer *rp, uint8_t out[32]) {
  if (rp->has_schemas_hash) memcpy(out, rp->schemas_hash, 32);
  return rp->has_schemas_hash;
}

const esr_config *esr_replayer_config(const esr_replayer *rp) { return rp->cfg; }

void esr_replayer_partition_env(const esr_replayer *rp, const char *state_dir, esr_partition_env *env) {
  const esr_config *cfg = rp->cfg;
  *env = (esr_partition_env){.registry = &rp->registry,
                             .publisher = NULL, /* nothing leaves a replay: dead letters stay in esr_outbox */
                             .state_dir = state_dir,
                             .dlq_topic = cfg->dlq_topic ? cfg->dlq_topic : "",
                             .store = {.cache_mb = cfg->sqlite_cache_mb},
                             .max_crash_retries = cfg->max_crash_retries,
                             .batch_max = ESR_REPLAY_BATCH,
                             .last_crash = NULL,
                             .schemas = rp->schemas};
}

void esr_replay_report_clear(esr_replay_report *r) {
  if (!r) return;
  free(r->parts);
  memset(r, 0, sizeof *r);
}

/* ---- the run ---------------------------------------------------------------------------------------------------- */

typedef struct run {
  esr_replayer *rp;
  const esr_replay_opts *o;
  esr_replay_report *rep;
  esr_partition_env env;
  _Atomic size_t next;
  _Atomic int cancel;
  _Atomic size_t finished;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  esr_code rc; /* the first failure */
  esr_error err;
} run;

static void note(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(run *r, const char *fmt, ...) {
  if (!r->o->note) return;
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&r->mu);
  r->o->note(r->o->cb_arg, line);
  pthread_mutex_unlock(&r->mu);
}

static void fail_run(run *r, esr_replay_part *p, esr_code rc, const esr_error *e) {
  p->rc = rc;
  snprintf(p->error, sizeof p->error, "%s", e->msg);
  atomic_store(&p->state, ESR_PART_FAILED);
  pthread_mutex_lock(&r->mu);
  if (r->rc == ESR_E_OK) {
    r->rc = rc;
    r->err = *e;
  }
  pthread_mutex_unlock(&r->mu);
  atomic_store(&r->cancel, 1); /* the others stop: the run has failed */
}

static void remove_file(const char *dir, const char *name, const char *suffix) {
  char path[4400];
  snprintf(path, sizeof path, "%s/%s%s", dir, name, suffix);
  unlink(path);
}

/* The newest checkpoint at or before the target that verifies and is covered by the log, copied in as the
 * partition's database. Returns ESR_E_OK with p->from_checkpoint 0 when there is none. */
static esr_code restore_checkpoint(run *r, esr_replay_part *p, esr_cpstore *store, esr_error *err) {
  const char *topic = r->o->topic, *out = r->o->out_dir;
  const char *cp_dir = r->rp->cp_dir;
  esr_manifest_list *local = NULL, *remote = NULL;
  esr_error e;
  if (cp_dir[0] && esr_checkpoint_list(cp_dir, topic, p->partition, &local, &e) != ESR_E_OK)
    note(r, "%s[%d]: the checkpoints in %s cannot be listed (%s): not used", topic, (int)p->partition, cp_dir, e.msg);
  if (store && esr_cpstore_list(store, topic, p->partition, &remote, &e) != ESR_E_OK)
    note(r, "%s[%d]: the checkpoint store %s cannot be listed (%s): not used", topic, (int)p->partition,
         esr_cpstore_url(store), e.msg);
  size_t i = 0, j = 0;
  int64_t too_old = -1; /* the newest one the log does not cover */
  esr_code rc = ESR_E_OK;
  while (!p->from_checkpoint && ((local && i < local->n) || (remote && j < remote->n))) {
    const esr_manifest *a = local && i < local->n ? local->v[i] : NULL, *b = remote && j < remote->n ? remote->v[j] : NULL;
    int use_local = a && (!b || a->next_offset >= b->next_offset);
    const esr_manifest *m = use_local ? a : b;
    if (use_local)
      i++;
    else
      j++;
    if (m->next_offset > p->target) continue;
    if (m->next_offset < p->log_start && m->next_offset != p->target) {
      if (too_old < 0) too_old = m->next_offset;
      continue;
    }
    char data[4400] = "";
    if (use_local) {
      rc = esr_checkpoint_restore(cp_dir, m, out, 0, NULL, 0, &e); /* size, SHA-256 and position checked */
      esr_checkpoint_path(data, sizeof data, cp_dir, topic, p->partition, m->next_offset, ".db");
    } else {
      char fetch[4200];
      snprintf(fetch, sizeof fetch, "%s/" FETCH_DIR, out);
      if ((rc = esr_cpstore_fetch(store, m, fetch, &e)) == ESR_E_OK) rc = esr_checkpoint_restore(fetch, m, out, 0, NULL, 0, &e);
      snprintf(data, sizeof data, "%s", esr_cpstore_url(store));
    }
    if (rc == ESR_E_NOMEM) {
      *err = e;
      goto done;
    }
    if (rc != ESR_E_OK) {
      note(r, "%s[%d]: the %s checkpoint at offset %" PRId64 " is not usable (%s): trying an older one", topic,
           (int)p->partition, use_local ? "local" : "remote", m->next_offset, e.msg);
      rc = ESR_E_OK;
      continue;
    }
    p->from_checkpoint = 1;
    p->from = m->next_offset;
    memcpy(p->checkpoint_sha256, m->sha256, 32);
    p->has_checkpoint_state = m->has_state_digest;
    memcpy(p->checkpoint_state, m->state_digest, 32);
    snprintf(p->checkpoint, sizeof p->checkpoint, "%s %s", use_local ? "local" : "remote", data);
  }
  if (!p->from_checkpoint && p->log_start > 0 && p->target > 0) {
    int64_t need = too_old >= 0 ? too_old : 0;
    rc = esr_error_set(err, ESR_E_GAP, 0,
                       "%s[%d]: cannot replay to offset %" PRId64 ": it needs the log from offset %" PRId64 " (%s), "
                       "but the log now starts at %" PRId64 ": %" PRId64 " events were deleted by retention. Refusing "
                       "to skip them: give a checkpoint at an offset in [%" PRId64 ", %" PRId64 "] (--config with "
                       "checkpoint.dir or checkpoint.store)",
                       topic, (int)p->partition, p->target, need,
                       too_old >= 0 ? "the newest checkpoint at or before the target" : "no checkpoint at or before the "
                                                                                        "target",
                       p->log_start, p->log_start - need, p->log_start, p->target);
  }
done:
  esr_manifest_list_free(local);
  esr_manifest_list_free(remote);
  return rc;
}

/* The file is closed: a self-contained rollback-journal database; its dead letters by reason. */
static esr_code finish_file(run *r, esr_replay_part *p, esr_error *err) {
  char path[4400];
  snprintf(path, sizeof path, "%s/%s", r->o->out_dir, p->file);
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  esr_code rc = ESR_E_OK;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
      sqlite3_exec(db, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(db,
                         "SELECT reason, count(*) FROM esr_outbox WHERE reason IS NOT NULL GROUP BY reason "
                         "ORDER BY reason",
                         -1, &st, NULL) != SQLITE_OK) {
    rc = esr_error_set(err, ESR_E_SQLITE, db ? sqlite3_extended_errcode(db) : 0, "%s: %s", path,
                       db ? sqlite3_errmsg(db) : "cannot open");
    goto done;
  }
  p->n_reasons = 0;
  while (sqlite3_step(st) == SQLITE_ROW && p->n_reasons < ESR_REPLAY_MAX_REASONS) {
    esr_replay_reason_count *c = &p->reasons[p->n_reasons++];
    snprintf(c->reason, sizeof c->reason, "%s", (const char *)sqlite3_column_text(st, 0));
    c->count = sqlite3_column_int64(st, 1);
  }
done:
  sqlite3_finalize(st);
  sqlite3_close(db);
  if (rc != ESR_E_OK) return rc;
  char inflight[300];
  snprintf(inflight, sizeof inflight, "%s-%d", r->o->topic, (int)p->partition);
  remove_file(r->o->out_dir, inflight, ".inflight"); /* the crash guard's marker: a replay has no crash to judge */
  esr_state_summary sum;
  if ((rc = esr_state_summarize_file(path, &sum, err)) != ESR_E_OK) return rc;
  p->pos.next_offset = sum.next_offset;
  memcpy(p->pos.log_digest, sum.log_digest, 32);
  p->pos.applied = sum.applied;
  p->pos.dead = sum.dead;
  memcpy(p->state_digest, sum.state_digest, 32);
  return esr_file_sha256(path, p->sha256, &p->size, err);
}

/* One partition, start to end, on the calling thread. */
static esr_code replay_partition(run *r, esr_replay_part *p, esr_readback *rb, esr_cpstore *store, esr_error *err) {
  const esr_replay_opts *o = r->o;
  const char *topic = o->topic;
  p->started_s = mono_s(); /* before the state: the progress callback reads it once it sees the state change */
  atomic_store(&p->state, ESR_PART_PREPARING);
  esr_code rc = esr_readback_bounds(rb, topic, p->partition, 0, &p->log_start, &p->log_end, err);
  if (rc != ESR_E_OK) return rc;
  int64_t stop_after = -1;
  switch (o->target) {
  case ESR_REPLAY_TO_END: p->target = p->log_end; break;
  case ESR_REPLAY_TO_OFFSET:
  case ESR_REPLAY_TO_EACH:
    if (p->target > p->log_end)
      return esr_error_set(err, o->target == ESR_REPLAY_TO_OFFSET ? ESR_E_CONFIG : ESR_E_GAP, 0,
                           "%s[%d]: offset %" PRId64 " is beyond the end of the log, which ends at %" PRId64
                           " (its next offset)%s",
                           topic, (int)p->partition, p->target, p->log_end,
                           o->target == ESR_REPLAY_TO_OFFSET ? "" : ": the state is ahead of the log");
    break;
  case ESR_REPLAY_TO_TIME: {
    /* Where the prefix ends must be known before a checkpoint can be chosen; without checkpoints the apply stops
     * by itself at the first later event (one read of the log instead of two). */
    int need_end = o->checkpoints && (r->rp->cp_dir[0] || store);
    int64_t off = -1;
    if ((rc = esr_readback_offset_for_time(rb, topic, p->partition, o->to + 1, 0, &off, err)) != ESR_E_OK) return rc;
    if (off >= 0) {
      p->target = off;
      p->time_source = ESR_TIME_BROKER;
    } else if (need_end) {
      if ((rc = esr_replay_time_end(rb, topic, p->partition, o->to, &p->target, &p->time_source, err)) != ESR_E_OK)
        return rc;
    } else {
      p->target = p->log_end;
      stop_after = o->to;
    }
    break;
  }
  }
  p->from = 0;
  if (o->checkpoints && (rc = restore_checkpoint(r, p, store, err)) != ESR_E_OK) return rc;
  if (!p->from_checkpoint && p->log_start > 0 && p->target > 0)
    return esr_error_set(err, ESR_E_GAP, 0,
                         "%s[%d]: cannot replay to offset %" PRId64 ": it needs the log from offset 0, but the log now "
                         "starts at %" PRId64 " (retention deleted %" PRId64 " events): refusing to skip them; a "
                         "checkpoint at an offset in [%" PRId64 ", %" PRId64 "] would do (--config with "
                         "checkpoint.dir or checkpoint.store)",
                         topic, (int)p->partition, p->target, p->log_start, p->log_start, p->log_start, p->target);
  if (p->from_checkpoint)
    note(r, "%s[%d]: starting from the checkpoint at offset %" PRId64 " (%s, SHA-256 verified); %" PRId64
         " events to apply",
         topic, (int)p->partition, p->from, p->checkpoint, p->target - p->from);

  esr_partition *part = NULL;
  if ((rc = esr_partition_open(&r->env, topic, p->partition, 0, &part, err)) != ESR_E_OK) return rc;
  sqlite3 *db = esr_store_db(esr_partition_store(part));
  /* A fresh copy that only this run writes: a crash of the run leaves no output to trust anyway. */
  sqlite3_exec(db, "PRAGMA synchronous=OFF", NULL, NULL, NULL);
  if (p->from_checkpoint && sqlite3_exec(db, "DELETE FROM esr_outbox", NULL, NULL, NULL) != SQLITE_OK) {
    rc = esr_error_set(err, ESR_E_SQLITE, sqlite3_extended_errcode(db), "%s[%d]: clearing the checkpoint's outbox: %s",
                       topic, (int)p->partition, sqlite3_errmsg(db));
    esr_partition_close(part);
    return rc;
  }
  atomic_store(&p->state, ESR_PART_APPLYING);
  esr_replay_range range = {.to = p->target,
                            .stop_after_ms = stop_after,
                            .batch_events = ESR_REPLAY_BATCH,
                            .progress = &p->done,
                            .cancel = &r->cancel};
  esr_replay_outcome out;
  rc = esr_replay_apply(rb, part, &range, &out, err);
  p->events = out.events;
  p->applied = out.applied;
  p->dead = out.dead;
  esr_partition_close(part);
  if (rc != ESR_E_OK) return rc;
  if ((rc = finish_file(r, p, err)) != ESR_E_OK) return rc;
  p->seconds = mono_s() - p->started_s;
  atomic_store(&p->state, ESR_PART_DONE);
  if (stop_after >= 0) {
    /* The prefix ended at the first later event, or at the log end when none was later. Set once the progress
     * callback no longer reads the target (it does while the partition applies). */
    p->target = out.stopped_by_time ? out.stopped_at : p->log_end;
    p->time_source = ESR_TIME_SCAN;
  }
  return ESR_E_OK;
}

static void *thread_main(void *arg) {
  run *r = arg;
  const esr_config *cfg = r->rp->cfg;
  esr_error err = {0};
  esr_readback *rb;
  esr_code rc = esr_readback_new(cfg, &rb, &err);
  esr_cpstore *store = NULL;
  if (rc == ESR_E_OK && r->o->checkpoints && cfg->checkpoint_store) {
    esr_cpstore_opts so = {.endpoint = cfg->checkpoint_s3_endpoint, .region = cfg->checkpoint_s3_region};
    if ((rc = esr_cpstore_open(cfg->checkpoint_store, &so, &store, &err)) != ESR_E_OK)
      esr_error_prefix(&err, "config: checkpoint.store");
  }
  for (;;) {
    size_t i = atomic_fetch_add(&r->next, 1);
    if (i >= r->rep->n) break;
    esr_replay_part *p = &r->rep->parts[i];
    if (rc == ESR_E_OK && !atomic_load(&r->cancel)) {
      esr_error e = {0};
      esr_code prc = replay_partition(r, p, rb, store, &e);
      if (prc != ESR_E_OK) fail_run(r, p, prc, &e);
    } else if (rc != ESR_E_OK) {
      fail_run(r, p, rc, &err);
    }
    pthread_mutex_lock(&r->mu);
    atomic_fetch_add(&r->finished, 1);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
  }
  esr_cpstore_close(store);
  esr_readback_free(rb);
  esr_json_arena_release();
  return NULL;
}

/* --out must be empty or absent (or `force`), and never a worker's state directory. *created: 1 when made here. */
static esr_code prepare_out(const esr_replayer *rp, const esr_replay_opts *o, int *created, esr_error *err) {
  *created = 0;
  char lock[4200];
  snprintf(lock, sizeof lock, "%s/.esr.lock", o->out_dir);
  if (access(lock, F_OK) == 0)
    return esr_error_set(err, ESR_E_CONFIG, 0,
                         "--out %s is a worker's state directory (it holds .esr.lock): a replay never writes there; "
                         "give another directory",
                         o->out_dir);
  char a[PATH_MAX], b[PATH_MAX];
  if (rp->cfg->state_dir && realpath(o->out_dir, a) && realpath(rp->cfg->state_dir, b) && strcmp(a, b) == 0)
    return esr_error_set(err, ESR_E_CONFIG, 0, "--out %s is the configuration's state.dir: a replay never writes there",
                         o->out_dir);
  DIR *d = opendir(o->out_dir);
  if (!d) {
    if (errno != ENOENT)
      return esr_error_set(err, ESR_E_IO, errno, "--out %s: %s", o->out_dir, strerror(errno));
    char path[4200];
    snprintf(path, sizeof path, "%s", o->out_dir);
    for (char *s = path + 1;; s++) { /* mkdir -p */
      if (*s != '/' && *s) continue;
      char c = *s;
      *s = '\0';
      if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return esr_error_set(err, ESR_E_IO, errno, "--out %s: cannot create %s: %s", o->out_dir, path,
                             strerror(errno));
      *s = c;
      if (!c) break;
    }
    *created = 1;
    return ESR_E_OK;
  }
  int entries = 0;
  struct dirent *de;
  while ((de = readdir(d)))
    if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) entries++;
  closedir(d);
  if (entries && !o->force)
    return esr_error_set(err, ESR_E_CONFIG, 0,
                         "--out %s is not empty (%d entries): give an empty or new directory, or --force to replace "
                         "what a replay writes there",
                         o->out_dir, entries);
  return ESR_E_OK;
}

/* What a run writes: with --force it goes first; after a failure, what the run wrote goes (nothing half-made stays
 * behind to be mistaken for a replay). */
static void clear_outputs(const esr_replay_opts *o, const esr_replay_report *rep) {
  static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
  for (size_t i = 0; i < rep->n; i++) {
    for (size_t k = 0; k < sizeof sfx / sizeof *sfx; k++) remove_file(o->out_dir, rep->parts[i].file, sfx[k]);
    char inflight[300];
    snprintf(inflight, sizeof inflight, "%s-%d", o->topic, (int)rep->parts[i].partition);
    remove_file(o->out_dir, inflight, ".inflight");
  }
  remove_file(o->out_dir, "replay.json", "");
  remove_file(o->out_dir, "replay.json", ".sig");
}

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return x < y ? -1 : x > y;
}

static esr_code run_all(esr_replayer *rp, const esr_replay_opts *o, esr_replay_report *rep, double t0,
                        esr_error *err);

esr_code esr_replayer_run(esr_replayer *rp, const esr_replay_opts *o, esr_replay_report *rep, esr_error *err) {
  esr_error local;
  if (!err) err = &local;
  memset(rep, 0, sizeof *rep);
  snprintf(rep->topic, sizeof rep->topic, "%s", o->topic);
  rep->target = o->target;
  rep->to = o->to;
  rep->started_ms = wall_ms();
  double t0 = mono_s();
  if (o->target == ESR_REPLAY_TO_OFFSET && o->to < 0)
    return esr_error_set(err, ESR_E_CONFIG, 0, "--to %" PRId64 ": an offset is >= 0", o->to);
  int created = 0;
  esr_code rc = prepare_out(rp, o, &created, err);
  if (rc != ESR_E_OK) return rc;
  rc = run_all(rp, o, rep, t0, err);
  if (rc != ESR_E_OK) {
    clear_outputs(o, rep);
    if (created) rmdir(o->out_dir);
  }
  return rc;
}

/* The run proper, in an output directory that prepare_out accepted. */
static esr_code run_all(esr_replayer *rp, const esr_replay_opts *o, esr_replay_report *rep, double t0,
                        esr_error *err) {
  esr_code rc;

  /* The partitions: those asked (sorted, unique), or every partition of the topic. */
  esr_readback *rb;
  if ((rc = esr_readback_new(rp->cfg, &rb, err)) != ESR_E_OK) return rc;
  int count = 0;
  rc = esr_readback_partition_count(rb, o->topic, 0, &count, err);
  esr_readback_free(rb);
  if (rc != ESR_E_OK) return rc;
  size_t n = o->partitions ? o->n_partitions : (size_t)count;
  if (!(rep->parts = calloc(n + 1, sizeof *rep->parts))) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  for (size_t i = 0; i < n; i++) {
    esr_replay_part *p = &rep->parts[i];
    p->partition = o->partitions ? o->partitions[i] : (int32_t)i;
    p->target = o->target == ESR_REPLAY_TO_OFFSET ? o->to : o->target == ESR_REPLAY_TO_EACH ? o->to_each[i] : -1;
    if (p->partition < 0 || p->partition >= count)
      return esr_error_set(err, ESR_E_CONFIG, 0, "--partition %d: topic %s has %d partitions (0..%d)",
                           (int)p->partition, o->topic, count, count - 1);
    snprintf(p->file, sizeof p->file, "%s-%d.db", o->topic, (int)p->partition);
    p->log_start = p->log_end = -1;
  }
  rep->n = n;
  if (o->target != ESR_REPLAY_TO_EACH) qsort(rep->parts, n, sizeof *rep->parts, cmp_i32); /* partition is first */
  for (size_t i = 1; i < n && o->target != ESR_REPLAY_TO_EACH; i++)
    if (rep->parts[i].partition == rep->parts[i - 1].partition)
      return esr_error_set(err, ESR_E_CONFIG, 0, "--partition %d is given twice", (int)rep->parts[i].partition);
  if (o->force) clear_outputs(o, rep);

  run r = {.rp = rp, .o = o, .rep = rep, .rc = ESR_E_OK};
  esr_replayer_partition_env(rp, o->out_dir, &r.env);
  pthread_mutex_init(&r.mu, NULL);
  pthread_cond_init(&r.cv, NULL);
  int threads = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (threads < 1) threads = 1;
  if ((size_t)threads > n) threads = (int)(n ? n : 1);
  rep->threads = threads;
  pthread_t *tid = calloc((size_t)threads, sizeof *tid);
  int started = 0;
  for (int i = 0; tid && i < threads; i++) {
    if (pthread_create(&tid[i], NULL, thread_main, &r) != 0) break;
    started++;
  }
  if (!started) {
    free(tid);
    pthread_mutex_destroy(&r.mu);
    pthread_cond_destroy(&r.cv);
    return esr_error_set(err, ESR_E_NOMEM, 0, "cannot start replay threads");
  }
  pthread_mutex_lock(&r.mu);
  while (atomic_load(&r.finished) < n) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += PROGRESS_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&r.cv, &r.mu, &until);
    if (o->progress && atomic_load(&r.finished) < n) {
      rep->seconds = mono_s() - t0;
      o->progress(o->cb_arg, rep, 0);
    }
  }
  pthread_mutex_unlock(&r.mu);
  for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
  free(tid);
  char fetch[4200];
  snprintf(fetch, sizeof fetch, "%s/" FETCH_DIR, o->out_dir);
  esr_remove_tree(fetch);
  rep->finished_ms = wall_ms();
  rep->seconds = mono_s() - t0;
  if (o->progress) o->progress(o->cb_arg, rep, 1);
  pthread_mutex_destroy(&r.mu);
  pthread_cond_destroy(&r.cv);
  if (r.rc != ESR_E_OK) {
    *err = r.err;
    return r.rc;
  }
  return ESR_E_OK;
}
