/* esr_bench.c — `esr-bench`, the benchmark of issues 6 and 15: in one run on one machine, esr's catch-up rate and its
 * CPU time per event against limits measured in the same run on the same events (a plain librdkafka consumer, cJSON +
 * envelope parse, the ledger's SQL on SQLite) and against a hand-written Python worker (tests/bench/peer_worker.py),
 * on the stream produced in bulk and on the same events produced in small message sets; a naive worker (one event per
 * transaction and a synchronous Kafka offset commit per event), recovery after kill -9 with a large state (written
 * into the partition databases) and a small one, the worker's peak RSS, esr replay. Every figure is measured
 * --repeats times (median, min, max); and what publishing once costs (the catch-up with and without the outputs'
 * read-back, from offset 0 and after a restart from checkpoints). Targets are printed as PASS/MISS for information; the exit code is 0 whenever
 * everything could be measured, 1 when something could not (a worker died, the mock cluster dropped events, ...), 2
 * on bad options. Progress goes to stderr, the table to stdout. Not part of the test suite. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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
#ifndef ESR_ALLOCATOR_NAME
#define ESR_ALLOCATOR_NAME "glibc"
#endif
#ifndef ESR_GLIBC_BIN
#define ESR_GLIBC_BIN NULL
#endif
static const char *g_glibc_bin = ESR_GLIBC_BIN;
#ifndef ESR_SQL_LEDGER
#define ESR_SQL_LEDGER "handlers/ledger/ledger.yaml"
#endif
#ifndef ESR_PEER_SCRIPT
#define ESR_PEER_SCRIPT "tests/bench/peer_worker.py"
#endif

#define MAX_REPEATS 15

static double g_t0;
static char *g_root;
static int g_keep;

double bench_cpu_self_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         (double)ru.ru_stime.tv_usec / 1e6;
}

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
  double cpu[MAX_REPEATS]; /* CPU microseconds per event of the whole process, for the same runs */
  int ncpu;
} figure;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median_of(const double *v, int n) {
  double s[MAX_REPEATS];
  memcpy(s, v, (size_t)n * sizeof *s);
  qsort(s, (size_t)n, sizeof *s, cmp_double);
  return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}
static double min_of(const double *v, int n) {
  double m = v[0];
  for (int i = 1; i < n; i++) m = v[i] < m ? v[i] : m;
  return m;
}
static double max_of(const double *v, int n) {
  double m = v[0];
  for (int i = 1; i < n; i++) m = v[i] > m ? v[i] : m;
  return m;
}
static double median(const figure *f) { return median_of(f->v, f->n); }
static double fmin_of(const figure *f) { return min_of(f->v, f->n); }
static double fmax_of(const figure *f) { return max_of(f->v, f->n); }
static double cpu_median(const figure *f) { return f->ncpu ? median_of(f->cpu, f->ncpu) : 0; }

static void add(figure *f, double v) {
  if (f->n < MAX_REPEATS) f->v[f->n++] = v;
}
/* CPU seconds for `events` events: kept as microseconds per event. */
static void add_cpu(figure *f, double cpu_s, double events) {
  if (f->ncpu < MAX_REPEATS && cpu_s >= 0 && events > 0) f->cpu[f->ncpu++] = cpu_s * 1e6 / events;
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
  PH_PEER = 256,
  PH_ALLOC = 512,
  PH_READBACK = 1024,
  PH_SQL = 2048
};
static const char *const PHASES[] = {"consume", "parse", "store", "esr",  "rss", "naive",
                                     "recovery", "replay", "peer", "alloc", "readback", "sql", NULL};
enum { ST_BULK = 1, ST_SETS = 2 }; /* the streams: produced in bulk, and in small message sets */

