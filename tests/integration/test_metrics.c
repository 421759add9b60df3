/* test_metrics.c — the worker's HTTP endpoint against a real Prometheus (label `integration`).
 *   scraped_by_prometheus — a worker (group mode, the `good` test handler) applies a stream whose partition 0 holds
 *       applied events, rejected ones and a bad-JSON one, and whose partition 1 holds a fatal verdict part-way. Its
 *       /metrics is clean under `promtool check metrics` and says exactly what was produced; /readyz answers 503
 *       naming the stopped partition, /healthz 200; the Kafka group offsets are committed (asynchronously) at the
 *       stored positions. Then Debian's `prometheus` scrapes it with deploy/prometheus/alerts.yaml loaded: its HTTP
 *       API gives the applied and dead-letter totals and each partition's lag equal to what the test produced, the
 *       rules load without error, and every query of deploy/grafana/esr-dashboard.json evaluates without error.
 *   port_in_use           — http.listen on a port another socket holds: exit code 2, one line naming http.listen.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "esrt_case.h"
#include "esrt_http.h"
#include "esrt_kafka.h"

#define GOOD_SO ESR_BUILD_DIR "/tests/plugins/good.so"
#define P0_EVENTS 41 /* 36 applied, 4 rejected (every tenth), 1 bad JSON (the last) */
#define P1_EVENTS 25 /* 15 applied, then a fatal verdict at offset 15, then 9 more: lag 10 */
#define P1_FATAL 15

static void free_producer(void *p) { esrt_producer_free(p); }

static int setup(void **state) {
  *state = esrt_case_new("metrics");
  return *state ? 0 : -1;
}

static int teardown(void **state) {
  esrt_case_end(*state);
  return 0;
}

static char *get(const char *url, long *status) {
  char *body = NULL;
  if (esrt_http_get(url, 5000, status, &body) != 0) return NULL;
  return body;
}

/* The worker's /metrics once both partitions reached their expected positions. */
static char *wait_positions(int port, esrt_proc *w) {
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", port);
  int64_t deadline = esrt_now_ms() + 60000;
  for (;;) {
    assert_true(esrt_alive(w));
    long status = 0;
    char *text = get(url, &status);
    double p0 = -1, p1 = -1;
    if (text && status == 200 &&
        esrt_prom_value(text, "esr_partition_next_offset{topic=\"t\",partition=\"0\"}", &p0) == 0 &&
        esrt_prom_value(text, "esr_partition_next_offset{topic=\"t\",partition=\"1\"}", &p1) == 0 &&
        p0 == P0_EVENTS && p1 == P1_FATAL) {
      double st = 0;
      if (esrt_prom_value(text, "esr_partition_state{topic=\"t\",partition=\"1\",state=\"stopped\"}", &st) == 0 &&
          st == 1)
        return text;
    }
    free(text);
    if (esrt_now_ms() >= deadline) fail_msg("the worker did not reach offsets %d and %d", P0_EVENTS, P1_FATAL);
    esrt_sleep_ms(100);
  }
}

/* One instant query against Prometheus: the JSON answer (status checked), or NULL when it failed. */
static cJSON *prom_query(int port, const char *query) {
  CURL *c = curl_easy_init();
  char *q = curl_easy_escape(c, query, 0);
  char url[8192];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/api/v1/query?query=%s", port, q);
  curl_free(q);
  curl_easy_cleanup(c);
  long status = 0;
  char *body = get(url, &status);
  cJSON *j = body ? cJSON_Parse(body) : NULL;
  if (!j || status != 200 || !cJSON_IsString(cJSON_GetObjectItem(j, "status")) ||
      strcmp(cJSON_GetObjectItem(j, "status")->valuestring, "success") != 0) {
    fprintf(stderr, "query %s: HTTP %ld: %s\n", query, status, body ? body : "(no answer)");
    cJSON_Delete(j);
    j = NULL;
  }
  free(body);
  return j;
}

/* The value of a query that gives one sample, or -1 when it gives none. */
static double prom_scalar(int port, const char *query) {
  cJSON *j = prom_query(port, query);
  assert_non_null(j);
  cJSON *res = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "data"), "result");
  double v = -1;
  if (cJSON_GetArraySize(res) == 1) {
    cJSON *val = cJSON_GetObjectItem(cJSON_GetArrayItem(res, 0), "value");
    v = strtod(cJSON_GetArrayItem(val, 1)->valuestring, NULL);
  }
  cJSON_Delete(j);
  return v;
}

