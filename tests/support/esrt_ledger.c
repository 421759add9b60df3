/* esrt_ledger.c — the ledger stream generator and the independent oracle (see esrt_ledger.h). */
#include "esrt_ledger.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esrt_json.h"

static void *xrealloc(void *p, size_t n) {
  void *g = realloc(p, n);
  if (!g && n) abort(); /* tests: running out of memory is not a case to handle */
  return g;
}

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = xrealloc(NULL, n);
  memcpy(d, s, n);
  return d;
}

int32_t esrt_ledger_partition(const char *key, size_t key_len, int partitions) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < key_len; i++) h = (h ^ (unsigned char)key[i]) * 16777619u;
  return (int32_t)(h % (uint32_t)partitions);
}

/* ======================================================================== generator */

const esrt_bad_kind esrt_ledger_bad_kinds[] = {
    {"json-garbage", "bad-json"},
    {"json-truncated", "bad-json"},
    {"json-empty", "bad-json"},
    {"json-trailing", "bad-json"},
    {"json-blank", "bad-json"},
    {"env-array", "bad-envelope"},
    {"env-string", "bad-envelope"},
    {"env-no-type", "bad-envelope"},
    {"env-type-number", "bad-envelope"},
    {"env-type-empty", "bad-envelope"},
    {"env-no-data", "bad-envelope"},
    {"env-data-array", "bad-envelope"},
    {"env-version-zero", "bad-envelope"},
    {"env-version-string", "bad-envelope"},
    {"env-version-fraction", "bad-envelope"},
    {"env-id-number", "bad-envelope"},
    {"env-time-object", "bad-envelope"},
    {"unknown-type", "unknown-type"},
    {"unknown-type-other", "unknown-type"},
    {"unknown-version", "unknown-version"},
    {"v2-no-currency", "invalid"},
    {"v2-bad-currency", "invalid"},
    {"v2-other-currency", "rejected"},
    {"rej-double-open", "rejected"},
    {"rej-deposit-unopened", "rejected"},
    {"rej-withdraw-unopened", "rejected"},
    {"rej-overdraft", "rejected"},
    {"inv-amount-fraction", "invalid"},
    {"inv-amount-zero", "invalid"},
    {"inv-amount-negative", "invalid"},
    {"inv-amount-string", "invalid"},
    {"inv-amount-2p53p2", "invalid"},
    {"inv-amount-2p53p1", "invalid"},  /* a double reads it as 2^53: must not be rounded into range */
    {"inv-amount-inexact", "invalid"}, /* 4503599627370496.5: a double reads it as an integer */
    {"inv-amount-missing", "invalid"},
    {"inv-key-mismatch", "invalid"},
    {"inv-no-account", "invalid"},
    {"inv-account-number", "invalid"},
    {"inv-owner-missing", "invalid"},
    {"inv-owner-empty", "invalid"},
    {NULL, NULL},
};

typedef struct rng {
  uint64_t s;
} rng;

