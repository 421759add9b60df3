/* esr/crashguard.h — poison events: a batch that kills the process again and again must not stop its partition.
 *
 * Two records survive a crash. (1) Each partition keeps an in-flight marker, `<state.dir>/<topic>-<partition>.inflight`,
 * written outside the batch transaction when a batch begins and cleared when it commits: finding it set at start means
 * the process died during that batch. (2) A process-wide crash record, `<state.dir>/.esr-crash`, written by a
 * fatal-signal handler (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT), which appends a line with the topic, partition and
 * offset the crashing thread was processing (set by esr_guard_enter), using only async-signal-safe calls, before the
 * signal is re-raised.
 *
 * An event the process died on with a recorded signal more than `max_retries` times is poison: dead-lettered with
 * reason "crash" and skipped the next time it comes (deaths attributed to another partition's event do not count).
 * Deaths without a signal (SIGKILL, the OOM killer) cannot name the event: after more than `max_retries` of them
 * around the same batch, the partition applies that stretch carefully, one event per transaction with the marker
 * naming the event in flight, and an event during which the process dies twice in that pass is poison. One unexplained
 * death could be a coincidence; two on the same event are not. Everything before and after a poison event is applied
 * exactly once. A guard is used by the thread that owns its partition; the crash record and the signal handlers are
 * process-wide (esr_crash_record_open, once, before the apply threads start).
 */
#ifndef ESR_CRASHGUARD_H
#define ESR_CRASHGUARD_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* The previous process's fatal signals: one entry per thread that crashed while processing an event (two threads can
 * crash at nearly the same moment; each appends its own line). */
typedef struct esr_crash_entry {
  char topic[256];
  int32_t partition;
  int64_t offset;
  int signo;
} esr_crash_entry;

typedef struct esr_crash_record {
  int n; /* 0: the previous process recorded no signal */
  esr_crash_entry v[16];
} esr_crash_record;

/* Reads (into *last) and clears the previous crash record of state_dir, keeps the file open for this process's
 * signal handler, and installs the handler for SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT. */
esr_code esr_crash_record_open(const char *state_dir, esr_crash_record *last, esr_error *err);
/* Restores the default signal actions and closes the file. */
void esr_crash_record_close(void);
/* Gives the calling thread an alternate signal stack, so that a stack overflow in a handler is still recorded. Call
 * once at the start of every thread that applies events; esr_crash_thread_end releases it. */
void esr_crash_thread_begin(void);
void esr_crash_thread_end(void);

typedef struct esr_guard esr_guard;

/* Opens the partition's marker and judges the previous death (if the marker shows a batch in flight) with `last`
 * (may be NULL). batch_max bounds how many events a careful pass covers. */
esr_code esr_guard_open(const char *state_dir, const char *topic, int32_t partition, int max_retries, int batch_max,
                        const esr_crash_record *last, esr_guard **out, esr_error *err);
void esr_guard_close(esr_guard *g);
/* A batch begins at offset `first`. Returns 1 when it must be applied carefully (one event per transaction). */
int esr_guard_begin(esr_guard *g, int64_t first);
int esr_guard_careful(const esr_guard *g);
/* The event deaths are charged to (-1: none) and how many: with a recorded signal, and without one in a careful pass. */
int64_t esr_guard_suspect(const esr_guard *g, int *sig_hits, int *kill_hits);
/* Before processing the event at `offset`: returns 1 (with the reason in why) when it is poison. Cheap when not. */
int esr_guard_poison(esr_guard *g, int64_t offset, char *why, size_t cap);
/* Attribution for the signal handler: the calling thread processes `offset` of g's partition (enter) or nothing
 * (leave). Cheap: a thread-local pointer and an offset. */
void esr_guard_enter(esr_guard *g, int64_t offset);
void esr_guard_leave(void);
/* The batch committed; next_offset is the partition's new position. */
void esr_guard_committed(esr_guard *g, int64_t next_offset);
/* The partition is closed on purpose (its open batch rolled back, not a death): no batch is in flight any more. The
 * charges of earlier deaths and a careful pass under way are kept. */
void esr_guard_release(esr_guard *g);

#endif
