/* partition.c — one partition's apply loop body: envelope, routing, upcast, handler in a savepoint, dead letters, the
 * position, commits and the outbox's life after commit. Everything that makes "exactly once" true for the state. */
#include "partition.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "digest.h"
#include "envelope.h"
#include "host.h"
#include "json_arena.h"
#include "log.h"
#include "outbox.h"

#define MAX_IN_FLIGHT 10000
#define PUBLISH_SCAN 1000
#define WAL_IDLE_MS 1000    /* a partition with no commit for this long truncates its WAL */
#define WAL_BIG_FRAMES 256  /* ... and sooner when the WAL is this long (1 MiB): a crash would cost its reread */
#define WAL_BIG_IDLE_MS 200
#define DL_LOG_MS 10000     /* dead letters: one info line at most per partition and interval, then a summary */

typedef struct seq_list {
  int64_t *v;
  size_t n, cap;
} seq_list;

struct esr_partition {
  const esr_partition_env *env;
  esr_store *store;
  esr_outputs *outs;    /* publish once: marks and read-back */
  esr_publisher *pub;   /* the environment's, or one of its own (esr_partition_set_publisher) */
  esr_hasher *hasher;
  esr_guard *guard;
  int careful_logged;
  int commit_due; /* a poison event was dead-lettered in the open batch: commit now, so the verdict outlives a death */
  uint64_t sink;
  esr_position pending; /* working position: committed + the open batch */
  int batch_events;
  int batch_outbox; /* rows added by the open batch */
  int64_t batch_started;
  char *stopped;
  char *keybuf;
  size_t keybuf_cap;
  /* outbox after commit */
  int64_t sent_upto; /* rows with seq <= sent_upto were sent (or are being sent) */
  int in_flight;
  int send_failed;
  int unsent; /* rows may exist beyond sent_upto */
  int held;   /* the outbox is held back (esr_partition_hold) */
  int64_t last_commit_ms; /* esr_now_ms of the last commit (or of the open) */
  int wal_failed;         /* the last truncation failed for a reason other than a reader: wait for a commit */
  esr_pmetrics *metrics;      /* counted at commit, or NULL */
  int batch_dead[ESR_DL_N];   /* dead letters of the open batch, by reason */
  /* dead letters not logged one by one at info level since the last line (summarized by esr_partition_tick) */
  int64_t dl_logged_ms;      /* esr_now_ms of the last info line about dead letters, or 0 */
  int dl_quiet[ESR_DL_N];
  int dl_quiet_n;
  int64_t dl_quiet_from, dl_quiet_to; /* their offsets */
  seq_list delivered; /* acknowledged, to delete in the next transaction */
  seq_list deleting;  /* deleted in the open transaction */
  int in_txn;         /* a Kafka transaction is open: acknowledged rows wait in `staged` for its commit */
  seq_list staged;
};

static void dead_letter_summary(esr_partition *p, int64_t now);

static int seq_push(seq_list *l, int64_t v) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 64;
    int64_t *g = realloc(l->v, cap * sizeof *g);
    if (!g) return -1;
    l->v = g;
    l->cap = cap;
  }
  l->v[l->n++] = v;
  return 0;
}

const char *esr_partition_topic(const esr_partition *p) { return esr_store_topic(p->store); }
int32_t esr_partition_id(const esr_partition *p) { return esr_store_partition(p->store); }
esr_store *esr_partition_store(esr_partition *p) { return p->store; }
int64_t esr_partition_next_offset(const esr_partition *p) { return p->pending.next_offset; }
const esr_position *esr_partition_committed(const esr_partition *p) { return esr_store_position(p->store); }
const esr_position *esr_partition_working(const esr_partition *p) { return &p->pending; }
int esr_partition_batch_events(const esr_partition *p) { return esr_store_in_batch(p->store) ? p->batch_events : 0; }
int64_t esr_partition_batch_started(const esr_partition *p) { return p->batch_started; }
const char *esr_partition_stopped(const esr_partition *p) { return p->stopped; }
int esr_partition_commit_due(const esr_partition *p) { return p->commit_due || esr_guard_careful(p->guard); }
int esr_partition_in_flight(const esr_partition *p) { return p->in_flight; }
void esr_partition_set_metrics(esr_partition *p, esr_pmetrics *m) { p->metrics = m; }