static uint64_t next_u64(rng *r) { /* splitmix64 */
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
static uint64_t below(rng *r, uint64_t n) { return n ? next_u64(r) % n : 0; }
static int chance(rng *r, int percent) { return (int)below(r, 100) < percent; }

typedef struct acct {
  char id[32];
  int opened;
  int64_t balance;
} acct;

typedef struct gen {
  const esrt_gen_opts *o;
  rng r;
  acct *accts;
  int n_opened;
  esrt_event *ev;
  size_t n, cap;
  int64_t seq; /* event number, for ids and times */
  char *pad;
  int ghosts;
} gen;

static const char *const OWNERS[] = {"Ada Lovelace", "Grace Hopper", "Zo\\u00eb Kr\\u00fcger", "Linus", "Barbara Liskov",
                                     "Edsger", "Ken", "Frances Allen", "\\u6771\\u4eac Ltd", "Niklaus", "Radia", "Dennis"};

/* Appends one event with a printf-built value. */
static esrt_event *emit(gen *g, const char *key, const char *kind, const char *intent, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static esrt_event *emit(gen *g, const char *key, const char *kind, const char *intent, const char *fmt, ...) {
  if (g->n == g->cap) {
    g->cap = g->cap ? g->cap * 2 : 1024;
    g->ev = xrealloc(g->ev, g->cap * sizeof *g->ev);
  }
  esrt_event *e = &g->ev[g->n++];
  memset(e, 0, sizeof *e);
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int len = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  e->value = xrealloc(NULL, (size_t)len + 1);
  vsnprintf(e->value, (size_t)len + 1, fmt, ap2);
  va_end(ap2);
  e->value_len = (size_t)len;
  e->key = xstrdup(key);
  e->key_len = strlen(key);
  e->partition = esrt_ledger_partition(e->key, e->key_len, g->o->partitions);
  e->kind = kind;
  e->intent = intent;
  e->offset = -1;
  g->seq++;
  return e;
}

/* The envelope head: type, optional version/id/time, per the stream's variety. */
static void head(gen *g, char *buf, size_t cap, const char *type) {
  int64_t s = g->seq;
  char when[40];
  snprintf(when, sizeof when, "2026-%02d-%02dT%02d:%02d:%02dZ", (int)(1 + s / 2419200 % 12), (int)(1 + s / 86400 % 28),
           (int)(s / 3600 % 24), (int)(s / 60 % 60), (int)(s % 60));
  int v = (int)below(&g->r, 10);
  if (v == 0) /* no version (defaults to 1), no id */
    snprintf(buf, cap, "{\"type\":\"%s\",\"time\":\"%s\"", type, when);
  else if (v == 1) /* minimal */
    snprintf(buf, cap, "{\"type\":\"%s\"", type);
  else
    snprintf(buf, cap, "{\"type\":\"%s\",\"version\":1,\"id\":\"e-%" PRId64 "\",\"time\":\"%s\"", type, s, when);
}

static const char *memo(gen *g) { return g->pad ? g->pad : ""; }

static void amount_text(gen *g, int64_t amount, char *buf, size_t cap) {
  int v = (int)below(&g->r, 40);
  if (v == 0)
    snprintf(buf, cap, "%" PRId64 ".0", amount); /* integral: valid */
  else if (v == 1)
    snprintf(buf, cap, "%" PRId64 "e0", amount);
  else
    snprintf(buf, cap, "%" PRId64, amount);
}

static void good_open(gen *g, acct *a) {
  char h[200];
  head(g, h, sizeof h, "account.opened");
  const char *owner = OWNERS[below(&g->r, sizeof OWNERS / sizeof *OWNERS)];
  int ws = chance(&g->r, 5);
  emit(g, a->id, "open", "", "%s%s,\"data\":{\"account\":\"%s\",\"owner\":\"%s\"%s}}%s", ws ? " \n" : "", h, a->id,
       owner, memo(g), ws ? "\r\n " : "");
  a->opened = 1;
  a->balance = 0;
  g->n_opened++;
}

static void good_move(gen *g, acct *a, int deposit, int64_t amount, const char *kind) {
  char h[200], amt[40];
  head(g, h, sizeof h, deposit ? "account.deposited" : "account.withdrawn");
  amount_text(g, amount, amt, sizeof amt);
  if (deposit && chance(&g->r, 20)) /* version 2 of the deposit: the currency is explicit */
    emit(g, a->id, kind, "",
         "{\"type\":\"account.deposited\",\"version\":2,\"data\":{\"account\":\"%s\",\"amount\":%s,"
         "\"currency\":\"EUR\"%s}}",
         a->id, amt, memo(g));
  else
    emit(g, a->id, kind, "", "%s,\"data\":{\"account\":\"%s\",\"amount\":%s%s}}", h, a->id, amt, memo(g));
  a->balance += deposit ? amount : -amount;
}

static acct *any_acct(gen *g) { return &g->accts[below(&g->r, (uint64_t)g->o->accounts)]; }

/* An opened account, opening one first when none is. */
static acct *opened_acct(gen *g) {
  if (g->n_opened == 0) good_open(g, &g->accts[0]);
  for (;;) {
    acct *a = any_acct(g);
    if (a->opened) return a;
  }
}

static void good_event(gen *g) {
  acct *a = any_acct(g);
  if (!a->opened) {
    good_open(g, a);
    return;
  }
  if (a->balance > 0 && chance(&g->r, 45)) {
    int64_t max = a->balance < 50000 ? a->balance : 50000;
    good_move(g, a, 0, 1 + (int64_t)below(&g->r, (uint64_t)max), "withdraw");
  } else {
    good_move(g, a, 1, 1 + (int64_t)below(&g->r, 100000), "deposit");
  }
}

static void bad_event(gen *g, const esrt_bad_kind *k) {
  const char *kind = k->kind, *why = k->reason;
  char h[200], hv[200];
  head(g, h, sizeof h, "account.deposited");
  acct *a = any_acct(g);
  if (!strcmp(kind, "json-garbage")) {
    emit(g, a->id, kind, why, "\xff\xfe<not json %" PRId64 ">", g->seq);
  } else if (!strcmp(kind, "json-truncated")) {
    char full[400];
    int n = snprintf(full, sizeof full, "%s,\"data\":{\"account\":\"%s\",\"amount\":12}}", h, a->id);
    int cut = 1 + (int)below(&g->r, (uint64_t)(n - 1)); /* 1..n-1 bytes: the closing brace is always lost */
    emit(g, a->id, kind, why, "%.*s", cut, full);
  } else if (!strcmp(kind, "json-empty")) {
    emit(g, a->id, kind, why, "%s", "");
  } else if (!strcmp(kind, "json-trailing")) {
    emit(g, a->id, kind, why, "%s,\"data\":{\"account\":\"%s\",\"amount\":12}}}", h, a->id);
  } else if (!strcmp(kind, "json-blank")) {
    emit(g, a->id, kind, why, " \n\t ");
  } else if (!strcmp(kind, "env-array")) {
    emit(g, a->id, kind, why, "[{\"type\":\"account.deposited\",\"data\":{\"account\":\"%s\",\"amount\":1}}]", a->id);
  } else if (!strcmp(kind, "env-string")) {
    emit(g, a->id, kind, why, "\"account.deposited\"");
  } else if (!strcmp(kind, "env-no-type")) {
    emit(g, a->id, kind, why, "{\"version\":1,\"data\":{\"account\":\"%s\",\"amount\":1}}", a->id);
  } else if (!strcmp(kind, "env-type-number")) {
    emit(g, a->id, kind, why, "{\"type\":7,\"data\":{\"account\":\"%s\",\"amount\":1}}", a->id);
  } else if (!strcmp(kind, "env-type-empty")) {
    emit(g, a->id, kind, why, "{\"type\":\"\",\"data\":{\"account\":\"%s\",\"amount\":1}}", a->id);
  } else if (!strcmp(kind, "env-no-data")) {
    emit(g, a->id, kind, why, "{\"type\":\"account.deposited\",\"version\":1,\"account\":\"%s\",\"amount\":1}", a->id);
  } else if (!strcmp(kind, "env-data-array")) {
    emit(g, a->id, kind, why, "{\"type\":\"account.deposited\",\"data\":[\"%s\",1]}", a->id);
  } else if (!strcmp(kind, "env-version-zero")) {
    emit(g, a->id, kind, why, "{\"type\":\"account.deposited\",\"version\":0,\"data\":{\"account\":\"%s\",\"amount\":1}}",
         a->id);
  } else if (!strcmp(kind, "env-version-string")) {
    emit(g, a->id, kind, why,
         "{\"type\":\"account.deposited\",\"version\":\"1\",\"data\":{\"account\":\"%s\",\"amount\":1}}", a->id);
  } else if (!strcmp(kind, "env-version-fraction")) {
    emit(g, a->id, kind, why,
         "{\"type\":\"account.deposited\",\"version\":1.5,\"data\":{\"account\":\"%s\",\"amount\":1}}", a->id);
  } else if (!strcmp(kind, "env-id-number")) {
    emit(g, a->id, kind, why, "{\"type\":\"account.deposited\",\"id\":12,\"data\":{\"account\":\"%s\",\"amount\":1}}",
         a->id);
  } else if (!strcmp(kind, "env-time-object")) {
    emit(g, a->id, kind, why,
         "{\"type\":\"account.deposited\",\"time\":{\"s\":1},\"data\":{\"account\":\"%s\",\"amount\":1}}", a->id);
  } else if (!strcmp(kind, "unknown-type")) {
    head(g, hv, sizeof hv, "account.closed");
    emit(g, a->id, kind, why, "%s,\"data\":{\"account\":\"%s\"}}", hv, a->id);
  } else if (!strcmp(kind, "unknown-type-other")) {
    head(g, hv, sizeof hv, "order.placed");
    emit(g, a->id, kind, why, "%s,\"data\":{}}", hv);
  } else if (!strcmp(kind, "unknown-version")) {
    emit(g, a->id, kind, why,
         "{\"type\":\"account.deposited\",\"version\":9,\"data\":{\"account\":\"%s\",\"amount\":5}}", a->id);
  } else if (!strcmp(kind, "v2-no-currency")) {
    emit(g, a->id, kind, why, "{\"type\":\"account.deposited\",\"version\":2,\"data\":{\"account\":\"%s\",\"amount\":5}}",
         a->id);
  } else if (!strcmp(kind, "v2-bad-currency")) {
    emit(g, a->id, kind, why,
         "{\"type\":\"account.deposited\",\"version\":2,\"data\":{\"account\":\"%s\",\"amount\":5,\"currency\":\"eur\"}}",
         a->id);
  } else if (!strcmp(kind, "v2-other-currency")) { /* rejected whether or not the account is open */
    emit(g, a->id, kind, why,
         "{\"type\":\"account.deposited\",\"version\":2,\"data\":{\"account\":\"%s\",\"amount\":5,\"currency\":\"USD\"}}",
         a->id);
  } else if (!strcmp(kind, "rej-double-open")) {
    acct *o = opened_acct(g);
    head(g, hv, sizeof hv, "account.opened");
    emit(g, o->id, kind, why, "%s,\"data\":{\"account\":\"%s\",\"owner\":\"Mallory\"}}", hv, o->id);
  } else if (!strcmp(kind, "rej-deposit-unopened") || !strcmp(kind, "rej-withdraw-unopened")) {
    char ghost[32];
    snprintf(ghost, sizeof ghost, "ghost-%05d", g->ghosts++ % 97);
    head(g, hv, sizeof hv, kind[4] == 'd' ? "account.deposited" : "account.withdrawn");
    emit(g, ghost, kind, why, "%s,\"data\":{\"account\":\"%s\",\"amount\":%d}}", hv, ghost, 1 + (int)below(&g->r, 500));
  } else if (!strcmp(kind, "rej-overdraft")) {
    acct *o = opened_acct(g);
    head(g, hv, sizeof hv, "account.withdrawn");
    emit(g, o->id, kind, why, "%s,\"data\":{\"account\":\"%s\",\"amount\":%" PRId64 "}}", hv, o->id,
         o->balance + 1 + (int64_t)below(&g->r, 1000));
  } else if (!strncmp(kind, "inv-amount-", 11)) {
    acct *o = opened_acct(g);
    const char *amt = !strcmp(kind, "inv-amount-fraction") ? "1.5"
                      : !strcmp(kind, "inv-amount-zero")   ? "0"
                      : !strcmp(kind, "inv-amount-negative") ? "-3"
                      : !strcmp(kind, "inv-amount-string")   ? "\"10\""
                      : !strcmp(kind, "inv-amount-2p53p2")   ? "9007199254740994"
                      : !strcmp(kind, "inv-amount-2p53p1")   ? "9007199254740993"
                      : !strcmp(kind, "inv-amount-inexact")  ? "4503599627370496.5"
                                                             : NULL;
    int deposit = chance(&g->r, 50);
    head(g, hv, sizeof hv, deposit ? "account.deposited" : "account.withdrawn");
    if (amt)
      emit(g, o->id, kind, why, "%s,\"data\":{\"account\":\"%s\",\"amount\":%s}}", hv, o->id, amt);
    else
      emit(g, o->id, kind, why, "%s,\"data\":{\"account\":\"%s\"}}", hv, o->id);
  } else if (!strcmp(kind, "inv-key-mismatch")) {
    acct *o = opened_acct(g), *other = opened_acct(g);
    char other_id[40];
    if (other == o) snprintf(other_id, sizeof other_id, "%s-x", o->id);
    else snprintf(other_id, sizeof other_id, "%s", other->id);
    emit(g, o->id, kind, why, "%s,\"data\":{\"account\":\"%s\",\"amount\":3}}", h, other_id);
  } else if (!strcmp(kind, "inv-no-account")) {
    emit(g, a->id, kind, why, "%s,\"data\":{\"amount\":3}}", h);
  } else if (!strcmp(kind, "inv-account-number")) {
    emit(g, a->id, kind, why, "%s,\"data\":{\"account\":42,\"amount\":3}}", h);
  } else if (!strcmp(kind, "inv-owner-missing")) {
    head(g, hv, sizeof hv, "account.opened");
    emit(g, a->id, kind, why, "%s,\"data\":{\"account\":\"%s\"}}", hv, a->id);
  } else if (!strcmp(kind, "inv-owner-empty")) {
    head(g, hv, sizeof hv, "account.opened");
    emit(g, a->id, kind, why, "%s,\"data\":{\"account\":\"%s\",\"owner\":\"\"}}", hv, a->id);
  } else {
    abort();
  }
}

/* The whale: opened, 1023 deposits of 2^53 (balance 2^63 - 2^53), then deposits that overflow int64 and must be
 * rejected, interleaved with ones that fit exactly. */
#define WHALE_EVENTS 1030
static void whale_event(gen *g, int i, acct *w) {
  if (i == 0) {
    good_open(g, w);
    g->n_opened--; /* n_opened counts the regular accounts only (opened_acct picks among them) */
    return;
  }
  if (i <= 1023) {
    good_move(g, w, 1, ESRT_INT53, "whale-deposit");
    return;
  }
  char h[200];
  static const struct { int deposit; int64_t amount; const char *intent; } tail[] = {
      {1, ESRT_INT53, "rejected"}, {1, ESRT_INT53 - 1, ""}, {1, 1, "rejected"},
      {0, 7, ""},                  {1, 8, "rejected"},      {1, 7, ""},
  };
  int t = i - 1024;
  head(g, h, sizeof h, tail[t].deposit ? "account.deposited" : "account.withdrawn");
  emit(g, w->id, tail[t].intent[0] ? "whale-overflow" : "whale-fill", tail[t].intent,
       "%s,\"data\":{\"account\":\"%s\",\"amount\":%" PRId64 "}}", h, w->id, tail[t].amount);
  if (!tail[t].intent[0]) w->balance += tail[t].deposit ? tail[t].amount : -tail[t].amount;
}

esrt_event *esrt_ledger_generate(const esrt_gen_opts *o, size_t *n_out) {
  gen g = {.o = o, .r = {o->seed ^ 0x5eed5eed5eedULL}};
  g.accts = calloc((size_t)o->accounts, sizeof *g.accts);
  if (!g.accts) return NULL;
  for (int i = 0; i < o->accounts; i++) snprintf(g.accts[i].id, sizeof g.accts[i].id, "acct-%05d", i);
  if (o->pad_bytes) {
    g.pad = xrealloc(NULL, o->pad_bytes + 16);
    int n = snprintf(g.pad, 16, ",\"memo\":\"");
    memset(g.pad + n, 'm', o->pad_bytes);
    strcpy(g.pad + n + o->pad_bytes, "\"");
  }
  acct whale;
  memset(&whale, 0, sizeof whale);
  snprintf(whale.id, sizeof whale.id, "whale-0");
  int n_kinds = 0;
  while (esrt_ledger_bad_kinds[n_kinds].kind) n_kinds++;
  if (o->prefix_kinds)
    for (int k = 0; k < n_kinds; k++) bad_event(&g, &esrt_ledger_bad_kinds[k]);
  int whale_left = o->whale ? WHALE_EVENTS : 0;
  int rest = o->events - (int)g.n - whale_left;
  if (rest < 0) rest = 0;
  int bad_left = (int)(o->bad_share * rest + 0.5);
  int kind = (int)below(&g.r, (uint64_t)n_kinds);
  while ((int)g.n < o->events || whale_left > 0) {
    int left = o->events - (int)g.n;
    if (left <= 0) left = whale_left;
    if (whale_left > 0 && (int)below(&g.r, (uint64_t)left) < whale_left) {
      whale_event(&g, WHALE_EVENTS - whale_left, &whale);
      whale_left--;
    } else if (bad_left > 0 && (int)below(&g.r, (uint64_t)(left - whale_left > 0 ? left - whale_left : 1)) < bad_left) {
      bad_event(&g, &esrt_ledger_bad_kinds[kind]);
      kind = (kind + 1) % n_kinds;
      bad_left--;
    } else {
      good_event(&g);
    }
  }
  free(g.accts);
  free(g.pad);
  *n_out = g.n;
  return g.ev;
}

void esrt_events_free(esrt_event *ev, size_t n) {
  if (!ev) return;
  for (size_t i = 0; i < n; i++) {
    free(ev[i].key);
    free(ev[i].value);
  }
  free(ev);
}

/* ======================================================================== oracle */

typedef struct dead {
  int64_t offset;
  const char *reason;
} dead;

typedef struct opart {
  esrt_oracle_part pub;
  int fed;
  dead *dead;
  size_t n_dead, cap_dead;
} opart;

typedef struct oacct {
  int32_t partition;
  char *id;
  char *owner;
  int64_t balance;
  uint64_t hash;
} oacct;

struct esrt_oracle {
  int partitions;
  opart *parts;
  oacct *accts; /* open addressing; id NULL = empty */
  size_t cap, n;
  esrt_oracle_account *sorted;
  EVP_MD_CTX *md;
};

static uint64_t acct_hash(int32_t partition, const char *id) {
  uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uint32_t)partition;
  for (; *id; id++) h = (h ^ (unsigned char)*id) * 1099511628211ULL;
  return h;
}

static oacct *acct_find(const esrt_oracle *o, int32_t partition, const char *id, uint64_t h) {
  if (!o->cap) return NULL;
  for (size_t i = h & (o->cap - 1);; i = (i + 1) & (o->cap - 1)) {
    oacct *a = &o->accts[i];
    if (!a->id) return NULL;
    if (a->hash == h && a->partition == partition && strcmp(a->id, id) == 0) return a;
  }
}

static oacct *acct_insert(esrt_oracle *o, int32_t partition, const char *id, uint64_t h) {
  if ((o->n + 1) * 2 > o->cap) {
    size_t cap = o->cap ? o->cap * 2 : 1024;
    oacct *t = calloc(cap, sizeof *t);
    if (!t) abort();
    for (size_t i = 0; i < o->cap; i++) {
      if (!o->accts[i].id) continue;
      size_t j = o->accts[i].hash & (cap - 1);
      while (t[j].id) j = (j + 1) & (cap - 1);
      t[j] = o->accts[i];
    }
    free(o->accts);
    o->accts = t;
    o->cap = cap;
  }
  size_t i = h & (o->cap - 1);
  while (o->accts[i].id) i = (i + 1) & (o->cap - 1);
  oacct *a = &o->accts[i];
  a->partition = partition;
  a->id = xstrdup(id);
  a->hash = h;
  o->n++;
  return a;
}

esrt_oracle *esrt_oracle_new(int partitions) {
  esrt_oracle *o = calloc(1, sizeof *o);
  if (!o) return NULL;
  o->partitions = partitions;
  o->parts = calloc((size_t)partitions, sizeof *o->parts);
  o->md = EVP_MD_CTX_new();
  if (!o->parts || !o->md) {
    esrt_oracle_free(o);
    return NULL;
  }
  return o;
}

void esrt_oracle_free(esrt_oracle *o) {
  if (!o) return;
  for (int p = 0; o->parts && p < o->partitions; p++) free(o->parts[p].dead);
  free(o->parts);
  for (size_t i = 0; i < o->cap; i++) {
    free(o->accts[i].id);
    free(o->accts[i].owner);
  }
  free(o->accts);
  free(o->sorted);
  EVP_MD_CTX_free(o->md);
  free(o);
}

static void be(uint8_t *out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; i--, v >>= 8) out[i] = (uint8_t)v;
}

