/* recovery.c — the recovery ladder: pick the newest usable state of a partition (live database, local checkpoint,
 * remote checkpoint, or none), check the log covers it, put it in place. */
#include "recovery.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "checkpoint.h"
#include "clock.h"
#include "cplister.h"
#include "store.h"

const char *esr_recovery_step_name(esr_recovery_step step) {
  switch (step) {
  case ESR_RECOVERY_LIVE: return "live database";
  case ESR_RECOVERY_LOCAL: return "local checkpoint";
  case ESR_RECOVERY_REMOTE: return "remote checkpoint";
  case ESR_RECOVERY_LOG: return "log replay from offset 0";
  }
  return "?";
}

static void note(esr_recovery_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(esr_recovery_result *r, const char *fmt, ...) {
  size_t len = strlen(r->detail);
  if (len + 3 >= sizeof r->detail) return;
  if (len) {
    memcpy(r->detail + len, "; ", 3);
    len += 2;
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->detail + len, sizeof r->detail - len, fmt, ap);
  va_end(ap);
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* Moves a damaged live database aside as "<live>.corrupt-<UTC time>"; `aside` says where, or why it could not. */
static void move_aside(const char *live, char *aside, size_t cap) {
  esr_error err;
  if (esr_store_move_aside(live, "corrupt", aside, cap, &err) != ESR_E_OK) snprintf(aside, cap, "(not moved: %s)", err.msg);
}

/* PRAGMA quick_check on an open connection: ESR_E_CORRUPT with its first finding, ESR_E_IO when it cannot run. */
static esr_code quick_check_db(sqlite3 *db, esr_error *err) {
  sqlite3_stmt *st = NULL;
  esr_code rc = ESR_E_OK;
  if (sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &st, NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
    int code = sqlite3_extended_errcode(db);
    rc = esr_error_set(err, (code & 0xff) == SQLITE_CORRUPT || code == SQLITE_NOTADB ? ESR_E_CORRUPT : ESR_E_IO, code,
                       "quick_check could not run: %s", sqlite3_errmsg(db));
  } else {
    const char *res = (const char *)sqlite3_column_text(st, 0);
    if (!res || strcmp(res, "ok") != 0) {
      esr_error_set(err, ESR_E_CORRUPT, 0, "quick_check: %s", res ? res : "?");
      for (char *c = err ? err->msg : NULL; c && *c; c++) /* a report spans lines: keep the message on one */
        if (*c == '\n') *c = ' ';
      rc = ESR_E_CORRUPT;
    }
  }
  sqlite3_finalize(st);
  return rc;
}

/* Checks the live database: it opens, passes quick_check (when asked) and holds this partition's position (or none
 * yet). Sets *next to its next_offset. ESR_E_CORRUPT when it must not be used. */
static esr_code check_live(const char *live, const char *topic, int32_t partition, int quick_check, int64_t *next,
                           sqlite3 **keep, esr_error *err) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  esr_code rc = ESR_E_OK;
  *next = 0;
  if (sqlite3_open_v2(live, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
    rc = esr_error_set(err, ESR_E_CORRUPT, sqlite3_extended_errcode(db), "cannot open: %s", sqlite3_errmsg(db));
    goto out;
  }
  /* As the only connection, closing would checkpoint the whole WAL a crash left behind: the store does that later,
   * in the course of its commits, instead of on the restart path. */
  sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
  sqlite3_busy_timeout(db, 5000);
  if (quick_check && (rc = quick_check_db(db, err)) != ESR_E_OK) goto out;
  /* Decided from the schema, not from an error's text: a database without any table never opened as a partition
   * (the store creates esr_offsets first), so it holds nothing and the partition starts from offset 0; one with
   * tables but no esr_offsets is not a partition's (or lost its position): it must not be resumed at 0 over the
   * state it holds. */
  if (sqlite3_prepare_v2(db, "SELECT count(*), count(CASE WHEN name = 'esr_offsets' THEN 1 END) FROM sqlite_schema",
                         -1, &st, NULL) != SQLITE_OK ||
      sqlite3_step(st) != SQLITE_ROW) {
    int code = sqlite3_extended_errcode(db);
    rc = esr_error_set(err, (code & 0xff) == SQLITE_CORRUPT || code == SQLITE_NOTADB ? ESR_E_CORRUPT : ESR_E_IO, code,
                       "reading its schema: %s", sqlite3_errmsg(db));
    goto out;
  }
  int64_t objects = sqlite3_column_int64(st, 0), has_offsets = sqlite3_column_int64(st, 1);
  sqlite3_finalize(st);
  st = NULL;
  if (objects == 0) goto out; /* empty: nothing to resume, nothing to lose */
  if (!has_offsets) {
    rc = esr_error_set(err, ESR_E_CORRUPT, 0, "it holds %" PRId64 " tables or indexes but no esr_offsets", objects);
    goto out;
  }
  if (sqlite3_prepare_v2(db, "SELECT topic, partition, next_offset FROM esr_offsets", -1, &st, NULL) != SQLITE_OK) {
    rc = esr_error_set(err, ESR_E_CORRUPT, sqlite3_extended_errcode(db), "reading esr_offsets: %s",
                       sqlite3_errmsg(db));
    goto out;
  }
  int step = sqlite3_step(st);
  if (step == SQLITE_ROW) {
    const char *t = (const char *)sqlite3_column_text(st, 0);
    if (!t || strcmp(t, topic) != 0 || sqlite3_column_int(st, 1) != partition) {
      rc = esr_error_set(err, ESR_E_CORRUPT, 0, "it holds the position of %s-%d", t ? t : "?",
                         sqlite3_column_int(st, 1));
      goto out;
    }
    *next = sqlite3_column_int64(st, 2);
  } else if (step != SQLITE_DONE) {
    rc = esr_error_set(err, ESR_E_CORRUPT, sqlite3_extended_errcode(db), "reading esr_offsets: %s",
                       sqlite3_errmsg(db));
  }
out:
  sqlite3_finalize(st);
  if (rc == ESR_E_OK)
    *keep = db;
  else
    sqlite3_close(db);
  return rc;
}

void esr_recovery_result_release(esr_recovery_result *r) {
  sqlite3_close(r->live_db);
  r->live_db = NULL;
}

/* Whether the log holds what a state at `next` needs: [next, end) must still be there. */
static int covered(const esr_recovery_result *r, int64_t next) {
  if (r->log_start < 0) return 1; /* unknown: the consumer refuses a gap when it fetches */
  return next >= r->log_start && next <= r->log_end;
}

/* Drops entry i of a manifest list. */
static void drop(esr_manifest_list *l, size_t i) {
  esr_manifest_free(l->v[i]);
  memmove(&l->v[i], &l->v[i + 1], (l->n - i - 1) * sizeof *l->v);
  l->n--;
}

/* The remote store's listing, when a lister consults it in the background. */
typedef struct remote_query {
  esr_cplist_ticket *ticket; /* pending; NULL once answered, failed or given up */
  int64_t down_ms;           /* not waited for: known to be down for this long */
} remote_query;

/* Takes the remote listing if it comes in time. With a valid local state (`have_local`) the store is only an
 * optimisation: it gets env->store_wait_ms from the start of the ladder, and nothing while it is known to be down.
 * Without one the partition may wait for it, up to env->store_wait_cold_ms from the start of the ladder, and no
 * longer than that from the start of the store's outage (so that many partitions do not wait one after the other). */
static void await_remote(const esr_recovery_env *env, remote_query *q, int have_local, int64_t t0,
                         esr_manifest_list **remote, esr_recovery_result *r) {
  if (!q->ticket) return;
  int64_t now = esr_now_ms(), down = esr_cplister_unhealthy_ms(env->lister), timeout;
  if (have_local) {
    timeout = down ? 0 : env->store_wait_ms - (now - t0);
    q->down_ms = down;
  } else {
    timeout = env->store_wait_cold_ms - (now - t0);
    if (down && env->store_wait_cold_ms - down < timeout) timeout = env->store_wait_cold_ms - down;
  }
  if (timeout < 0) timeout = 0;
  if (!esr_cplister_wait(q->ticket, (int)timeout)) {
    if (have_local) return; /* kept: should the local state turn out unusable, it may be waited for again */
    note(r, "remote store %s: no answer within %d ms (recovery.store.wait.cold.ms)", esr_cplister_url(env->lister),
         env->store_wait_cold_ms);
  } else {
    esr_error e = {0};
    if (esr_cplister_result(q->ticket, remote, &e) != ESR_E_OK)
      note(r, "remote store %s not listed (%s)", esr_cplister_url(env->lister), e.msg);
  }
  esr_cplister_drop(q->ticket);
  q->ticket = NULL;
}

/* Sets a remote checkpoint that failed its verification aside in the store, as a local one is. */
static void quarantine_remote(const esr_recovery_env *env, const esr_manifest *m, esr_recovery_result *r) {
  /* m may be a partition of another name only if the store's listing lied: esr_cpstore_list checks it. */
  esr_error e = {0};
  if (esr_cpstore_quarantine(env->store, m->topic, m->partition, m->next_offset, &e) == ESR_E_OK)
    note(r, "set aside in the store (*.bad-<time>)");
  else
    note(r, "could not be set aside in the store (%s)", e.msg);
}

esr_code esr_recover(const esr_recovery_env *env, const char *topic, int32_t partition, esr_recovery_result *r,
                     esr_error *err) {
  memset(r, 0, sizeof *r);
  int64_t t0 = esr_now_ms();
  r->log_start = r->log_end = -1;
  char live[4096];
  esr_store_path(live, sizeof live, env->state_dir, topic, partition);
  esr_code rc = ESR_E_OK;
  /* The remote listing first, so that it runs while the local state is checked. */
  remote_query rq = {0};
  if (env->store && env->lister) rq.ticket = esr_cplister_ask(env->lister, topic, partition);

  /* Candidate 1: the live database (its full check may be deferred: env->quick_check). */
  int64_t live_next = -1;
  sqlite3 *live_db = NULL; /* kept open while it may be chosen: see esr_recovery_result.live_db */
  if (exists(live)) {
    esr_error e = {0};
    if (check_live(live, topic, partition, env->quick_check, &live_next, &live_db, &e) != ESR_E_OK) {
      char aside[4300];
      move_aside(live, aside, sizeof aside);
      note(r, "live database unusable (%s): moved to %s", e.msg, aside);
      live_next = -1;
    }
  }
  /* Candidates 2 and 3: local and remote checkpoints, by their manifests; a data file is read only if chosen (the
   * restore verifies size, SHA-256 and position while it copies). */
  esr_manifest_list *local = NULL, *remote = NULL;
  if ((rc = esr_checkpoint_list(env->cp_dir, topic, partition, &local, err)) != ESR_E_OK) {
    esr_error_prefix(err, "%s[%d]: local checkpoints", topic, (int)partition);
    goto out;
  }
  if (env->store && !env->lister) {
    esr_error e = {0};
    if (esr_cpstore_list(env->store, topic, partition, &remote, &e) != ESR_E_OK) {
      note(r, "remote store %s not listed (%s)", esr_cpstore_url(env->store), e.msg);
      remote = NULL;
    }
  }
  await_remote(env, &rq, live_next >= 0 || local->n > 0, t0, &remote, r);
  /* The usual restart: the live database is at least as new as any checkpoint. It needs no log bounds (a gap is then
   * refused by the consumer when it fetches: auto.offset.reset=error) — one broker round trip less per partition. */
  if (live_next >= 0 && (!local->n || local->v[0]->next_offset <= live_next) &&
      (!remote || !remote->n || remote->v[0]->next_offset <= live_next)) {
    r->step = ESR_RECOVERY_LIVE;
    r->next_offset = live_next;
    goto out;
  }
  if (env->bounds && env->bounds(env->bounds_arg, topic, partition, &r->log_start, &r->log_end) != 0) {
    r->log_start = r->log_end = -1;
    note(r, "log bounds unknown (broker unreachable?)");
  }
  if (live_next >= 0 && !covered(r, live_next))
    note(r, "live database at offset %" PRId64 " is outside the log [%" PRId64 ", %" PRId64 ")", live_next,
         r->log_start, r->log_end);

  for (;;) {
    int64_t best = -1;
    esr_recovery_step step = ESR_RECOVERY_LOG;
    if (live_next >= 0 && covered(r, live_next)) {
      best = live_next;
      step = ESR_RECOVERY_LIVE;
    }
    size_t li = 0, ri = 0;
    while (li < local->n && !covered(r, local->v[li]->next_offset)) li++;
    if (li < local->n && local->v[li]->next_offset > best) {
      best = local->v[li]->next_offset;
      step = ESR_RECOVERY_LOCAL;
    }
    if (rq.ticket) { /* still pending: a partition left without local state may wait for it now */
      await_remote(env, &rq, step != ESR_RECOVERY_LOG, t0, &remote, r);
      if (remote) continue;
    }
    if (remote) {
      while (ri < remote->n && !covered(r, remote->v[ri]->next_offset)) ri++;
      if (ri < remote->n && remote->v[ri]->next_offset > best) {
        best = remote->v[ri]->next_offset;
        step = ESR_RECOVERY_REMOTE;
      }
    }
    if (step == ESR_RECOVERY_LOG) {
      if (r->log_start > 0) {
        if (local->n)
          note(r, "newest local checkpoint at %" PRId64 " is outside the log [%" PRId64 ", %" PRId64 ")",
               local->v[0]->next_offset, r->log_start, r->log_end);
        if (remote && remote->n)
          note(r, "newest remote checkpoint at %" PRId64 " is outside the log [%" PRId64 ", %" PRId64 ")",
               remote->v[0]->next_offset, r->log_start, r->log_end);
        int64_t newest = live_next;
        if (local->n && local->v[0]->next_offset > newest) newest = local->v[0]->next_offset;
        if (remote && remote->n && remote->v[0]->next_offset > newest) newest = remote->v[0]->next_offset;
        int64_t need = newest < 0 ? 0 : newest;
        rc = esr_error_set(err, ESR_E_GAP, 0,
                           "%s[%d]: refused: the log no longer holds offset %" PRId64 " (needed to resume from the "
                           "newest state found; the log now starts at %" PRId64 " and ends at %" PRId64 "): %" PRId64
                           " events were deleted by retention before they were applied. Refusing to skip them: "
                           "restore a checkpoint at offset >= %" PRId64 " (%s)",
                           topic, (int)partition, need, r->log_start, r->log_end, r->log_start - need, r->log_start,
                           r->detail[0] ? r->detail : "no checkpoint found");
        goto out;
      }
      sqlite3_close(live_db);
      live_db = NULL;
      if (exists(live)) { /* a live database outside the log: keep it for inspection */
        char aside[4300];
        move_aside(live, aside, sizeof aside);
        note(r, "live database moved to %s", aside);
      }
      r->step = ESR_RECOVERY_LOG;
      r->next_offset = 0;
      break;
    }
    if (step == ESR_RECOVERY_LIVE) {
      r->step = step;
      r->next_offset = live_next;
      break;
    }
    sqlite3_close(live_db); /* a checkpoint replaces it */
    live_db = NULL;
    const esr_manifest *m = step == ESR_RECOVERY_LOCAL ? local->v[li] : remote->v[ri];
    if (step == ESR_RECOVERY_REMOTE) {
      esr_error e = {0};
      if (esr_cpstore_fetch(env->store, m, env->cp_dir, &e) != ESR_E_OK) {
        note(r, "remote checkpoint %" PRId64 " not fetched (%s)", m->next_offset, e.msg);
        if (e.code != ESR_E_CORRUPT) { /* the store is unreachable: use what is here */
          esr_manifest_list_free(remote);
          remote = NULL;
        } else { /* set it aside there (so that no one fetches it again), try the next older one */
          quarantine_remote(env, m, r);
          drop(remote, ri);
        }
        continue;
      }
    }
    char moved[4300] = "";
    esr_error e = {0};
    if (esr_checkpoint_restore(env->cp_dir, m, env->state_dir, ESR_RESTORE_KEEP_OLD, moved, sizeof moved, &e) !=
        ESR_E_OK) {
      if (e.code != ESR_E_CORRUPT) {
        rc = esr_error_set(err, e.code, e.lib_code, "%s[%d]: restoring checkpoint %" PRId64 ": %s", topic,
                           (int)partition, m->next_offset, e.msg);
        goto out;
      }
      note(r, "%s checkpoint %" PRId64 " is invalid (%s): quarantined", step == ESR_RECOVERY_LOCAL ? "local" : "remote",
           m->next_offset, e.msg);
      esr_checkpoint_quarantine(env->cp_dir, topic, partition, m->next_offset, NULL);
      if (step == ESR_RECOVERY_LOCAL)
        drop(local, li);
      else
        drop(remote, ri);
      continue;
    }
    if (moved[0]) note(r, "previous live database kept as %s", moved);
    r->step = step;
    r->next_offset = m->next_offset;
    break;
  }
  rc = ESR_E_OK;
out:
  if (rq.ticket) { /* the local state won: the store was not waited for */
    if (rq.down_ms)
      note(r, "remote store %s not consulted: unreachable (failing for %" PRId64 " ms)", esr_cplister_url(env->lister),
           rq.down_ms);
    else
      note(r, "remote store %s not consulted: no answer within %d ms (recovery.store.wait.ms)",
           esr_cplister_url(env->lister), env->store_wait_ms);
    esr_cplister_drop(rq.ticket);
  }
  if (rc == ESR_E_OK && r->step == ESR_RECOVERY_LIVE)
    r->live_db = live_db;
  else
    sqlite3_close(live_db);
  r->elapsed_ms = esr_now_ms() - t0;
  esr_manifest_list_free(local);
  esr_manifest_list_free(remote);
  return rc;
}

esr_code esr_recovery_check_db(const char *path, esr_error *err) {
  sqlite3 *db = NULL;
  esr_code rc;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
    rc = esr_error_set(err, ESR_E_CORRUPT, sqlite3_extended_errcode(db), "cannot open: %s", sqlite3_errmsg(db));
  } else {
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
    sqlite3_busy_timeout(db, 5000);
    rc = quick_check_db(db, err);
  }
  sqlite3_close(db);
  return rc;
}

void esr_recovery_quarantine_live(const char *state_dir, const char *topic, int32_t partition, char *aside,
                                  size_t cap) {
  char live[4096];
  esr_store_path(live, sizeof live, state_dir, topic, partition);
  move_aside(live, aside, cap);
}
