/* worker.c — the `esr run` process: the consumer, the apply threads, the state directory's lock, the main loop and
 * shutdown; assignment (group or static) on the main thread (assign.c), application on apply threads (applier.c,
 * slot.c). See worker_int.h for how the parts fit.
 *
 * Threads. The main thread owns the consumer handle: it serves rebalance callbacks and consumer-wide errors in
 * rd_kafka_consumer_poll. Each apply thread ("applier") owns a set of partitions and alone touches their SQLite
 * connections. librdkafka hands messages to the owner without a queue of ours: each assigned partition's queue is
 * forwarded to its applier's queue before the partition is assigned, and the applier consumes that queue with
 * rd_kafka_consume_queue, up to ROUND messages between looks at its batches, outbox and requests. Not the batch or
 * callback paths: 2.0.2's rd_kafka_consume_batch_queue does not drop messages a seek made outdated, and
 * rd_kafka_consume_callback_queue takes the whole queue out at once, which hides it from the fetcher's
 * queued.max.messages.kbytes bound (measured: 985 MB RSS instead of 375 MB for a 2 M-event backlog).
 * Every applier has its own dead-letter producer, so delivery reports come back on the thread that owns the partition.
 * The main thread talks to appliers with control requests (open, close, drain, rewind, exit) and waits for them: a
 * partition is released only after its owner committed its batch.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "clock.h"
#include "host.h"
#include "json_arena.h"
#include "kafka.h"
#include "log.h"
#include "worker_int.h"

void esr__worker_fatal(esr_worker *w, const esr_error *err) {
  pthread_mutex_lock(&w->fatal_mu);
  if (!atomic_load(&w->fatal)) w->fatal_err = *err;
  atomic_store(&w->fatal, 1);
  pthread_mutex_unlock(&w->fatal_mu);
}

int esr__worker_topic_index(const esr_worker *w, const char *name) {
  for (size_t t = 0; t < w->cfg->n_topics; t++)
    if (strcmp(w->cfg->topics[t], name) == 0) return (int)t;
  return -1;
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  esr_worker *w = opaque;
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    char buf[512];
    rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof buf);
    esr_error e;
    esr_error_set(&e, ESR_E_KAFKA, orig, "fatal Kafka error: %s", buf);
    esr__worker_fatal(w, &e);
    return;
  }
  esr_metrics_kafka_error();
  esr_log(ESR_LOG_WARN, "kafka", "%s: %s", rd_kafka_err2name(err), reason);
}

/* ---- the HTTP endpoint's routes (on its thread: they read atomics and librdkafka's cached watermarks only) ---- */

static int text(char **body, size_t *len, int status, const char *msg) {
  size_t n = strlen(msg);
  if ((*body = malloc(n + 2))) {
    memcpy(*body, msg, n);
    (*body)[n] = '\n';
    (*body)[n + 1] = '\0';
    *len = n + 1;
  }
  return status;
}

static int route_healthz(void *arg, char **body, size_t *len) {
  esr_worker *w = arg;
  char why[300];
  int ok = esr_metrics_healthy(esr_now_ms(), w->cfg->health_stall_ms, why, sizeof why);
  return text(body, len, ok ? 200 : 503, why);
}

static int route_readyz(void *arg, char **body, size_t *len) {
  (void)arg;
  char why[300];
  int ok = esr_metrics_ready(why, sizeof why);
  return text(body, len, ok ? 200 : 503, why);
}

static int watermark(void *arg, const char *topic, int32_t partition, int64_t *hi) {
  esr_worker *w = arg;
  int64_t lo = -1;
  if (!atomic_load(&w->rk_ready)) return -1;
  return rd_kafka_get_watermark_offsets(w->rk, topic, partition, &lo, hi) == RD_KAFKA_RESP_ERR_NO_ERROR && *hi >= 0
             ? 0
             : -1;
}

static int route_metrics(void *arg, char **body, size_t *len) {
  esr_worker *w = arg;
  esr_metrics_source src = {.state_dir = w->cfg->state_dir, .watermark = watermark, .arg = w};
  *body = esr_metrics_render(&src, len);
  return 200;
}

