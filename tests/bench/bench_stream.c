/* bench_stream.c — the benchmark's ledger stream: every account opened first (so that a stream of 2 M events over 1 M
 * accounts leaves a 1 M-account state), then deposits and withdrawals that keep balances valid, with a share of bad
 * events spread over five kinds (bad JSON, unknown type, overdraft and deposit to an unopened account (rejected), zero
 * amount (invalid)). Envelopes look like production ones: type, version, id, time, data with account, amount or owner,
 * currency and channel: about 170-180 bytes. Keys are the account ids; partitions follow esrt_ledger_partition. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "esrt_ledger.h"

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

static const char *const OWNERS[] = {"Ada Lovelace",  "Grace Hopper", "Barbara Liskov", "Frances Allen",
                                     "Radia Perlman", "Edsger Dijkstra", "Ken Thompson", "Niklaus Wirth",
                                     "Dennis Ritchie", "Margaret Hamilton", "Donald Knuth", "Leslie Lamport"};
static const char *const CHANNELS[] = {"mobile", "web", "branch", "atm", "transfer"};

static void *xrealloc(void *p, size_t n) {
  void *g = realloc(p, n);
  if (!g && n) bench_fail("out of memory (%zu bytes)", n);
  return g;
}

static void account_id(char *buf, size_t cap, int i) { snprintf(buf, cap, "acct-%07d", i); }

static void when(uint64_t seq, char *buf, size_t cap) {
  uint64_t ms = seq * 7; /* 2 M events span about 3.9 hours */
  snprintf(buf, cap, "2026-11-25T%02d:%02d:%02d.%03dZ", (int)(ms / 3600000 % 24), (int)(ms / 60000 % 60),
           (int)(ms / 1000 % 60), (int)(ms % 1000));
}

static void push(bench_stream *s, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void push(bench_stream *s, const char *key, const char *fmt, ...) {
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 1 << 16;
    s->v = xrealloc(s->v, s->cap * sizeof *s->v);
  }
  size_t klen = strlen(key);
  if (s->arena_cap - s->arena_len < klen + 1 + 1024) {
    s->arena_cap = s->arena_cap ? s->arena_cap * 2 : 1 << 24;
    s->arena = xrealloc(s->arena, s->arena_cap);
  }
  bench_msg *m = &s->v[s->n++];
  m->koff = s->arena_len;
  m->klen = (uint16_t)klen;
  memcpy(s->arena + s->arena_len, key, klen + 1);
  s->arena_len += klen + 1;
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(s->arena + s->arena_len, 1024, fmt, ap);
  va_end(ap);
  if (len < 0 || len >= 1024) bench_fail("generator: an event does not fit 1024 bytes");
  m->voff = s->arena_len;
  m->vlen = (uint32_t)len;
  s->arena_len += (size_t)len + 1;
  m->partition = esrt_ledger_partition(key, klen, s->partitions);
  s->per_part[m->partition]++;
  s->value_bytes += (uint64_t)len;
  s->seq++;
}

/* The envelope's head up to and including `"data":{`. */
static void head(bench_stream *s, const char *type, char *buf, size_t cap) {
  char t[40];
  when(s->seq, t, sizeof t);
  snprintf(buf, cap, "{\"type\":\"%s\",\"version\":1,\"id\":\"evt-%010" PRIu64 "\",\"time\":\"%s\",\"data\":{", type,
           s->seq, t);
}

static void movement(bench_stream *s, rng *r, const char *id, int deposit, int64_t amount) {
  char h[160];
  head(s, deposit ? "account.deposited" : "account.withdrawn", h, sizeof h);
  push(s, id, "%s\"account\":\"%s\",\"amount\":%" PRId64 ",\"currency\":\"EUR\",\"channel\":\"%s\"}}", h, id, amount,
       CHANNELS[below(r, 5)]);
}