typedef struct options {
  int only; /* PH_* */
  size_t events;
  int accounts;
  int partitions;
  int repeats;
  int naive_seconds;
  int small_accounts;
  size_t small_events;
  int large_accounts; /* accounts of the large recovery state, built in the databases */
  int streams;        /* ST_* */
  int set_messages;   /* batch.num.messages of the small-sets stream's producer */
  const char *python, *peer;
  const char *esr_glibc; /* the same command without a replacement malloc, or NULL */
  const char *sql_handler; /* the ledger written in SQL */
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
          "The benchmark of issues 6 and 15. In one run: produces a seeded ledger stream into a mock Kafka cluster\n"
          "(before any clock starts) twice: in bulk (large message sets), and as a producer writing to many\n"
          "partitions at once with a short linger does (message sets of at most --set-messages events); then\n"
          "measures, each --repeats times (median, min, max), every figure with the CPU time per event of the\n"
          "whole process (user + system, every thread) beside it:\n"
          "  consume limit   a plain librdkafka consumer reading every partition from offset 0 to the end\n"
          "  parse limit     cJSON + envelope check (esr_envelope_parse) of the same values, in memory\n"
          "  store limit     the ledger's SQL for the same events: one SQLite file per partition, store.c's pragmas,\n"
          "                  batch.max.events per transaction, one thread, events pre-parsed\n"
          "  esr             `esr run` (static, every partition) from process start until every partition's stored\n"
          "                  next_offset is the high watermark\n"
          "  alloc           esr's catch-up of the bulk stream with another malloc than the one linked in (" ESR_ALLOCATOR_NAME "):\n"
          "                  glibc's, tuned (--esr-glibc, when esr links another), and each of mimalloc, jemalloc\n"
          "                  found, by LD_PRELOAD; each\n"
          "                  run right after one of the esr figure's\n"
          "  sql             esr's catch-up of the bulk stream with the ledger written in SQL (--sql-handler,\n"
          "                  handlers/ledger/ledger.yaml) instead of ledger.so; each run right after one of the esr\n"
          "                  figure's\n"
          "  peer            the worker a team would write by hand: tests/bench/peer_worker.py (Python, Debian's\n"
          "                  python3-confluent-kafka and sqlite3; the ledger's rules, a database per partition, state\n"
          "                  and offset in one transaction per batch), process start to exit\n"
          "                  (consume limit, esr and peer run on both streams; parse and store do not depend on them)\n"
          "  naive           the same worker with batch.max.events = 1 and offsets.commit.sync = true, over a slice\n"
          "  recovery        kill -9 of a caught-up worker, one new event, restart: time to that event's commit; with\n"
          "                  a large state (--large-accounts accounts, about 100 bytes each, written directly into the\n"
          "                  partition databases of a caught-up worker: their offsets still match the log), and with\n"
          "                  a 1,000-account state\n"
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
          "  --large-accounts N  accounts of the large recovery state (default 10000000: about 1 GB)\n"
          "  --streams LIST      bulk, sets or both (default bulk,sets): the streams consume, esr and peer run on\n"
          "  --set-messages N    the small-sets stream's message sets: at most N events (default 5)\n"
          "  --python PATH       the peer's interpreter (default /usr/bin/python3, with python3-confluent-kafka)\n"
          "  --peer PATH         the peer worker (default %s)\n"
          "  --esr-glibc PATH    esr without its replacement malloc, for the alloc rows (default %s)\n"
          "  --sql-handler PATH  the ledger written in SQL, for the sql row (default " ESR_SQL_LEDGER ")\n"
          "  --brokers N         mock cluster brokers (default 3)\n"
          "  --bad-share F       share of bad events (default 0.01)\n"
          "  --seed N            stream seed (default 6)\n"
          "  --esr PATH          the esr binary (default %s)\n"
          "  --handler PATH      the ledger plugin (default %s/handlers/ledger.so)\n"
          "  --only LIST         measure only these figures (comma-separated): consume, parse, store, esr, peer,\n"
          "                      alloc, sql, rss, naive, recovery, replay, readback (default: all; replay, alloc and\n"
          "                      sql bring esr)\n"
          "  --set KEY=VALUE     a worker configuration key for every worker of the run (repeatable), e.g.\n"
          "                      --set apply.threads=1; batch.max.events and sqlite.cache.mb also apply to the store\n"
          "                      limit. The naive worker's batch.max.events and offsets.commit.sync are its own.\n"
          "  --keep              keep the temporary directory (logs, databases)\n"
          "Temporary files go to $TMPDIR (default /tmp): keep it on a real disk, as SQLite's figures depend on it.\n",
          MAX_REPEATS, ESR_PEER_SCRIPT, g_glibc_bin ? g_glibc_bin : "none: esr uses glibc's", ESR_BIN,
          ESR_BUILD_DIR);
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
                 .bad_share = 0.01, .seed = 6, .esr_bin = ESR_BIN, .handler = handler, .only = 4095,
                 .large_accounts = 10000000, .streams = ST_BULK | ST_SETS, .set_messages = 5,
                 .python = "/usr/bin/python3", .peer = ESR_PEER_SCRIPT, .esr_glibc = g_glibc_bin,
                 .sql_handler = ESR_SQL_LEDGER};
  static const struct option opts[] = {
      {"events", required_argument, NULL, 'e'},         {"accounts", required_argument, NULL, 'a'},
      {"partitions", required_argument, NULL, 'p'},     {"repeats", required_argument, NULL, 'r'},
      {"naive-seconds", required_argument, NULL, 'n'}, {"small-accounts", required_argument, NULL, 's'},
      {"brokers", required_argument, NULL, 'b'},        {"bad-share", required_argument, NULL, 'B'},
      {"seed", required_argument, NULL, 'S'},           {"esr", required_argument, NULL, 'E'},
      {"handler", required_argument, NULL, 'H'},        {"keep", no_argument, NULL, 'k'},
      {"only", required_argument, NULL, 'o'},           {"set", required_argument, NULL, 'C'},
      {"large-accounts", required_argument, NULL, 'L'}, {"streams", required_argument, NULL, 'T'},
      {"set-messages", required_argument, NULL, 'M'},   {"python", required_argument, NULL, 'P'},
      {"peer", required_argument, NULL, 'W'},           {"esr-glibc", required_argument, NULL, 'G'},
      {"sql-handler", required_argument, NULL, 'Q'},
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
    case 'L': o->large_accounts = (int)num_arg("large-accounts", optarg, 0, 100000000); break;
    case 'M': o->set_messages = (int)num_arg("set-messages", optarg, 1, 10000); break;
    case 'P': o->python = optarg; break;
    case 'W': o->peer = optarg; break;
    case 'G': o->esr_glibc = optarg; break;
    case 'Q': o->sql_handler = optarg; break;
    case 'T': {
      o->streams = 0;
      char *list = strdup(optarg), *save = NULL;
      for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (strcmp(t, "bulk") == 0)
          o->streams |= ST_BULK;
        else if (strcmp(t, "sets") == 0)
          o->streams |= ST_SETS;
        else {
          fprintf(stderr, "esr-bench: --streams: unknown stream '%s' (bulk, sets)\n", t);
          exit(2);
        }
      }
      free(list);
      if (!o->streams) {
        fprintf(stderr, "esr-bench: --streams takes bulk, sets or both\n");
        exit(2);
      }
      break;
    }
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
                  "consume, parse, store, esr, peer, alloc, sql, rss, naive, recovery, replay, readback");
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
  if (o->only & (PH_ALLOC | PH_SQL)) { /* each of these runs follows one of the esr figure's, on the bulk stream */
    o->only |= PH_ESR;
    o->streams |= ST_BULK;
  }
  if (o->only & PH_REPLAY) { /* the replay is measured against the bulk stream's catch-up of the same run */
    o->only |= PH_ESR;
    o->streams |= ST_BULK;
  }
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
                     int64_t *hwm, const char *dir, int repeats, const char *extra, figure *f) {
  char parts[32];
  snprintf(parts, sizeof parts, "0-%d", s->partitions - 1);
  bench_worker w;
  bench_poller *pl = bench_poller_new(dir, topic, s->partitions);
  bench_worker_start(&w, env, topic, dlq, dir, parts, extra);
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
    bench_worker_start(&w, env, topic, dlq, dir, parts, extra);
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

/* One way the events were produced, and the figures that depend on it. */
typedef struct bstream {
  const char *label; /* "bulk", "sets" */
  const char *topic;
  bench_stream *s;
  double n; /* its events */
  int64_t *hwm;
  figure consume, parse, store, esr, peer;
  char threads[600]; /* the last esr run's CPU by thread */
  int64_t esr_applied, peer_applied, peer_events;
} bstream;

typedef struct bench {
  options o;
  bench_env env;
  esrt_mock mock;
  esrt_producer *prod;
  bench_stream big, small, sets;
  int64_t *hwm_small;
  bstream st[2]; /* bulk, sets */
  char parts_all[32];
  char big_state[1100]; /* a caught-up state of the bulk stream, for the recovery and replay figures */
  int batch_events, batch_ms, cache_mb, apply_threads;
  double n; /* events in the big stream */
  char load_mid[64];
  figure naive, rec_big, rec_small, rss8, rss_all, replay;
  int cp_done;                            /* the replay from a checkpoint was measured */
  int64_t cp_to, cp_from, cp_applied;     /* partition 0: target, the checkpoint it started from, events applied */
  double cp_ms;
  figure rb_on, rb_off, cp_on, cp_off; /* publishing once: catch-up and restart from checkpoints, read-back on/off */
  double large_mb; /* the large recovery state's databases, MB */
  char rec_big_name[64], rec_small_name[64], rss_all_name[64];
  char consume_name[2][48], esr_name[2][48], peer_name[2][48];
  /* the alloc rows: esr with another malloc */
  figure alloc[3];
  figure sql; /* esr with the ledger written in SQL */
  char alloc_name[3][64];
  const char *alloc_bin[3], *alloc_preload[3];
  int n_alloc;
} bench;

static const char *T = "bench", *TD = "bench.dlq", *TS = "bench-small", *TSD = "bench-small.dlq",
                  *TSETS = "bench-sets";

static int stream_on(const bench *b, int i) { return (b->o.streams & (1 << i)) != 0; }

static void phase_consume(bench *b, bstream *st) {
  bench_progress("consume limit (%s): a plain librdkafka consumer, %d partitions from offset 0", st->label,
                 b->o.partitions);
  for (int r = 0; r < b->o.repeats; r++) {
    double cpu;
    double dt = bench_consume_limit(b->mock.bootstrap, st->topic, st->s, r, &cpu);
    add(&st->consume, st->n / dt);
    add_cpu(&st->consume, cpu, st->n);
    bench_progress("  %d/%d: %.2f s, %.0f events/s, CPU %.2f us/event", r + 1, b->o.repeats, dt, st->n / dt,
                   cpu * 1e6 / st->n);
  }
}

static void phase_parse(bench *b, bstream *st) {
  bench_progress("parse limit (%s): esr_envelope_parse of the values in memory", st->label);
  for (int r = 0; r < b->o.repeats; r++) {
    size_t ok = 0;
    double cpu;
    double dt = bench_parse_limit(st->s, &ok, &cpu);
    add(&st->parse, st->n / dt);
    add_cpu(&st->parse, cpu, st->n);
    bench_progress("  %d/%d: %.2f s, %.0f events/s, CPU %.2f us/event (%zu envelopes valid)", r + 1, b->o.repeats, dt,
                   st->n / dt, cpu * 1e6 / st->n, ok);
  }
}

static void phase_store(bench *b, bstream *st) {
  bench_progress("store limit (%s): the ledger's SQL, %d databases, %d events per transaction, one thread", st->label,
                 b->o.partitions, b->batch_events);
  bench_store_input *in = bench_store_prepare(st->s);
  for (int r = 0; r < b->o.repeats; r++) {
    char dir[1100];
    state_dir("store", r, dir, sizeof dir);
    if (mkdir(dir, 0755) != 0) bench_fail("mkdir %s", dir);
    size_t statements;
    double cpu;
    double dt = bench_store_limit(in, dir, b->batch_events, b->cache_mb, &statements, &cpu);
    add(&st->store, st->n / dt);
    add_cpu(&st->store, cpu, st->n);
    bench_progress("  %d/%d: %.2f s, %.0f events/s, CPU %.2f us/event (%zu statements)", r + 1, b->o.repeats, dt,
                   st->n / dt, cpu * 1e6 / st->n, statements);
    rm_state(dir);
  }
  bench_store_input_free(in);
}

/* One catch-up of a stream from offset 0 by a worker owning every partition: seconds from process start; the
 * worker's CPU seconds at that moment, its CPU by thread and the events it applied (not dead-lettered). */
static double catch_up(bench *b, const char *topic, const int64_t *hwm, double events, const char *dir,
                       long *vmhwm_kib, double *cpu_s, char *threads, size_t threads_cap, int64_t *applied) {
  bench_worker w;
  bench_poller *pl = bench_poller_new(dir, topic, b->o.partitions);
  bench_worker_start(&w, &b->env, topic, TD, dir, b->parts_all, NULL);
  double done = bench_wait_caught_up(&w, pl, hwm, 0, b->o.partitions, 2, 900);
  *cpu_s = bench_proc_cpu_s((int)w.proc.pid);
  if (threads) bench_proc_threads((int)w.proc.pid, events, threads, threads_cap);
  *vmhwm_kib = bench_worker_vmhwm_kib(&w);
  bench_poller_free(pl); /* first, so that the worker's clean shutdown is its own (the last connection checkpoints) */
  bench_worker_stop(&w);
  if (applied) *applied = bench_state_applied(dir, topic, b->o.partitions);
  return done - w.started;
}

/* A shared library in the usual directories (for LD_PRELOAD by its bare name), or NULL. */
static const char *find_library(const char *name) {
  static const char *const dirs[] = {"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64",
                                     "/usr/lib", "/usr/local/lib", NULL};
  for (int i = 0; dirs[i]; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dirs[i], name);
    if (access(path, R_OK) == 0) return name;
  }
  return NULL;
}

