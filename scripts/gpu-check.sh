#!/bin/sh
# The GPU check (issue 19), ready to run on a machine with an NVIDIA GPU and the CUDA toolkit:
#  1. builds with the CUDA backend forced on (-DCGE_CUDA=ON) in BUILD_DIR (build-gpu);
#  2. runs test_gpu_backend: every backend operation on the CUDA backend against the CPU kernels
#     on random data (fp32 rel <= 1e-4, bf16 cosine >= 0.9999, int8 cosine >= 0.999), then
#     times real-size random models on the device (BERT-base, ViT-L/14, Whisper-large encoder,
#     Mistral-7B: 12/24/32/32 layers): items/s at batch 32, P95 of single inputs, peak device
#     memory from the GPU memory manager (CGE_GPU_BENCH_DTYPE=bf16|f32|i8, default bf16);
#  3. runs the memory manager's tests (simulated device);
#  4. runs test_tensor_backend: the fixture models (BERT, RoBERTa, MPNet, T5, CLIP text and
#     image, Whisper) embedded through "cuda" against the CPU backend (rel <= 1e-4);
#  5. embeds the ensemble fixture with `cge embed --backend cuda` and compares it with the CPU.
# Without a device the backend test says "no CUDA device" and counts its checks as skipped; this
# script then exits 2 (nothing was measured), not 0.
# Usage: scripts/gpu-check.sh [BUILD_DIR]      (make gpu-check)
BUILD=${1:-build-gpu}
cd "$(dirname "$0")/.." || exit 1
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv,noheader
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCGE_CUDA=ON -DCGE_BUILD_BENCH=OFF >/dev/null ||
    exit 1
cmake --build "$BUILD" -j "$JOBS" --target cge test_gpu_backend test_gpu_memmgr test_tensor_backend ||
    exit 1
"$BUILD/tests/test_gpu_memmgr" | tail -n 1 || exit 1
out=$("$BUILD/tests/test_gpu_backend" --bench)
rc=$?
echo "$out"
[ $rc -eq 0 ] || exit 1
"$BUILD/tests/test_tensor_backend" | tail -n 1 || exit 1
ENS=tests/fixtures/ensemble
CGE=$(cd "$BUILD" && pwd)/cge
for be in cpu cuda; do
    (cd "$ENS" && "$CGE" embed --ensemble ensemble --backend $be --output both <inputs.jsonl) \
        >"$BUILD/gpu-check-$be.jsonl" 2>"$BUILD/gpu-check-$be.err" || { cat "$BUILD/gpu-check-$be.err"; exit 1; }
done
if grep -q "unavailable" "$BUILD/gpu-check-cuda.err"; then
    cat "$BUILD/gpu-check-cuda.err"
else
    python3 scripts/compare_jsonl.py "$BUILD/gpu-check-cpu.jsonl" "$BUILD/gpu-check-cuda.jsonl" 1e-4 ||
        exit 1
fi
case "$out" in *"no CUDA device"*) echo "gpu-check: no CUDA device here: nothing measured"; exit 2 ;; esac
exit 0
