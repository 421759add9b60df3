/* ledger.c — the reference handler: accounts opened, credited and debited, in minor units.
 *
 * Events (the Kafka key is the account id and must equal data.account):
 *   account.opened       {account, owner}
 *   account.deposited v2 {account, amount, currency}   amount: integer in 1..2^53; currency: 3 capital letters
 *   account.deposited v1 {account, amount}             upcast to v2 with currency "EUR" (accounts before v2 were EUR;
 *                                                      option handler.ledger.v1.currency names another)
 *   account.withdrawn    {account, amount}
 * Table accounts(id, owner, balance, opened_at, updated_at, currency); times are the events' own times, never the
 * clock. Tables version 2 added accounts.currency (EUR for every account until accounts can be opened in another).
 * Rejected (business rules, state unchanged): a second open of an account, a deposit or withdrawal on an account never
 * opened, a withdrawal above the balance, a deposit that would overflow the balance, a deposit in another currency than
 * the account's. Invalid (malformed data): a missing or malformed currency in a v2 deposit, a
 * missing or non-string account or owner, an amount that is not an integer in 1..2^53 (never rounded), a missing
 * Kafka key or one that differs from data.account.
 */
#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <string.h>

#include "esr/handler.h"
#include "esr/json.h"

ESR_HANDLER_DECLARE_ABI;

static const esr_host_api *host;
static char v1_currency[4] = "EUR"; /* the currency of version 1 deposits (option v1.currency); set once, by init */

static int exec(esr_ctx *ctx, const char *sql, const char *what) {
  char *msg = NULL;
  int rc = sqlite3_exec(host->db(ctx), sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    host->error(ctx, "%s: %s", what, msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return ESR_FATAL;
  }
  return ESR_OK;
}

static int migrate(esr_ctx *ctx, int from_version) {
  int rc = ESR_OK;
  if (from_version < 1)
    rc = exec(ctx,
              "CREATE TABLE accounts("
              "  id TEXT PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL,"
              "  opened_at TEXT, updated_at TEXT) WITHOUT ROWID",
              "creating table accounts");
  if (rc == ESR_OK && from_version < 2)
    rc = exec(ctx, "ALTER TABLE accounts ADD COLUMN currency TEXT NOT NULL DEFAULT 'EUR'",
              "adding accounts.currency");
  return rc;
}

/* account.deposited v1 -> v2: v1 deposits were all in euros. */
static int upcast(esr_ctx *ctx, cJSON *envelope, int from_version) {
  cJSON *data = cJSON_GetObjectItemCaseSensitive(envelope, "data");
  if (from_version != 1 || !cJSON_IsObject(data)) {
    host->error(ctx, "cannot upcast from version %d", from_version);
    return ESR_INVALID;
  }
  if (!cJSON_GetObjectItemCaseSensitive(data, "currency") && !cJSON_AddStringToObject(data, "currency", v1_currency))
    return ESR_FATAL;
  cJSON_DeleteItemFromObjectCaseSensitive(envelope, "version");
  if (!cJSON_AddNumberToObject(envelope, "version", 2)) return ESR_FATAL;
  return ESR_OK;
}

static int valid_currency(const char *c) {
  return c && strlen(c) == 3 && c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z' && c[2] >= 'A' && c[2] <= 'Z';
}

static int sql_failed(esr_ctx *ctx, const char *what) {
  host->error(ctx, "%s: %s", what, sqlite3_errmsg(host->db(ctx)));
  return ESR_FATAL;
}

static int amount_of(esr_ctx *ctx, const esr_event *ev, int64_t *amount) {
  if (!esr_json_int53(cJSON_GetObjectItemCaseSensitive(ev->data, "amount"), 1, ESR_INT53_MAX, amount)) {
    host->error(ctx, "amount must be an integer in 1..2^53 (minor units)");
    return 0;
  }
  return 1;
}

static int opened(esr_ctx *ctx, const esr_event *ev, const char *account) {
  const char *owner = esr_json_string(ev->data, "owner");
  if (!owner || !*owner) {
    host->error(ctx, "owner must be a non-empty string");
    return ESR_INVALID;
  }
  sqlite3_stmt *st = host->stmt(ctx, "INSERT INTO accounts(id, owner, balance, opened_at, updated_at) "
                                     "VALUES (?1, ?2, 0, ?3, ?3) ON CONFLICT(id) DO NOTHING");
  if (!st) return ESR_FATAL;
  sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, ev->time, -1, SQLITE_STATIC);
  if (sqlite3_step(st) != SQLITE_DONE) return sql_failed(ctx, "opening");
  if (sqlite3_changes(host->db(ctx)) == 0) {
    host->error(ctx, "account %s is already open", account);
    return ESR_REJECT;
  }
  return ESR_OK;
}

/* Why a deposit or withdrawal changed no row: the account is missing, in another currency, or the amount does not fit
 * (overflow / insufficient funds). Only on this rare path: the common one is a single UPDATE. */
