/* esr/handler.h — the handler plugin ABI, version 1. The only header a handler plugin needs.
 *
 * A handler is a shared object that exports two symbols: the constant `esr_handler_abi` (write
 * ESR_HANDLER_DECLARE_ABI; once in the plugin) and the function `esr_handler_init`. The host checks the constant before it
 * calls anything, so a plugin built against another major version is refused without running its code. `esr_handler_init`
 * fills an `esr_handler` (zeroed by the host, `struct_size` set to the host's size) with its name, the event types it
 * consumes and its callbacks, and returns 0; any other return refuses the plugin. The plugin reaches the host only through
 * the `esr_host_api` table it is given (valid for the life of the process), never by linking the host.
 *
 * Callbacks of different partitions run concurrently on different threads (a partition is owned by one thread at a
 * time): keep no mutable global state, or protect it. Callbacks must be deterministic functions of the partition's
 * database and the event (no wall clock, no randomness, no I/O outside the transaction): replaying the log must give the
 * same state. `apply` runs inside the batch transaction, within a savepoint of its own: when it returns anything but ESR_OK
 * the host rolls back exactly what this event changed. Transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT) and ATTACH
 * are the host's alone. The event's cJSON values (and anything an upcast adds to them) are valid during the callback
 * only: they come from a per-event arena and must not be kept. Structs that cross this boundary carry their size and only grow at the end; within a major
 * version the host table and the handler struct are append-only.
 */
#ifndef ESR_HANDLER_H
#define ESR_HANDLER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;
typedef struct cJSON cJSON;

#define ESR_HANDLER_ABI_MAJOR 1
#define ESR_HANDLER_ABI_MINOR 0
#define ESR_HANDLER_ABI ((uint32_t)((ESR_HANDLER_ABI_MAJOR << 16) | ESR_HANDLER_ABI_MINOR))
#define ESR_HANDLER_ABI_MAJOR_OF(v) ((uint32_t)(v) >> 16)

/* Exports the ABI version the plugin was built against; the loader reads it before calling esr_handler_init. */
#define ESR_HANDLER_DECLARE_ABI \
  __attribute__((visibility("default"))) const uint32_t esr_handler_abi = ESR_HANDLER_ABI
#define ESR_HANDLER_EXPORT __attribute__((visibility("default")))

/* Results of apply/migrate/upcast. */
typedef enum esr_status {
  ESR_OK = 0,      /* applied */
  ESR_REJECT = 1,  /* a business rule refuses the event: dead-lettered with reason "rejected", the batch goes on */
  ESR_INVALID = 2, /* the event's data is malformed for this handler: dead-lettered with reason "invalid" */
  ESR_FATAL = 3    /* the handler cannot go on (bug, broken invariant): the partition stops at this event */
} esr_status;

/* One event, borrowed: valid until the callback returns. */
typedef struct esr_event {
  size_t struct_size;
  const char *topic;
  int32_t partition;
  int64_t offset;
  const char *key; /* Kafka key (the entity id), NUL-terminated copy; NULL when the message has none */
  size_t key_len;
  const char *type;      /* envelope "type" */
  int version;           /* envelope "version" (1 when absent) */
  const char *id;        /* envelope "id" or NULL */
  const char *time;      /* envelope "time" (the event's own time, RFC 3339) or NULL; use it instead of a clock */
  const cJSON *envelope; /* the whole parsed envelope */
  const cJSON *data;     /* envelope "data" (an object) */
} esr_event;

/* Per-call context: which partition, which handler, where the error message goes. Opaque. */
typedef struct esr_ctx esr_ctx;

enum { ESR_LOG_DEBUG = 0, ESR_LOG_INFO = 1, ESR_LOG_WARN = 2, ESR_LOG_ERROR = 3 };

/* The host's services. Append-only within a major ABI version; check struct_size before using a later member. */
typedef struct esr_host_api {
  size_t struct_size;
  uint32_t abi_version;
  /* The partition's database. Valid during the callback; do not close it or control transactions on it. */
  sqlite3 *(*db)(esr_ctx *ctx);
  /* A prepared statement for `sql` from the partition's cache, reset with its bindings cleared. Borrowed: do not finalize;
   * valid until the callback returns. NULL on a compile error (the message is in the context's error, see `error`). */
  sqlite3_stmt *(*stmt)(esr_ctx *ctx, const char *sql);
  /* Publishes `value` under `key` to `topic` after the batch commits (an outbox row in the same transaction), with
   * headers naming the source event so that consumers can drop duplicates. Returns 0, or -1 with the error set. */
  int (*emit)(esr_ctx *ctx, const char *topic, const void *key, size_t key_len, const void *value, size_t value_len);
  /* Sets the message that goes with a non-OK return (printf format); it lands in the dead letter's esr-error header. */
  void (*error)(esr_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
  /* Logs a line attributed to the handler and the event being applied. */
  void (*log)(esr_ctx *ctx, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
  /* The handler's own `user` pointer, as set by esr_handler_init. */
  void *(*user)(esr_ctx *ctx);
} esr_host_api;

/* An event type a handler consumes: an exact type or a prefix pattern ending in ".*" ("account.*"), and the range of
 * envelope versions it accepts. `max_version` is the current one; older versions in range are passed to `upcast` first
 * when the handler has one. */
typedef struct esr_event_type {
  const char *type;
  int min_version;
  int max_version;
} esr_event_type;

typedef struct esr_handler {
  size_t struct_size;   /* set by the host: the size it allocated */
  uint32_t abi_version; /* set by the plugin: ESR_HANDLER_ABI */
  const char *name;     /* short identifier, [a-z0-9_]+, used for its tables' bookkeeping and in messages */
  const char *version;  /* the plugin's own version string, recorded with checkpoints */
  int schema_version;   /* the version of its tables; migrate brings a partition's tables up to it */
  const esr_event_type *types; /* terminated by an entry whose type is NULL */
  void *user;

  /* Required. Creates or upgrades the handler's tables from `from_version` (0: none yet) to schema_version. Runs in a
   * transaction when a partition opens. */
  int (*migrate)(esr_ctx *ctx, int from_version);
  /* Required. Applies one event (see the file comment). */
  int (*apply)(esr_ctx *ctx, const esr_event *event);
  /* Optional. Rewrites an event of an older version in place into the current one: `envelope` is a private, mutable copy
   * whose "version" and "data" may be changed. Returns ESR_OK or ESR_INVALID. */
  int (*upcast)(esr_ctx *ctx, cJSON *envelope, int from_version);
  /* Optional. Called once when the host unloads the plugin. */
  void (*fini)(void *user);
} esr_handler;

/* The entry point every plugin exports. */
typedef int (*esr_handler_init_fn)(const esr_host_api *host, esr_handler *out);
ESR_HANDLER_EXPORT int esr_handler_init(const esr_host_api *host, esr_handler *out);

#ifdef __cplusplus
}
#endif
#endif
