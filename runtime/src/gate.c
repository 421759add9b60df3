/* gate.c — an apply thread's publication gate: what a partition produced (dead letters, emitted events) leaves the
 * process only (1) after the partition's read-back ran since it opened or since a failed delivery (esr/outputs.h:
 * rows already in their topics are dropped there), and (2) with group assignment, after an ownership check of the
 * round passed, so that a worker that lost its partitions (paused past the session timeout, cut off from the
 * coordinator) publishes nothing for them once it knows, and nothing before it knows either, except inside the window
 * described below.
 *
 * A round: the partitions with committed rows to publish are checked together by one asynchronous commit of their
 * committed positions on the consumer, answered on a queue of this thread. The group coordinator accepts it only from
 * a member of the current generation: a fenced member gets UNKNOWN_MEMBER_ID or ILLEGAL_GENERATION, a member while the
 * group rebalances REBALANCE_IN_PROGRESS. Any error drops the round: its rows stay in the outbox for a later round or
 * for the next owner, who reads them back. The window that stays open: between the coordinator's answer and the
 * moment the round's messages reach the broker (the check's answer, then the producer's queue and linger), a worker
 * that stalls there (a stop signal, a long pause) still publishes after it lost the partition; gate_stats measures
 * the part of it this process can see (from sending the check to handing the last row to the producer).
 * Read-backs run before the check, never between it and the publication. Static assignment has no group to ask:
 * rows are published after the commit that made them (after the read-back). With outputs.transactional each
 * partition publishes through a transactional producer of its own (transactional.id from the group and the
 * partition), one Kafka transaction per publication, so that a real broker fences a previous owner outright.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "worker_int.h"

#define READBACK_TIMEOUT_MS 5000  /* a read-back waits this long for Kafka without progress, then retries later */
#define READBACK_RETRY_MS 1000
#define CHECK_PAUSE_MIN_MS 3000   /* after a refused check, no check for the session timeout (at least this long) */
#define CHECK_STALE_MS 1000       /* an answer that took longer says too little about now: the round is dropped */
#define CHECK_GIVE_UP_MS 60000    /* an answer that never comes */
#define REFUSED_LOG_MS 5000       /* refused rounds are logged at most this often (a rebalance refuses many) */
#define FLUSH_CHECK_MS 1000       /* a shutdown waits this long at most for its ownership check */
#define TXN_TIMEOUT_MS 30000

#define FOR_EACH_SLOT(a, s)                                                                                            \
  for (size_t t_ = 0; t_ < (a)->w->cfg->n_topics; t_++)                                                                \
    for (size_t p_ = 0; p_ < (a)->topics[t_].cap; p_++)                                                                \
      if (((s) = (a)->topics[t_].by_partition[p_]))

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int can_publish(const slot *s) {
  return !s->corrupt && esr_partition_unpublished(s->p) && !(s->txn && esr_publisher_fenced(s->txn));
}

/* librdkafka's thread: the answer is queued. The apply thread ends its round of messages to serve it. */
static void check_answered(rd_kafka_t *rk, void *opaque) {
  (void)rk;
  applier *a = opaque;
  atomic_store_explicit(&a->check_ready, 1, memory_order_relaxed);
}

esr_code esr__gate_init(applier *a, esr_error *err) {
  const esr_config *cfg = a->w->cfg;
  if (cfg->outputs_readback) {
    esr_code rc = esr_readback_new(cfg, &a->rb, err);
    if (rc != ESR_E_OK) return rc;
    /* a request of the main thread (a partition to open or release, in a rebalance) never waits for a read-back:
     * the read-back stops and runs again later */
    esr_readback_set_interrupt(a->rb, &a->ctl_pending);
  }
  if (a->w->group) {
    if (!(a->check_q = rd_kafka_queue_new(a->w->rk))) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    rd_kafka_queue_cb_event_enable(a->check_q, check_answered, a);
  }
  return ESR_E_OK;
}

void esr__gate_fini(applier *a) {
  if (a->check_q) {
    rd_kafka_queue_cb_event_enable(a->check_q, NULL, NULL);
    for (rd_kafka_event_t *ev; (ev = rd_kafka_queue_poll(a->check_q, 0));) rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(a->check_q);
  }
  esr_readback_free(a->rb);
}

/* One read-back for the partitions of this thread that need one (one read of each output partition); each wait for
 * Kafka without progress is bounded by timeout_ms. */