static esr_code migrate_all(esr_partition *p, esr_error *err) {
  const esr_registry *reg = p->env->registry;
  for (size_t i = 0; i < reg->n; i++) {
    const esr_plugin *pl = reg->plugins[i];
    const esr_handler *h = &pl->handler;
    int have;
    esr_code rc = esr_store_handler_version(p->store, h->name, &have, err);
    if (rc != ESR_E_OK) return rc;
    if (have > h->schema_version)
      return esr_error_set(err, ESR_E_PLUGIN, 0,
                           "handler %s: this database has its tables at version %d, the plugin (%s) knows up to %d: "
                           "refusing to downgrade; deploy a plugin of version >= %d",
                           h->name, have, pl->path, h->schema_version, have);
    if (have == h->schema_version) continue;
    if ((rc = esr_store_begin(p->store, err)) != ESR_E_OK) return rc;
    esr_ctx ctx;
    int hr = esr_call_migrate(&ctx, p->store, pl, have);
    if ((rc = esr_call_storage(&ctx, err)) != ESR_E_OK) {
      esr_store_rollback(p->store, NULL);
      return rc;
    }
    if (hr != ESR_OK) {
      esr_store_rollback(p->store, NULL);
      return esr_error_set(err, ESR_E_PLUGIN, hr, "handler %s: migrate from version %d to %d failed: %s", h->name,
                           have, h->schema_version, ctx.error[0] ? ctx.error : "(no message)");
    }
    rc = esr_store_set_handler_version(p->store, h->name, h->schema_version, h->version ? h->version : "", err);
    if (rc == ESR_E_OK) rc = esr_store_commit(p->store, esr_store_position(p->store), err);
    if (rc != ESR_E_OK) {
      esr_store_rollback(p->store, NULL);
      return rc;
    }
    esr_log(ESR_LOG_INFO, "partition", "%s[%d]: handler %s tables migrated from version %d to %d",
            esr_store_topic(p->store), (int)esr_store_partition(p->store), h->name, have, h->schema_version);
  }
  return ESR_E_OK;
}

esr_code esr_partition_open(const esr_partition_env *env, const char *topic, int32_t partition, uint64_t sink,
                            esr_partition **out, esr_error *err) {
  *out = NULL;
  esr_partition *p = calloc(1, sizeof *p);
  if (!p) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  p->env = env;
  p->sink = sink;
  esr_code rc = esr_store_open(env->state_dir, topic, partition, &env->store, &p->store, err);
  if (rc != ESR_E_OK) goto fail;
  if ((rc = esr_hasher_new(&p->hasher, err)) != ESR_E_OK) goto fail;
  if ((rc = migrate_all(p, err)) != ESR_E_OK) goto fail;
  if ((rc = esr_outputs_open(p->store, &env->outputs, &p->outs, err)) != ESR_E_OK) goto fail;
  p->pub = env->publisher;
  if ((rc = esr_guard_open(env->state_dir, topic, partition, env->max_crash_retries, env->batch_max, env->last_crash,
                           &p->guard, err)) != ESR_E_OK)
    goto fail;
  int sig_hits, kill_hits;
  int64_t suspect = esr_guard_suspect(p->guard, &sig_hits, &kill_hits);
  if (suspect >= 0)
    esr_log(ESR_LOG_WARN, "partition",
            "%s[%d]: the process died while processing offset %" PRId64 ": %d time(s) with a recorded signal, %d "
            "without; it is skipped as poison after more than %d with a signal (or 2 without, in a careful pass)",
            topic, (int)partition, suspect, sig_hits, kill_hits, env->max_crash_retries);
  p->pending = *esr_store_position(p->store);
  p->last_commit_ms = esr_now_ms();
  p->unsent = 1; /* rows a previous run committed and did not see acknowledged */
  *out = p;
  return ESR_E_OK;
fail:
  esr_error_prefix(err, "%s[%d]", topic, (int)partition);
  esr_partition_close(p);
  return rc;
}

