/* hello.c — a handler written outside esr's tree, built only against the installed SDK (tests/sdk/test_sdk.sh): it
 * counts greetings per person. Event: {"type":"hello.said","data":{"name":"ada"}} with the Kafka key the name.
 * Option handler.<stem>.greeting (default "hello") is what it records; any other option is refused. */
#include <esr/handler.h>
#include <esr/json.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

ESR_HANDLER_DECLARE_ABI;

static const esr_host_api *host;
static char greeting[32] = "hello";

static int migrate(esr_ctx *ctx, int from_version) {
  if (from_version >= 1) return ESR_OK;
  int rc = sqlite3_exec(host->db(ctx),
                        "CREATE TABLE greetings(name TEXT PRIMARY KEY, said TEXT NOT NULL, n INTEGER NOT NULL)",
                        NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    host->error(ctx, "creating greetings: %s", sqlite3_errstr(rc));
    return ESR_FATAL;
  }
  return ESR_OK;
}

static int apply(esr_ctx *ctx, const esr_event *ev) {
  const char *name = esr_json_string(ev->data, "name");
  if (!name || !*name) {
    host->error(ctx, "data.name must be a non-empty string");
    return ESR_INVALID;
  }
  if (strcmp(name, "nobody") == 0) {
    host->error(ctx, "nobody cannot be greeted");
    return ESR_REJECT;
  }
  sqlite3_stmt *st = host->stmt(ctx, "INSERT INTO greetings(name, said, n) VALUES (?1, ?2, 1) "
                                     "ON CONFLICT(name) DO UPDATE SET n = n + 1");
  if (!st) return ESR_FATAL;
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, greeting, -1, SQLITE_STATIC);
  if (sqlite3_step(st) != SQLITE_DONE) {
    host->error(ctx, "greeting %s: %s", name, sqlite3_errmsg(host->db(ctx)));
    return ESR_FATAL;
  }
  return ESR_OK;
}

static const esr_event_type TYPES[] = {{"hello.said", 1, 1}, {NULL, 0, 0}};

int esr_handler_init(const esr_host_api *h, esr_handler *out) {
  static const char *const known[] = {"greeting", NULL};
  const char *unknown = esr_handler_unknown_option(out, known);
  if (unknown) {
    esr_handler_init_error(out, "unknown option '%s' (hello knows: greeting)", unknown);
    return 1;
  }
  const char *g = esr_handler_option_get(out, "greeting");
  if (g) snprintf(greeting, sizeof greeting, "%s", g);
  host = h;
  out->abi_version = ESR_HANDLER_ABI;
  out->name = "hello";
  out->version = "1.0.0";
  out->schema_version = 1;
  out->types = TYPES;
  out->migrate = migrate;
  out->apply = apply;
  return 0;
}