static esr_code readback_within(applier *a, int timeout_ms) {
  int64_t now = esr_now_ms();
  if (!a->rb || now < a->readback_retry_at) return ESR_E_STATE;
  size_t n = 0, cap = 16;
  esr_partition **ps = malloc(cap * sizeof *ps);
  if (!ps) return ESR_E_NOMEM;
  slot *s;
  FOR_EACH_SLOT(a, s) { /* all of them: a topic one needs is read for the others too (esr_partitions_readback) */
    if (s->corrupt) continue;
    if (n == cap) {
      esr_partition **g = realloc(ps, (cap *= 2) * sizeof *g);
      if (!g) break;
      ps = g;
    }
    ps[n++] = s->p;
  }
  esr_error err;
  esr_code rc = n ? esr_partitions_readback(a->rb, ps, n, timeout_ms, &err) : ESR_E_OK;
  free(ps);
  if (rc == ESR_E_STATE) return rc; /* interrupted by a request: served first, read again at the next round */
  if (rc != ESR_E_OK) {
    a->gate.readback_failures++;
    a->readback_retry_at = esr_now_ms() + READBACK_RETRY_MS;
    esr_log(ESR_LOG_WARN, "outputs", "reading back the outputs of %zu partition(s) failed: %s; their publication waits "
            "(retry in %d ms)", n, err.msg, READBACK_RETRY_MS);
  }
  return rc;
}

static esr_code readback(applier *a) { return readback_within(a, READBACK_TIMEOUT_MS); }

/* One Kafka transaction holding what the partition has to publish. */
static void publish_txn(applier *a, slot *s) {
  esr_error err;
  if (esr_publisher_txn_begin(s->txn, &err) != ESR_E_OK) {
    esr_log(ESR_LOG_WARN, "outputs", "%s[%d]: %s", esr__slot_topic(a, s), (int)s->partition, err.msg);
    return;
  }
  esr_partition_txn(s->p, ESR_OUTPUTS_TXN_BEGIN);
  esr_code rc = esr_partition_publish(s->p, &err);
  if (rc != ESR_E_OK)
    esr_log(ESR_LOG_WARN, "outbox", "%s[%d]: publishing: %s", esr__slot_topic(a, s), (int)s->partition, err.msg);
  if (esr_publisher_txn_commit(s->txn, TXN_TIMEOUT_MS, &err) == ESR_E_OK) {
    esr_partition_txn(s->p, ESR_OUTPUTS_TXN_COMMIT);
    return;
  }
  esr_partition_txn(s->p, ESR_OUTPUTS_TXN_ABORT);
  esr_log(esr_publisher_fenced(s->txn) ? ESR_LOG_ERROR : ESR_LOG_WARN, "outputs", "%s[%d]: %s%s",
          esr__slot_topic(a, s), (int)s->partition, err.msg,
          esr_publisher_fenced(s->txn) ? ": another producer with this partition's transactional.id took over (the "
                                         "partition moved); this worker publishes nothing more for it"
                                       : "; aborted, sent again");
}

/* Publishes what s has to (its read-back first). With group assignment the caller just passed its ownership check: a
 * read-back found due on the way needs a check of its own afterwards, so s waits for the next round then. */
static void publish_slot(applier *a, slot *s) {
  for (int i = 0; i < 4 && can_publish(s); i++) {
    if (esr_partition_readback_due(s->p)) {
      if (a->w->group) break; /* due since the check: read back, then check again, at the next round */
      if (readback(a) != ESR_E_OK) break;
    }
    if (s->txn) {
      publish_txn(a, s);
    } else {
      esr_error err;
      if (esr_partition_publish(s->p, &err) != ESR_E_OK)
        esr_log(ESR_LOG_WARN, "outbox", "%s[%d]: publishing: %s", esr__slot_topic(a, s), (int)s->partition, err.msg);
    }
    if (!esr_partition_readback_due(s->p)) break;
  }
  s->publish_wanted = can_publish(s) && esr_partition_readback_due(s->p);
}

void esr__gate_want(applier *a, slot *s, int now) {
  if (!can_publish(s)) return;
  if (now && !a->w->group) {
    publish_slot(a, s);
    return;
  }
  s->publish_wanted = 1;
}

/* A refused check most often means the group is rebalancing. librdkafka then rejoins, and an offset commit sent
 * while it does carries no valid generation: the coordinator answers ILLEGAL_GENERATION and librdkafka takes the
 * assignment for lost (measured: partitions revoked and assigned back, hand-overs twice as slow). So no check for a
 * session timeout after a refusal: the rebalance is over by then, one way or the other. */