void esr_partition_close(esr_partition *p) {
  if (!p) return;
  dead_letter_summary(p, esr_now_ms());
  esr_guard_release(p->guard); /* closed on purpose: whatever batch was open is not a death */
  esr_store_close(p->store);
  esr_outputs_free(p->outs);
  esr_hasher_free(p->hasher);
  esr_guard_close(p->guard);
  free(p->stopped);
  free(p->keybuf);
  free(p->delivered.v);
  free(p->deleting.v);
  free(p->staged.v);
  free(p);
}

void esr_partition_rollback(esr_partition *p) {
  esr_store_rollback(p->store, NULL);
  p->commit_due = 0;
  p->pending = *esr_store_position(p->store);
  p->batch_events = 0;
  p->batch_outbox = 0;
  memset(p->batch_dead, 0, sizeof p->batch_dead);
  /* The deletes of the rolled-back transaction did not happen. */
  for (size_t i = 0; i < p->deleting.n; i++) seq_push(&p->delivered, p->deleting.v[i]);
  p->deleting.n = 0;
}

/* Opens a transaction and deletes the rows acknowledged since the last one. */
static esr_code begin(esr_partition *p, esr_error *err) {
  esr_code rc = esr_store_begin(p->store, err);
  if (rc != ESR_E_OK) return rc;
  p->batch_started = esr_now_ms();
  p->batch_events = 0;
  p->batch_outbox = 0;
  if (p->delivered.n) {
    rc = esr_outbox_delete(p->store, p->delivered.v, p->delivered.n, err);
    if (rc != ESR_E_OK) {
      esr_store_rollback(p->store, NULL);
      return rc;
    }
    seq_list t = p->deleting;
    p->deleting = p->delivered;
    p->delivered = t;
    p->delivered.n = 0;
  }
  /* The marks move in the transaction that deletes the acknowledged rows (esr/outputs.h). A rollback leaves the
   * database's marks lower than the memory's: a later read-back then starts earlier, which is safe. */
  if (p->outs && (rc = esr_outputs_save(p->outs, p->store, err)) != ESR_E_OK) {
    esr_store_rollback(p->store, NULL);
    for (size_t i = 0; i < p->deleting.n; i++) seq_push(&p->delivered, p->deleting.v[i]);
    p->deleting.n = 0;
    return rc;
  }
  return ESR_E_OK;
}

static esr_code dead_letter(esr_partition *p, const esr_message *m, const char *reason, const char *error,
                            esr_error *err) {
  esr_outbox_row row = {.topic = p->env->dlq_topic,
                        .key = m->key,
                        .key_len = m->key_len,
                        .value = m->value,
                        .value_len = m->value_len,
                        .src_offset = m->offset,
                        .src_index = 0,
                        .reason = reason,
                        .error = error};
  esr_code rc = esr_outbox_add(p->store, &row, err);
  if (rc != ESR_E_OK) return rc;
  p->pending.dead++;
  p->batch_outbox++;
  int why = esr_metrics_reason_index(reason);
  p->batch_dead[why]++;
  /* Each one at debug level; at info, the first of an interval, then a summary per interval (esr_partition_tick):
   * the dead letter itself carries the detail, and a stream of bad input must not become a stream of log lines. */
  if (esr_log_enabled(ESR_LOG_DEBUG)) {
    esr_log(ESR_LOG_DEBUG, "partition", "%s[%d]@%" PRId64 ": dead letter (%s): %s", esr_store_topic(p->store),
            (int)esr_store_partition(p->store), m->offset, reason, error);
    return ESR_E_OK;
  }
  int64_t now = esr_now_ms();
  if (!p->dl_quiet_n && (!p->dl_logged_ms || now - p->dl_logged_ms >= DL_LOG_MS)) {
    esr_log(ESR_LOG_INFO, "partition", "%s[%d]@%" PRId64 ": dead letter (%s): %s", esr_store_topic(p->store),
            (int)esr_store_partition(p->store), m->offset, reason, error);
    p->dl_logged_ms = now;
    return ESR_E_OK;
  }
  if (!p->dl_quiet_n++) p->dl_quiet_from = m->offset;
  p->dl_quiet_to = m->offset;
  p->dl_quiet[why]++;
  return ESR_E_OK;
}

