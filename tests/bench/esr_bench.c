/* esr_bench.c — `esr-bench`, the benchmark of issue 6: in one run on one machine, esr's catch-up rate against limits
 * measured in the same run on the same events (a plain librdkafka consumer, cJSON + envelope parse, the ledger's SQL on
 * SQLite), a naive worker (one event per transaction and a synchronous Kafka offset commit per event), recovery after
 * kill -9 with 1 M and 1,000 accounts of state, the worker's peak RSS, and what publishing once costs (the catch-up
 * with and without the outputs' read-back, from offset 0 and after a restart from checkpoints). Every figure is
 * measured --repeats times
 * (median, min, max). Targets are printed as PASS/MISS for information; the exit code is 0 whenever everything could
 * be measured, 1 when something could not (a worker died, the mock cluster dropped events, ...), 2 on bad options.
 * Progress goes to stderr, the table to stdout. Not part of the test suite. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "config.h"
#include "esrt_recovery.h"
#include "store.h"
#include "esrt_kafka.h"

#ifndef ESR_BIN
#define ESR_BIN "esr"
#endif
#ifndef ESR_BUILD_DIR
#define ESR_BUILD_DIR "."
#endif

#define MAX_REPEATS 15

static double g_t0;
static char *g_root;
static int g_keep;

double bench_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void bench_progress(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "[%6.1f s] ", bench_now_s() - g_t0);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

void bench_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "esr-bench: cannot measure: ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  if (g_root) fprintf(stderr, "esr-bench: logs and state kept in %s\n", g_root);
  fflush(NULL);
  esrt_reap_all(); /* the mock cluster and workers */
  _exit(1);        /* now, before librdkafka's threads report the cluster gone */
}

static void loadavg(char *buf, size_t cap) {
  char *s = esrt_read_file("/proc/loadavg", NULL);
  double a = 0, b = 0, c = 0;
  if (s) sscanf(s, "%lf %lf %lf", &a, &b, &c);
  free(s);
  snprintf(buf, cap, "%.2f %.2f %.2f", a, b, c);
}

/* ---------------------------------------------------------------------------------------------------- figures */

typedef enum { RATE, MILLIS, MEGABYTES } unit_kind;

typedef struct figure {
  const char *name;
  unit_kind unit;
  double v[MAX_REPEATS];
  int n;
} figure;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(const figure *f) {
  double s[MAX_REPEATS];
  memcpy(s, f->v, (size_t)f->n * sizeof *s);
  qsort(s, (size_t)f->n, sizeof *s, cmp_double);
  return f->n % 2 ? s[f->n / 2] : (s[f->n / 2 - 1] + s[f->n / 2]) / 2;
}
static double fmin_of(const figure *f) {
  double m = f->v[0];
  for (int i = 1; i < f->n; i++) m = f->v[i] < m ? f->v[i] : m;
  return m;
}
static double fmax_of(const figure *f) {
  double m = f->v[0];
  for (int i = 1; i < f->n; i++) m = f->v[i] > m ? f->v[i] : m;
  return m;
}

static void add(figure *f, double v) {
  if (f->n < MAX_REPEATS) f->v[f->n++] = v;
}

/* 1234567.8 -> "1,234,568" */
static const char *grouped(double v, char *buf, size_t cap) {
  char raw[64];
  snprintf(raw, sizeof raw, "%.0f", v);
  size_t len = strlen(raw), o = 0;
  for (size_t i = 0; i < len && o + 2 < cap; i++) {
    buf[o++] = raw[i];
    size_t left = len - i - 1;
    if (left && left % 3 == 0 && raw[i] != '-') buf[o++] = ',';
  }
  buf[o] = '\0';
  return buf;
}

static const char *value_text(const figure *f, double v, char *buf, size_t cap) {
  if (f->unit == RATE) return grouped(v, buf, cap);
  if (f->unit == MILLIS) snprintf(buf, cap, "%.1f", v);
  else snprintf(buf, cap, "%.1f", v);
  return buf;
}

static const char *unit_name(unit_kind u) { return u == RATE ? "events/s" : u == MILLIS ? "ms" : "MB"; }

/* ---------------------------------------------------------------------------------------------------- options */

enum {
  PH_CONSUME = 1,
  PH_PARSE = 2,
  PH_STORE = 4,
  PH_ESR = 8,
  PH_RSS = 16,
  PH_NAIVE = 32,
  PH_RECOVERY = 64,
  PH_REPLAY = 128,
  PH_READBACK = 256
};
static const char *const PHASES[] = {"consume", "parse", "store", "esr", "rss", "naive", "recovery", "replay", "readback",
                                     NULL};

typedef struct options {
  int only; /* PH_* */
  size_t events;
  int accounts;
  int partitions;
  int repeats;
  int naive_seconds;
  int small_accounts;
  size_t small_events;
  int brokers;
  double bad_share;
  uint64_t seed;
  const char *esr_bin;
  const char *handler;
  char sets[2048]; /* --set lines, "key = value\n" each */
} options;

