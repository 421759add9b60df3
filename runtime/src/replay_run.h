/* replay_run.h — `esr replay` and the replays behind `esr verify`: a topic's partitions replayed in parallel into fresh
 * databases of an output directory, isolated from any worker.
 *
 * A replayer loads the handlers and schemas of a configuration once (esr_replayer_new: the same registry, handler
 * options and schema set a worker would load, so the same upcasts and validation) and runs replays with them. A run
 * (esr_replayer_run) builds `<out>/<topic>-<partition>.db` for each partition asked — the layout and tables of a
 * worker's state.dir — with the replay engine (replay.h) on `threads` threads, each partition on one thread with a log
 * reader of its own. Isolation: nothing is published (dead letters and emits stay in each database's esr_outbox, with
 * the worker's reasons), no consumer group is joined or committed to, and no file outside the output directory is
 * written: a worker's state directory (one that holds a `.esr.lock`) is refused as output, and checkpoints are only
 * read (a remote one is fetched into a temporary directory inside the output, removed afterwards).
 *
 * Targets: the log end as the run begins, an offset (the state after every event with offset < N; an N beyond a
 * partition's log end is ESR_E_CONFIG naming the end), an instant (the longest prefix whose Kafka timestamps are all
 * at or before it: replay.h), or an explicit offset per partition (verify --live). When checkpoints are allowed, each
 * partition starts from the newest checkpoint at or before its target that verifies (local directory first at equal
 * offsets, then the remote store; SHA-256 and position checked when it is copied in) and that the log covers from
 * there; otherwise from offset 0. A log that no longer holds what is needed is ESR_E_GAP naming the needed offset and
 * the log start, as the worker says it. The output directory must be empty or absent unless `force` (then the files
 * a replay writes there are replaced, nothing else is touched).
 *
 * Messages never go to stdout or stderr from here: `note` receives one line per decision worth telling (where a
 * partition starts and why, a checkpoint passed over), `progress` a snapshot of every partition about 4 times a
 * second and once at the end. The report holds everything replay.json records (replay_manifest.h).
 */
#ifndef ESR_REPLAY_RUN_H
#define ESR_REPLAY_RUN_H

#include <stdatomic.h>
#include <stdint.h>

#include "config.h"
#include "replay.h"
#include "store.h"

typedef struct esr_replayer esr_replayer;

typedef enum esr_replay_target {
  ESR_REPLAY_TO_END = 0, /* the log end as the run begins */
  ESR_REPLAY_TO_OFFSET,  /* events with offset < to */
  ESR_REPLAY_TO_TIME,    /* events of the longest prefix whose timestamps are <= to (ms since the epoch) */
  ESR_REPLAY_TO_EACH,    /* events with offset < to_each[i] for partitions[i] */
} esr_replay_target;

typedef enum esr_replay_part_state {
  ESR_PART_WAITING = 0,
  ESR_PART_PREPARING, /* bounds, target, checkpoint */
  ESR_PART_APPLYING,
  ESR_PART_DONE,
  ESR_PART_FAILED,
} esr_replay_part_state;

#define ESR_REPLAY_MAX_REASONS 16

typedef struct esr_replay_reason_count {
  char reason[32];
  int64_t count;
} esr_replay_reason_count;