/* The info line about the dead letters not logged one by one since the last one (see dead_letter). */
static void dead_letter_summary(esr_partition *p, int64_t now) {
  if (!p->dl_quiet_n) return;
  char reasons[256] = "";
  size_t used = 0;
  for (int i = 0; i < ESR_DL_N; i++) {
    if (!p->dl_quiet[i]) continue;
    int w = snprintf(reasons + used, sizeof reasons - used, "%s%s %d", used ? ", " : "", esr_metrics_reason_name(i),
                     p->dl_quiet[i]);
    if (w < 0 || (size_t)w >= sizeof reasons - used) break;
    used += (size_t)w;
  }
  esr_log(ESR_LOG_INFO, "partition",
          "%s[%d]: %d more dead letter(s) at offsets %" PRId64 "..%" PRId64 " (%s); each one is logged at debug level "
          "and carries its reason in the dead-letter topic",
          esr_store_topic(p->store), (int)esr_store_partition(p->store), p->dl_quiet_n, p->dl_quiet_from,
          p->dl_quiet_to, reasons);
  memset(p->dl_quiet, 0, sizeof p->dl_quiet);
  p->dl_quiet_n = 0;
  p->dl_logged_ms = now;
}

static const char *key_copy(esr_partition *p, const esr_message *m) {
  if (!m->key) return NULL;
  if (m->key_len + 1 > p->keybuf_cap) {
    size_t cap = m->key_len + 64;
    char *g = realloc(p->keybuf, cap);
    if (!g) return NULL;
    p->keybuf = g;
    p->keybuf_cap = cap;
  }
  memcpy(p->keybuf, m->key, m->key_len);
  p->keybuf[m->key_len] = '\0';
  return p->keybuf;
}

/* Undoes what a refused event changed: its savepoint when it has one; else nothing when it changed nothing (the fast
 * path: most handlers check before they write); else the whole batch, and the caller applies it again from the
 * committed position (ESR_E_REDO), this handler with a savepoint per event from then on. */
static esr_code undo_event(esr_partition *p, const esr_plugin *pl, int savepoint, uint64_t mark, int64_t offset,
                           esr_error *err) {
  if (savepoint) return esr_store_rollback_to(p->store, err);
  if (esr_store_write_mark(p->store) == mark) return ESR_E_OK;
  esr_plugin *shared = (esr_plugin *)pl; /* the one mutable member, atomic */
  if (!atomic_exchange(&shared->writes_before_refusing, 1))
    esr_log(ESR_LOG_INFO, "partition",
            "%s[%d]@%" PRId64 ": handler %s changed the database before refusing an event: its events get a savepoint "
            "each from now on, and this batch is applied again",
            esr_store_topic(p->store), (int)esr_store_partition(p->store), offset, pl->handler.name);
  return esr_error_set(err, ESR_E_REDO, 0, "handler %s changed the database before refusing offset %" PRId64
                       ": the batch is applied again, with a savepoint per event", pl->handler.name, offset);
}

/* Runs the handler on one parsed event. Returns ESR_E_OK when the event was consumed (applied or dead-lettered),
 * ESR_E_PLUGIN when the handler stopped the partition, another code when the batch is lost. */