/* The alloc rows: glibc's malloc (tuned by esr, alloc.c) unless it is the linked one, and every replacement found
 * that is not the linked one, preloaded. */
static void alloc_variants(bench *b) {
  const char *bin = b->o.esr_glibc && access(b->o.esr_glibc, X_OK) == 0 ? b->o.esr_glibc : NULL;
  if (strcmp(ESR_ALLOCATOR_NAME, "glibc") != 0) {
    if (!bin) bench_fail("no %s (--esr-glibc): the alloc rows need esr without its replacement malloc",
                         b->o.esr_glibc ? b->o.esr_glibc : "esr-glibc");
  } else {
    bin = b->o.esr_bin; /* esr is glibc's already */
  }
  if (bin != b->o.esr_bin) {
    b->alloc_bin[b->n_alloc] = bin;
    b->alloc_preload[b->n_alloc] = NULL;
    snprintf(b->alloc_name[b->n_alloc], sizeof b->alloc_name[0], "esr, malloc: glibc, tuned");
    b->n_alloc++;
  }
  static const char *const libs[][2] = {{"mimalloc", "libmimalloc.so.2"}, {"jemalloc", "libjemalloc.so.2"}};
  for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++) {
    if (strcmp(libs[i][0], ESR_ALLOCATOR_NAME) == 0 || !find_library(libs[i][1])) continue;
    b->alloc_bin[b->n_alloc] = bin;
    b->alloc_preload[b->n_alloc] = libs[i][1];
    snprintf(b->alloc_name[b->n_alloc], sizeof b->alloc_name[0], "esr, malloc: %s, preloaded", libs[i][0]);
    b->n_alloc++;
  }
  for (int k = 0; k < b->n_alloc; k++) b->alloc[k] = (figure){.name = b->alloc_name[k], .unit = RATE};
}