/* Whether this worker owns (or is opening) a partition: for the disk hygiene, on the main thread. */
static int owns(void *arg, const char *topic, int32_t partition) {
  esr_worker *w = arg;
  int t = esr__worker_topic_index(w, topic);
  return t >= 0 && (size_t)partition < w->owner_cap[t] && w->owner[t][partition] >= 0;
}

static esr_code lock_state_dir(esr_worker *w, esr_error *err) {
  const char *dir = w->cfg->state_dir;
  if (mkdir(dir, 0750) != 0 && errno != EEXIST)
    return esr_error_set(err, ESR_E_IO, errno, "state.dir %s: cannot create: %s", dir, strerror(errno));
  char path[4096];
  snprintf(path, sizeof path, "%s/.esr.lock", dir);
  w->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (w->lock_fd < 0)
    return esr_error_set(err, ESR_E_IO, errno, "state.dir %s: cannot open %s: %s", dir, path, strerror(errno));
  if (flock(w->lock_fd, LOCK_EX | LOCK_NB) != 0)
    return esr_error_set(err, ESR_E_IO, errno,
                         "state.dir %s is in use by another esr worker (lock %s held): give every worker its own "
                         "state.dir",
                         dir, path);
  return ESR_E_OK;
}

int esr__worker_log_bounds(void *arg, const char *topic, int32_t partition, int64_t *start, int64_t *end) {
  esr_worker *w = arg;
  return rd_kafka_query_watermark_offsets(w->rk, topic, partition, start, end, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR
             ? 0
             : -1;
}

esr_code esr_worker_new(const esr_config *cfg, esr_worker **out, esr_error *err) {
  esr_error local;
  if (!err) err = &local; /* the error is optional (esr/error.h), and read below */
  *out = NULL;
  esr_worker *w = calloc(1, sizeof *w);
  if (!w) return esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
  w->cfg = cfg;
  w->lock_fd = -1;
  w->group = cfg->assignment == ESR_ASSIGN_GROUP;
  w->commit_kafka = esr_config_kafka_get(cfg, "group.id") != NULL;
  pthread_mutex_init(&w->fatal_mu, NULL);
  /* The state is business data: directories 0750, files 0640 (group access for a pod's fsGroup), also those SQLite
   * creates, which take 0644 less the umask. */
  umask(027);
  esr_metrics_reset();
  esr_code rc;
  rd_kafka_conf_t *conf = NULL;
  w->n_appliers = cfg->apply_threads > 0 ? cfg->apply_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (w->n_appliers < 1) w->n_appliers = 1;
  esr_metrics_appliers(w->n_appliers);
  if (cfg->http_listen) { /* first: a port in use stops the worker before anything else runs; "starting" meanwhile */
    esr_http_routes routes = {.healthz = route_healthz, .readyz = route_readyz, .metrics = route_metrics, .arg = w};
    if ((rc = esr_http_start(cfg->http_listen, &routes, &w->http, err)) != ESR_E_OK) goto fail;
    esr_log(ESR_LOG_INFO, "http", "listening on %s (port %d): /healthz /readyz /metrics", cfg->http_listen,
            esr_http_port(w->http));
  }
  w->appliers = calloc((size_t)w->n_appliers, sizeof *w->appliers);
  w->owner = calloc(cfg->n_topics, sizeof *w->owner);
  w->owner_cap = calloc(cfg->n_topics, sizeof *w->owner_cap);
  if (!w->appliers || !w->owner || !w->owner_cap) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto fail;
  }
  /* Kafka settings first: a bad kafka.* key is a configuration error and must be reported before anything runs. */
  rd_kafka_conf_t *producer_conf;
  if ((rc = esr_kafka_conf_new(cfg, ESR_KAFKA_PRODUCER, &producer_conf, err)) != ESR_E_OK) goto fail;
  rd_kafka_conf_destroy(producer_conf); /* only validated here; every applier builds its own */
  if ((rc = esr_kafka_conf_new(cfg, ESR_KAFKA_CONSUMER, &conf, err)) != ESR_E_OK) goto fail;
  if (cfg->schemas_dir && (rc = esr_schema_set_load(cfg->schemas_dir, &w->schemas, err)) != ESR_E_OK) {
    esr_error_prefix(err, "config: schemas.dir = %s", cfg->schemas_dir);
    goto fail;
  }
  if ((rc = esr_registry_load(&w->registry, cfg->handlers, cfg->n_handlers, esr_host_api_table(), cfg->handler_opts,
                              cfg->n_handler_opts, err)) != ESR_E_OK)
    goto fail;
  if ((rc = lock_state_dir(w, err)) != ESR_E_OK) goto fail;
  if ((rc = esr_crash_record_open(cfg->state_dir, &w->last_crash, err)) != ESR_E_OK) goto fail;
  esr_json_arena_install(); /* before the apply threads: cJSON of an event comes from its thread's arena */
  w->crash_record_open = 1;
  for (int i = 0; i < w->last_crash.n; i++) {
    const esr_crash_entry *e = &w->last_crash.v[i];
    esr_log(ESR_LOG_WARN, "worker", "the previous worker process died with signal %d (%s) while processing %s[%d]@%" PRId64,
            e->signo, strsignal(e->signo), e->topic, (int)e->partition, e->offset);
  }
  if (cfg->checkpoint_dir)
    snprintf(w->cp_dir, sizeof w->cp_dir, "%s", cfg->checkpoint_dir);
  else
    snprintf(w->cp_dir, sizeof w->cp_dir, "%s/checkpoints", cfg->state_dir);
  esr_checkpointer_opts cpo = {.state_dir = cfg->state_dir,
                               .cp_dir = w->cp_dir,
                               .store_url = cfg->checkpoint_store,
                               .store_opts = {.endpoint = cfg->checkpoint_s3_endpoint,
                                              .region = cfg->checkpoint_s3_region},
                               .keep = cfg->checkpoint_keep,
                               .lister_threads = w->n_appliers};
  if ((rc = esr_checkpointer_new(&cpo, &w->checkpointer, err)) != ESR_E_OK) goto fail;
  char errstr[512];
  if (!w->commit_kafka) {
    /* librdkafka 2.0.2 needs a group handle for rd_kafka_assign even when no group is joined: a static worker
     * without kafka.group.id gets a private one and commits nothing. */
    rd_kafka_conf_set(conf, "group.id", "esr-static-unjoined", errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr);
  }
  rd_kafka_conf_set_opaque(conf, w);
  rd_kafka_conf_set_error_cb(conf, error_cb);
  if (w->group) rd_kafka_conf_set_rebalance_cb(conf, esr__assign_rebalance_cb);
  w->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (!w->rk) {
    rc = esr_error_set(err, ESR_E_CONFIG, 0, "cannot create the Kafka consumer: %s", errstr);
    goto fail;
  }
  conf = NULL;
  rd_kafka_poll_set_consumer(w->rk); /* error and log callbacks are served by rd_kafka_consumer_poll */
  atomic_store(&w->rk_ready, 1);
  esr_hygiene_opts ho = {.state_dir = cfg->state_dir,
                         .cp_dir = w->cp_dir,
                         .topics = cfg->topics,
                         .n_topics = cfg->n_topics,
                         .aside_keep = cfg->state_aside_keep,
                         .drop_after_ms = cfg->state_drop_after_ms,
                         .lister = esr_checkpointer_lister(w->checkpointer),
                         .owned = owns,
                         .arg = w};
  if (!(w->hygiene = esr_hygiene_new(&ho))) {
    rc = esr_error_set(err, ESR_E_NOMEM, 0, "out of memory");
    goto fail;
  }
  for (int i = 0; i < w->n_appliers; i++) {
    applier *a = &w->appliers[i];
    if ((rc = esr__applier_init(w, a, i, err)) != ESR_E_OK) goto fail;
    a->queue = rd_kafka_queue_new(w->rk);
    if (pthread_create(&a->thread, NULL, esr__applier_main, a) != 0) {
      rc = esr_error_set(err, ESR_E_NOMEM, errno, "cannot start apply thread %d", i);
      goto fail;
    }
    a->started = 1;
  }
  *out = w;
  return ESR_E_OK;
fail:
  if (conf) rd_kafka_conf_destroy(conf);
  esr_worker_free(w);
  return rc;
}