static esr_code apply_event(esr_partition *p, const esr_message *m, esr_envelope *env, esr_error *err) {
  char msg[512];
  esr_route route;
  esr_route_result rr = esr_registry_route(p->env->registry, env->type, env->version, &route);
  if (rr == ESR_ROUTE_UNKNOWN_TYPE) {
    snprintf(msg, sizeof msg, "no handler consumes event type '%s'", env->type);
    return dead_letter(p, m, "unknown-type", msg, err);
  }
  if (rr == ESR_ROUTE_UNKNOWN_VERSION) {
    snprintf(msg, sizeof msg, "%s version %d is not consumed: handler %s accepts versions %d..%d", env->type,
             env->version, route.plugin->handler.name, route.claim->min_version, route.claim->max_version);
    return dead_letter(p, m, "unknown-version", msg, err);
  }
  const esr_handler *h = &route.plugin->handler;
  esr_ctx ctx;
  esr_store *s = p->store;
  /* One savepoint covers upcast and apply: whatever the event changed is undone unless it is applied; none on the
   * fast path (undo_event). */
  int savepoint = !p->env->fast_path || atomic_load_explicit(&route.plugin->writes_before_refusing, memory_order_relaxed);
  uint64_t mark = 0;
  esr_code rc = savepoint ? esr_store_savepoint(s, err) : ESR_E_OK;
  if (rc != ESR_E_OK) return rc;
  if (!savepoint) mark = esr_store_write_mark(s);
  if (env->version < route.claim->max_version && h->upcast) {
    int from = env->version;
    int ur = esr_call_upcast(&ctx, s, route.plugin, m->offset, env->root, from);
    if ((rc = esr_call_storage(&ctx, err)) != ESR_E_OK) return rc;
    char why[200] = "";
    if (ur != ESR_OK)
      snprintf(msg, sizeof msg, "upcast of %s from version %d: %s", env->type, from,
               ctx.error[0] ? ctx.error : "refused");
    else if (esr_envelope_refresh(env, why, sizeof why) != ESR_ENVELOPE_OK)
      snprintf(msg, sizeof msg, "upcast of version %d left an invalid envelope: %s", from, why);
    else if (esr_registry_route(p->env->registry, env->type, env->version, &route) != ESR_ROUTE_OK ||
             &route.plugin->handler != h)
      snprintf(msg, sizeof msg, "upcast from version %d gave %s version %d, which handler %s does not consume", from,
               env->type, env->version, h->name);
    else
      msg[0] = '\0';
    if (msg[0]) {
      if ((rc = undo_event(p, route.plugin, savepoint, mark, m->offset, err)) != ESR_E_OK) return rc;
      return dead_letter(p, m, "invalid", msg, err);
    }
  }

  if (p->env->schemas) {
    const esr_schema *schema = esr_schema_set_find(p->env->schemas, env->type, env->version);
    esr_error verr;
    if (schema && esr_schema_validate(schema, env->data, "/data", &verr) != ESR_E_OK) {
      if ((rc = undo_event(p, route.plugin, savepoint, mark, m->offset, err)) != ESR_E_OK) return rc;
      return dead_letter(p, m, "schema", verr.msg, err);
    }
  }

  const char *key = key_copy(p, m);
  if (m->key && !key) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory copying a Kafka key");
  esr_event ev = {.struct_size = sizeof ev,
                  .topic = esr_store_topic(s),
                  .partition = esr_store_partition(s),
                  .offset = m->offset,
                  .key = key,
                  .key_len = m->key_len,
                  .type = env->type,
                  .version = env->version,
                  .id = env->id,
                  .time = env->time,
                  .envelope = env->root,
                  .data = env->data};
  int hr = esr_call_apply(&ctx, s, route.plugin, &ev);
  if ((rc = esr_call_storage(&ctx, err)) != ESR_E_OK) return rc;
  if (hr == ESR_OK) {
    rc = savepoint ? esr_store_release(s, err) : ESR_E_OK;
    if (rc == ESR_E_OK) {
      p->pending.applied++;
      p->batch_outbox += ctx.emits;
    }
    return rc;
  }
  if ((rc = undo_event(p, route.plugin, savepoint, mark, m->offset, err)) != ESR_E_OK) return rc;
  const char *why = ctx.error[0] ? ctx.error : "(the handler gave no message)";
  if (hr == ESR_REJECT || hr == ESR_INVALID) {
    snprintf(msg, sizeof msg, "handler %s: %s", h->name, why);
    return dead_letter(p, m, hr == ESR_REJECT ? "rejected" : "invalid", msg, err);
  }
  char stop[700], where[400];
  snprintf(stop, sizeof stop, "%s (%s): %s%s", esr_ctx_where(&ctx, where, sizeof where), env->type,
           hr == ESR_FATAL ? "fatal: " : "returned an unknown status: ", why);
  free(p->stopped);
  p->stopped = strdup(stop);
  return esr_error_set(err, ESR_E_PLUGIN, hr, "%s", stop);
}