static void phase_esr(bench *b, bstream *st) {
  loadavg(b->load_mid, sizeof b->load_mid);
  bench_progress("esr (%s): `esr run` from offset 0, static assignment of %d partitions (load %s)", st->label,
                 b->o.partitions, b->load_mid);
  int bulk = st == &b->st[0];
  for (int r = 0; r < b->o.repeats; r++) {
    char dir[1100], label[32];
    snprintf(label, sizeof label, "esr-%s", st->label);
    state_dir(label, r, dir, sizeof dir);
    long kib;
    double cpu;
    double dt = catch_up(b, st->topic, st->hwm, st->n, dir, &kib, &cpu, st->threads, sizeof st->threads,
                         &st->esr_applied);
    add(&st->esr, st->n / dt);
    add_cpu(&st->esr, cpu, st->n);
    if (bulk) add(&b->rss_all, (double)kib * 1024 / 1e6);
    bench_progress("  %d/%d: %.2f s, %.0f events/s, CPU %.2f us/event, peak RSS %.1f MB", r + 1, b->o.repeats, dt,
                   st->n / dt, cpu * 1e6 / st->n, (double)kib * 1024 / 1e6);
    bench_progress("    CPU by thread, us/event: %s", st->threads);
    for (int k = 0; bulk && (b->o.only & PH_ALLOC) && k < b->n_alloc; k++) {
      char adir[1100], alabel[32], threads[600];
      snprintf(alabel, sizeof alabel, "esr-alloc%d", k);
      state_dir(alabel, r, adir, sizeof adir);
      bench_env saved = b->env;
      b->env.esr_bin = b->alloc_bin[k];
      b->env.preload = b->alloc_preload[k];
      double adt = catch_up(b, st->topic, st->hwm, st->n, adir, &kib, &cpu, threads, sizeof threads, NULL);
      b->env = saved;
      add(&b->alloc[k], st->n / adt);
      add_cpu(&b->alloc[k], cpu, st->n);
      bench_progress("  %s %d/%d: %.2f s, %.0f events/s, CPU %.2f us/event, peak RSS %.1f MB (by thread: %s)",
                     b->alloc_name[k], r + 1, b->o.repeats, adt, st->n / adt, cpu * 1e6 / st->n,
                     (double)kib * 1024 / 1e6, threads);
      rm_state(adir);
    }
    if (bulk && (b->o.only & PH_SQL)) {
      char sdir[1100], threads[600];
      state_dir("esr-sql", r, sdir, sizeof sdir);
      bench_env saved = b->env;
      b->env.handler = b->o.sql_handler;
      double sdt = catch_up(b, st->topic, st->hwm, st->n, sdir, &kib, &cpu, threads, sizeof threads, NULL);
      b->env = saved;
      add(&b->sql, st->n / sdt);
      add_cpu(&b->sql, cpu, st->n);
      bench_progress("  %s %d/%d: %.2f s, %.0f events/s, CPU %.2f us/event (by thread: %s)", b->sql.name, r + 1,
                     b->o.repeats, sdt, st->n / sdt, cpu * 1e6 / st->n, threads);
      rm_state(sdir);
    }
    if (!bulk) {
      rm_state(dir);
      continue;
    }
    if (b->big_state[0]) rm_state(b->big_state);
    snprintf(b->big_state, sizeof b->big_state, "%s", dir); /* the last one: the state for the recovery figure */
  }
}