static void usage(FILE *out) {
  fprintf(out,
          "usage: esr-bench [options]\n"
          "\n"
          "The benchmark of issue 6. In one run: produces a seeded ledger stream into a mock Kafka cluster (before\n"
          "any clock starts), then measures, each --repeats times (median, min, max):\n"
          "  consume limit   a plain librdkafka consumer reading every partition from offset 0 to the end\n"
          "  parse limit     cJSON + envelope check (esr_envelope_parse) of the same values, in memory\n"
          "  store limit     the ledger's SQL for the same events: one SQLite file per partition, store.c's pragmas,\n"
          "                  batch.max.events per transaction, one thread, events pre-parsed\n"
          "  esr             `esr run` (static, every partition) from process start until every partition's stored\n"
          "                  next_offset is the high watermark\n"
          "  naive           the same worker with batch.max.events = 1 and offsets.commit.sync = true, over a slice\n"
          "  recovery        kill -9 of a caught-up worker, one new event, restart: time to that event's commit; with\n"
          "                  the 1 M-account state of the stream, and with a 1,000-account state\n"
          "  peak RSS        VmHWM of the worker with 8 partitions, and with all of them\n"
          "  replay          `esr replay` of the whole stream from offset 0 into a fresh directory (process start to\n"
          "                  exit, replay.json written), against the worker's catch-up of the same run; then a replay\n"
          "                  of partition 0 to a recent offset with the worker's configuration, which starts from the\n"
          "                  worker's checkpoint and applies only the events after it (both counts printed)\n"
          "  readback        publishing once: the esr figure with outputs.readback = true and = false (each partition\n"
          "                  reads back the dead letters an earlier run published and drops them, or publishes them\n"
          "                  again to another topic), and the same after a restart from checkpoints at half of each\n"
          "                  partition's log (events replayed per second)\n"
          "and prints a table with ratios and the issue's targets (PASS/MISS, information only).\n"
          "Exit code 0 when everything was measured, 1 when something could not be, 2 on bad options.\n"
          "\n"
          "  --events N          events in the stream (default 2000000)\n"
          "  --accounts N        accounts, all opened first (default events/2, at most 1000000)\n"
          "  --partitions N      partitions (default: events/16000 rounded up to a multiple of 8, at least 8);\n"
          "                      the mock keeps at most 5 MiB per partition: the run stops if it dropped any event\n"
          "  --repeats N         measurements per figure (default 3, at most %d)\n"
          "  --naive-seconds S   length of the naive worker's measured slice (default 10)\n"
          "  --small-accounts N  accounts of the small recovery state (default 1000)\n"
          "  --brokers N         mock cluster brokers (default 3)\n"
          "  --bad-share F       share of bad events (default 0.01)\n"
          "  --seed N            stream seed (default 6)\n"
          "  --esr PATH          the esr binary (default %s)\n"
          "  --handler PATH      the ledger plugin (default %s/handlers/ledger.so)\n"
          "  --only LIST         measure only these figures (comma-separated): consume, parse, store, esr, rss,\n"
          "                      naive, recovery, replay, readback (default: all; replay brings esr with it)\n"
          "  --set KEY=VALUE     a worker configuration key for every worker of the run (repeatable), e.g.\n"
          "                      --set apply.threads=1; batch.max.events and sqlite.cache.mb also apply to the store\n"
          "                      limit. The naive worker's batch.max.events and offsets.commit.sync are its own.\n"
          "  --keep              keep the temporary directory (logs, databases)\n"
          "Temporary files go to $TMPDIR (default /tmp): keep it on a real disk, as SQLite's figures depend on it.\n",
          MAX_REPEATS, ESR_BIN, ESR_BUILD_DIR);
}

static long num_arg(const char *name, const char *v, long lo, long hi) {
  char *end;
  long n = strtol(v, &end, 10);
  if (*end || n < lo || n > hi) {
    fprintf(stderr, "esr-bench: --%s takes an integer in %ld..%ld, not '%s'\n", name, lo, hi, v);
    exit(2);
  }
  return n;
}

static void parse_options(int argc, char **argv, options *o) {
  static char handler[1024];
  snprintf(handler, sizeof handler, "%s/handlers/ledger.so", ESR_BUILD_DIR);
  *o = (options){.events = 2000000, .repeats = 3, .naive_seconds = 10, .small_accounts = 1000, .brokers = 3,
                 .bad_share = 0.01, .seed = 6, .esr_bin = ESR_BIN, .handler = handler, .only = 255};
  static const struct option opts[] = {
      {"events", required_argument, NULL, 'e'},         {"accounts", required_argument, NULL, 'a'},
      {"partitions", required_argument, NULL, 'p'},     {"repeats", required_argument, NULL, 'r'},
      {"naive-seconds", required_argument, NULL, 'n'}, {"small-accounts", required_argument, NULL, 's'},
      {"brokers", required_argument, NULL, 'b'},        {"bad-share", required_argument, NULL, 'B'},
      {"seed", required_argument, NULL, 'S'},           {"esr", required_argument, NULL, 'E'},
      {"handler", required_argument, NULL, 'H'},        {"keep", no_argument, NULL, 'k'},
      {"only", required_argument, NULL, 'o'},           {"set", required_argument, NULL, 'C'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'e': o->events = (size_t)num_arg("events", optarg, 1000, 20000000); break;
    case 'a': o->accounts = (int)num_arg("accounts", optarg, 1, 9999999); break;
    case 'p': o->partitions = (int)num_arg("partitions", optarg, 1, 4096); break;
    case 'r': o->repeats = (int)num_arg("repeats", optarg, 1, MAX_REPEATS); break;
    case 'n': o->naive_seconds = (int)num_arg("naive-seconds", optarg, 1, 600); break;
    case 's': o->small_accounts = (int)num_arg("small-accounts", optarg, 1, 1000000); break;
    case 'b': o->brokers = (int)num_arg("brokers", optarg, 1, 32); break;
    case 'B': {
      char *end;
      o->bad_share = strtod(optarg, &end);
      if (*end || o->bad_share < 0 || o->bad_share > 0.5) {
        fprintf(stderr, "esr-bench: --bad-share takes a number in 0..0.5\n");
        exit(2);
      }
      break;
    }
    case 'S': o->seed = (uint64_t)num_arg("seed", optarg, 0, 2147483647); break;
    case 'E': o->esr_bin = optarg; break;
    case 'H': o->handler = optarg; break;
    case 'k': g_keep = 1; break;
    case 'C': {
      const char *eq = strchr(optarg, '=');
      size_t len = strlen(o->sets);
      if (!eq || eq == optarg ||
          snprintf(o->sets + len, sizeof o->sets - len, "%.*s = %s\n", (int)(eq - optarg), optarg, eq + 1) >=
              (int)(sizeof o->sets - len)) {
        fprintf(stderr, "esr-bench: --set takes KEY=VALUE (e.g. apply.threads=1), not '%s'\n", optarg);
        exit(2);
      }
      break;
    }
    case 'o': {
      o->only = 0;
      char *list = strdup(optarg), *save = NULL;
      for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int i = 0;
        while (PHASES[i] && strcmp(PHASES[i], t) != 0) i++;
        if (!PHASES[i]) {
          fprintf(stderr, "esr-bench: --only: unknown figure '%s' (%s)\n", t,
                  "consume, parse, store, esr, rss, naive, recovery, replay, readback");
          exit(2);
        }
        o->only |= 1 << i;
      }
      free(list);
      break;
    }
    case 'h': usage(stdout); exit(0);
    default: usage(stderr); exit(2);
    }
  }
  if (optind < argc) {
    fprintf(stderr, "esr-bench: unexpected argument '%s'\n", argv[optind]);
    exit(2);
  }
  if (o->only & PH_REPLAY) o->only |= PH_ESR; /* the replay is measured against the catch-up of the same run */
  if (!o->accounts) o->accounts = (int)(o->events / 2 < 1000000 ? o->events / 2 : 1000000);
  if ((size_t)o->accounts > o->events) {
    fprintf(stderr, "esr-bench: --accounts must not exceed --events\n");
    exit(2);
  }
  if (!o->partitions) {
    o->partitions = (int)((o->events + 16000 * 8 - 1) / (16000 * 8)) * 8;
    if (o->partitions < 8) o->partitions = 8;
  }
  if (o->partitions < 8) {
    fprintf(stderr, "esr-bench: the peak-RSS figure assigns 8 partitions: --partitions must be at least 8\n");
    exit(2);
  }
  o->small_events = (size_t)o->partitions * 1000;
  if (o->small_events < (size_t)o->small_accounts * 2) o->small_events = (size_t)o->small_accounts * 2;
}