void esr_worker_free(esr_worker *w) {
  if (!w) return;
  esr_http_stop(w->http); /* first: its thread reads the worker */
  atomic_store(&w->rk_ready, 0);
  esr_hygiene_free(w->hygiene);
  if (w->appliers) {
    esr__assign_broadcast(w, CTL_EXIT);
    for (int i = 0; i < w->n_appliers; i++)
      if (w->appliers[i].started) pthread_join(w->appliers[i].thread, NULL);
    for (int i = 0; i < w->n_appliers; i++)
      if (w->appliers[i].w) esr__applier_fini(w, &w->appliers[i]);
    free(w->appliers);
  }
  esr_checkpointer_free(w->checkpointer);
  if (w->rk) rd_kafka_destroy(w->rk);
  if (w->crash_record_open) esr_crash_record_close();
  if (w->owner) {
    for (size_t t = 0; t < w->cfg->n_topics; t++) free(w->owner[t]);
    free(w->owner);
  }
  free(w->owner_cap);
  esr_registry_clear(&w->registry);
  esr_schema_set_free(w->schemas);
  if (w->lock_fd >= 0) close(w->lock_fd);
  pthread_mutex_destroy(&w->fatal_mu);
  free(w);
}

static void shutdown_worker(esr_worker *w) {
  esr_metrics_phase(ESR_PHASE_DRAINING);
  esr_log(ESR_LOG_INFO, "worker", "stopping: committing open batches and publishing the outbox");
  esr__assign_broadcast(w, CTL_DRAIN);
  if (w->group) {
    rd_kafka_resp_err_t e = rd_kafka_consumer_close(w->rk); /* revokes: each partition closed by its owner */
    if (e) esr_log(ESR_LOG_WARN, "worker", "closing the consumer: %s", rd_kafka_err2str(e));
  }
  esr__assign_close_all(w);
  if (!w->group) rd_kafka_consumer_close(w->rk);
}