/* The value of "key": in a one-line JSON object, or -1. */
static double json_field(const char *text, const char *key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *at = text ? strstr(text, pat) : NULL;
  return at ? strtod(at + strlen(pat), NULL) : -1;
}

/* The hand-written Python worker over the same stream, each run into a fresh directory: process start to exit. */
static void phase_peer(bench *b, bstream *st) {
  bench_progress("peer (%s): %s %s, every partition from offset 0, to the end", st->label, b->o.python, b->o.peer);
  for (int r = 0; r < b->o.repeats; r++) {
    char dir[1100], label[32];
    snprintf(label, sizeof label, "peer-%s", st->label);
    state_dir(label, r, dir, sizeof dir);
    char *argv[] = {(char *)b->o.python, (char *)b->o.peer, "--bootstrap", (char *)b->mock.bootstrap, "--topic",
                    (char *)st->topic, "--dir", dir, "--batch", NULL, NULL};
    char batch[16];
    snprintf(batch, sizeof batch, "%d", b->batch_events);
    argv[9] = batch;
    esrt_proc p;
    double t0 = bench_now_s();
    if (esrt_spawn(&p, g_root, label, argv, 0) != 0) bench_fail("cannot start %s", b->o.python);
    if (esrt_wait(&p, 1800000) != 0) bench_fail("the peer worker did not end within 30 minutes");
    double dt = bench_now_s() - t0;
    if (esrt_exit_code(&p) != 0) {
      fprintf(stderr, "esr-bench: the peer worker, last lines of its output:\n");
      esrt_print_tail(stderr, p.err_path, 15, "  peer| ");
      bench_fail("the peer worker exited with code %d", esrt_exit_code(&p));
    }
    char *out = esrt_read_file(p.out_path, NULL);
    double events = json_field(out, "events"), applied = json_field(out, "applied"), cpu = json_field(out, "cpu_s");
    free(out);
    if (events != st->n || cpu < 0)
      bench_fail("the peer worker consumed %.0f events of %.0f (its output: %s)", events, st->n, p.out_path);
    add(&st->peer, st->n / dt);
    add_cpu(&st->peer, cpu, st->n);
    st->peer_applied = (int64_t)applied;
    st->peer_events = (int64_t)events;
    bench_progress("  %d/%d: %.2f s, %.0f events/s, CPU %.2f us/event (%.0f applied, %.0f refused)", r + 1,
                   b->o.repeats, dt, st->n / dt, cpu * 1e6 / st->n, applied, events - applied);
    rm_state(dir);
  }
}

static void phase_rss8(bench *b) {
  int64_t events = 0;
  for (int p = 0; p < 8; p++) events += b->st[0].hwm[p];
  bench_progress("peak RSS: `esr run` with partitions 0-7 (%" PRId64 " events) until caught up", events);
  for (int r = 0; r < b->o.repeats; r++) {
    char dir[1100];
    state_dir("rss8", r, dir, sizeof dir);
    bench_worker w;
    bench_poller *pl = bench_poller_new(dir, T, b->o.partitions);
    bench_worker_start(&w, &b->env, T, TD, dir, "0-7", NULL);
    double done = bench_wait_caught_up(&w, pl, b->st[0].hwm, 0, 8, 2, 600);
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
  double done = bench_wait_caught_up(&w, pl, b->st[0].hwm, 0, b->o.partitions, 2, 900);
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
    replay += b->st[0].hwm[p] - off;
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
    state_dir("esr-bulk", 0, b->big_state, sizeof b->big_state);
    bench_progress("recovery: catching up the stream first (not measured) for the large state");
    long kib;
    double cpu;
    catch_up(b, T, b->st[0].hwm, b->n, b->big_state, &kib, &cpu, NULL, 0, NULL);
  }
  int extra = b->o.large_accounts - b->big.accounts;
  if (extra > 0) {
    bench_progress("recovery: %d more accounts written into the %d partition databases of %s (offsets unchanged)",
                   extra, b->o.partitions, b->big_state);
    double t0 = bench_now_s();
    bench_state_grow(b->big_state, T, b->o.partitions, extra);
    bench_progress("  written in %.1f s", bench_now_s() - t0);
  }
  b->large_mb = (double)bench_state_bytes(b->big_state, T, b->o.partitions) / 1e6;
  int accounts = extra > 0 ? b->o.large_accounts : b->big.accounts;
  if (accounts % 1000000 == 0)
    snprintf(b->rec_big_name, sizeof b->rec_big_name, "recovery, %d M accounts", accounts / 1000000);
  else
    snprintf(b->rec_big_name, sizeof b->rec_big_name, "recovery, %d accounts", accounts);
  bench_progress("recovery with %d accounts of state (%.0f MB of databases, %s)", accounts, b->large_mb, b->big_state);
  /* Releasing the partitions at the end would checkpoint all of that state (checkpoint.on.release): not measured
   * here, and longer than the stop's grace. */
  recovery(&b->env, b->prod, T, TD, &b->big, b->st[0].hwm, b->big_state, b->o.repeats,
           "checkpoint.on.release = false\n", &b->rec_big);
  char dir[1100];
  state_dir("small", 0, dir, sizeof dir);
  bench_progress("recovery with %d accounts of state (%s: %zu events; catching up first)", b->o.small_accounts, TS,
                 b->small.n);
  recovery(&b->env, b->prod, TS, TSD, &b->small, b->hwm_small, dir, b->o.repeats, NULL, &b->rec_small);
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
                   dt, b->n / dt, has_figure(&b->st[0].esr) ? median(&b->st[0].esr) : 0.0);
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
  b->st[0].hwm[0] += k;
  char conf[1200], dir[1100], to[32];
  snprintf(conf, sizeof conf, "%s.conf", b->big_state);
  state_dir("replay-checkpoint", 0, dir, sizeof dir);
  snprintf(to, sizeof to, "%" PRId64, b->st[0].hwm[0]);
  bench_progress("replay to a recent offset: partition 0 to offset %s (%d events after the worker's last checkpoint), "
                 "with the worker's configuration",
                 to, k);
  char *args[] = {"replay", "--config", conf, "--partition", "0", "--to", to, "--out", dir, NULL};
  double dt = run_esr(b, "replay-checkpoint", args);
  char manifest[1200];
  snprintf(manifest, sizeof manifest, "%s/replay.json", dir);
  b->cp_to = b->st[0].hwm[0];
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
    printf(" %8.2f", median(f) / median(lim));
  else
    printf(" %8s", "-");
}