static int64_t check_pause_ms(const applier *a) {
  const char *v = esr_config_kafka_get(a->w->cfg, "session.timeout.ms");
  long ms = v ? strtol(v, NULL, 10) : 10000;
  return ms > CHECK_PAUSE_MIN_MS ? ms : CHECK_PAUSE_MIN_MS;
}

static void refused_round(applier *a, int n, const char *parts, const char *why) {
  int64_t now = esr_now_ms();
  a->gate.refused++;
  a->check_retry_at = now + check_pause_ms(a);
  if (a->refused_logged_at && now - a->refused_logged_at < REFUSED_LOG_MS) {
    a->refused_unlogged++;
    return;
  }
  char more[64] = "";
  if (a->refused_unlogged) snprintf(more, sizeof more, " (and %d refused rounds not logged)", a->refused_unlogged);
  esr_log(ESR_LOG_WARN, "outputs", "ownership check failed (%s): not publishing for %d partition(s) now (%s); their "
          "rows stay in the outbox for a later round or the next owner%s", why, n, parts, more);
  a->refused_logged_at = now;
  a->refused_unlogged = 0;
}

/* The answer to this thread's ownership check: the partitions it confirmed publish now. */
/* A round published at `done` (now_us) after a check sent at a->check_sent_us and answered at `answered`. */
static void round_done(applier *a, int64_t answered, int64_t done) {
  gate_stats *g = &a->gate;
  int64_t window = done - a->check_sent_us;
  g->rounds++;
  g->window_sum_us += window;
  if (window > g->window_max_us) g->window_max_us = window;
  if (answered - a->check_sent_us > g->answer_max_us) g->answer_max_us = answered - a->check_sent_us;
  if (done - answered > g->publish_max_us) g->publish_max_us = done - answered;
}

static void serve_check(applier *a, rd_kafka_event_t *ev) {
  int64_t answered = now_us();
  a->check_in_flight = 0;
  rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
  if (!e && answered - a->check_sent_us > (int64_t)CHECK_STALE_MS * 1000) e = RD_KAFKA_RESP_ERR__TIMED_OUT;
  const rd_kafka_topic_partition_list_t *l = rd_kafka_event_topic_partition_list(ev);
  char refused[256] = "";
  size_t used = 0;
  int n_refused = 0, published = 0;
  rd_kafka_resp_err_t why = e;
  for (int i = 0; l && i < l->cnt; i++) {
    const rd_kafka_topic_partition_t *tp = &l->elems[i];
    int t = esr__worker_topic_index(a->w, tp->topic);
    slot *s = t >= 0 ? esr__slot_find(a, (size_t)t, tp->partition) : NULL;
    if (s && !s->checking) s = NULL; /* closed (or reopened) meanwhile */
    if (s) s->checking = 0;
    if (e || tp->err) {
      if (!why) why = tp->err;
      if (s) s->publish_wanted = 1;
      n_refused++;
      if (used + 24 < sizeof refused)
        used += (size_t)snprintf(refused + used, sizeof refused - used, "%s%s[%d]", used ? " " : "", tp->topic,
                                 (int)tp->partition);
      continue;
    }
    if (!s) continue;
    publish_slot(a, s);
    published = 1;
  }
  slot *s;
  FOR_EACH_SLOT(a, s) { /* an answer without its list: every partition of the check is refused */
    if (!s->checking) continue;
    s->checking = 0;
    s->publish_wanted = 1;
    n_refused++;
  }
  if (n_refused) refused_round(a, n_refused, refused[0] ? refused : "-", rd_kafka_err2str(why));
  if (published) round_done(a, answered, now_us());
}

void esr__gate_poll(applier *a) {
  atomic_store_explicit(&a->check_ready, 0, memory_order_relaxed);
  if (!a->check_in_flight) return;
  rd_kafka_event_t *ev = rd_kafka_queue_poll(a->check_q, 0);
  if (!ev) {
    if (now_us() - a->check_sent_us > (int64_t)CHECK_GIVE_UP_MS * 1000) { /* never answered: ask again */
      a->check_in_flight = 0;
      slot *s;
      FOR_EACH_SLOT(a, s) if (s->checking) {
        s->checking = 0;
        s->publish_wanted = 1;
      }
    }
    return;
  }
  if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_OFFSET_COMMIT) serve_check(a, ev);
  rd_kafka_event_destroy(ev);
}

/* The partitions to check, each at its committed position: those that want a round (no read-back due, no check
 * under way), or with `flush` every one (`only`, or all) that has rows to publish. */