static void log_stats(esr_worker *w, int64_t now) {
  if (now - w->last_stats < STATS_MS) return;
  int64_t total = 0;
  for (int i = 0; i < w->n_appliers; i++) total += atomic_load_explicit(&w->appliers[i].consumed, memory_order_relaxed);
  int64_t n = total - w->consumed_at_last_stats;
  if (n > 0)
    esr_log(ESR_LOG_INFO, "worker", "consumed %" PRId64 " events in the last %.1f s (%.0f/s)", n,
            (double)(now - w->last_stats) / 1000.0, (double)n * 1000.0 / (double)(now - w->last_stats));
  w->consumed_at_last_stats = total;
  w->last_stats = now;
}

esr_code esr_worker_run(esr_worker *w, volatile sig_atomic_t *stop, esr_error *err) {
  const esr_config *cfg = w->cfg;
  esr_error local;
  if (!err) err = &local;
  esr_log(ESR_LOG_INFO, "worker",
          "esr %s starting: %zu topic(s), %zu handler(s), %s assignment, %d apply thread(s), state.dir %s, malloc %s",
          ESR_VERSION, cfg->n_topics, w->registry.n, w->group ? "group" : "static", w->n_appliers, cfg->state_dir,
          esr_alloc_name());
  esr_code rc = w->group ? esr__assign_subscribe(w, err) : esr__assign_static(w, err);
  if (rc != ESR_E_OK) return rc;
  w->last_stats = esr_now_ms();
  if (!w->group) esr_metrics_phase(ESR_PHASE_RUNNING); /* the partitions are open: each one says how it is */
  /* In group mode "starting" lasts until the first assignment (assign.c), or at most the session timeout. */
  const char *session = esr_config_kafka_get(cfg, "session.timeout.ms");
  w->join_deadline = esr_now_ms() + (session ? atoi(session) : 45000) + 10000;
  while (!*stop && !atomic_load(&w->fatal)) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(w->rk, 100);
    if (m) {
      esr__assign_stray(w, m);
      rd_kafka_message_destroy(m);
    }
    int64_t now = esr_now_ms();
    log_stats(w, now);
    if (w->group && now >= w->join_deadline) esr_metrics_phase(ESR_PHASE_RUNNING);
    esr_hygiene_tick(w->hygiene, now);
  }
  shutdown_worker(w);
  if (atomic_load(&w->fatal)) {
    *err = w->fatal_err;
    return err->code;
  }
  esr_log(ESR_LOG_INFO, "worker", "stopped cleanly");
  return ESR_E_OK;
}