/* d' = SHA-256(d || be64(offset) || be32(key length or 0xffffffff) || key || be32(value length) || value) */
static void chain(esrt_oracle *o, uint8_t d[32], int64_t offset, const void *key, size_t key_len, const void *value,
                  size_t value_len) {
  uint8_t off[8], kl[4], vl[4];
  be(off, (uint64_t)offset, 8);
  be(kl, key ? (uint32_t)key_len : 0xffffffffu, 4);
  be(vl, (uint32_t)value_len, 4);
  unsigned int n = 32;
  EVP_DigestInit_ex(o->md, EVP_sha256(), NULL);
  EVP_DigestUpdate(o->md, d, 32);
  EVP_DigestUpdate(o->md, off, 8);
  EVP_DigestUpdate(o->md, kl, 4);
  if (key && key_len) EVP_DigestUpdate(o->md, key, key_len);
  EVP_DigestUpdate(o->md, vl, 4);
  if (value && value_len) EVP_DigestUpdate(o->md, value, value_len);
  EVP_DigestFinal_ex(o->md, d, &n);
}

static const esrt_jval *str_member(const esrt_jval *obj, const char *name) {
  const esrt_jval *v = esrt_json_get(obj, name);
  return v && v->type == ESRT_J_STRING ? v : NULL;
}