static rd_kafka_topic_partition_list_t *check_list(applier *a, slot *only, int flush) {
  rd_kafka_topic_partition_list_t *l = NULL;
  slot *s;
  FOR_EACH_SLOT(a, s) {
    if (only ? s != only : !flush && !s->publish_wanted) continue;
    if ((!flush && s->checking) || !can_publish(s) || esr_partition_readback_due(s->p)) continue;
    if (!l) l = rd_kafka_topic_partition_list_new(8);
    rd_kafka_topic_partition_list_add(l, esr__slot_topic(a, s), s->partition)->offset =
        esr_partition_committed(s->p)->next_offset;
  }
  return l;
}

void esr__gate_round(applier *a) {
  slot *s;
  if (!a->w->group) {
    FOR_EACH_SLOT(a, s) if (s->publish_wanted) publish_slot(a, s);
    return;
  }
  if (a->check_in_flight || esr_now_ms() < a->check_retry_at) return;
  int due = 0;
  FOR_EACH_SLOT(a, s) {
    if (s->publish_wanted && !can_publish(s)) s->publish_wanted = 0;
    if (s->publish_wanted && esr_partition_readback_due(s->p)) due = 1;
  }
  if (due) readback(a); /* before the check, so that its window stays short */
  rd_kafka_topic_partition_list_t *l = check_list(a, NULL, 0);
  if (!l) return;
  a->check_sent_us = now_us();
  rd_kafka_resp_err_t e = rd_kafka_commit_queue(a->w->rk, l, a->check_q, NULL, NULL);
  if (e) {
    refused_round(a, l->cnt, "all waiting", rd_kafka_err2str(e));
  } else {
    a->check_in_flight = 1;
    for (int i = 0; i < l->cnt; i++) {
      int t = esr__worker_topic_index(a->w, l->elems[i].topic);
      slot *c = t >= 0 ? esr__slot_find(a, (size_t)t, l->elems[i].partition) : NULL;
      if (c) {
        c->checking = 1;
        c->publish_wanted = 0;
      }
    }
  }
  rd_kafka_topic_partition_list_destroy(l);
}

typedef struct sync_check {
  rd_kafka_resp_err_t err;
  rd_kafka_topic_partition_list_t *answer;
} sync_check;

/* A check waited for until `deadline` at most (release and shutdown must not hang on an unreachable coordinator). */
static void check_until(applier *a, const rd_kafka_topic_partition_list_t *l, int64_t deadline, sync_check *sc) {
  rd_kafka_queue_t *q = rd_kafka_queue_new(a->w->rk);
  if (!q) {
    sc->err = RD_KAFKA_RESP_ERR__FAIL;
    return;
  }
  sc->err = rd_kafka_commit_queue(a->w->rk, l, q, NULL, NULL);
  while (!sc->err) {
    int64_t left = deadline - esr_now_ms();
    if (left <= 0) {
      sc->err = RD_KAFKA_RESP_ERR__TIMED_OUT;
      break;
    }
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, left > 100 ? 100 : (int)left);
    if (!ev) continue;
    if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_OFFSET_COMMIT) {
      const rd_kafka_topic_partition_list_t *ans = rd_kafka_event_topic_partition_list(ev);
      sc->err = rd_kafka_event_error(ev);
      if (ans) sc->answer = rd_kafka_topic_partition_list_copy(ans);
      if (!sc->err && !sc->answer) sc->err = RD_KAFKA_RESP_ERR__FAIL;
      rd_kafka_event_destroy(ev);
      break;
    }
    rd_kafka_event_destroy(ev);
  }
  rd_kafka_queue_destroy(q); /* an answer after the deadline is dropped with it */
}

/* Whether s (or, only == NULL, the partitions of `l`) passed a synchronous ownership check. */
static int confirmed(const sync_check *sc, const char *topic, int32_t partition) {
  if (sc->err || !sc->answer) return 0;
  const rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(sc->answer, topic, partition);
  return tp && !tp->err;
}

