/* cmd_schema.c — `esr schema check SCHEMA.json [DOC.json ... | -]`: validates JSON documents against a schema exactly
 * as the worker validates an event's data, one verdict line per document on standard output. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cmd.h"
#include "envelope.h"
#include "schema.h"

static void usage(FILE *out) {
  fprintf(
      out,
      "usage: esr schema check SCHEMA.json [DOC.json ... | -]\n"
      "\n"
      "Compiles SCHEMA.json (JSON Schema draft-07, as esr enforces it: see schemas/README.md) and validates each\n"
      "document against it, printing one line per document:\n"
      "  DOC: valid\n"
      "  DOC: invalid: <JSON pointer>: <rule>        e.g. 'deposit.json: invalid: /amount: must be >= 1'\n"
      "Without DOC, or with '-', documents are read from standard input. An input may hold several JSON documents\n"
      "separated by whitespace (e.g. one per line); they are then named DOC:LINE. Numbers are read as the worker\n"
      "reads them: an integer literal a double cannot hold exactly (9007199254740993) is invalid for every numeric\n"
      "keyword.\n"
      "\n"
      "exit status: 0 all documents valid, 1 some invalid (or not JSON), 2 schema refused, unreadable file or usage\n"
      "error (one line on standard error)\n");
}

static char *read_all(FILE *f, size_t *len) {
  size_t cap = 8192, n = 0, got;
  char *buf = malloc(cap);
  while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) {
      char *p = realloc(buf, cap * 2);
      if (!p) {
        free(buf);
        return NULL;
      }
      buf = p;
      cap *= 2;
    }
  }
  if (buf && ferror(f)) {
    free(buf);
    return NULL;
  }
  *len = n;
  return buf;
}

static int is_space(char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'; }

/* Validates one document, text[0..len), as the data of an event: the text is wrapped into an envelope and parsed by
 * esr_envelope_parse, so numbers get exactly the worker's treatment (inexact integer literals become NaN). */
static int check_one(const esr_schema *s, const char *label, const char *text, size_t len) {
  static const char head[] = "{\"type\":\"esr.schema.check\",\"data\":{\"v\":", tail[] = "}}";
  size_t n = sizeof head - 1 + len + sizeof tail - 1;
  char *wrapped = malloc(n);
  if (!wrapped) {
    printf("%s: invalid: out of memory\n", label);
    return 1;
  }
  memcpy(wrapped, head, sizeof head - 1);
  memcpy(wrapped + sizeof head - 1, text, len);
  memcpy(wrapped + sizeof head - 1 + len, tail, sizeof tail - 1);
  esr_envelope env;
  char msg[300];
  int bad = 1;
  if (esr_envelope_parse(wrapped, n, &env, msg, sizeof msg) != ESR_ENVELOPE_OK) {
    printf("%s: invalid: not valid JSON\n", label);
  } else {
    esr_error err = {0};
    esr_code rc = esr_schema_validate(s, env.data->child, NULL, &err);
    if (rc == ESR_E_OK) {
      printf("%s: valid\n", label);
      bad = 0;
    } else {
      printf("%s: invalid: %s\n", label, err.msg);
    }
  }
  esr_envelope_clear(&env);
  free(wrapped);
  return bad;
}

/* Every document of `text`; returns the number of invalid ones. */
static int check_text(const esr_schema *s, const char *name, const char *text, size_t len) {
  const char *p = text, *end = text + len;
  size_t line = 1;
  int invalid = 0, multi = -1;
  char label[4200];
  for (;;) {
    for (; p < end && is_space(*p); p++) line += *p == '\n';
    if (p == end) {
      if (multi < 0) {
        printf("%s: invalid: no JSON document\n", name);
        invalid++;
      }
      return invalid;
    }
    const char *doc_end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(p, (size_t)(end - p), &doc_end, 0);
    if (multi < 0) {
      const char *q = doc ? doc_end : end;
      while (q < end && is_space(*q)) q++;
      multi = q < end;
    }
    if (multi)
      snprintf(label, sizeof label, "%s:%zu", name, line);
    else
      snprintf(label, sizeof label, "%s", name);
    if (!doc) {
      size_t at = line;
      for (const char *q = p; doc_end && q < doc_end && q < end; q++) at += *q == '\n';
      printf("%s: invalid: not valid JSON (line %zu)\n", label, at);
      return invalid + 1; /* the rest of the input cannot be delimited */
    }
    cJSON_Delete(doc);
    invalid += check_one(s, label, p, (size_t)(doc_end - p));
    for (; p < doc_end; p++) line += *p == '\n';
  }
}

static int cmd_check(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "esr schema check: missing SCHEMA.json (see 'esr schema --help')\n");
    return 2;
  }
  esr_error err = {0};
  esr_schema *s;
  if (esr_schema_load(argv[1], &s, &err) != ESR_E_OK) {
    fprintf(stderr, "esr schema check: schema refused: %s\n", err.msg);
    return esr_code_exit_status(err.code) == 1 ? 1 : 2;
  }
  int invalid = 0, error = 0;
  int ndocs = argc - 2;
  for (int i = 0; i < (ndocs ? ndocs : 1); i++) {
    const char *name = ndocs ? argv[2 + i] : "-";
    int is_stdin = strcmp(name, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(name, "rb");
    if (!f) {
      fprintf(stderr, "esr schema check: cannot open %s: %s\n", name, strerror(errno));
      error = 1;
      continue;
    }
    size_t len = 0;
    char *text = read_all(f, &len);
    if (!is_stdin) fclose(f);
    if (!text) {
      fprintf(stderr, "esr schema check: cannot read %s\n", name);
      error = 1;
      continue;
    }
    invalid += check_text(s, name, text, len);
    free(text);
  }
  esr_schema_free(s);
  fflush(stdout);
  return error ? 2 : invalid ? 1 : 0;
}

int esr_cmd_schema(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "check") == 0) {
    for (int i = 2; i < argc; i++) {
      if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
        usage(stdout);
        return 0;
      }
      if (argv[i][0] == '-' && argv[i][1]) {
        fprintf(stderr, "esr schema check: unknown option '%s' (see 'esr schema --help')\n", argv[i]);
        return 2;
      }
    }
    return cmd_check(argc - 1, argv + 1);
  }
  fprintf(stderr, "esr schema: unknown subcommand '%s' (see 'esr schema --help')\n", argv[1]);
  return 2;
}
