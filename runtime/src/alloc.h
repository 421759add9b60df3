/* alloc.h — which malloc the process runs with, and glibc's tuning when it is glibc's.
 *
 * The esr executable is linked with a replacement allocator (CMake option ESR_ALLOCATOR: mimalloc by default, or
 * jemalloc, or glibc), which then serves every library of the process (librdkafka allocates each message on its broker
 * thread and an apply thread frees it: glibc's arenas handle that one-way traffic badly). esr_alloc_setup finds out at
 * run time which one serves malloc (a linked one, or one preloaded with LD_PRELOAD) and, when it is glibc's, tunes it
 * (no trimming, no mmap for large blocks: both fault pages in again and again under that traffic). Call it once at the
 * start of main, before any thread starts. */
#ifndef ESR_ALLOC_H
#define ESR_ALLOC_H

void esr_alloc_setup(void);
/* "mimalloc 2.0.9", "jemalloc 5.3.0-0-g54eaed1d8b56b1aa528be3bdd1877e59c56fa90c", "glibc 2.36 (tuned)", ... */
const char *esr_alloc_name(void);

#endif