void esr__gate_flush(applier *a, slot *only, int release, int64_t deadline) {
  slot *s;
  int due = 0;
  FOR_EACH_SLOT(a, s) if ((!only || s == only) && can_publish(s) && esr_partition_readback_due(s->p)) due = 1;
  int64_t left = deadline - esr_now_ms();
  if (due && !release && left > 0) readback_within(a, left < READBACK_TIMEOUT_MS ? (int)left : READBACK_TIMEOUT_MS);
  sync_check sc = {RD_KAFKA_RESP_ERR_NO_ERROR, NULL};
  int64_t answered = 0;
  /* A release happens inside a rebalance, which must not wait: the group has just said who owns what. Revoked, the
   * worker still owns the partition until the rebalance goes on (it publishes without asking); lost (its session
   * expired, it was fenced), it publishes nothing. */
  int lost = release && a->w->group && rd_kafka_assignment_lost(a->w->rk);
  if (lost) {
    FOR_EACH_SLOT(a, s) if ((!only || s == only) && can_publish(s)) {
      char part[64];
      snprintf(part, sizeof part, "%s[%d]", esr__slot_topic(a, s), (int)s->partition);
      refused_round(a, 1, part, "the assignment was lost");
    }
  } else if (a->w->group && !release) {
    rd_kafka_topic_partition_list_t *l = check_list(a, only, 1);
    if (l) {
      int64_t t0 = now_us(), cap = esr_now_ms() + FLUSH_CHECK_MS;
      check_until(a, l, deadline < cap ? deadline : cap, &sc);
      answered = now_us();
      if (!sc.err && sc.answer) {
        a->check_sent_us = t0;
      } else {
        char parts[256] = "";
        size_t used = 0;
        for (int i = 0; i < l->cnt && used + 24 < sizeof parts; i++)
          used += (size_t)snprintf(parts + used, sizeof parts - used, "%s%s[%d]", used ? " " : "", l->elems[i].topic,
                                   (int)l->elems[i].partition);
        refused_round(a, l->cnt, parts, rd_kafka_err2str(sc.err ? sc.err : RD_KAFKA_RESP_ERR__FAIL));
      }
      rd_kafka_topic_partition_list_destroy(l);
    }
  }
  int published = 0;
  FOR_EACH_SLOT(a, s) {
    if (only && s != only) continue;
    if (!can_publish(s) || esr_partition_readback_due(s->p)) continue;
    s->checking = 0; /* the answer to an asynchronous check under way no longer matters */
    if (lost || (a->w->group && !release && !confirmed(&sc, esr__slot_topic(a, s), s->partition))) continue;
    publish_slot(a, s);
    published = 1;
  }
  if (published && a->w->group && !release) round_done(a, answered, now_us());
  if (sc.answer) rd_kafka_topic_partition_list_destroy(sc.answer);
  for (;;) {
    int in_flight = 0;
    FOR_EACH_SLOT(a, s) {
      if (only && s != only) continue;
      if (s->txn) esr_publisher_poll(s->txn, 0);
      in_flight += esr_partition_in_flight(s->p);
    }
    if (!in_flight || esr_now_ms() >= deadline) break;
    esr_publisher_poll(a->pub, 50);
  }
  FOR_EACH_SLOT(a, s) {
    if (only && s != only) continue;
    esr_error err;
    if (esr_partition_tick(s->p, &err) != ESR_E_OK)
      esr_log(ESR_LOG_WARN, "outbox", "%s[%d]: %s", esr__slot_topic(a, s), (int)s->partition, err.msg);
  }
}

esr_code esr__gate_slot_open(applier *a, slot *s, esr_error *err) {
  const esr_config *cfg = a->w->cfg;
  if (!cfg->outputs_transactional) return ESR_E_OK;
  char id[600];
  snprintf(id, sizeof id, "esr-%s-%s-%d", esr_config_kafka_get(cfg, "group.id"), esr__slot_topic(a, s),
           (int)s->partition);
  esr_code rc = esr_publisher_new_txn(cfg, id, TXN_TIMEOUT_MS, esr__applier_delivery, a, &s->txn, err);
  if (rc != ESR_E_OK) return rc;
  esr_partition_set_publisher(s->p, s->txn);
  return ESR_E_OK;
}

void esr__gate_slot_close(applier *a, slot *s) {
  (void)a;
  if (!s->txn) return;
  esr_partition_set_publisher(s->p, NULL);
  esr_publisher_free(s->txn);
  s->txn = NULL;
}

void esr__gate_log_stats(applier *a) {
  const gate_stats *g = &a->gate;
  if (!a->w->group && !g->readback_failures) return;
  esr_log(ESR_LOG_INFO, "outputs",
          "apply thread %d: %" PRId64 " publication rounds after an ownership check (%" PRId64 " checks refused); "
          "check to last row handed to the producer: longest %.3f ms, mean %.3f ms (longest wait for an answer %.3f ms, "
          "longest publication after one %.3f ms)%s",
          a->index, g->rounds, g->refused, (double)g->window_max_us / 1000.0,
          g->rounds ? (double)g->window_sum_us / (double)g->rounds / 1000.0 : 0.0, (double)g->answer_max_us / 1000.0,
          (double)g->publish_max_us / 1000.0,
          g->readback_failures ? "; some read-backs failed and were retried" : "");
}