/* ---------------------------------------------------------------------------------------------------- helpers */

static void produce_stream(esrt_producer *prod, const char *topic, const bench_stream *s) {
  double t0 = bench_now_s();
  for (size_t i = 0; i < s->n; i++) {
    if (esrt_produce(prod, topic, s->v[i].partition, bench_key(s, i), s->v[i].klen, bench_value(s, i), s->v[i].vlen,
                     NULL) != 0)
      bench_fail("producing to %s", topic);
    if ((i + 1) % 500000 == 0) bench_progress("  %s: %zu events queued", topic, i + 1);
  }
  if (esrt_producer_flush(prod, 600000) != 0) bench_fail("producing to %s: not every event was delivered", topic);
  double dt = bench_now_s() - t0;
  bench_progress("  %s: %zu events delivered in %.1f s (%.0f/s)", topic, s->n, dt, (double)s->n / dt);
}

/* Every partition must hold exactly what was produced, from offset 0: the mock keeps at most 5 MiB (or 100,000
 * message sets) per partition and silently moves the log start past older ones. */
static int64_t *check_watermarks(rd_kafka_t *client, const char *topic, const bench_stream *s) {
  int64_t *hwm = calloc((size_t)s->partitions, sizeof *hwm);
  if (!hwm) bench_fail("out of memory");
  for (int p = 0; p < s->partitions; p++) {
    int64_t lo, hi;
    if (esrt_watermarks(client, topic, p, &lo, &hi) != 0) bench_fail("watermarks of %s [%d]", topic, p);
    if (lo != 0)
      bench_fail("%s [%d]: the mock cluster dropped events: the log starts at offset %" PRId64
                 " (it keeps at most 5 MiB or 100,000 message sets per partition): use more --partitions",
                 topic, p, lo);
    if (hi != s->per_part[p])
      bench_fail("%s [%d]: high watermark %" PRId64 ", but %" PRId64 " events were produced to it", topic, p, hi,
                 s->per_part[p]);
    hwm[p] = hi;
  }
  return hwm;
}

static const char *state_dir(const char *label, int rep, char *buf, size_t cap) {
  snprintf(buf, cap, "%s/%s-%d", g_root, label, rep);
  return buf;
}

static void rm_state(const char *dir) {
  char conf[1100];
  esrt_rmtree(dir);
  snprintf(conf, sizeof conf, "%s.conf", dir);
  unlink(conf);
}

/* Produces one valid deposit to `account` and waits for its delivery; returns its partition and offset. */
static int64_t produce_one(esrt_producer *prod, const char *topic, bench_stream *s, int account, int32_t *partition) {
  char key[32], value[512];
  size_t len = bench_stream_deposit(s, account, 100, key, value, sizeof value, partition);
  int64_t offset = -1;
  if (esrt_produce(prod, topic, *partition, key, strlen(key), value, len, &offset) != 0 ||
      esrt_producer_flush(prod, 30000) != 0 || offset < 0)
    bench_fail("producing one event to %s [%d]", topic, (int)*partition);
  return offset;
}

/* Waits (polling every ms) until partition p's stored next_offset passes `offset`; returns when it saw it. */
static double wait_applied(bench_worker *w, bench_poller *pl, int p, int64_t offset, double timeout_s) {
  double deadline = bench_now_s() + timeout_s;
  for (;;) {
    int64_t v = bench_poller_next(pl, p);
    double now = bench_now_s();
    if (v > offset) return now;
    if (now > deadline) bench_worker_fail(w, "partition %d did not apply offset %" PRId64 " within %.0f s", p, offset,
                                          timeout_s);
    if (!esrt_alive(&w->proc)) bench_worker_fail(w, "the worker exited (code %d)", esrt_exit_code(&w->proc));
    esrt_sleep_ms(1);
  }
}

/* Recovery: a caught-up worker is killed with SIGKILL, one new event is produced to a known partition, the worker is
 * started again: the time from its start until that event is committed in the partition's database. */
static void recovery(const bench_env *env, esrt_producer *prod, const char *topic, const char *dlq, bench_stream *s,
                     int64_t *hwm, const char *dir, int repeats, figure *f) {
  char parts[32];
  snprintf(parts, sizeof parts, "0-%d", s->partitions - 1);
  bench_worker w;
  bench_poller *pl = bench_poller_new(dir, topic, s->partitions);
  bench_worker_start(&w, env, topic, dlq, dir, parts, NULL);
  /* The poller keeps its connection to the probed partition's database across the kills: opening it while the worker
   * opens it could make the poller the connection that recovers that WAL. */
  bench_wait_caught_up(&w, pl, hwm, 0, s->partitions, 5, 600);
  int32_t p;
  int64_t off = produce_one(prod, topic, s, 0, &p); /* the running worker applies new events */
  wait_applied(&w, pl, p, off, 30);
  for (int r = 0; r < repeats; r++) {
    esrt_sleep_ms(300);
    esrt_kill9(&w.proc);
    off = produce_one(prod, topic, s, 0, &p);
    hwm[p] = off + 1;
    bench_worker_start(&w, env, topic, dlq, dir, parts, NULL);
    double t = wait_applied(&w, pl, p, off, 30);
    add(f, (t - w.started) * 1000);
    bench_progress("  %s %d/%d: %.1f ms from restart to the new event committed (partition %d, offset %" PRId64 ")",
                   f->name, r + 1, repeats, f->v[f->n - 1], (int)p, off);
  }
  bench_poller_free(pl); /* first, so that the worker's clean shutdown is its own (the last connection checkpoints) */
  bench_worker_stop(&w);
}