static void target(const char *what, int measured, const char *value, int pass) {
  printf("  %-58s %-36s %s\n", what, measured ? value : "not measured", measured ? (pass ? "PASS" : "MISS") : "-");
}

static void row(const figure *f, const bstream *st) {
  if (!has(f)) return;
  char x[32], y[32], z[32], cpu[48] = "";
  printf("%-30s %11s %11s %11s  %-8s", f->name, value_text(f, median(f), x, sizeof x),
         value_text(f, fmin_of(f), y, sizeof y), value_text(f, fmax_of(f), z, sizeof z), unit_name(f->unit));
  if (f->ncpu)
    snprintf(cpu, sizeof cpu, "%.2f (%.2f-%.2f)", cpu_median(f), min_of(f->cpu, f->ncpu), max_of(f->cpu, f->ncpu));
  printf(" %-19s", cpu);
  if (f->unit == RATE) {
    ratio(f, &st->consume);
    ratio(f, &st->parse);
    ratio(f, &st->store);
  }
  printf("\n");
}

/* The limits' CPU per event together on a stream (consume on that stream, parse and store), or 0. */
static double limits_cpu(const bstream *st) {
  if (!st->consume.ncpu || !st->parse.ncpu || !st->store.ncpu) return 0;
  return cpu_median(&st->consume) + cpu_median(&st->parse) + cpu_median(&st->store);
}