esr_code esr_partition_apply(esr_partition *p, const esr_message *m, esr_error *err) {
  if (p->stopped) return esr_error_set(err, ESR_E_STATE, 0, "partition stopped: %s", p->stopped);
  if (m->offset < p->pending.next_offset) return ESR_E_OK; /* redelivered: already consumed */
  esr_code rc;
  if (!esr_store_in_batch(p->store)) {
    if (esr_guard_begin(p->guard, m->offset) && !p->careful_logged) {
      esr_log(ESR_LOG_WARN, "partition",
              "%s[%d]: the process died more than %d times around offset %" PRId64 " without a recorded signal: "
              "re-applying one event per transaction to isolate the event that kills it",
              esr_store_topic(p->store), (int)esr_store_partition(p->store), p->env->max_crash_retries, m->offset);
      p->careful_logged = 1;
    }
    if ((rc = begin(p, err)) != ESR_E_OK) return rc;
  }

  char msg[600];
  esr_guard_enter(p->guard, m->offset); /* a fatal signal from here on is charged to this event */
  esr_json_arena_begin();
  if (esr_guard_poison(p->guard, m->offset, msg, sizeof msg)) {
    rc = dead_letter(p, m, "crash", msg, err);
    p->commit_due = 1;
  } else {
    esr_envelope env;
    esr_envelope_result er = esr_envelope_parse(m->value, m->value_len, &env, msg, sizeof msg);
    if (er == ESR_ENVELOPE_BAD_JSON)
      rc = dead_letter(p, m, "bad-json", msg, err);
    else if (er == ESR_ENVELOPE_BAD_ENVELOPE)
      rc = dead_letter(p, m, "bad-envelope", msg, err);
    else
      rc = apply_event(p, m, &env, err);
    esr_envelope_clear(&env);
  }
  esr_json_arena_end();
  esr_guard_leave();

  if (rc == ESR_E_OK) {
    esr_digest_chain(p->hasher, p->pending.log_digest, m->offset, m->key, m->key_len, m->value, m->value_len);
    p->pending.next_offset = m->offset + 1;
    p->batch_events++;
    return ESR_E_OK;
  }
  if (rc == ESR_E_PLUGIN) return rc; /* stopped before this event; the batch so far stays open */
  esr_partition_rollback(p);
  return rc;
}

esr_code esr_partition_commit(esr_partition *p, esr_error *err) {
  if (!esr_store_in_batch(p->store)) return ESR_E_OK;
  int64_t applied_before = esr_store_position(p->store)->applied;
  esr_code rc = esr_store_commit(p->store, &p->pending, err);
  if (rc != ESR_E_OK) {
    esr_partition_rollback(p);
    return esr_error_prefix(err, "%s[%d]: commit", esr_store_topic(p->store), (int)esr_store_partition(p->store));
  }
  if (p->metrics) {
    esr_metrics_committed(p->metrics, p->pending.next_offset, p->pending.applied - applied_before, p->batch_dead,
                          esr_now_ms());
  }
  memset(p->batch_dead, 0, sizeof p->batch_dead);
  esr_guard_committed(p->guard, p->pending.next_offset);
  p->commit_due = 0;
  p->last_commit_ms = esr_now_ms();
  p->wal_failed = 0;
  p->deleting.n = 0;
  p->batch_events = 0;
  if (p->batch_outbox) p->unsent = 1;
  p->batch_outbox = 0;
  return ESR_E_OK;
}

