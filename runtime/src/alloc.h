/* alloc.h — which malloc the process runs with, and glibc's tuning when it is glibc's.
 *
 * librdkafka allocates each message on its broker thread and an apply thread frees it. Under that one-way traffic
 * glibc's malloc, as it comes, gives the memory at the top of its heaps back to the kernel and faults it in again, and
 * maps and unmaps every large block; tuned (no trimming below 256 MiB, 16 MiB growth, mmap only from 32 MiB) it
 * measured ahead of mimalloc and jemalloc in the benchmark's alloc rows (README, Benchmark), so it is the default.
 * CMake's ESR_ALLOCATOR links mimalloc or jemalloc instead; either then serves every library of the process.
 * esr_alloc_setup finds out at run time which one serves malloc (a linked one, or one preloaded with LD_PRELOAD) and
 * tunes glibc's when it is that one. Call it once at the start of main, before any thread starts. */
#ifndef ESR_ALLOC_H
#define ESR_ALLOC_H

void esr_alloc_setup(void);
/* "mimalloc 2.0.9", "jemalloc 5.3.0-0-g54eaed1d8b56b1aa528be3bdd1877e59c56fa90c", "glibc 2.36 (tuned)", ... */
const char *esr_alloc_name(void);

#endif