static void print_table(bench *b, long cores, const char *load_start, const char *load_end, double total) {
  const options *o = &b->o;
  printf("\nesr benchmark (issues 6 and 15): every figure measured in this run, %d times (median, min, max); ratios "
         "of medians\n",
         o->repeats);
  printf("machine: %ld cores online; load average %s at start, %s before the last esr figure, %s at the end\n", cores,
         load_start, b->load_mid[0] ? b->load_mid : "-", load_end);
  printf("versions: librdkafka %s, SQLite %s, cJSON %s; esr %s, linked with %s's malloc\n", rd_kafka_version_str(),
         sqlite3_libversion(), cJSON_Version(), o->esr_bin, ESR_ALLOCATOR_NAME);
  printf("stream: %zu events (%zu account opens, %zu movements, %zu bad = %.2f%%), values %.0f bytes on average,\n"
         "        %d partitions (each from offset 0, nothing dropped by the mock), %d-broker mock cluster; produced\n"
         "        twice: bulk (topic %s, message sets as large as a producer with a backlog makes them) and sets\n"
         "        (topic %s, at most %d events per message set, as a producer writing to many partitions at once\n"
         "        with a short linger makes them)\n",
         b->big.n, b->big.opens, b->big.moves, b->big.bad, 100.0 * (double)b->big.bad / b->n,
         (double)b->big.value_bytes / b->n, o->partitions, o->brokers, T, TSETS, o->set_messages);
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
  printf("CPU: user + system time of the whole process (every thread) per event consumed, in microseconds: the\n"
         "     worker's and the peer's from process start (to caught up; the peer to its exit), the limits' over\n"
         "     their timed stretch\n\n");
  printf("%-30s %11s %11s %11s  %-8s %-19s %8s %8s %8s\n", "figure", "median", "min", "max", "unit",
         "CPU us/event", "/consume", "/parse", "/store");
  for (int i = 0; i < 2; i++) {
    const bstream *st = &b->st[i];
    row(&st->consume, st);
    if (i == 0) row(&st->parse, st);
    if (i == 0) row(&st->store, st);
    row(&st->esr, st);
    for (int k = 0; i == 0 && k < b->n_alloc; k++) row(&b->alloc[k], st);
    if (i == 0) row(&b->sql, st);
    row(&st->peer, st);
  }
  const figure *rest[] = {&b->replay, &b->naive, &b->rec_big, &b->rec_small, &b->rss8,
                          &b->rss_all, &b->rb_on, &b->rb_off, &b->cp_on, &b->cp_off};
  for (size_t i = 0; i < sizeof rest / sizeof *rest; i++) row(rest[i], &b->st[0]);
  if (b->large_mb > 0) printf("(the large recovery state: %.0f MB of partition databases)\n", b->large_mb);

  printf("\n");
  for (int i = 0; i < 2; i++) {
    const bstream *st = &b->st[i];
    double lc = limits_cpu(st);
    if (lc > 0)
      printf("limits' CPU per event (%s): consume %.2f + parse %.2f + store %.2f = %.2f us\n", st->label,
             cpu_median(&st->consume), cpu_median(&st->parse), cpu_median(&st->store), lc);
    if (st->threads[0]) printf("esr's CPU by thread (%s, last run), us/event: %s\n", st->label, st->threads);
    if (has(&st->esr) && has(&st->peer))
      printf("applied (%s): esr %" PRId64 ", peer %" PRId64 " of %" PRId64 " events%s\n", st->label, st->esr_applied,
             st->peer_applied, st->peer_events,
             st->esr_applied == st->peer_applied ? " (the same)" : " (DIFFERENT: the peer's rules are not the ledger's)");
  }

  printf("\ntargets (the issues'; information only: the exit code does not depend on them)\n");
  char v[128], what[96];
  for (int i = 0; i < 2; i++) {
    const bstream *st = &b->st[i];
    double lc = limits_cpu(st), ec = cpu_median(&st->esr), pc = cpu_median(&st->peer);
    snprintf(what, sizeof what, "esr's CPU/event <= 1.3 x the limits' together (%s)", st->label);
    snprintf(v, sizeof v, "%.2f / %.2f us = %.2f", ec, lc, lc > 0 ? ec / lc : 0);
    target(what, lc > 0 && st->esr.ncpu, v, ec <= 1.3 * lc);
    snprintf(what, sizeof what, "esr's CPU/event <= 0.4 x the peer's (%s)", st->label);
    snprintf(v, sizeof v, "%.2f / %.2f us = %.2f", ec, pc, pc > 0 ? ec / pc : 0);
    target(what, st->esr.ncpu && st->peer.ncpu, v, ec <= 0.4 * pc);
    int lims = has(&st->consume) && has(&st->store) && has(&st->esr);
    double lim = lims ? fmin(median(&st->consume), median(&st->store)) : 0, e = has(&st->esr) ? median(&st->esr) : 0;
    snprintf(what, sizeof what, "esr >= 0.8 x min(consume limit, store limit) (%s)", st->label);
    snprintf(v, sizeof v, "esr / min(limits) = %.2f", lims ? e / lim : 0);
    target(what, lims, v, lims && e >= 0.8 * lim);
  }
  double e = has(&b->st[0].esr) ? median(&b->st[0].esr) : 0;
  double nv = has(&b->naive) ? median(&b->naive) : 0;
  snprintf(v, sizeof v, "esr / naive = %.1f", nv > 0 ? e / nv : 0);
  target("esr >= 50 x naive", has(&b->st[0].esr) && has(&b->naive), v, e >= 50 * nv);
  int recs = has(&b->rec_big) && has(&b->rec_small);
  double rb = recs ? median(&b->rec_big) : 0, rs = recs ? median(&b->rec_small) : 0;
  snprintf(v, sizeof v, "%.1f ms and %.1f ms", rb, rs);
  target("recovery <= 1 s, large and small state", recs, v, rb <= 1000 && rs <= 1000);
  snprintf(v, sizeof v, "%.1f ms / %.1f ms = %.2f", rb, rs, rs > 0 ? rb / rs : 0);
  target("recovery with the large state <= 1.2 x the small", recs, v, rb <= rs * 1.2);
  double rp = has(&b->replay) ? median(&b->replay) : 0;
  snprintf(v, sizeof v, "replay / esr = %.2f", e > 0 ? rp / e : 0);
  target("full replay >= 0.8 x esr's catch-up (same run)", has(&b->replay) && has(&b->st[0].esr), v, rp >= 0.8 * e);
  snprintf(v, sizeof v, "%" PRId64 " of %" PRId64 " (from %" PRId64 ")", b->cp_applied, b->cp_to, b->cp_from);
  target("replay from a checkpoint applies only what follows it", b->cp_done, v,
         b->cp_from > 0 && b->cp_applied == b->cp_to - b->cp_from);
  double ra = has(&b->rss_all) ? median(&b->rss_all) : 0;
  snprintf(v, sizeof v, "%.1f MB", ra);
  snprintf(what, sizeof what, "peak RSS <= 200 MB with %d partitions", o->partitions);
  target(what, has(&b->rss_all), v, ra <= 200);
  int rbs = has(&b->rb_on) && has(&b->rb_off) && has(&b->cp_on) && has(&b->cp_off);
  double d0 = rbs ? 1 - median(&b->rb_on) / median(&b->rb_off) : 0;
  double d1 = rbs ? 1 - median(&b->cp_on) / median(&b->cp_off) : 0;
  snprintf(v, sizeof v, "%+.1f %% from 0, %+.1f %% from checkpoints", -100 * d0, -100 * d1);
  target("read-back costs < 10 % of the catch-up rate", rbs, v, d0 < 0.10 && d1 < 0.10);
  int sqls = has(&b->sql) && has(&b->st[0].esr);
  snprintf(v, sizeof v, "SQL / C = %.2f", sqls ? median(&b->sql) / median(&b->st[0].esr) : 0);
  target("the ledger in SQL within 1.5 x of ledger.so (rate)", sqls, v,
         sqls && median(&b->sql) * 1.5 >= median(&b->st[0].esr));
  double r8 = has(&b->rss8) ? median(&b->rss8) : 0;
  snprintf(v, sizeof v, "%.1f MB", r8);
  target("peak RSS <= 150 MB with 8 partitions", has(&b->rss8), v, r8 <= 150);
  double per_part = b->n / o->partitions;
  printf("\nrun time %.0f s. MB = 10^6 bytes. Rates count every event consumed (applied or dead-lettered). Recovery\n"
         "includes the process start and the batch's age limit (batch.max.ms) before the first commit. Peak RSS\n"
         "grows with the backlog the consumer may prefetch: here a partition holds %.0f events (%.1f MB; the mock\n"
         "keeps at most 5 MiB per partition).\n",
         total, per_part, per_part * (double)b->big.value_bytes / b->n / 1e6);
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
  if (o->only & PH_PEER) { /* before anything is produced: say at once what is missing */
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import confluent_kafka, sqlite3' >/dev/null 2>&1", o->python);
    if (access(o->peer, R_OK) != 0) bench_fail("no peer worker at %s (--peer)", o->peer);
    if (system(cmd) != 0)
      bench_fail("%s cannot import confluent_kafka: install Debian's python3-confluent-kafka (scripts/setup.sh does), "
                 "give another interpreter with --python, or leave the peer out with --only",
                 o->python);
  }
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
  int with_sets = (o->streams & ST_SETS) && (o->only & (PH_CONSUME | PH_ESR | PH_PEER));
  char t_big[64], t_small[64], t_dlq[64], t_sets[64];
  snprintf(t_big, sizeof t_big, "%s:%d", T, o->partitions);
  snprintf(t_small, sizeof t_small, "%s:%d", TS, o->partitions);
  snprintf(t_sets, sizeof t_sets, "%s:%d", TSETS, o->partitions);
  snprintf(t_dlq, sizeof t_dlq, "%s:4", TD);
  const char *topics[6] = {t_big, t_dlq}, **tp = topics + 2;
  if (with_small) *tp++ = t_small, *tp++ = "bench-small.dlq:1";
  if (with_sets) *tp++ = t_sets;
  if (esrt_mock_start(&b.mock, o->esr_bin, g_root, o->brokers, topics, 30000) != 0) bench_fail("mock cluster");
  bench_progress("mock cluster: %d brokers at %s", o->brokers, b.mock.bootstrap);
  if (!(b.prod = esrt_producer_new(b.mock.bootstrap))) bench_fail("producer");
  bench_progress("producing");
  produce_stream(b.prod, T, &b.big);
  if (with_small) produce_stream(b.prod, TS, &b.small);
  if (with_sets) { /* the same events again, as a producer writing to many partitions with a short linger sends them */
    char n[16];
    snprintf(n, sizeof n, "%d", o->set_messages);
    const char *const extra[] = {"batch.num.messages", n, NULL};
    esrt_producer *sp = esrt_producer_new_with(b.mock.bootstrap, extra);
    if (!sp) bench_fail("producer");
    produce_stream(sp, TSETS, &b.big);
    esrt_producer_free(sp);
  }
  rd_kafka_t *client = esrt_kafka_client_new(b.mock.bootstrap);
  if (!client) bench_fail("kafka client");
  b.st[0] = (bstream){.label = "bulk", .topic = T, .s = &b.big, .n = (double)b.big.n,
                      .hwm = check_watermarks(client, T, &b.big)};
  b.st[1] = (bstream){.label = "sets", .topic = TSETS, .s = &b.big, .n = (double)b.big.n,
                      .hwm = with_sets ? check_watermarks(client, TSETS, &b.big) : NULL};
  if (with_small) b.hwm_small = check_watermarks(client, TS, &b.small);
  bench_progress("  every partition starts at offset 0 and holds every event produced to it");
  b.env = (bench_env){
      .esr_bin = o->esr_bin, .handler = o->handler, .bootstrap = b.mock.bootstrap, .root = g_root, .sets = o->sets};
  snprintf(b.parts_all, sizeof b.parts_all, "0-%d", o->partitions - 1);
  b.n = (double)b.big.n;

  for (int i = 0; i < 2; i++) {
    bstream *st = &b.st[i];
    snprintf(b.consume_name[i], sizeof b.consume_name[i], "consume limit (%s)", st->label);
    snprintf(b.esr_name[i], sizeof b.esr_name[i], "esr (%s)", st->label);
    snprintf(b.peer_name[i], sizeof b.peer_name[i], "peer, Python (%s)", st->label);
    st->consume = (figure){.name = b.consume_name[i], .unit = RATE};
    st->esr = (figure){.name = b.esr_name[i], .unit = RATE};
    st->peer = (figure){.name = b.peer_name[i], .unit = RATE};
  }
  b.st[0].parse = (figure){.name = "parse limit", .unit = RATE};
  b.st[0].store = (figure){.name = "store limit", .unit = RATE};
  b.naive = (figure){.name = "naive", .unit = RATE};
  b.rss8 = (figure){.name = "peak RSS, 8 partitions", .unit = MEGABYTES};
  snprintf(b.rec_big_name, sizeof b.rec_big_name, "recovery, large state");
  snprintf(b.rec_small_name, sizeof b.rec_small_name, "recovery, %d accounts", o->small_accounts);
  snprintf(b.rss_all_name, sizeof b.rss_all_name, "peak RSS, %d partitions", o->partitions);
  b.rec_big = (figure){.name = b.rec_big_name, .unit = MILLIS};
  b.rec_small = (figure){.name = b.rec_small_name, .unit = MILLIS};
  b.rss_all = (figure){.name = b.rss_all_name, .unit = MEGABYTES};
  b.replay = (figure){.name = "replay (esr replay, from 0)", .unit = RATE};
  b.sql = (figure){.name = "esr, ledger in SQL (yaml)", .unit = RATE};
  b.rb_on = (figure){.name = "esr, read-back on", .unit = RATE};
  b.rb_off = (figure){.name = "esr, read-back off", .unit = RATE};
  b.cp_on = (figure){.name = "replay, read-back on", .unit = RATE};
  b.cp_off = (figure){.name = "replay, read-back off", .unit = RATE};

  if (o->only & PH_ALLOC) alloc_variants(&b);
  for (int i = 0; i < 2; i++)
    if (stream_on(&b, i) && (i == 0 || with_sets) && (o->only & PH_CONSUME)) phase_consume(&b, &b.st[i]);
  /* parse and store work on the events alone, the same in both streams: measured once, shown for each */
  if (o->only & PH_PARSE) phase_parse(&b, &b.st[0]);
  if (o->only & PH_STORE) phase_store(&b, &b.st[0]);
  b.st[1].parse = b.st[0].parse;
  b.st[1].store = b.st[0].store;
  for (int i = 0; i < 2; i++) {
    if (!stream_on(&b, i) || (i == 1 && !with_sets)) continue;
    if (o->only & PH_ESR) phase_esr(&b, &b.st[i]);
    if (o->only & PH_PEER) phase_peer(&b, &b.st[i]);
  }
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
  free(b.st[0].hwm);
  free(b.st[1].hwm);
  free(b.hwm_small);
  if (!g_keep)
    esrt_rmtree(g_root);
  else
    fprintf(stderr, "esr-bench: kept %s\n", g_root);
  free(g_root);
  return 0;
}