/* Replaces every occurrence of `from` in s (malloc'd) with `to`; frees s. */
static char *replace(char *s, const char *from, const char *to) {
  char *at;
  while ((at = strstr(s, from))) {
    size_t head = (size_t)(at - s), fl = strlen(from), tl = strlen(to), rest = strlen(at + fl);
    char *n = malloc(head + tl + rest + 1);
    memcpy(n, s, head);
    memcpy(n + head, to, tl);
    memcpy(n + head + tl, at + fl, rest + 1);
    free(s);
    s = n;
  }
  return s;
}

static void scraped_by_prometheus(void **state) {
  esrt_case *c = *state;
  esrt_mock mock;
  const char *topics[] = {"t:2", "t.dlq:1", NULL};
  assert_int_equal(0, esrt_mock_start(&mock, ESR_BIN, c->dir, 1, topics, 20000));
  esrt_producer *prod = esrt_case_defer(c, free_producer, esrt_producer_new(mock.bootstrap));
  assert_non_null(prod);
  for (int i = 0; i < P0_EVENTS; i++) {
    char key[16], value[128];
    snprintf(key, sizeof key, "k%d", i);
    if (i == P0_EVENTS - 1)
      snprintf(value, sizeof value, "{\"type\":\"test.a\",\"data\":{\"k\":");
    else
      snprintf(value, sizeof value, "{\"type\":\"test.a\",\"data\":{\"k\":\"%s\",\"v\":\"x\"%s}}", key,
               i % 10 == 9 ? ",\"result\":\"reject\"" : "");
    assert_int_equal(0, esrt_produce(prod, "t", 0, key, strlen(key), value, strlen(value), NULL));
  }
  for (int i = 0; i < P1_EVENTS; i++) {
    char key[16], value[128];
    snprintf(key, sizeof key, "j%d", i);
    snprintf(value, sizeof value, "{\"type\":\"test.a\",\"data\":{\"k\":\"%s\",\"v\":\"y\"%s}}", key,
             i == P1_FATAL ? ",\"result\":\"fatal\"" : "");
    assert_int_equal(0, esrt_produce(prod, "t", 1, key, strlen(key), value, strlen(value), NULL));
  }
  assert_int_equal(0, esrt_producer_flush(prod, 30000));

  char sdir[1100], conf[1024];
  snprintf(sdir, sizeof sdir, "%s/state", c->dir);
  assert_int_equal(0, esrt_write_worker_config(conf, sizeof conf, c->dir, "w", mock.bootstrap, "t", "t.dlq", sdir,
                                               GOOD_SO,
                                               "assignment = group\nkafka.group.id = gm\n"
                                               "kafka.session.timeout.ms = 6000\nhttp.listen = 127.0.0.1:0\n"
                                               "kafka.auto.commit.interval.ms = 500\n"));
  esrt_proc w;
  assert_int_equal(0, esrt_start_worker(&w, ESR_BIN, c->dir, "w", conf));
  int port = esrt_http_worker_port(w.err_path, 20000);
  assert_true(port > 0);
  char *text = wait_positions(port, &w);

  /* The text as Prometheus' own checker reads it. */
  char path[1200], cmd[2600];
  snprintf(path, sizeof path, "%s/metrics.txt", c->dir);
  assert_int_equal(0, esrt_write_file(path, "%s", text));
  snprintf(cmd, sizeof cmd, "%s check metrics < %s", PROMTOOL, path);
  assert_int_equal(0, system(cmd));
  /* What the worker says, straight. */
  assert_true(esrt_prom_sum(text, "esr_events_applied_total", NULL) == 36 + P1_FATAL);
  assert_true(esrt_prom_sum(text, "esr_dead_letters_total", "reason=\"rejected\"") == 4);
  assert_true(esrt_prom_sum(text, "esr_dead_letters_total", "reason=\"bad-json\"") == 1);
  assert_true(esrt_prom_sum(text, "esr_dead_letters_total", NULL) == 5);
  double v;
  assert_int_equal(0, esrt_prom_value(text, "esr_partition_lag{topic=\"t\",partition=\"1\"}", &v));
  assert_true(v == P1_EVENTS - P1_FATAL);
  assert_int_equal(0, esrt_prom_value(text, "esr_partition_lag{topic=\"t\",partition=\"0\"}", &v));
  assert_true(v == 0);
  assert_int_equal(0, esrt_prom_value(text, "esr_build_info{version=\"" ESR_VERSION_STR "\"}", &v));
  free(text);

  char url[128];
  long status = 0;
  snprintf(url, sizeof url, "http://127.0.0.1:%d/readyz", port);
  char *body = get(url, &status);
  assert_non_null(body);
  assert_int_equal(503, status);
  assert_non_null(strstr(body, "t[1] is stopped"));
  free(body);
  snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", port);
  body = get(url, &status);
  assert_non_null(body);
  assert_int_equal(200, status);
  free(body);

  /* Group offsets stay committed for external lag tools. */
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(2);
  rd_kafka_topic_partition_list_add(l, "t", 0);
  rd_kafka_topic_partition_list_add(l, "t", 1);
  char errstr[256];
  rd_kafka_conf_t *kc = rd_kafka_conf_new();
  rd_kafka_conf_set(kc, "bootstrap.servers", mock.bootstrap, errstr, sizeof errstr);
  rd_kafka_conf_set(kc, "group.id", "gm", errstr, sizeof errstr);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, sizeof errstr);
  assert_non_null(rk);
  int64_t deadline = esrt_now_ms() + 20000;
  for (;;) {
    assert_int_equal(0, rd_kafka_committed(rk, l, 5000));
    if (l->elems[0].offset == P0_EVENTS && l->elems[1].offset == P1_FATAL) break;
    if (esrt_now_ms() >= deadline)
      fail_msg("group offsets %" PRId64 ", %" PRId64, l->elems[0].offset, l->elems[1].offset);
    esrt_sleep_ms(200);
  }
  rd_kafka_topic_partition_list_destroy(l);
  rd_kafka_destroy(rk);

  /* A real Prometheus scrapes the worker, with the alerting rules loaded. */
  int pport = esrt_free_port();
  assert_true(pport > 0);
  char pconf[1200], pdata[1200];
  snprintf(pconf, sizeof pconf, "%s/prometheus.yml", c->dir);
  snprintf(pdata, sizeof pdata, "%s/tsdb", c->dir);
  assert_int_equal(0, esrt_write_file(pconf,
                                      "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                                      "rule_files: ['%s/deploy/prometheus/alerts.yaml']\n"
                                      "scrape_configs:\n"
                                      "  - job_name: esr\n"
                                      "    static_configs: [{targets: ['127.0.0.1:%d']}]\n",
                                      ESR_SOURCE_DIR, port));
  char a1[1300], a2[1300], a3[64];
  snprintf(a1, sizeof a1, "--config.file=%s", pconf);
  snprintf(a2, sizeof a2, "--storage.tsdb.path=%s", pdata);
  snprintf(a3, sizeof a3, "--web.listen-address=127.0.0.1:%d", pport);
  char *argv[] = {PROMETHEUS, a1, a2, a3, NULL};
  esrt_proc prom;
  assert_int_equal(0, esrt_spawn(&prom, c->dir, "prometheus", argv, 0));
  deadline = esrt_now_ms() + 60000;
  double applied = -1;
  for (;;) {
    assert_true(esrt_alive(&prom));
    snprintf(url, sizeof url, "http://127.0.0.1:%d/-/ready", pport);
    body = NULL;
    if (esrt_http_get(url, 2000, &status, &body) == 0 && status == 200) {
      applied = prom_scalar(pport, "sum(esr_events_applied_total)");
      if (applied >= 0) break;
    }
    free(body);
    if (esrt_now_ms() >= deadline) fail_msg("prometheus did not scrape the worker");
    esrt_sleep_ms(250);
  }
  free(body);
  int64_t t_scraped = esrt_now_ms();
  assert_true(applied == 36 + P1_FATAL);
  assert_true(prom_scalar(pport, "sum(esr_dead_letters_total)") == 5);
  assert_true(prom_scalar(pport, "sum(esr_dead_letters_total{reason=\"rejected\"})") == 4);
  assert_true(prom_scalar(pport, "esr_partition_lag{partition=\"1\"}") == P1_EVENTS - P1_FATAL);
  assert_true(prom_scalar(pport, "esr_partition_lag{partition=\"0\"}") == 0);
  assert_true(prom_scalar(pport, "esr_partition_state{partition=\"1\",state=\"stopped\"}") == 1);
  assert_true(prom_scalar(pport, "up{job=\"esr\"}") == 1);

  /* The alerting rules loaded and evaluated without error. */
  snprintf(url, sizeof url, "http://127.0.0.1:%d/api/v1/rules", pport);
  deadline = esrt_now_ms() + 20000;
  for (;;) {
    body = get(url, &status);
    assert_non_null(body);
    cJSON *j = cJSON_Parse(body);
    assert_non_null(j);
    int rules = 0, evaluated = 0;
    cJSON *g;
    cJSON_ArrayForEach(g, cJSON_GetObjectItem(cJSON_GetObjectItem(j, "data"), "groups")) {
      cJSON *r;
      cJSON_ArrayForEach(r, cJSON_GetObjectItem(g, "rules")) {
        rules++;
        const char *health = cJSON_GetObjectItem(r, "health")->valuestring;
        if (strcmp(health, "err") == 0)
          fail_msg("rule %s: %s", cJSON_GetObjectItem(r, "name")->valuestring,
                   cJSON_GetObjectItem(r, "lastError")->valuestring);
        evaluated += strcmp(health, "ok") == 0;
      }
    }
    cJSON_Delete(j);
    free(body);
    assert_int_equal(9, rules);
    if (evaluated == rules) break;
    if (esrt_now_ms() >= deadline) fail_msg("only %d of %d rules evaluated", evaluated, rules);
    esrt_sleep_ms(250);
  }

  /* Every query of the dashboard, as Grafana would send it. */
  char dpath[1200];
  snprintf(dpath, sizeof dpath, "%s/deploy/grafana/esr-dashboard.json", ESR_SOURCE_DIR);
  char *djson = esrt_read_file(dpath, NULL);
  assert_non_null(djson);
  cJSON *dash = cJSON_Parse(djson);
  free(djson);
  assert_non_null(dash);
  int queries = 0;
  cJSON *panel;
  cJSON_ArrayForEach(panel, cJSON_GetObjectItem(dash, "panels")) {
    cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(panel, "targets")) {
      char *q = strdup(cJSON_GetObjectItem(t, "expr")->valuestring);
      q = replace(q, "$__rate_interval", "1m");
      q = replace(q, "$instance", ".*");
      cJSON *j = prom_query(pport, q);
      if (!j) fail_msg("dashboard panel '%s': the query fails: %s", cJSON_GetObjectItem(panel, "title")->valuestring, q);
      cJSON_Delete(j);
      free(q);
      queries++;
    }
  }
  cJSON_Delete(dash);
  assert_true(queries >= 18);
  printf("prometheus: scraped %.0f applied events; %d dashboard queries evaluated; %" PRId64 " ms after the first "
         "scrape\n", applied, queries, esrt_now_ms() - t_scraped);

  assert_int_equal(0, esrt_stop(&prom, 10000));
  assert_int_equal(0, esrt_stop(&w, 20000));
  /* The state is business data: directories 0750, files 0640 (the databases SQLite created, the checkpoints of the
   * release, their manifests). */
  const char *paths[][2] = {{"", "750"},           {"/t-0.db", "640"}, {"/t-1.db", "640"},
                            {"/checkpoints", "750"}, {"/checkpoints/t-0", "750"}, {"/.esr.lock", "640"}};
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    char p[1300], mode[8];
    struct stat st;
    snprintf(p, sizeof p, "%s%s", sdir, paths[i][0]);
    assert_int_equal(0, stat(p, &st));
    snprintf(mode, sizeof mode, "%o", (unsigned)(st.st_mode & 0777));
    if (strcmp(mode, paths[i][1]) != 0) fail_msg("%s: mode %s, expected %s", p, mode, paths[i][1]);
  }
  snprintf(cmd, sizeof cmd, "test -n \"$(find %s/checkpoints/t-0 -type f)\" && test -z \"$(find %s/checkpoints/t-0 -type f ! -perm 640)\"", sdir, sdir);
  assert_int_equal(0, system(cmd));
  esrt_case_cleanup(c);
  assert_int_equal(0, esrt_mock_stop(&mock));
  c->passed = 1;
}

