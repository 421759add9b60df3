/* handler_test.h — `esr handler test`: a handler applied to a stream of events written in a file, with no Kafka, through
 * the very path a worker takes (envelope, routing, upcast, schema, apply in a savepoint, rejections, dead letters,
 * emits), into temporary databases; then the expectations checked.
 *
 * Events file: JSON lines, one message each: {"key": "ada" | null, "partition": 0, "offset": 12, "timestamp": "...",
 * "value": {...} | "raw": "text"}; only "value" or "raw" is required. "value" is taken byte for byte as the message's
 * value (numbers keep their literal); "raw" is text sent as is, for input that is not JSON at all. Offsets default to
 * the next one of the partition; the partition to 0. Blank lines and lines starting with '#' are skipped.
 *
 * Expectations file: sections separated by blank lines; '#' starts a comment line.
 *     query: SELECT name, n FROM greetings ORDER BY name
 *     ada|3                       <- the rows it must return, cells separated by '|', NULL for null
 *     grace|1
 *
 *     dead letters:
 *     4 rejected                  <- OFFSET REASON (P/OFFSET REASON when the stream has several partitions)
 *
 *     emits:
 *     orders.out|ada|{"x":1}      <- TOPIC|KEY|VALUE of each event the handler emitted, in order
 * A query runs on each partition's database in turn (partition order) and its rows are concatenated. Sections may be
 * left out: absent means "not checked", while an empty "dead letters:" section means "none".
 *
 * The stream is applied twice, into two fresh states, and their state digests must be equal: a handler that reads
 * the clock or otherwise depends on anything but its input fails here. A mismatch is printed as a diff of expected
 * (-) and actual (+) lines.
 */
#ifndef ESR_HANDLER_TEST_H
#define ESR_HANDLER_TEST_H

#include <stdio.h>

#include "config.h"
#include "error.h"

typedef struct esr_handler_test_opts {
  char *const *handlers; /* plugin or SQL handler paths */
  size_t n_handlers;
  const char *schemas_dir; /* or NULL */
  const char *events_path;
  const char *expect_path; /* or NULL: only apply (twice) and report */
  const esr_kv *options;   /* handler options, "<stem>.<key>" */
  size_t n_options;
  const char *topic; /* the source topic the events come from (default "events") */
  FILE *out;         /* the report */
} esr_handler_test_opts;

typedef struct esr_handler_test_result {
  size_t events, applied, dead, emitted;
  int failures; /* expectations not met, plus 1 when the two applications differ */
} esr_handler_test_result;

/* ESR_E_OK when the test ran (failures says whether it passed); ESR_E_CONFIG for an unreadable or malformed events or
 * expectations file (the message names the line); ESR_E_PLUGIN when a handler cannot be loaded or stops the partition
 * (ESR_FATAL); another code when the temporary databases fail. */
esr_code esr_handler_test_run(const esr_handler_test_opts *o, esr_handler_test_result *res, esr_error *err);

#endif