/* The ledger's rules, from the specification, in the order it checks them. NULL: applied. */
static const char *judge(esrt_oracle *o, int32_t partition, const char *key, size_t key_len, const char *value,
                         size_t value_len) {
  if (!value || value_len == 0) return "bad-json";
  esrt_jval *root = esrt_json_parse(value, value_len);
  if (!root) return "bad-json";
  const char *reason = NULL;
  const esrt_jval *type, *version, *id, *time, *data;
  int64_t ver = 1;
  if (root->type != ESRT_J_OBJECT) goto bad_envelope;
  type = esrt_json_get(root, "type");
  if (!type || type->type != ESRT_J_STRING || type->len == 0 || type->len > 255 || strlen(type->text) != type->len)
    goto bad_envelope;
  version = esrt_json_get(root, "version");
  if (version && !esrt_json_int_in(version, 1, 2147483647, &ver)) goto bad_envelope;
  id = esrt_json_get(root, "id");
  if (id && id->type != ESRT_J_STRING) goto bad_envelope;
  time = esrt_json_get(root, "time");
  if (time && time->type != ESRT_J_STRING) goto bad_envelope;
  data = esrt_json_get(root, "data");
  if (!data || data->type != ESRT_J_OBJECT) goto bad_envelope;

  int kind = !strcmp(type->text, "account.opened")      ? 1
             : !strcmp(type->text, "account.deposited") ? 2
             : !strcmp(type->text, "account.withdrawn") ? 3
                                                        : 0;
  if (!kind) {
    reason = "unknown-type";
    goto out;
  }
  if (ver > (kind == 2 ? 2 : 1)) { /* the ledger takes account.deposited versions 1..2, the others version 1 */
    reason = "unknown-version";
    goto out;
  }
  const esrt_jval *account = str_member(data, "account");
  if (!account || account->len == 0 || account->len > 200 || strlen(account->text) != account->len) {
    reason = "invalid";
    goto out;
  }
  if (!key || key_len != account->len || memcmp(key, account->text, key_len) != 0) { /* keyless too */
    reason = "invalid";
    goto out;
  }
  uint64_t h = acct_hash(partition, account->text);
  oacct *a = acct_find(o, partition, account->text, h);
  if (kind == 1) {
    const esrt_jval *owner = str_member(data, "owner");
    if (!owner || owner->len == 0 || strlen(owner->text) != owner->len) {
      reason = "invalid";
    } else if (a) {
      reason = "rejected"; /* already open */
    } else {
      a = acct_insert(o, partition, account->text, h);
      a->owner = xstrdup(owner->text);
      a->balance = 0;
    }
    goto out;
  }
  int64_t amount;
  /* deposits: version 1 means euros (the upcast supplies "EUR" when there is no currency); accounts are all in EUR */
  const esrt_jval *cur = kind == 2 ? esrt_json_get(data, "currency") : NULL;
  int cur_ok = 1, cur_eur = 1;
  if (kind == 2 && (cur || ver == 2)) {
    cur_ok = cur && cur->type == ESRT_J_STRING && cur->len == 3 && strlen(cur->text) == 3 && cur->text[0] >= 'A' &&
             cur->text[0] <= 'Z' && cur->text[1] >= 'A' && cur->text[1] <= 'Z' && cur->text[2] >= 'A' &&
             cur->text[2] <= 'Z';
    cur_eur = cur_ok && strcmp(cur->text, "EUR") == 0;
  }
  if (!esrt_json_int_in(esrt_json_get(data, "amount"), 1, ESRT_INT53, &amount)) {
    reason = "invalid";
  } else if (!cur_ok) {
    reason = "invalid"; /* currency not 3 capital letters */
  } else if (!a) {
    reason = "rejected"; /* never opened */
  } else if (!cur_eur) {
    reason = "rejected"; /* another currency than the account's */
  } else if (kind == 2) {
    int64_t sum;
    if (__builtin_add_overflow(a->balance, amount, &sum))
      reason = "rejected"; /* would overflow */
    else
      a->balance = sum;
  } else {
    if (a->balance < amount)
      reason = "rejected"; /* insufficient funds */
    else
      a->balance -= amount;
  }
  goto out;
bad_envelope:
  reason = "bad-envelope";
out:
  esrt_json_free(root);
  return reason;
}