/* ---------------------------------------------------------------------------------------------------- phases */

static int has_figure(const figure *f) { return f->n > 0; }

typedef struct bench {
  options o;
  bench_env env;
  esrt_mock mock;
  esrt_producer *prod;
  bench_stream big, small;
  int64_t *hwm, *hwm_small;
  char parts_all[32];
  char big_state[1100]; /* a caught-up state of the big stream, for the recovery figure */
  int batch_events, batch_ms, cache_mb, apply_threads;
  double n; /* events in the big stream */
  char load_mid[64];
  figure consume, parse, store, esr, naive, rec_big, rec_small, rss8, rss_all, replay;
  int cp_done;                            /* the replay from a checkpoint was measured */
  int64_t cp_to, cp_from, cp_applied;     /* partition 0: target, the checkpoint it started from, events applied */
  double cp_ms;
  figure rb_on, rb_off, cp_on, cp_off; /* publishing once: catch-up and restart from checkpoints, read-back on/off */
  char rec_big_name[64], rec_small_name[64], rss_all_name[64];
} bench;

static const char *T = "bench", *TD = "bench.dlq", *TS = "bench-small", *TSD = "bench-small.dlq";

static void phase_consume(bench *b) {
  bench_progress("consume limit: a plain librdkafka consumer, %d partitions from offset 0", b->o.partitions);
  for (int r = 0; r < b->o.repeats; r++) {
    double dt = bench_consume_limit(b->mock.bootstrap, T, &b->big, r);
    add(&b->consume, b->n / dt);
    bench_progress("  %d/%d: %.2f s, %.0f events/s", r + 1, b->o.repeats, dt, b->n / dt);
  }
}

static void phase_parse(bench *b) {
  bench_progress("parse limit: esr_envelope_parse of the values in memory");
  for (int r = 0; r < b->o.repeats; r++) {
    size_t ok = 0;
    double dt = bench_parse_limit(&b->big, &ok);
    add(&b->parse, b->n / dt);
    bench_progress("  %d/%d: %.2f s, %.0f events/s (%zu envelopes valid)", r + 1, b->o.repeats, dt, b->n / dt, ok);
  }
}

static void phase_store(bench *b) {
  bench_progress("store limit: the ledger's SQL, %d databases, %d events per transaction, one thread",
                 b->o.partitions, b->batch_events);
  bench_store_input *in = bench_store_prepare(&b->big);
  for (int r = 0; r < b->o.repeats; r++) {
    char dir[1100];
    state_dir("store", r, dir, sizeof dir);
    if (mkdir(dir, 0755) != 0) bench_fail("mkdir %s", dir);
    size_t statements;
    double dt = bench_store_limit(in, dir, b->batch_events, b->cache_mb, &statements);
    add(&b->store, b->n / dt);
    bench_progress("  %d/%d: %.2f s, %.0f events/s (%zu statements)", r + 1, b->o.repeats, dt, b->n / dt, statements);
    rm_state(dir);
  }
  bench_store_input_free(in);
}

/* One catch-up of the big stream from offset 0 by a worker owning every partition: seconds from process start. */
static double catch_up(bench *b, const char *dir, long *vmhwm_kib) {
  bench_worker w;
  bench_poller *pl = bench_poller_new(dir, T, b->o.partitions);
  bench_worker_start(&w, &b->env, T, TD, dir, b->parts_all, NULL);
  double done = bench_wait_caught_up(&w, pl, b->hwm, 0, b->o.partitions, 2, 900);
  *vmhwm_kib = bench_worker_vmhwm_kib(&w);
  bench_poller_free(pl); /* first, so that the worker's clean shutdown is its own (the last connection checkpoints) */
  bench_worker_stop(&w);
  return done - w.started;
}

static void phase_esr(bench *b) {
  loadavg(b->load_mid, sizeof b->load_mid);
  bench_progress("esr: `esr run` from offset 0, static assignment of %d partitions (load %s)", b->o.partitions,
                 b->load_mid);
  for (int r = 0; r < b->o.repeats; r++) {
    char dir[1100];
    state_dir("esr", r, dir, sizeof dir);
    long kib;
    double dt = catch_up(b, dir, &kib);
    add(&b->esr, b->n / dt);
    add(&b->rss_all, (double)kib * 1024 / 1e6);
    bench_progress("  %d/%d: %.2f s, %.0f events/s, peak RSS %.1f MB", r + 1, b->o.repeats, dt, b->n / dt,
                   (double)kib * 1024 / 1e6);
    if (b->big_state[0]) rm_state(b->big_state);
    snprintf(b->big_state, sizeof b->big_state, "%s", dir); /* the last one: the state for the recovery figure */
  }
}

static void phase_rss8(bench *b) {
  int64_t events = 0;
  for (int p = 0; p < 8; p++) events += b->hwm[p];
  bench_progress("peak RSS: `esr run` with partitions 0-7 (%" PRId64 " events) until caught up", events);
  for (int r = 0; r < b->o.repeats; r++) {
    char dir[1100];
    state_dir("rss8", r, dir, sizeof dir);
    bench_worker w;
    bench_poller *pl = bench_poller_new(dir, T, b->o.partitions);
    bench_worker_start(&w, &b->env, T, TD, dir, "0-7", NULL);
    double done = bench_wait_caught_up(&w, pl, b->hwm, 0, 8, 2, 600);
    long kib = bench_worker_vmhwm_kib(&w);
    bench_poller_free(pl);
    bench_worker_stop(&w);
    add(&b->rss8, (double)kib * 1024 / 1e6);
    bench_progress("  %d/%d: peak RSS %.1f MB (caught up in %.2f s)", r + 1, b->o.repeats, (double)kib * 1024 / 1e6,
                   done - w.started);
    rm_state(dir);
  }
}