static int refused(esr_ctx *ctx, const char *account, int64_t amount, const char *currency) {
  sqlite3_stmt *st = host->stmt(ctx, "SELECT balance, currency FROM accounts WHERE id = ?1");
  if (!st) return ESR_FATAL;
  sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) {
    host->error(ctx, "account %s was never opened", account);
    return ESR_REJECT;
  }
  if (rc != SQLITE_ROW) return sql_failed(ctx, "reading the account");
  int64_t balance = sqlite3_column_int64(st, 0);
  const char *has = (const char *)sqlite3_column_text(st, 1);
  if (currency && has && strcmp(has, currency) != 0)
    host->error(ctx, "a deposit in %s into account %s, which is in %s", currency, account, has);
  else if (currency)
    host->error(ctx, "deposit of %lld would overflow the balance of account %s", (long long)amount, account);
  else
    host->error(ctx, "insufficient funds in account %s: balance %lld, withdrawal %lld", account, (long long)balance,
                (long long)amount);
  return ESR_REJECT;
}

static int deposited(esr_ctx *ctx, const esr_event *ev, const char *account) {
  int64_t amount;
  if (!amount_of(ctx, ev, &amount)) return ESR_INVALID;
  const char *currency = esr_json_string(ev->data, "currency"); /* v1 events were upcast: always present */
  if (!valid_currency(currency)) {
    host->error(ctx, "currency must be 3 capital letters (ISO 4217)");
    return ESR_INVALID;
  }
  /* The balance must stay an INTEGER: SQLite would turn an int64 overflow into a REAL. */
  sqlite3_stmt *st = host->stmt(ctx, "UPDATE accounts SET balance = balance + ?2, updated_at = ?3 "
                                     "WHERE id = ?1 AND currency = ?4 AND balance <= 9223372036854775807 - ?2");
  if (!st) return ESR_FATAL;
  sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, amount);
  sqlite3_bind_text(st, 3, ev->time, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, currency, -1, SQLITE_STATIC);
  if (sqlite3_step(st) != SQLITE_DONE) return sql_failed(ctx, "depositing");
  if (sqlite3_changes(host->db(ctx)) == 0) return refused(ctx, account, amount, currency);
  return ESR_OK;
}

static int withdrawn(esr_ctx *ctx, const esr_event *ev, const char *account) {
  int64_t amount;
  if (!amount_of(ctx, ev, &amount)) return ESR_INVALID;
  sqlite3_stmt *st = host->stmt(ctx, "UPDATE accounts SET balance = balance - ?2, updated_at = ?3 "
                                     "WHERE id = ?1 AND balance >= ?2");
  if (!st) return ESR_FATAL;
  sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, amount);
  sqlite3_bind_text(st, 3, ev->time, -1, SQLITE_STATIC);
  if (sqlite3_step(st) != SQLITE_DONE) return sql_failed(ctx, "withdrawing");
  if (sqlite3_changes(host->db(ctx)) == 0) return refused(ctx, account, amount, NULL);
  return ESR_OK;
}

static int apply(esr_ctx *ctx, const esr_event *ev) {
  const char *account = esr_json_string(ev->data, "account");
  if (!account || !*account || strlen(account) > 200) {
    host->error(ctx, "account must be a string of 1..200 bytes");
    return ESR_INVALID;
  }
  if (!ev->key) {
    host->error(ctx, "the event has no Kafka key: the key must be the account id, so that an account's events share "
                     "one partition");
    return ESR_INVALID;
  }
  if (strlen(ev->key) != ev->key_len || strcmp(ev->key, account) != 0) {
    host->error(ctx, "the Kafka key '%.*s' is not the account '%s': events of one account must share its partition",
                (int)(ev->key_len > 100 ? 100 : ev->key_len), ev->key, account);
    return ESR_INVALID;
  }
  if (strcmp(ev->type, "account.opened") == 0) return opened(ctx, ev, account);
  if (strcmp(ev->type, "account.deposited") == 0) return deposited(ctx, ev, account);
  if (strcmp(ev->type, "account.withdrawn") == 0) return withdrawn(ctx, ev, account);
  host->error(ctx, "event type %s is not a ledger event", ev->type);
  return ESR_FATAL; /* the registry only routes our types here: anything else is a bug */
}

static const esr_event_type TYPES[] = {
    {"account.opened", 1, 1},
    {"account.deposited", 1, 2},
    {"account.withdrawn", 1, 1},
    {NULL, 0, 0},
};

int esr_handler_init(const esr_host_api *h, esr_handler *out) {
  if (ESR_HANDLER_ABI_MAJOR_OF(h->abi_version) != ESR_HANDLER_ABI_MAJOR) return -1;
  static const char *const known[] = {"v1.currency", NULL};
  const char *unknown = esr_handler_unknown_option(out, known);
  if (unknown) {
    esr_handler_init_error(out, "unknown option '%s' (the ledger knows: v1.currency)", unknown);
    return -1;
  }
  const char *cur = esr_handler_option_get(out, "v1.currency");
  if (cur && !valid_currency(cur)) {
    esr_handler_init_error(out, "option v1.currency = '%s': expected 3 capital letters, e.g. EUR", cur);
    return -1;
  }
  if (cur) memcpy(v1_currency, cur, 4);
  host = h;
  out->abi_version = ESR_HANDLER_ABI;
  out->name = "ledger";
  out->version = "1.1.0";
  out->schema_version = 2;
  out->types = TYPES;
  out->migrate = migrate;
  out->apply = apply;
  out->upcast = upcast;
  return 0;
}
