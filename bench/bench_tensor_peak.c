/*
 * bench_tensor_peak.c: the machine's GEMM peaks today (fp32, bf16, int8 on 2 threads, the
 * bench_gemm_peak yardstick of every "% of peak" column), as one BENCH_JSON line: bench/run.sh
 * stores it with the other figures, and bench/compare.py divides figures by it so that runs on
 * a slower or busier day compare fairly. Runs first (bench/run.sh orders it).
 */
#include "bench_common.h"

#include <stdio.h>

int main(void) {
    double f32 = bench_gemm_peak(CGE_DTYPE_F32, 512, 4096, 4096, 7);
    double bf16 = bench_gemm_peak(CGE_DTYPE_BF16, 512, 4096, 4096, 7);
    double i8 = bench_gemm_peak(CGE_DTYPE_I8, 512, 4096, 4096, 7);
    printf("GEMM peak, %d threads: fp32 %.0f GFLOP/s, bf16 %.0f GFLOP/s, int8 %.0f GOP/s\n",
           cge_get_threads(), f32, bf16, i8);
    printf("BENCH_JSON {\"bench\": \"peak\", \"threads\": %d, \"fp32\": %.1f, \"bf16\": %.1f, "
           "\"int8\": %.1f}\n", cge_get_threads(), f32, bf16, i8);
    return 0;
}