/* One partition of a run. */
typedef struct esr_replay_part {
  int32_t partition;
  _Atomic int state;     /* esr_replay_part_state */
  _Atomic int64_t done;  /* events consumed so far */
  int64_t log_start, log_end;       /* as seen when the partition began */
  int64_t target;                   /* the range ends before this offset (-1 until known) */
  esr_time_source time_source;      /* ESR_REPLAY_TO_TIME: how the target was found (0: while applying) */
  int64_t from;                     /* where applying began */
  int from_checkpoint;              /* 1: restored from a checkpoint at `from` */
  char checkpoint[512];             /* its source: "local <path of its data file>" or "remote <store URL>" */
  uint8_t checkpoint_sha256[32];
  int has_checkpoint_state;         /* its manifest recorded a state digest */
  uint8_t checkpoint_state[32];
  int64_t events, applied, dead;    /* consumed by this replay */
  esr_replay_reason_count reasons[ESR_REPLAY_MAX_REASONS]; /* this replay's dead letters by reason */
  int n_reasons;
  esr_position pos;                 /* at the end: next offset, log digest, counters since offset 0 */
  uint8_t state_digest[32];
  char file[300];                   /* "<topic>-<partition>.db" */
  uint8_t sha256[32];               /* of the file, once closed (a self-contained rollback-journal database) */
  int64_t size;
  double started_s, seconds;        /* monotonic start, duration */
  esr_code rc;                      /* a failure of this partition */
  char error[512];
} esr_replay_part;

typedef struct esr_replay_handler_info {
  char name[64];
  char version[64];
  char path[1024];
  uint8_t sha256[32];
} esr_replay_handler_info;

typedef struct esr_replay_report {
  char topic[256];
  esr_replay_target target;
  int64_t to;
  esr_replay_part *parts;
  size_t n;
  int64_t started_ms, finished_ms; /* wall clock, ms since the epoch */
  double seconds;
  int threads;
} esr_replay_report;

typedef struct esr_replay_opts {
  const char *topic;
  const int32_t *partitions; /* NULL: every partition of the topic */
  size_t n_partitions;
  esr_replay_target target;
  int64_t to;              /* ESR_REPLAY_TO_OFFSET: the offset; ESR_REPLAY_TO_TIME: ms since the epoch */
  const int64_t *to_each;  /* ESR_REPLAY_TO_EACH: per partitions[i] */
  const char *out_dir;
  int force;
  int checkpoints; /* 1: start from the configuration's checkpoints (checkpoint.dir, checkpoint.store) when possible */
  int threads;     /* <= 0: one per CPU, at most one per partition */
  void (*note)(void *arg, const char *line);
  void (*progress)(void *arg, const esr_replay_report *r, int final);
  void *cb_arg;
} esr_replay_opts;

/* Loads the handlers (with their options) and schemas of cfg. cfg must outlive the replayer. ESR_E_PLUGIN for a
 * handler that cannot be loaded, ESR_E_CONFIG for schemas that do not compile. */
esr_code esr_replayer_new(const esr_config *cfg, esr_replayer **out, esr_error *err);
void esr_replayer_free(esr_replayer *rp);
/* The loaded handlers: name, version, path and the SHA-256 of the plugin file. */
const esr_replay_handler_info *esr_replayer_handlers(const esr_replayer *rp, size_t *n);
/* The schema set's hash (SHA-256 over each schema file's name and content, in name order); 0 when no schemas.dir. */
int esr_replayer_schemas_hash(const esr_replayer *rp, uint8_t out[32]);
const esr_config *esr_replayer_config(const esr_replayer *rp);
/* The partition environment a replay opens partitions with (the replayer's handlers and schemas, no publisher, the
 * configuration's dlq.topic and sqlite.cache.mb), for partitions in state_dir: what a caller of the replay engine
 * (replay.h) needs to open a partition of its own. Borrows from rp and state_dir. */
void esr_replayer_partition_env(const esr_replayer *rp, const char *state_dir, esr_partition_env *env);

/* Runs one replay (see the file comment). The report is filled as far as it got, also on failure (free it with
 * esr_replay_report_clear). The first failure is returned: ESR_E_CONFIG (a bad target, an output directory that is
 * not empty, a partition that does not exist), ESR_E_PLUGIN (a handler stopped a partition), ESR_E_GAP, ESR_E_KAFKA,
 * ESR_E_IO, ESR_E_SQLITE. */
esr_code esr_replayer_run(esr_replayer *rp, const esr_replay_opts *o, esr_replay_report *report, esr_error *err);
void esr_replay_report_clear(esr_replay_report *r);

#endif