typedef struct send_ctx {
  esr_partition *p;
  esr_error *err;
  esr_code rc;
  int readback; /* a read-back must come before this row */
} send_ctx;

static int send_row(void *arg, const esr_outbox_row *row) {
  send_ctx *sc = arg;
  esr_partition *p = sc->p;
  esr_output_verdict v = esr_outputs_check(p->outs, row->topic, row->src_offset, row->src_index);
  if (v == ESR_OUTPUT_READBACK) {
    sc->readback = 1;
    return 1;
  }
  if (v == ESR_OUTPUT_DROP) { /* already in its topic: deleted with the acknowledged rows, never sent */
    if (seq_push(&p->delivered, row->seq) != 0) {
      sc->rc = esr_error_set(sc->err, ESR_E_NOMEM, 0, "out of memory");
      return 1;
    }
    p->sent_upto = row->seq;
    return 0;
  }
  sc->rc = esr_publisher_send(p->pub, p->sink, esr_store_topic(p->store), esr_store_partition(p->store), row, sc->err);
  if (sc->rc != ESR_E_OK) return 1;
  p->in_flight++;
  p->sent_upto = row->seq;
  return p->in_flight >= MAX_IN_FLIGHT;
}

void esr_partition_hold(esr_partition *p, int on) { p->held = on; }

int esr_partition_unpublished(const esr_partition *p) { return p->pub && p->unsent && !p->held; }

int esr_partition_readback_due(const esr_partition *p) { return esr_outputs_due(p->outs); }

const esr_outputs *esr_partition_outputs(const esr_partition *p) { return p->outs; }

void esr_partition_set_publisher(esr_partition *p, esr_publisher *pub) { p->pub = pub ? pub : p->env->publisher; }

esr_code esr_partition_publish(esr_partition *p, esr_error *err) {
  if (!esr_partition_unpublished(p) || esr_outputs_due(p->outs)) return ESR_E_OK;
  while (p->in_flight < MAX_IN_FLIGHT) {
    send_ctx sc = {p, err, ESR_E_OK, 0};
    int64_t before = p->sent_upto, last = p->sent_upto;
    esr_code rc = esr_outbox_scan(p->store, p->sent_upto, PUBLISH_SCAN, send_row, &sc, &last, err);
    if (rc != ESR_E_OK) return rc;
    if (sc.rc != ESR_E_OK) {
      /* A full local queue is not an error: the tick sends the rest. */
      if (esr_publisher_queue_full(err)) return ESR_E_OK;
      return sc.rc;
    }
    if (sc.readback) return ESR_E_OK; /* esr_partition_readback_due says so */
    if (p->sent_upto == before) {
      p->unsent = 0; /* everything committed so far is sent (or was already there) */
      esr_outputs_settled(p->outs, esr_store_position(p->store)->next_offset);
      break;
    }
  }
  return ESR_E_OK;
}

static int want_topic(void *arg, const char *topic) {
  esr_outputs_want(arg, topic);
  return 0;
}