static void phase_naive(bench *b) {
  int secs = b->o.naive_seconds;
  bench_progress("naive: batch.max.events = 1, offsets.commit.sync = true; %d s slices after 1 s", secs);
  for (int r = 0; r < b->o.repeats; r++) {
    char dir[1100], extra[200];
    state_dir("naive", r, dir, sizeof dir);
    snprintf(extra, sizeof extra,
             "batch.max.events = 1\noffsets.commit.sync = true\nkafka.group.id = esr-bench-naive-%d\n", r);
    bench_worker w;
    bench_poller *pl = bench_poller_new(dir, T, b->o.partitions);
    bench_worker_start(&w, &b->env, T, TD, dir, b->parts_all, extra);
    double mark[2];
    int64_t sum[2];
    for (int k = 0; k < 2; k++) { /* events consumed (applied or dead-lettered) at 1 s and at 1 s + the slice */
      double until = w.started + 1.0 + k * secs;
      while (bench_now_s() < until) esrt_sleep_ms(5);
      if (!esrt_alive(&w.proc)) bench_worker_fail(&w, "the naive worker exited (code %d)", esrt_exit_code(&w.proc));
      sum[k] = 0;
      double a = bench_now_s();
      for (int p = 0; p < b->o.partitions; p++) {
        int64_t v = bench_poller_next(pl, p);
        if (v > 0) sum[k] += v;
      }
      mark[k] = (a + bench_now_s()) / 2;
    }
    if (sum[1] <= sum[0]) bench_worker_fail(&w, "the naive worker applied nothing in %d s", secs);
    bench_poller_free(pl);
    bench_worker_stop(&w);
    double rate = (double)(sum[1] - sum[0]) / (mark[1] - mark[0]);
    add(&b->naive, rate);
    bench_progress("  %d/%d: %" PRId64 " events in %.2f s, %.0f events/s", r + 1, b->o.repeats, sum[1] - sum[0],
                   mark[1] - mark[0], rate);
    rm_state(dir);
  }
}

/* ---- publishing once (issue 14): the read-back's cost ---- */

static const char *TDO = "bench.dlq-off"; /* where the runs without read-back publish: TD keeps one copy of each */

/* One run of a worker owning every partition until it caught up: seconds from process start. */
static double run_to_end(bench *b, const char *dir, const char *dlq, const char *extra) {
  bench_worker w;
  bench_poller *pl = bench_poller_new(dir, T, b->o.partitions);
  bench_worker_start(&w, &b->env, T, dlq, dir, b->parts_all, extra);
  double done = bench_wait_caught_up(&w, pl, b->hwm, 0, b->o.partitions, 2, 900);
  bench_poller_free(pl);
  bench_worker_stop(&w);
  return done - w.started;
}

static void phase_readback(bench *b) {
  int64_t per_part = (int64_t)(b->n / b->o.partitions);
  char prep[1100], saved[1100], extra[256], cmd[3000];
  state_dir("readback-prep", 0, prep, sizeof prep);
  snprintf(saved, sizeof saved, "%s/readback-checkpoints", g_root);
  /* Not measured: a catch-up that publishes the stream's dead letters to TD once and leaves a checkpoint of every
   * partition at about half its log. */
  bench_progress("readback: a first catch-up (not measured) publishes the dead letters and checkpoints every "
                 "partition at about half its log");
  snprintf(extra, sizeof extra, "checkpoint.interval.events = %" PRId64 "\ncheckpoint.on.release = false\n",
           per_part / 2 > 0 ? per_part / 2 : 1);
  run_to_end(b, prep, TD, extra);
  snprintf(cmd, sizeof cmd, "mv '%s/checkpoints' '%s'", prep, saved);
  if (system(cmd) != 0) bench_fail("%s", cmd);
  rm_state(prep);
  int64_t replay = 0;
  for (int p = 0; p < b->o.partitions; p++) {
    int64_t off = 0;
    if (esrt_checkpoint_offsets(saved, T, p, &off, 1) != 1) bench_fail("no checkpoint of partition %d in %s", p, saved);
    replay += b->hwm[p] - off;
  }
  bench_progress("  %" PRId64 " events to replay after a restart from those checkpoints", replay);
  for (int r = 0; r < b->o.repeats; r++) {
    for (int k = 0; k < 4; k++) {
      int on = (k + r) % 2 == 0, from_cp = k >= 2; /* on and off alternate, each first in every other repeat */
      char dir[1100];
      state_dir(from_cp ? (on ? "cp-on" : "cp-off") : (on ? "rb-on" : "rb-off"), r, dir, sizeof dir);
      if (from_cp) {
        if (mkdir(dir, 0755) != 0) bench_fail("mkdir %s", dir);
        snprintf(cmd, sizeof cmd, "cp -a '%s' '%s/checkpoints'", saved, dir);
        if (system(cmd) != 0) bench_fail("%s", cmd);
      }
      snprintf(extra, sizeof extra, "outputs.readback = %s\ncheckpoint.on.release = false\n", on ? "true" : "false");
      double dt = run_to_end(b, dir, on ? TD : TDO, extra);
      double events = from_cp ? (double)replay : b->n;
      figure *f = from_cp ? (on ? &b->cp_on : &b->cp_off) : (on ? &b->rb_on : &b->rb_off);
      add(f, events / dt);
      bench_progress("  %d/%d %s: %.2f s, %.0f events/s", r + 1, b->o.repeats, f->name, dt, events / dt);
      rm_state(dir);
    }
  }
  esrt_rmtree(saved);
}

static void phase_recovery(bench *b) {
  if (!b->big_state[0]) {
    state_dir("esr", 0, b->big_state, sizeof b->big_state);
    bench_progress("recovery: catching up the stream first (not measured) for a %d-account state", b->o.accounts);
    long kib;
    catch_up(b, b->big_state, &kib);
  }
  bench_progress("recovery with %d accounts of state (%s)", b->o.accounts, b->big_state);
  recovery(&b->env, b->prod, T, TD, &b->big, b->hwm, b->big_state, b->o.repeats, &b->rec_big);
  char dir[1100];
  state_dir("small", 0, dir, sizeof dir);
  bench_progress("recovery with %d accounts of state (%s: %zu events; catching up first)", b->o.small_accounts, TS,
                 b->small.n);
  recovery(&b->env, b->prod, TS, TSD, &b->small, b->hwm_small, dir, b->o.repeats, &b->rec_small);
}

