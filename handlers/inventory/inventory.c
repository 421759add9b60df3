/* inventory.c — a second reference handler: stock per SKU and reservations that expire by the events' own time.
 *
 * Events (the Kafka key is the SKU and must equal data.sku):
 *   stock.received  {sku, qty}                                         stock arrives: on_hand += qty
 *   stock.reserved  {sku, qty, reservation, expires_at, order?}        holds qty until expires_at (RFC 3339)
 *   stock.released  {sku, reservation}                                 gives a reservation back
 *   stock.shipped   {sku, reservation}                                 the reserved qty leaves: on_hand -= qty
 * Tables: stock(sku, on_hand, shipped), reservations(id, sku, qty, expires_at, order_id). A reservation is active until
 * an event of its SKU whose own time is at or after its expires_at: every event of a SKU first drops the reservations
 * that expired by its time. Never the clock: a replay expires exactly what the live worker expired. Available stock is
 * on_hand minus the active reservations.
 * Rejected (business rules, state unchanged): a reservation id that is already active, a reservation above the
 * available stock, a release or a shipment of a reservation that is not active (never made, released, shipped or
 * expired). Invalid: a missing or malformed sku, qty (integer 1..10^9), reservation id or expires_at, a time that is
 * not RFC 3339, a Kafka key that differs from data.sku. Duplicate commands (an emitter that re-sent one after a crash)
 * are thereby harmless: the second is rejected.
 */
#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <string.h>

#include "esr/handler.h"
#include "esr/json.h"

ESR_HANDLER_DECLARE_ABI;

static const esr_host_api *host;

static int migrate(esr_ctx *ctx, int from_version) {
  if (from_version >= 1) return ESR_OK;
  char *msg = NULL;
  int rc = sqlite3_exec(host->db(ctx),
                        "CREATE TABLE stock(sku TEXT PRIMARY KEY, on_hand INTEGER NOT NULL, shipped INTEGER NOT NULL)"
                        "  WITHOUT ROWID;"
                        "CREATE TABLE reservations(id TEXT PRIMARY KEY, sku TEXT NOT NULL, qty INTEGER NOT NULL,"
                        "  expires_at TEXT NOT NULL, order_id TEXT) WITHOUT ROWID;"
                        "CREATE INDEX reservations_sku ON reservations(sku);",
                        NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    host->error(ctx, "creating tables: %s", msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return ESR_FATAL;
  }
  return ESR_OK;
}

static int sql_failed(esr_ctx *ctx, const char *what) {
  host->error(ctx, "%s: %s", what, sqlite3_errmsg(host->db(ctx)));
  return ESR_FATAL;
}

/* 1 when `t` is a time SQLite reads (julianday), 0 otherwise. */
static int valid_time(esr_ctx *ctx, const char *t) {
  sqlite3_stmt *st = host->stmt(ctx, "SELECT julianday(?1) IS NOT NULL");
  if (!st) return -1;
  sqlite3_bind_text(st, 1, t, -1, SQLITE_STATIC);
  int ok = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0);
  sqlite3_reset(st);
  return ok;
}

/* Drops the reservations of `sku` that expired by the event's time. */
static int expire(esr_ctx *ctx, const char *sku, const char *now) {
  sqlite3_stmt *st = host->stmt(ctx, "DELETE FROM reservations WHERE sku = ?1 AND julianday(expires_at) <= julianday(?2)");
  if (!st) return ESR_FATAL;
  sqlite3_bind_text(st, 1, sku, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
  return sqlite3_step(st) == SQLITE_DONE ? ESR_OK : sql_failed(ctx, "expiring reservations");
}

static int received(esr_ctx *ctx, const char *sku, int64_t qty) {
  sqlite3_stmt *st = host->stmt(ctx, "INSERT INTO stock(sku, on_hand, shipped) VALUES (?1, ?2, 0) "
                                     "ON CONFLICT(sku) DO UPDATE SET on_hand = on_hand + excluded.on_hand");
  if (!st) return ESR_FATAL;
  sqlite3_bind_text(st, 1, sku, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, qty);
  return sqlite3_step(st) == SQLITE_DONE ? ESR_OK : sql_failed(ctx, "receiving");
}

static int reserved(esr_ctx *ctx, const esr_event *ev, const char *sku, int64_t qty, const char *id) {
  const char *expires = esr_json_string(ev->data, "expires_at");
  const char *order = esr_json_string(ev->data, "order");
  int ok = expires ? valid_time(ctx, expires) : 0;
  if (ok < 0) return ESR_FATAL;
  if (!ok) {
    host->error(ctx, "expires_at must be an RFC 3339 time");
    return ESR_INVALID;
  }
  sqlite3_stmt *st = host->stmt(ctx, "SELECT EXISTS (SELECT 1 FROM reservations WHERE id = ?1), "
                                     "coalesce((SELECT on_hand FROM stock WHERE sku = ?2), 0) - "
                                     "coalesce((SELECT sum(qty) FROM reservations WHERE sku = ?2), 0)");
  if (!st) return ESR_FATAL;
  sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, sku, -1, SQLITE_STATIC);
  if (sqlite3_step(st) != SQLITE_ROW) return sql_failed(ctx, "reading stock");
  int exists = sqlite3_column_int(st, 0);
  int64_t available = sqlite3_column_int64(st, 1);
  sqlite3_reset(st);
  if (exists) {
    host->error(ctx, "reservation %s is already active", id);
    return ESR_REJECT;
  }
  if (available < qty) {
    host->error(ctx, "insufficient stock of %s: %lld available, %lld asked by reservation %s", sku,
                (long long)available, (long long)qty, id);
    return ESR_REJECT;
  }
  st = host->stmt(ctx, "INSERT INTO reservations(id, sku, qty, expires_at, order_id) VALUES (?1, ?2, ?3, ?4, ?5)");
  if (!st) return ESR_FATAL;
  sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, sku, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, qty);
  sqlite3_bind_text(st, 4, expires, -1, SQLITE_STATIC);
  if (order)
    sqlite3_bind_text(st, 5, order, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, 5);
  return sqlite3_step(st) == SQLITE_DONE ? ESR_OK : sql_failed(ctx, "reserving");
}

