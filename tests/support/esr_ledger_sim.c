/* esr_ledger_sim.c — `esr-ledger-sim`, the demo's ledger tool, built on the test support library:
 *   produce  a seeded ledger stream (good events and bad ones of every kind) into a topic, optionally paced;
 *   status   where each partition database of a state directory stands;
 *   wait     until a worker has applied N events, or has caught up with the log (outbox empty);
 *   verify   reads the topic back from Kafka, folds it through the independent oracle and compares the state directory
 *            (every account, positions, log digests) and the dead-letter topic with it; exit 1 on any difference.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esrt_kafka.h"
#include "esrt_ledger.h"
#include "esrt_proc.h"
#include "esrt_state.h"

typedef struct opts {
  const char *bootstrap, *topic, *dlq, *state_dir;
  int events, accounts, whale, show, timeout_s;
  double bad_pct, rate;
  uint64_t seed;
  int64_t applied;
} opts;

static void usage(FILE *out) {
  fprintf(out,
          "usage: esr-ledger-sim COMMAND [options]\n"
          "  produce --bootstrap B [--topic ledger] [--events 40000] [--accounts 2000] [--bad-pct 5] [--seed 1]\n"
          "          [--rate EVENTS_PER_S] [--whale]\n"
          "  status  --bootstrap B --state-dir D [--topic ledger]\n"
          "  wait    --bootstrap B --state-dir D [--topic ledger] [--applied N] [--timeout 60]\n"
          "          (without --applied: until every partition's next_offset is its high watermark and the outbox\n"
          "          is empty)\n"
          "  verify  --bootstrap B --state-dir D [--topic ledger] [--dlq ledger.dlq] [--show 8]\n");
}

static int partitions_of(const opts *o, rd_kafka_t **rk_out) {
  rd_kafka_t *rk = esrt_kafka_client_new(o->bootstrap);
  if (!rk) return -1;
  int p = esrt_partition_count(rk, o->topic);
  if (p <= 0) {
    fprintf(stderr, "esr-ledger-sim: topic %s: no partitions\n", o->topic);
    rd_kafka_destroy(rk);
    return -1;
  }
  if (rk_out)
    *rk_out = rk;
  else
    rd_kafka_destroy(rk);
  return p;
}

static int cmd_produce(const opts *o) {
  int parts = partitions_of(o, NULL);
  if (parts <= 0) return 1;
  esrt_gen_opts g = {.seed = o->seed,
                     .events = o->events,
                     .accounts = o->accounts,
                     .partitions = parts,
                     .bad_share = o->bad_pct / 100.0,
                     .whale = o->whale};
  size_t n;
  esrt_event *ev = esrt_ledger_generate(&g, &n);
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) bad += ev[i].intent[0] != 0;
  esrt_producer *p = esrt_producer_new(o->bootstrap);
  if (!p) return 1;
  printf("producing %zu ledger events (%zu of them bad, of every kind) over %d accounts to %s (%d partitions)%s\n", n,
         bad, o->accounts, o->topic, parts, o->rate > 0 ? "" : ", as fast as possible");
  fflush(stdout);
  int64_t t0 = esrt_now_ms(), last_print = t0;
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (o->rate > 0) {
      for (;;) { /* pace: event i is due at t0 + i / rate */
        int64_t due = t0 + (int64_t)((double)i * 1000.0 / o->rate);
        int64_t now = esrt_now_ms();
        if (now >= due) break;
        esrt_producer_poll(p, (int)(due - now));
      }
    }
    rc = esrt_produce(p, o->topic, ev[i].partition, ev[i].key, ev[i].key_len, ev[i].value, ev[i].value_len, NULL);
    int64_t now = esrt_now_ms();
    if (now - last_print >= 1000) {
      printf("  produced %zu/%zu\n", i + 1, n);
      fflush(stdout);
      last_print = now;
    }
  }
  if (rc == 0) rc = esrt_producer_flush(p, 60000);
  printf("produced %zu events in %.1f s%s\n", n, (double)(esrt_now_ms() - t0) / 1000.0, rc ? " (with errors)" : "");
  esrt_producer_free(p);
  esrt_events_free(ev, n);
  return rc ? 1 : 0;
}

static int cmd_status(const opts *o) {
  int parts = partitions_of(o, NULL);
  if (parts <= 0) return 1;
  int64_t applied = 0, dead = 0;
  for (int p = 0; p < parts; p++) {
    esrt_part_state ps;
    if (esrt_read_position(o->state_dir, o->topic, p, &ps) != 0) return 1;
    printf("  %s[%d]: next_offset %" PRId64 " (%" PRId64 " applied, %" PRId64 " dead-lettered, %" PRId64
           " outbox rows)\n",
           o->topic, p, ps.next_offset, ps.applied, ps.dead, ps.outbox);
    applied += ps.applied;
    dead += ps.dead;
  }
  printf("  total: %" PRId64 " applied, %" PRId64 " dead-lettered\n", applied, dead);
  return 0;
}