/* The first integer after `key` in a file, or -1. */
static int64_t json_number_after(const char *path, const char *key) {
  char *text = esrt_read_file(path, NULL);
  const char *at = text ? strstr(text, key) : NULL;
  int64_t v = at ? strtoll(at + strlen(key), NULL, 10) : -1;
  free(text);
  return v;
}

/* `esr ARGS...` to its end: seconds from spawn to exit; the run fails unless it exits 0. */
static double run_esr(const bench *b, const char *name, char *const *args) {
  char *argv[32] = {(char *)b->o.esr_bin};
  int n = 1;
  for (char *const *a = args; *a && n < 31; a++) argv[n++] = *a;
  argv[n] = NULL;
  esrt_proc p;
  double t0 = bench_now_s();
  if (esrt_spawn(&p, g_root, name, argv, 0) != 0) bench_fail("cannot start %s", b->o.esr_bin);
  if (esrt_wait(&p, 1800000) != 0) bench_fail("esr %s did not end within 30 minutes", args[0]);
  double dt = bench_now_s() - t0;
  if (esrt_exit_code(&p) != 0) {
    fprintf(stderr, "esr-bench: esr %s, last lines of its output:\n", args[0]);
    esrt_print_tail(stderr, p.err_path, 15, "  esr| ");
    bench_fail("esr %s exited with code %d", args[0], esrt_exit_code(&p));
  }
  return dt;
}

/* A full replay of the stream (from offset 0, no checkpoint), then a replay of partition 0 to a recent offset that
 * starts from the worker's checkpoint. */
static void phase_replay(bench *b) {
  bench_progress("replay: `esr replay` of every partition from offset 0 (process start to exit, replay.json written)");
  for (int r = 0; r < b->o.repeats; r++) {
    char dir[1100];
    state_dir("replay", r, dir, sizeof dir);
    char *args[] = {"replay", "--bootstrap", (char *)b->mock.bootstrap, "--handlers", (char *)b->o.handler, "--topic",
                    (char *)T, "--out", dir, "--no-checkpoints", NULL};
    double dt = run_esr(b, "replay", args);
    char manifest[1200];
    snprintf(manifest, sizeof manifest, "%s/replay.json", dir);
    if (access(manifest, R_OK) != 0) bench_fail("the replay wrote no %s", manifest);
    add(&b->replay, b->n / dt);
    bench_progress("  %d/%d: %.2f s, %.0f events/s (the worker's catch-up: %.0f events/s median)", r + 1, b->o.repeats,
                   dt, b->n / dt, has_figure(&b->esr) ? median(&b->esr) : 0.0);
    rm_state(dir);
  }
  if (!b->big_state[0]) return;
  /* The worker's state of the esr figure holds a checkpoint of every partition at its end (checkpoint.on.release).
   * New events to partition 0, then a replay to the new end with the worker's configuration. */
  int k = 0, target = 1000;
  char key[32], value[512];
  for (int account = 0; account < b->big.accounts && k < target; account++) {
    int32_t part;
    size_t len = bench_stream_deposit(&b->big, account, 7, key, value, sizeof value, &part);
    if (part != 0) {
      b->big.balance[account] -= 7; /* not produced */
      continue;
    }
    if (esrt_produce(b->prod, T, 0, key, strlen(key), value, len, NULL) != 0) bench_fail("producing to %s [0]", T);
    k++;
  }
  if (esrt_producer_flush(b->prod, 60000) != 0) bench_fail("producing to %s [0]", T);
  b->hwm[0] += k;
  char conf[1200], dir[1100], to[32];
  snprintf(conf, sizeof conf, "%s.conf", b->big_state);
  state_dir("replay-checkpoint", 0, dir, sizeof dir);
  snprintf(to, sizeof to, "%" PRId64, b->hwm[0]);
  bench_progress("replay to a recent offset: partition 0 to offset %s (%d events after the worker's last checkpoint), "
                 "with the worker's configuration",
                 to, k);
  char *args[] = {"replay", "--config", conf, "--partition", "0", "--to", to, "--out", dir, NULL};
  double dt = run_esr(b, "replay-checkpoint", args);
  char manifest[1200];
  snprintf(manifest, sizeof manifest, "%s/replay.json", dir);
  b->cp_to = b->hwm[0];
  b->cp_from = json_number_after(manifest, "\"from\":\t");
  b->cp_applied = json_number_after(manifest, "\"events\":\t");
  b->cp_ms = dt * 1000;
  b->cp_done = b->cp_from >= 0 && b->cp_applied >= 0;
  bench_progress("  started from the checkpoint at offset %" PRId64 ", applied %" PRId64 " events (a replay from offset "
                 "0 applies %" PRId64 "), %.0f ms",
                 b->cp_from, b->cp_applied, b->cp_to, b->cp_ms);
  rm_state(dir);
}

/* ---------------------------------------------------------------------------------------------------- the table */

static int has(const figure *f) { return f->n > 0; }

static void ratio(const figure *f, const figure *lim) {
  if (has(lim))
    printf(" %9.2f", median(f) / median(lim));
  else
    printf(" %9s", "-");
}

static void target(const char *what, int measured, const char *value, int pass) {
  printf("  %-56s %-32s %s\n", what, measured ? value : "not measured", measured ? (pass ? "PASS" : "MISS") : "-");
}

