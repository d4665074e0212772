/* Peak multiply-add rates of this CPU's AVX-512 units, for benchmarks/cpu_ceiling.py.
 *
 * Each thread runs ACC independent accumulator chains of one instruction (12: the fastest for both
 * instructions of 6, 8, 10, 12, 16, 24 and 28 chains on the AMD EPYC Zen 5 here; fewer leave the
 * instructions' latency exposed, more spill registers): fp32 FMA (vfmadd231ps, 16
 * multiply-adds) or int8 VNNI (vpdpbusd, 64 uint8 x int8 multiply-adds into int32). Usage:
 * peak_macs fp32|int8 ITERATIONS REPEATS; prints "<best MAC/s> <lane 0 summed over thread 0's chains>".
 * Every chain feeds that sum, or the compiler drops the unused ones; the fp32 constants are not
 * 1 and 0, or it turns the FMA into an add. */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ACC 12

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

__attribute__((noinline)) static double fp32_chains(long n) {
    __m512 acc[ACC], a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);  /* x -> 1 */
    for (int i = 0; i < ACC; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long k = 0; k < n; k++) {
#pragma GCC unroll 12
        for (int i = 0; i < ACC; i++) acc[i] = _mm512_fmadd_ps(a, acc[i], b);
    }
    double sum = 0;
    for (int i = 0; i < ACC; i++) sum += _mm512_cvtss_f32(acc[i]);
    return sum;
}

__attribute__((noinline)) static double int8_chains(long n) {
    __m512i acc[ACC], a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
    for (int i = 0; i < ACC; i++) acc[i] = _mm512_set1_epi32(i);
    for (long k = 0; k < n; k++) {
#pragma GCC unroll 12
        for (int i = 0; i < ACC; i++) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
    }
    double sum = 0;  /* each chain gains 4 x (3 x -2) = -24 per iteration */
    for (int i = 0; i < ACC; i++) sum += _mm_cvtsi128_si32(_mm512_castsi512_si128(acc[i]));
    return sum;
}

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[1], "fp32") && strcmp(argv[1], "int8"))) {
        fprintf(stderr, "usage: peak_macs fp32|int8 ITERATIONS REPEATS\n");
        return 2;
    }
    int int8 = !strcmp(argv[1], "int8");
    long n = atol(argv[2]);
    int repeats = atoi(argv[3]);
    double best = 0, first_lane = 0;
    for (int r = 0; r < repeats; r++) {
        double start = now();
#pragma omp parallel
        {
            double lane = int8 ? int8_chains(n) : fp32_chains(n);
            if (omp_get_thread_num() == 0) first_lane = lane;
        }
        double macs = (double)omp_get_max_threads() * n * ACC * (int8 ? 64 : 16);
        double rate = macs / (now() - start);
        if (rate > best) best = rate;
    }
    printf("%.6e %.1f\n", best, first_lane);
    return 0;
}
