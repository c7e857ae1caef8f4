// Step 1: one thread per element, the simplest memory-bound kernel.
//
// The index arithmetic (block * blockDim + thread) and the bounds check are the whole lesson; the loop
// is a grid-stride loop, so any grid size covers any n, and the index is 64-bit so n may exceed 2^31.
// Speed comes from coalescing: neighbouring threads read neighbouring addresses, so a warp's 32 loads
// merge into a few 128-byte transactions. Measured against the copy ceiling it reaches its bandwidth.
#include "common.cuh"

template <typename T>
__global__ void vector_add(const T* __restrict__ x, const T* __restrict__ y, T* __restrict__ out, long long n) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        out[i] = attn::from_float<T>(attn::to_float(x[i]) + attn::to_float(y[i]));
    }
}

// The same with 16-byte loads (float4): a quarter of the instructions for the same bytes. Needs n % 4 == 0
// and 16-byte aligned pointers, which the Python wrapper checks before choosing it.
extern "C" __global__ void vector_add_f32x4(const float4* __restrict__ x, const float4* __restrict__ y,
                                            float4* __restrict__ out, long long n4) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += stride) {
        float4 a = x[i], b = y[i];
        out[i] = make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
    }
}

// The counter-example: each thread adds its own contiguous run of `chunk` elements, the way a CPU loop
// would be split. At every step the 32 lanes of a warp touch addresses `chunk` elements apart, so one
// warp-wide load needs 32 separate sectors instead of four, and most of every 32-byte sector fetched is
// thrown away before a later step asks for it again (unless it is still in L1/L2). Same result, same
// bytes requested; only the access pattern differs.
template <typename T>
__global__ void vector_add_chunked(const T* __restrict__ x, const T* __restrict__ y, T* __restrict__ out,
                                   long long n, long long chunk) {
    const long long thread = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long begin = thread * chunk, end = begin + chunk < n ? begin + chunk : n;
    for (long long i = begin; i < end; ++i) out[i] = attn::from_float<T>(attn::to_float(x[i]) + attn::to_float(y[i]));
}