/* Ends an active reservation: released (ship 0) or shipped (ship 1). */
static int ended(esr_ctx *ctx, const char *sku, const char *id, int ship) {
  sqlite3_stmt *st = host->stmt(ctx, "DELETE FROM reservations WHERE id = ?1 AND sku = ?2 RETURNING qty");
  if (!st) return ESR_FATAL;
  sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, sku, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  int64_t qty = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  if (rc == SQLITE_ROW) rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return sql_failed(ctx, ship ? "shipping" : "releasing");
  if (qty == 0) {
    host->error(ctx, "reservation %s of %s is not active (never made, already released or shipped, or expired)", id,
                sku);
    return ESR_REJECT;
  }
  if (!ship) return ESR_OK;
  st = host->stmt(ctx, "UPDATE stock SET on_hand = on_hand - ?2, shipped = shipped + ?2 WHERE sku = ?1");
  if (!st) return ESR_FATAL;
  sqlite3_bind_text(st, 1, sku, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, qty);
  return sqlite3_step(st) == SQLITE_DONE ? ESR_OK : sql_failed(ctx, "shipping");
}

static int apply(esr_ctx *ctx, const esr_event *ev) {
  const char *sku = esr_json_string(ev->data, "sku");
  if (!sku || !*sku || strlen(sku) > 100) {
    host->error(ctx, "sku must be a string of 1..100 bytes");
    return ESR_INVALID;
  }
  if (!ev->key || ev->key_len != strlen(sku) || memcmp(ev->key, sku, ev->key_len) != 0) {
    host->error(ctx, "the Kafka key must be the SKU '%s': a SKU's events share its partition", sku);
    return ESR_INVALID;
  }
  int ok = ev->time ? valid_time(ctx, ev->time) : 0;
  if (ok < 0) return ESR_FATAL;
  if (!ok) {
    host->error(ctx, "the event's time must be an RFC 3339 time: reservations expire by it");
    return ESR_INVALID;
  }
  int rc = expire(ctx, sku, ev->time);
  if (rc != ESR_OK) return rc;
  int64_t qty = 0;
  int needs_qty = strcmp(ev->type, "stock.received") == 0 || strcmp(ev->type, "stock.reserved") == 0;
  if (needs_qty && !esr_json_int53(cJSON_GetObjectItemCaseSensitive(ev->data, "qty"), 1, 1000000000, &qty)) {
    host->error(ctx, "qty must be an integer in 1..10^9");
    return ESR_INVALID;
  }
  if (strcmp(ev->type, "stock.received") == 0) return received(ctx, sku, qty);
  const char *id = esr_json_string(ev->data, "reservation");
  if (!id || !*id || strlen(id) > 200) {
    host->error(ctx, "reservation must be a string of 1..200 bytes");
    return ESR_INVALID;
  }
  if (strcmp(ev->type, "stock.reserved") == 0) return reserved(ctx, ev, sku, qty, id);
  if (strcmp(ev->type, "stock.released") == 0) return ended(ctx, sku, id, 0);
  if (strcmp(ev->type, "stock.shipped") == 0) return ended(ctx, sku, id, 1);
  host->error(ctx, "event type %s is not an inventory event", ev->type);
  return ESR_FATAL;
}

static const esr_event_type TYPES[] = {{"stock.received", 1, 1},
                                       {"stock.reserved", 1, 1},
                                       {"stock.released", 1, 1},
                                       {"stock.shipped", 1, 1},
                                       {NULL, 0, 0}};

int esr_handler_init(const esr_host_api *h, esr_handler *out) {
  static const char *const known[] = {NULL};
  const char *unknown = esr_handler_unknown_option(out, known);
  if (unknown) {
    esr_handler_init_error(out, "unknown option '%s' (inventory takes none)", unknown);
    return 1;
  }
  host = h;
  out->abi_version = ESR_HANDLER_ABI;
  out->name = "inventory";
  out->version = "1.0.0";
  out->schema_version = 1;
  out->types = TYPES;
  out->migrate = migrate;
  out->apply = apply;
  return 0;
}
