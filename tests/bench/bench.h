/* bench.h — the benchmark of issues 6 and 15 (esr-bench): shared declarations.
 *
 * bench_stream.c   the seeded ledger stream (account opens first, then deposits/withdrawals, ~1% bad), in one arena
 * bench_limits.c   the single-threaded limits: plain librdkafka consume, envelope parse, the ledger's SQL on SQLite
 * bench_worker.c   `esr run` as a child process: catch-up, naive, recovery, peak RSS, CPU from /proc; the databases
 *                  polled in-process, and grown for the large recovery state
 * esr_bench.c      the command: options, phases, the table
 */
#ifndef ESR_BENCH_H
#define ESR_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "esrt_proc.h"

/* ---- progress and failure ---- */
void bench_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "esr-bench: cannot measure: ..." and exits 1 (children are reaped at exit). */
void bench_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
double bench_now_s(void); /* monotonic, seconds */
double bench_cpu_self_s(void); /* CPU time (user + system) of this whole process so far, seconds (getrusage) */

/* ---- the stream ---- */
typedef struct bench_msg {
  uint64_t koff, voff; /* into the arena */
  uint32_t vlen;
  uint16_t klen;
  int32_t partition;
} bench_msg;

typedef struct bench_stream {
  char *arena;
  size_t arena_len, arena_cap;
  bench_msg *v;
  size_t n, cap;
  int partitions;
  int accounts;
  int64_t *per_part; /* events per partition */
  size_t opens, moves, bad;
  uint64_t value_bytes;
  int64_t *balance; /* per account, as the generator left it (for extra events) */
  uint64_t seq;     /* events made so far (ids and times) */
} bench_stream;

/* events >= accounts: `accounts` opens first, then movements of which a share `bad_share` is bad (5 kinds). */
void bench_stream_generate(bench_stream *s, uint64_t seed, size_t events, int accounts, int partitions,
                           double bad_share);
void bench_stream_free(bench_stream *s);
static inline const char *bench_key(const bench_stream *s, size_t i) { return s->arena + s->v[i].koff; }
static inline const char *bench_value(const bench_stream *s, size_t i) { return s->arena + s->v[i].voff; }
/* A valid deposit of `amount` to account `account` (opened by the stream) as a value; returns its length. The
 * account's id goes to key (>= 32 bytes), its partition to *partition. */
size_t bench_stream_deposit(bench_stream *s, int account, int64_t amount, char *key, char *value, size_t cap,
                            int32_t *partition);

/* ---- the limits (bench_limits.c); each returns elapsed seconds and sets *cpu_s to the CPU seconds of the whole
 * process over the same stretch ---- */
double bench_consume_limit(const char *bootstrap, const char *topic, const bench_stream *s, int run, double *cpu_s);
double bench_parse_limit(const bench_stream *s, size_t *ok_out, double *cpu_s);

typedef struct bench_store_input bench_store_input;
/* Parses every event once (not timed) into what the ledger's statements bind. */
bench_store_input *bench_store_prepare(const bench_stream *s);
void bench_store_input_free(bench_store_input *in);
/* Runs the ledger's SQL for every event into one fresh database per partition under dir (removed afterwards), batches
 * of batch_events per transaction with the position row, partitions round-robin. Only the batches are timed. */
double bench_store_limit(const bench_store_input *in, const char *dir, int batch_events, int cache_mb,
                         size_t *statements_out, double *cpu_s);

/* ---- the worker (bench_worker.c) ---- */
typedef struct bench_env {
  const char *esr_bin;
  const char *handler;
  const char *bootstrap;
  const char *root; /* logs, configs and state directories */
  const char *sets; /* configuration lines for every worker (--set) */
  const char *preload; /* LD_PRELOAD for the workers, or NULL */
} bench_env;

/* Read-only polling of the partition databases of one state directory. */
typedef struct bench_poller bench_poller;
bench_poller *bench_poller_new(const char *dir, const char *topic, int partitions);
void bench_poller_free(bench_poller *pl);
/* The stored next_offset of a partition: 0 when its row does not exist yet, -1 when the database cannot be read yet. */
int64_t bench_poller_next(bench_poller *pl, int partition);

typedef struct bench_worker {
  esrt_proc proc;
  double started; /* bench_now_s() just before fork */
  char dir[1024];
} bench_worker;

/* Writes the config (static assignment of `parts`, e.g. "0-127") and starts `esr run`; extra: more config lines. */
void bench_worker_start(bench_worker *w, const bench_env *env, const char *topic, const char *dlq, const char *dir,
                        const char *parts, const char *extra);
/* SIGTERM; the worker must exit 0 within the grace. */
void bench_worker_stop(bench_worker *w);
/* VmHWM of the worker in KiB (0 when unreadable). */
long bench_worker_vmhwm_kib(const bench_worker *w);
/* CPU seconds (user + system) a running process used so far, all its threads, from /proc (-1 when unreadable). */
double bench_proc_cpu_s(int pid);
/* Its CPU by thread, threads of one kind together (names without their digits: esr-apply-*, rdk:broker*, ...), in
 * microseconds per event, largest first: "esr-apply-* 4.10, rdk:broker* 0.91, ..." into buf. */
void bench_proc_threads(int pid, double events, char *buf, size_t cap);
/* Waits until next_offset == hwm[p] for every p in [first, first + count). Fails the run on timeout or when the
 * worker dies. Returns bench_now_s() when it saw the last partition caught up. */
double bench_wait_caught_up(bench_worker *w, bench_poller *pl, const int64_t *hwm, int first, int count,
                            int period_ms, double timeout_s);
/* A state directory while no worker runs on it: the events applied (esr_offsets.applied_count, every partition); n
 * more accounts written into the partitions' accounts tables (offsets unchanged: the state is no longer the log's
 * fold, only bigger, for the restart figure); the databases' size in bytes. */
int64_t bench_state_applied(const char *dir, const char *topic, int partitions);
void bench_state_grow(const char *dir, const char *topic, int partitions, int accounts);
int64_t bench_state_bytes(const char *dir, const char *topic, int partitions);
void bench_worker_fail(bench_worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

#endif
