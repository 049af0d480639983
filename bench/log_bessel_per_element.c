/* Time per element of curvkit's CPU log I and log K kernels, by (v, x) region: 4096 random
 * arguments per region (in cache), the array entry point of the C ABI, best of many calls,
 * thread CPU time. Build and run (one thread, so that the figure is per core):
 *
 *   LIB=$(python -c "import curvkit, os; print(os.path.dirname(curvkit.get_library()))")
 *   cc -O2 -I csrc/include bench/log_bessel_per_element.c -L$LIB -lcurvkit_core \
 *      -Wl,-rpath,$LIB -lm -o /tmp/log_bessel_per_element
 *   OMP_NUM_THREADS=1 /tmp/log_bessel_per_element
 *
 * With -DALL_FUNCTIONS it also times iv_ratio, dlog_iv and dlog_kv.
 * CURVKIT_DISABLE_AVX2=1 times the portable kernels instead of the AVX2 ones. */
#define _POSIX_C_SOURCE 199309L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "curvkit/c_api.h"

#define N 4096
/* log I and log K; with -DALL_FUNCTIONS also I_{v+1}/I_v, d/dx log I and d/dx log K. */
#ifdef ALL_FUNCTIONS
#define FUNCTIONS 5
#else
#define FUNCTIONS 2
#endif

static double thread_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static unsigned long long state = 88172645463325252ULL;
static double uniform(void) { /* xorshift64, 53-bit uniform in [0, 1) */
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (state >> 11) * (1.0 / 9007199254740992.0);
}

int main(int argc, char** argv) {
    static double v[N], x[N], out[N];
    const struct {
        const char* name;
        double v0, v1, x0, x1;
        int log_v; /* v log-uniform instead of uniform */
    } regions[] = {
        {"moderate (v U[0,50], x logU[0.1,100])", 0, 50, 0.1, 100, 0},
        {"21.4 <= v < 50", 21.4, 50, 0.1, 100, 0},
        {"v < 21.4, x < 20", 0, 21.3, 0.1, 20, 0},
        {"v < 21.4, x >= 20", 0, 21.3, 20, 100, 0},
        {"v < 21.4, x < 0.5", 0, 21.3, 0.1, 0.5, 0},
        {"v < 21.4, 0.5 <= x < 2", 0, 21.3, 0.5, 2, 0},
        {"v < 21.4, x >= 2", 0, 21.3, 2, 100, 0},
        {"hard (v logU[1e2,1e6], x logU[1e-6,1e6])", 1e2, 1e6, 1e-6, 1e6, 1},
    };
    const int reps = argc > 1 ? atoi(argv[1]) : 300;
    /* Half a second of work first: the first region's timings otherwise scatter by 1.3x,
     * while the core's clock settles. */
    for (int i = 0; i < N; ++i) v[i] = 50.0 * uniform(), x[i] = 0.1 + 100.0 * uniform();
    {
        curvkit_dense dv = {v, 1, 0, 0, 1, N, 1, 1, 1}, dx = {x, 1, 0, 0, 1, N, 1, 1, 1},
                      dout = {out, 1, 0, 0, 1, N, 1, 1, 1};
        for (const double t0 = thread_seconds(); thread_seconds() - t0 < 0.5;)
            curvkit_special_function(0, &dv, &dx, &dout, NULL);
    }
    printf("%-44s %10s %10s", "region", "log I ns", "log K ns");
    if (FUNCTIONS > 2) printf(" %10s %10s %10s", "ratio ns", "dlogI ns", "dlogK ns");
    printf("\n");
    for (unsigned r = 0; r < sizeof regions / sizeof regions[0]; ++r) {
        for (int i = 0; i < N; ++i) {
            v[i] = regions[r].log_v
                       ? exp(log(regions[r].v0) + uniform() * log(regions[r].v1 / regions[r].v0))
                       : regions[r].v0 + uniform() * (regions[r].v1 - regions[r].v0);
            x[i] = exp(log(regions[r].x0) + uniform() * log(regions[r].x1 / regions[r].x0));
        }
        curvkit_dense dv = {v, 1, 0, 0, 1, N, 1, 1, 1}, dx = {x, 1, 0, 0, 1, N, 1, 1, 1},
                      dout = {out, 1, 0, 0, 1, N, 1, 1, 1};
        printf("%-44s", regions[r].name);
        for (int fn = 0; fn < FUNCTIONS; ++fn) { /* 0: log I, 1: log K, then the ratios */
            double best = 1e30;
            for (int k = 0; k < reps; ++k) {
                const double t0 = thread_seconds();
                if (curvkit_special_function(fn, &dv, &dx, &dout, NULL) != 0) {
                    fprintf(stderr, "%s\n", curvkit_last_error());
                    return 1;
                }
                const double t = thread_seconds() - t0;
                if (t < best) best = t;
            }
            printf(" %10.1f", best * 1e9 / N);
        }
        printf("\n");
    }
    return 0;
}
