/* esr/clock.h — monotonic milliseconds, for batch ages and timeouts (never for state: handlers use the event's time). */
#ifndef ESR_CLOCK_H
#define ESR_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t esr_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