static void print_table(bench *b, long cores, const char *load_start, const char *load_end, double total) {
  const options *o = &b->o;
  printf("\nesr benchmark (issue 6): every figure measured in this run, %d times (median, min, max); ratios of "
         "medians\n",
         o->repeats);
  printf("machine: %ld cores online; load average %s at start, %s before the esr figure, %s at the end\n", cores,
         load_start, b->load_mid[0] ? b->load_mid : "-", load_end);
  printf("versions: librdkafka %s, SQLite %s, cJSON %s; esr %s\n", rd_kafka_version_str(), sqlite3_libversion(),
         cJSON_Version(), o->esr_bin);
  printf("stream: %zu events (%zu account opens, %zu movements, %zu bad = %.2f%%), values %.0f bytes on average,\n"
         "        %d partitions (each from offset 0, nothing dropped by the mock), %d-broker mock cluster\n",
         b->big.n, b->big.opens, b->big.moves, b->big.bad, 100.0 * (double)b->big.bad / b->n,
         (double)b->big.value_bytes / b->n, o->partitions, o->brokers);
  char threads[32];
  if (b->apply_threads > 0)
    snprintf(threads, sizeof threads, "%d", b->apply_threads);
  else
    snprintf(threads, sizeof threads, "auto = %ld", cores);
  printf("worker: batch.max.events %d, batch.max.ms %d, sqlite.cache.mb %d, apply.threads %s; static assignment of\n"
         "        every partition unless said%s",
         b->batch_events, b->batch_ms, b->cache_mb, threads, o->sets[0] ? "; set for every worker:\n" : "\n");
  for (const char *line = o->sets; *line;) {
    const char *nl = strchr(line, '\n');
    printf("          %.*s\n", (int)(nl - line), line);
    line = nl + 1;
  }
  printf("\n");
  printf("%-28s %12s %12s %12s  %-9s %9s %9s %9s\n", "figure", "median", "min", "max", "unit", "/consume",
         "/parse", "/store");
  figure *rows[] = {&b->consume, &b->parse, &b->store,   &b->esr,     &b->replay, &b->naive, &b->rec_big,
                    &b->rec_small, &b->rss8, &b->rss_all, &b->rb_on, &b->rb_off, &b->cp_on, &b->cp_off};
  for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
    figure *f = rows[i];
    if (!has(f)) continue;
    char x[32], y[32], z[32];
    printf("%-28s %12s %12s %12s  %-9s", f->name, value_text(f, median(f), x, sizeof x),
           value_text(f, fmin_of(f), y, sizeof y), value_text(f, fmax_of(f), z, sizeof z), unit_name(f->unit));
    if (f->unit == RATE) {
      ratio(f, &b->consume);
      ratio(f, &b->parse);
      ratio(f, &b->store);
    }
    printf("\n");
  }

  printf("\ntargets (the issue's; information only: the exit code does not depend on them)\n");
  char v[96];
  int lims = has(&b->consume) && has(&b->store) && has(&b->esr);
  double lim = lims ? fmin(median(&b->consume), median(&b->store)) : 0, e = has(&b->esr) ? median(&b->esr) : 0;
  snprintf(v, sizeof v, "esr / min(limits) = %.2f", lims ? e / lim : 0);
  target("esr >= 0.8 x min(consume limit, store limit)", lims, v, lims && e >= 0.8 * lim);
  double nv = has(&b->naive) ? median(&b->naive) : 0;
  snprintf(v, sizeof v, "esr / naive = %.1f", nv > 0 ? e / nv : 0);
  target("esr >= 50 x naive", has(&b->esr) && has(&b->naive), v, e >= 50 * nv);
  int recs = has(&b->rec_big) && has(&b->rec_small);
  double rb = recs ? median(&b->rec_big) : 0, rs = recs ? median(&b->rec_small) : 0;
  snprintf(v, sizeof v, "%.1f ms and %.1f ms", rb, rs);
  target("recovery <= 1 s, large and small state", recs, v, rb <= 1000 && rs <= 1000);
  snprintf(v, sizeof v, "%.1f ms / %.1f ms = %.2f", rb, rs, rs > 0 ? rb / rs : 0);
  /* "No slower": the restart's own jitter is allowed, 20 % or 10 ms. */
  target("recovery no slower with the large state (20 % / 10 ms)", recs, v, rb <= rs * 1.2 || rb <= rs + 10);
  double rp = has(&b->replay) ? median(&b->replay) : 0;
  snprintf(v, sizeof v, "replay / esr = %.2f", e > 0 ? rp / e : 0);
  target("full replay >= 0.8 x esr's catch-up (same run)", has(&b->replay) && has(&b->esr), v, rp >= 0.8 * e);
  snprintf(v, sizeof v, "%" PRId64 " of %" PRId64 " (from %" PRId64 ")", b->cp_applied, b->cp_to, b->cp_from);
  target("replay from a checkpoint applies only what follows it", b->cp_done, v,
         b->cp_from > 0 && b->cp_applied == b->cp_to - b->cp_from);
  int rbs = has(&b->rb_on) && has(&b->rb_off) && has(&b->cp_on) && has(&b->cp_off);
  double d0 = rbs ? 1 - median(&b->rb_on) / median(&b->rb_off) : 0;
  double d1 = rbs ? 1 - median(&b->cp_on) / median(&b->cp_off) : 0;
  snprintf(v, sizeof v, "%+.1f %% from 0, %+.1f %% from checkpoints", -100 * d0, -100 * d1);
  target("read-back costs < 10 % of the catch-up rate", rbs, v, d0 < 0.10 && d1 < 0.10);
  double r8 = has(&b->rss8) ? median(&b->rss8) : 0;
  snprintf(v, sizeof v, "%.1f MB", r8);
  target("peak RSS <= 150 MB with 8 partitions", has(&b->rss8), v, r8 <= 150);
  double per_part = b->n / o->partitions;
  printf("\nrun time %.0f s. MB = 10^6 bytes. Rates count every event consumed (applied or dead-lettered). Recovery\n"
         "includes the process start and the batch's age limit (batch.max.ms) before the first commit. Peak RSS\n"
         "grows with the backlog the consumer prefetches: here a partition holds %.0f events (%.1f MB; the mock\n"
         "keeps at most 5 MiB per partition), so 8 partitions prefetch at most %.0f events; a deeper log, more.\n",
         total, per_part, per_part * (double)b->big.value_bytes / b->n / 1e6, 8 * per_part);
}

/* ---------------------------------------------------------------------------------------------------- main */