static int cmd_wait(const opts *o) {
  rd_kafka_t *rk;
  int parts = partitions_of(o, &rk);
  if (parts <= 0) return 1;
  int rc = 0;
  if (o->applied > 0) {
    int64_t deadline = esrt_now_ms() + (int64_t)o->timeout_s * 1000, total = 0;
    for (;;) {
      total = 0;
      for (int p = 0; p < parts; p++) {
        esrt_part_state ps;
        if (esrt_read_position(o->state_dir, o->topic, p, &ps) == 0) total += ps.next_offset;
      }
      if (total >= o->applied) break;
      if (esrt_now_ms() >= deadline) {
        fprintf(stderr, "esr-ledger-sim: only %" PRId64 " of %" PRId64 " events consumed after %d s\n", total,
                o->applied, o->timeout_s);
        rc = 1;
        break;
      }
      esrt_sleep_ms(20);
    }
    if (!rc) printf("worker has consumed %" PRId64 " events\n", total);
  } else {
    const char *dirs[] = {o->state_dir};
    int64_t t0 = esrt_now_ms();
    rc = esrt_wait_caught_up(rk, o->topic, parts, dirs, 1, o->timeout_s * 1000) ? 1 : 0;
    if (!rc) printf("caught up with the log in %.1f s (every partition at its high watermark, outbox empty)\n",
                    (double)(esrt_now_ms() - t0) / 1000.0);
  }
  rd_kafka_destroy(rk);
  return rc;
}