static const char *feed(esrt_oracle *o, int32_t partition, int64_t offset, const void *key, size_t key_len,
                        const void *value, size_t value_len, const char *forced);

const char *esrt_oracle_feed(esrt_oracle *o, int32_t partition, int64_t offset, const void *key, size_t key_len,
                             const void *value, size_t value_len) {
  return feed(o, partition, offset, key, key_len, value, value_len, NULL);
}

const char *esrt_oracle_feed_dead(esrt_oracle *o, int32_t partition, int64_t offset, const void *key, size_t key_len,
                                  const void *value, size_t value_len, const char *reason) {
  return feed(o, partition, offset, key, key_len, value, value_len, reason);
}

static const char *feed(esrt_oracle *o, int32_t partition, int64_t offset, const void *key, size_t key_len,
                        const void *value, size_t value_len, const char *forced) {
  if (partition < 0 || partition >= o->partitions) return "order";
  opart *p = &o->parts[partition];
  if (p->fed ? offset < p->pub.next_offset : offset != 0) return "order";
  if (!p->fed) p->pub.first_offset = offset;
  p->fed = 1;
  free(o->sorted);
  o->sorted = NULL;
  const char *reason = forced ? forced : judge(o, partition, key, key_len, value, value_len);
  chain(o, p->pub.digest, offset, key, key_len, value, value_len);
  p->pub.next_offset = offset + 1;
  if (!reason) {
    p->pub.applied++;
    return NULL;
  }
  p->pub.dead++;
  if (p->n_dead == p->cap_dead) {
    p->cap_dead = p->cap_dead ? p->cap_dead * 2 : 256;
    p->dead = xrealloc(p->dead, p->cap_dead * sizeof *p->dead);
  }
  p->dead[p->n_dead++] = (dead){offset, reason};
  return reason;
}