int main(int argc, char **argv) {
  g_t0 = bench_now_s();
  esr_store_init_library(); /* as the esr command does: the store limit runs with the worker's SQLite settings */
  static bench b;
  parse_options(argc, argv, &b.o);
  const options *o = &b.o;
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (access(o->esr_bin, X_OK) != 0) bench_fail("no esr binary at %s (--esr)", o->esr_bin);
  if (access(o->handler, R_OK) != 0) bench_fail("no ledger plugin at %s (--handler)", o->handler);
  extern char **environ;
  for (char **e = environ; *e; e++)
    if (strncmp(*e, "ESR_", 4) == 0)
      fprintf(stderr, "esr-bench: warning: %.*s is set and overrides the workers' configuration\n",
              (int)strcspn(*e, "="), *e);
  esr_config *defaults = esr_config_new();
  if (!defaults) bench_fail("out of memory");
  for (const char *line = o->sets; *line;) { /* validated as the worker will: a bad key stops here */
    const char *nl = strchr(line, '\n');
    char kv[1024], *eq;
    snprintf(kv, sizeof kv, "%.*s", (int)(nl - line), line);
    eq = strstr(kv, " = ");
    *eq = '\0';
    esr_error err = {0};
    if (esr_config_set(defaults, kv, eq + 3, "--set", &err) != ESR_E_OK) {
      fprintf(stderr, "esr-bench: %s\n", err.msg);
      exit(2);
    }
    line = nl + 1;
  }
  b.batch_events = defaults->batch_max_events;
  b.batch_ms = defaults->batch_max_ms;
  b.cache_mb = defaults->sqlite_cache_mb;
  b.apply_threads = defaults->apply_threads;
  esr_config_free(defaults);

  char load_start[64], load_end[64];
  loadavg(load_start, sizeof load_start);
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  bench_progress("esr-bench: %ld cores, load %s; %zu events over %d partitions, %d accounts; %d repeats", cores,
                 load_start, o->events, o->partitions, o->accounts, o->repeats);
  if (!(g_root = esrt_mkdtemp("bench"))) bench_fail("cannot create a temporary directory");

  /* ---- the streams, produced before any clock starts */
  bench_progress("generating the stream (seed %" PRIu64 ")", o->seed);
  bench_stream_generate(&b.big, o->seed, o->events, o->accounts, o->partitions, o->bad_share);
  bench_progress("  %zu events: %zu opens, %zu movements, %zu bad; values %.1f bytes on average", b.big.n,
                 b.big.opens, b.big.moves, b.big.bad, (double)b.big.value_bytes / (double)b.big.n);
  int with_small = (o->only & PH_RECOVERY) != 0;
  if (with_small) bench_stream_generate(&b.small, o->seed + 1, o->small_events, o->small_accounts, o->partitions,
                                        o->bad_share);
  char t_big[64], t_small[64], t_dlq[64];
  snprintf(t_big, sizeof t_big, "%s:%d", T, o->partitions);
  snprintf(t_small, sizeof t_small, "%s:%d", TS, o->partitions);
  snprintf(t_dlq, sizeof t_dlq, "%s:4", TD);
  const char *topics[] = {t_big, t_dlq, t_small, "bench-small.dlq:1", NULL};
  if (!with_small) topics[2] = NULL;
  if (esrt_mock_start(&b.mock, o->esr_bin, g_root, o->brokers, topics, 30000) != 0) bench_fail("mock cluster");
  bench_progress("mock cluster: %d brokers at %s", o->brokers, b.mock.bootstrap);
  if (!(b.prod = esrt_producer_new(b.mock.bootstrap))) bench_fail("producer");
  bench_progress("producing");
  produce_stream(b.prod, T, &b.big);
  if (with_small) produce_stream(b.prod, TS, &b.small);
  rd_kafka_t *client = esrt_kafka_client_new(b.mock.bootstrap);
  if (!client) bench_fail("kafka client");
  b.hwm = check_watermarks(client, T, &b.big);
  if (with_small) b.hwm_small = check_watermarks(client, TS, &b.small);
  bench_progress("  every partition starts at offset 0 and holds every event produced to it");
  b.env = (bench_env){
      .esr_bin = o->esr_bin, .handler = o->handler, .bootstrap = b.mock.bootstrap, .root = g_root, .sets = o->sets};
  snprintf(b.parts_all, sizeof b.parts_all, "0-%d", o->partitions - 1);
  b.n = (double)b.big.n;

  b.consume = (figure){.name = "consume limit", .unit = RATE};
  b.parse = (figure){.name = "parse limit", .unit = RATE};
  b.store = (figure){.name = "store limit", .unit = RATE};
  b.esr = (figure){.name = "esr", .unit = RATE};
  b.naive = (figure){.name = "naive", .unit = RATE};
  b.rss8 = (figure){.name = "peak RSS, 8 partitions", .unit = MEGABYTES};
  if (o->accounts == 1000000)
    snprintf(b.rec_big_name, sizeof b.rec_big_name, "recovery, 1 M accounts");
  else
    snprintf(b.rec_big_name, sizeof b.rec_big_name, "recovery, %d accounts", o->accounts);
  snprintf(b.rec_small_name, sizeof b.rec_small_name, "recovery, %d accounts", o->small_accounts);
  snprintf(b.rss_all_name, sizeof b.rss_all_name, "peak RSS, %d partitions", o->partitions);
  b.rec_big = (figure){.name = b.rec_big_name, .unit = MILLIS};
  b.rec_small = (figure){.name = b.rec_small_name, .unit = MILLIS};
  b.rss_all = (figure){.name = b.rss_all_name, .unit = MEGABYTES};
  b.replay = (figure){.name = "replay (esr replay, from 0)", .unit = RATE};
  b.rb_on = (figure){.name = "esr, read-back on", .unit = RATE};
  b.rb_off = (figure){.name = "esr, read-back off", .unit = RATE};
  b.cp_on = (figure){.name = "replay, read-back on", .unit = RATE};
  b.cp_off = (figure){.name = "replay, read-back off", .unit = RATE};

  if (o->only & PH_CONSUME) phase_consume(&b);
  if (o->only & PH_PARSE) phase_parse(&b);
  if (o->only & PH_STORE) phase_store(&b);
  if (o->only & PH_ESR) phase_esr(&b);
  if (o->only & PH_REPLAY) phase_replay(&b);
  if (o->only & PH_RSS) phase_rss8(&b);
  if (o->only & PH_NAIVE) phase_naive(&b);
  if (o->only & PH_RECOVERY) phase_recovery(&b);
  if (o->only & PH_READBACK) phase_readback(&b);

  esrt_producer_free(b.prod);
  rd_kafka_destroy(client);
  esrt_mock_stop(&b.mock);
  loadavg(load_end, sizeof load_end);
  double total = bench_now_s() - g_t0;
  bench_progress("done in %.0f s", total);
  print_table(&b, cores, load_start, load_end, total);

  bench_stream_free(&b.big);
  bench_stream_free(&b.small);
  free(b.hwm);
  free(b.hwm_small);
  if (!g_keep)
    esrt_rmtree(g_root);
  else
    fprintf(stderr, "esr-bench: kept %s\n", g_root);
  free(g_root);
  return 0;
}