static void port_in_use(void **state) {
  esrt_case *c = *state;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t l = sizeof a;
  assert_int_equal(0, bind(fd, (struct sockaddr *)&a, sizeof a));
  assert_int_equal(0, listen(fd, 1));
  assert_int_equal(0, getsockname(fd, (struct sockaddr *)&a, &l));
  char conf[1024], sdir[1100], extra[128];
  snprintf(sdir, sizeof sdir, "%s/state", c->dir);
  snprintf(extra, sizeof extra, "assignment = static\npartitions = 0\nhttp.listen = 127.0.0.1:%d\n", ntohs(a.sin_port));
  /* No broker is needed: the port is taken before anything else. */
  assert_int_equal(0, esrt_write_worker_config(conf, sizeof conf, c->dir, "w", "127.0.0.1:1", "t", "t.dlq", sdir,
                                               GOOD_SO, "%s", extra));
  esrt_proc w;
  assert_int_equal(0, esrt_start_worker(&w, ESR_BIN, c->dir, "w", conf));
  assert_int_equal(0, esrt_wait(&w, 20000));
  close(fd);
  assert_int_equal(2, esrt_exit_code(&w));
  assert_true(esrt_file_contains(w.err_path, "config: http.listen"));
  assert_true(esrt_file_contains(w.err_path, "Address already in use"));
  c->passed = 1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(port_in_use, setup, teardown),
      cmocka_unit_test_setup_teardown(scraped_by_prometheus, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