const char *esrt_oracle_reason(const esrt_oracle *o, int32_t partition, int64_t offset) {
  if (partition < 0 || partition >= o->partitions) return NULL;
  const opart *p = &o->parts[partition];
  size_t lo = 0, hi = p->n_dead;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (p->dead[mid].offset < offset) lo = mid + 1;
    else hi = mid;
  }
  return lo < p->n_dead && p->dead[lo].offset == offset ? p->dead[lo].reason : NULL;
}

const esrt_oracle_part *esrt_oracle_part_of(const esrt_oracle *o, int32_t partition) {
  return partition >= 0 && partition < o->partitions ? &o->parts[partition].pub : NULL;
}

int esrt_oracle_partitions(const esrt_oracle *o) { return o->partitions; }

size_t esrt_oracle_dead_count(const esrt_oracle *o) {
  size_t n = 0;
  for (int p = 0; p < o->partitions; p++) n += o->parts[p].n_dead;
  return n;
}

void esrt_oracle_dead_at(const esrt_oracle *o, size_t i, int32_t *partition, int64_t *offset, const char **reason) {
  for (int p = 0; p < o->partitions; p++) {
    if (i < o->parts[p].n_dead) {
      *partition = p;
      *offset = o->parts[p].dead[i].offset;
      *reason = o->parts[p].dead[i].reason;
      return;
    }
    i -= o->parts[p].n_dead;
  }
  *partition = -1;
  *offset = -1;
  *reason = NULL;
}

static int cmp_account(const void *a, const void *b) {
  const esrt_oracle_account *x = a, *y = b;
  if (x->partition != y->partition) return x->partition < y->partition ? -1 : 1;
  return strcmp(x->id, y->id);
}

const esrt_oracle_account *esrt_oracle_accounts(esrt_oracle *o, size_t *n) {
  if (!o->sorted) {
    o->sorted = calloc(o->n ? o->n : 1, sizeof *o->sorted);
    if (!o->sorted) abort();
    size_t k = 0;
    for (size_t i = 0; i < o->cap; i++)
      if (o->accts[i].id)
        o->sorted[k++] = (esrt_oracle_account){o->accts[i].partition, o->accts[i].id, o->accts[i].owner,
                                               o->accts[i].balance};
    qsort(o->sorted, k, sizeof *o->sorted, cmp_account);
  }
  *n = o->n;
  return o->sorted;
}

const esrt_oracle_account *esrt_oracle_account_get(const esrt_oracle *o, int32_t partition, const char *id) {
  static __thread esrt_oracle_account out;
  const oacct *a = acct_find(o, partition, id, acct_hash(partition, id));
  if (!a) return NULL;
  out = (esrt_oracle_account){a->partition, a->id, a->owner, a->balance};
  return &out;
}