static int cmd_verify(const opts *o) {
  rd_kafka_t *rk;
  int parts = partitions_of(o, &rk);
  if (parts <= 0) return 1;
  rd_kafka_destroy(rk);
  int rc = 1;
  esrt_records src = {0}, dlq = {0};
  esrt_state st = {0};
  esrt_oracle *orc = esrt_oracle_new(parts);
  if (esrt_consume_all(o->bootstrap, o->topic, &src, 60000) != 0) goto out;
  if (esrt_oracle_feed_records(orc, &src) != 0) goto out;
  if (esrt_consume_all(o->bootstrap, o->dlq, &dlq, 60000) != 0) goto out;
  if (esrt_state_read(&st, o->state_dir, o->topic, parts, 1) != 0) goto out;
  printf("oracle: folded %zu events of %s read back from Kafka (independent of esr: own JSON parser, a hash map)\n",
         src.n, o->topic);

  size_t n_exp;
  const esrt_oracle_account *exp = esrt_oracle_accounts(orc, &n_exp);
  size_t match = 0;
  for (size_t i = 0; i < n_exp; i++) {
    const esrt_oracle_account *e = &exp[i];
    for (size_t j = 0; j < st.n_accounts; j++) { /* linear: fine for a demo's few thousand accounts */
      const esrt_db_account *a = &st.accounts[j];
      if (a->partition == e->partition && strcmp(a->id, e->id) == 0) {
        match += a->balance == e->balance && strcmp(a->owner, e->owner) == 0;
        break;
      }
    }
  }
  if (o->show > 0 && n_exp > 0) {
    printf("\n  %-10s %4s  %-18s %20s %20s\n", "account", "part", "owner", "expected balance", "actual balance");
    int shown = 0;
    for (size_t i = 0; i < n_exp && shown < o->show; i += (n_exp / (size_t)o->show) + 1, shown++) {
      const esrt_oracle_account *e = &exp[i];
      const esrt_db_account *a = NULL;
      for (size_t j = 0; j < st.n_accounts; j++)
        if (st.accounts[j].partition == e->partition && strcmp(st.accounts[j].id, e->id) == 0) a = &st.accounts[j];
      char actual[32] = "(missing)";
      if (a) snprintf(actual, sizeof actual, "%" PRId64, a->balance);
      printf("  %-10s %4d  %-18.18s %20" PRId64 " %20s  %s\n", e->id, (int)e->partition, e->owner, e->balance, actual,
             a && a->balance == e->balance ? "ok" : "DIFFERENT");
    }
    for (size_t i = 0; i < n_exp; i++) {
      if (strncmp(exp[i].id, "whale", 5) != 0) continue;
      for (size_t j = 0; j < st.n_accounts; j++)
        if (st.accounts[j].partition == exp[i].partition && strcmp(st.accounts[j].id, exp[i].id) == 0)
          printf("  %-10s %4d  %-18.18s %20" PRId64 " %20" PRId64 "  %s  (int64 max: overflowing deposits rejected)\n",
                 exp[i].id, (int)exp[i].partition, exp[i].owner, exp[i].balance, st.accounts[j].balance,
                 st.accounts[j].balance == exp[i].balance ? "ok" : "DIFFERENT");
    }
    printf("\n");
  }
  size_t state_diffs = esrt_compare_state(orc, &st, stdout, 10);
  esrt_dlq_summary sum = {0};
  size_t dlq_diffs = esrt_compare_dlq(orc, o->topic, &src, &dlq, &sum, stdout, 10);
  static const char *const reasons[] = {"bad-json", "bad-envelope", "unknown-type", "unknown-version",
                                        "rejected", "invalid",      NULL};
  printf("dead letters expected by reason:");
  for (int r = 0; reasons[r]; r++) {
    size_t c = 0;
    for (size_t i = 0; i < esrt_oracle_dead_count(orc); i++) {
      int32_t p;
      int64_t off;
      const char *why;
      esrt_oracle_dead_at(orc, i, &p, &off, &why);
      c += strcmp(why, reasons[r]) == 0;
    }
    printf(" %s %zu%s", reasons[r], c, reasons[r + 1] ? "," : "\n");
  }
  if (sum.duplicates)
    printf("dead-letter topic %s: %zu messages, %zu distinct sources (%zu duplicates: re-sent after a crash with the "
           "same esr-source, which consumers use to drop them)\n",
           o->dlq, sum.messages, sum.distinct, sum.duplicates);
  else
    printf("dead-letter topic %s: %zu messages, %zu distinct sources, no duplicates\n", o->dlq, sum.messages,
           sum.distinct);
  printf("partitions: next_offset, applied/dead counts and log digest (SHA-256 chain over every event) %s for all %d\n",
         state_diffs ? "checked" : "match the oracle", parts);
  if (state_diffs == 0 && dlq_diffs == 0) {
    printf("state exact: %zu/%zu accounts match the oracle, %zu dead letters match\n", match, n_exp,
           esrt_oracle_dead_count(orc));
    rc = 0;
  } else {
    printf("STATE DIFFERS: %zu/%zu accounts match the oracle; %zu state differences, %zu dead-letter differences\n",
           match, n_exp, state_diffs, dlq_diffs);
  }
out:
  esrt_oracle_free(orc);
  esrt_records_free(&src);
  esrt_records_free(&dlq);
  esrt_state_free(&st);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  opts o = {.topic = "ledger", .dlq = "ledger.dlq", .events = 40000, .accounts = 2000, .bad_pct = 5, .seed = 1,
            .show = 8, .timeout_s = 60};
  static const struct option lo[] = {
      {"bootstrap", required_argument, NULL, 'b'}, {"topic", required_argument, NULL, 't'},
      {"dlq", required_argument, NULL, 'q'},       {"state-dir", required_argument, NULL, 'd'},
      {"events", required_argument, NULL, 'n'},    {"accounts", required_argument, NULL, 'a'},
      {"bad-pct", required_argument, NULL, 'p'},   {"seed", required_argument, NULL, 's'},
      {"rate", required_argument, NULL, 'r'},      {"whale", no_argument, NULL, 'w'},
      {"show", required_argument, NULL, 'S'},      {"timeout", required_argument, NULL, 'T'},
      {"applied", required_argument, NULL, 'A'},   {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  int c;
  optind = 2;
  while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
    switch (c) {
    case 'b': o.bootstrap = optarg; break;
    case 't': o.topic = optarg; break;
    case 'q': o.dlq = optarg; break;
    case 'd': o.state_dir = optarg; break;
    case 'n': o.events = atoi(optarg); break;
    case 'a': o.accounts = atoi(optarg); break;
    case 'p': o.bad_pct = atof(optarg); break;
    case 's': o.seed = strtoull(optarg, NULL, 10); break;
    case 'r': o.rate = atof(optarg); break;
    case 'w': o.whale = 1; break;
    case 'S': o.show = atoi(optarg); break;
    case 'T': o.timeout_s = atoi(optarg); break;
    case 'A': o.applied = strtoll(optarg, NULL, 10); break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (!o.bootstrap || o.events < 1 || o.accounts < 1) {
    usage(stderr);
    return 2;
  }
  if (strcmp(cmd, "produce") == 0) return cmd_produce(&o);
  if (!o.state_dir) {
    fprintf(stderr, "esr-ledger-sim %s: --state-dir is required\n", cmd);
    return 2;
  }
  if (strcmp(cmd, "status") == 0) return cmd_status(&o);
  if (strcmp(cmd, "wait") == 0) return cmd_wait(&o);
  if (strcmp(cmd, "verify") == 0) return cmd_verify(&o);
  usage(stderr);
  return 2;
}