esr_code esr_partitions_readback(esr_readback *rb, esr_partition *const *ps, size_t n, int timeout_ms, esr_error *err) {
  esr_outputs **os = calloc(n ? n : 1, sizeof *os);
  int64_t *lo = calloc(n ? n : 1, sizeof *lo);
  esr_code rc = ESR_E_OK;
  if (!os || !lo) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    /* The lowest source offset a row may still be published for: the first row not sent yet (after failures every
     * row is, see tick), else whatever the next events produce. */
    int64_t first = -1;
    if ((rc = esr_outbox_first_src(ps[i]->store, ps[i]->sent_upto, &first, err)) != ESR_E_OK) goto out;
    int64_t next = esr_store_position(ps[i]->store)->next_offset;
    lo[i] = first >= 0 && first < next ? first : next;
    if ((rc = esr_outbox_topics(ps[i]->store, ps[i]->sent_upto, want_topic, ps[i]->outs, err)) != ESR_E_OK) goto out;
    os[i] = ps[i]->outs;
  }
  rc = esr_outputs_readback(rb, os, lo, n, timeout_ms, err);
  for (size_t i = 0; rc == ESR_E_OK && i < n; i++) /* nothing waits to be checked: what was found may go now */
    if (!ps[i]->unsent) esr_outputs_settled(ps[i]->outs, esr_store_position(ps[i]->store)->next_offset);
out:
  free(os);
  free(lo);
  return rc;
}

void esr_partition_txn(esr_partition *p, esr_outputs_txn_phase phase) {
  esr_outputs_txn(p->outs, phase);
  p->in_txn = phase == ESR_OUTPUTS_TXN_BEGIN;
  if (phase == ESR_OUTPUTS_TXN_BEGIN) return;
  if (phase == ESR_OUTPUTS_TXN_COMMIT) {
    for (size_t i = 0; i < p->staged.n; i++)
      if (seq_push(&p->delivered, p->staged.v[i]) != 0) p->send_failed = 1;
  } else if (p->staged.n || p->in_flight) {
    p->send_failed = 1; /* aborted: invisible to read_committed consumers, sent again */
    esr_outputs_failed(p->outs);
  }
  p->staged.n = 0;
}

void esr_partition_delivered(esr_partition *p, const esr_delivery *d) {
  if (p->in_flight > 0) p->in_flight--;
  if (d->ok) {
    if (seq_push(p->in_txn ? &p->staged : &p->delivered, d->seq) != 0) {
      p->send_failed = 1; /* not recorded: resend later rather than forget */
      esr_outputs_failed(p->outs);
      return;
    }
    esr_outputs_acked(p->outs, d->topic, d->partition, d->offset);
  } else {
    p->send_failed = 1;
    esr_outputs_failed(p->outs);
  }
}

esr_code esr_partition_tick(esr_partition *p, esr_error *err) {
  esr_code rc;
  if (p->dl_quiet_n) {
    int64_t now = esr_now_ms();
    if (now - p->dl_logged_ms >= DL_LOG_MS) dead_letter_summary(p, now);
  }
  if (p->delivered.n && !esr_store_in_batch(p->store)) {
    if ((rc = begin(p, err)) != ESR_E_OK) return rc;
    if ((rc = esr_partition_commit(p, err)) != ESR_E_OK) return rc;
  }
  int frames = esr_store_wal_frames(p->store);
  int64_t idle = frames > 0 && !p->wal_failed && !esr_store_in_batch(p->store) ? esr_now_ms() - p->last_commit_ms : 0;
  if (idle >= WAL_IDLE_MS || (frames >= WAL_BIG_FRAMES && idle >= WAL_BIG_IDLE_MS)) {
    /* Idle for a while: fold the WAL into the database, so that a crash now costs no WAL recovery at restart (a long
     * WAL sooner: its reread is what a restart would pay). */
    esr_error werr;
    if (esr_store_wal_truncate(p->store, &werr) != ESR_E_OK && werr.code != ESR_E_STATE)
      p->wal_failed = 1; /* a real error: try again after the next commit; not worth a failure */
  }
  if (p->send_failed && p->in_flight == 0 && !p->delivered.n && !esr_store_in_batch(p->store)) {
    /* Everything left in the outbox is undelivered: send it all again, once a read-back said what already landed. */
    p->send_failed = 0;
    p->sent_upto = 0;
    p->unsent = 1;
    esr_outputs_resend(p->outs);
  }
  return ESR_E_OK;
}