static void bad(bench_stream *s, rng *r, int kind, int a) {
  char id[32], h[160];
  account_id(id, sizeof id, a);
  switch (kind) {
  case 0: { /* bad JSON: a truncated envelope */
    head(s, "account.deposited", h, sizeof h);
    push(s, id, "%s\"account\":\"%s\",\"amount\":%d,\"curr", h, id, 1 + (int)below(r, 1000));
    break;
  }
  case 1: /* unknown type */
    head(s, "account.closed", h, sizeof h);
    push(s, id, "%s\"account\":\"%s\",\"reason\":\"customer request\",\"channel\":\"branch\"}}", h, id);
    break;
  case 2: /* rejected: overdraft */
    movement(s, r, id, 0, s->balance[a] + 1 + (int64_t)below(r, 1000));
    break;
  case 3: /* invalid: zero amount */
    movement(s, r, id, 1, 0);
    break;
  default: { /* rejected: deposit to an account never opened */
    char ghost[32];
    snprintf(ghost, sizeof ghost, "ghost-%05d", (int)below(r, 10000));
    movement(s, r, ghost, 1, 1 + (int64_t)below(r, 1000));
    break;
  }
  }
  s->bad++;
}

void bench_stream_generate(bench_stream *s, uint64_t seed, size_t events, int accounts, int partitions,
                           double bad_share) {
  memset(s, 0, sizeof *s);
  if (accounts < 1 || (size_t)accounts > events) bench_fail("generator: need 1 <= accounts <= events");
  s->partitions = partitions;
  s->accounts = accounts;
  s->per_part = xrealloc(NULL, (size_t)partitions * sizeof *s->per_part);
  memset(s->per_part, 0, (size_t)partitions * sizeof *s->per_part);
  s->balance = xrealloc(NULL, (size_t)accounts * sizeof *s->balance);
  memset(s->balance, 0, (size_t)accounts * sizeof *s->balance);
  s->cap = events;
  s->v = xrealloc(NULL, s->cap * sizeof *s->v);
  s->arena_cap = events * 210 + (1 << 20);
  s->arena = xrealloc(NULL, s->arena_cap);
  rng r = {seed ^ 0xb5e5eedULL};
  char id[32], h[160];
  for (int a = 0; a < accounts; a++) {
    account_id(id, sizeof id, a);
    head(s, "account.opened", h, sizeof h);
    push(s, id, "%s\"account\":\"%s\",\"owner\":\"%s\",\"currency\":\"EUR\",\"channel\":\"%s\"}}", h, id,
         OWNERS[below(&r, sizeof OWNERS / sizeof *OWNERS)], CHANNELS[below(&r, 5)]);
    s->opens++;
  }
  /* bad_share is of the whole stream; the opens are all good */
  double moves = (double)(events - (size_t)accounts);
  uint64_t bad_per_million = moves > 0 ? (uint64_t)(bad_share * (double)events / moves * 1e6 + 0.5) : 0;
  int kind = 0;
  while (s->n < events) {
    int a = (int)below(&r, (uint64_t)accounts);
    if (below(&r, 1000000) < bad_per_million) {
      bad(s, &r, kind, a);
      kind = (kind + 1) % 5;
      continue;
    }
    account_id(id, sizeof id, a);
    if (s->balance[a] > 0 && below(&r, 100) < 45) {
      int64_t max = s->balance[a] < 50000 ? s->balance[a] : 50000;
      int64_t amount = 1 + (int64_t)below(&r, (uint64_t)max);
      movement(s, &r, id, 0, amount);
      s->balance[a] -= amount;
    } else {
      int64_t amount = 1 + (int64_t)below(&r, 100000);
      movement(s, &r, id, 1, amount);
      s->balance[a] += amount;
    }
    s->moves++;
  }
}

size_t bench_stream_deposit(bench_stream *s, int account, int64_t amount, char *key, char *value, size_t cap,
                            int32_t *partition) {
  char h[160];
  account_id(key, 32, account);
  head(s, "account.deposited", h, sizeof h);
  s->seq++;
  s->balance[account] += amount;
  *partition = esrt_ledger_partition(key, strlen(key), s->partitions);
  int n = snprintf(value, cap, "%s\"account\":\"%s\",\"amount\":%" PRId64 ",\"currency\":\"EUR\",\"channel\":\"web\"}}",
                   h, key, amount);
  return (size_t)n;
}

void bench_stream_free(bench_stream *s) {
  free(s->arena);
  free(s->v);
  free(s->per_part);
  free(s->balance);
  memset(s, 0, sizeof *s);
}
