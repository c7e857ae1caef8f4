// Parallel sum reduction in its classic successive optimisations (after M. Harris, "Optimizing Parallel
// Reduction in CUDA"). Each version writes one partial sum per block; the host launches again on the
// partials until one value is left. Read them in order: each fixes what limited the one before.
//
//   v1 interleaved addressing    stride doubles; "if (tid % (2*s) == 0)" leaves most lanes of every warp
//                                idle but still scheduled (divergence), and % is slow.
//   v2 sequential addressing     stride halves from blockDim/2; active threads are contiguous, so whole
//                                warps retire early, and consecutive threads hit consecutive banks.
//   v3 first add during load     half the threads of v2 were idle from the first step: each thread now
//                                adds two elements while loading, so a block covers 2 * blockDim inputs.
//   v4 warp shuffles             once 32 values remain they sit in one warp: __shfl_down_sync adds them
//                                in registers, with no shared memory and no __syncthreads.
//   v5 many elements per thread  a fixed grid (a few blocks per SM) and a grid-stride loop: each thread
//                                sums many elements in a register first (vectorised float4 loads), so the
//                                tree part is paid once per thread, not once per pair of elements. This is
//                                the one that reaches the memory-bandwidth ceiling.
#include "common.cuh"

// v1: interleaved addressing with a divergent branch.
extern "C" __global__ void reduce_v1_interleaved(const float* __restrict__ x, float* __restrict__ out, long long n) {
    extern __shared__ float s[];
    unsigned tid = threadIdx.x;
    long long i = (long long)blockIdx.x * blockDim.x + tid;
    s[tid] = i < n ? x[i] : 0.f;
    __syncthreads();
    for (unsigned stride = 1; stride < blockDim.x; stride *= 2) {
        if (tid % (2 * stride) == 0) s[tid] += s[tid + stride];
        __syncthreads();
    }
    if (tid == 0) out[blockIdx.x] = s[0];
}

// v2: sequential addressing: thread t adds s[t + stride] for t < stride.
extern "C" __global__ void reduce_v2_sequential(const float* __restrict__ x, float* __restrict__ out, long long n) {
    extern __shared__ float s[];
    unsigned tid = threadIdx.x;
    long long i = (long long)blockIdx.x * blockDim.x + tid;
    s[tid] = i < n ? x[i] : 0.f;
    __syncthreads();
    for (unsigned stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (tid < stride) s[tid] += s[tid + stride];
        __syncthreads();
    }
    if (tid == 0) out[blockIdx.x] = s[0];
}

// v3: the first add happens during the load; a block reduces 2 * blockDim elements.
extern "C" __global__ void reduce_v3_first_add(const float* __restrict__ x, float* __restrict__ out, long long n) {
    extern __shared__ float s[];
    unsigned tid = threadIdx.x;
    long long i = (long long)blockIdx.x * (2 * blockDim.x) + tid;
    float v = i < n ? x[i] : 0.f;
    if (i + blockDim.x < n) v += x[i + blockDim.x];
    s[tid] = v;
    __syncthreads();
    for (unsigned stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (tid < stride) s[tid] += s[tid + stride];
        __syncthreads();
    }
    if (tid == 0) out[blockIdx.x] = s[0];
}

// --8<-- [start:reduce-v5]
// Sum over a block: shuffles inside each warp, one shared slot per warp, shuffles again in warp 0.
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float warp_sums[32];
    unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffff, v, off);
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    v = 0.f;
    if (warp == 0) {
        v = lane < blockDim.x / 32 ? warp_sums[lane] : 0.f;
        for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffff, v, off);
    }
    return v;  // valid in thread 0
}

// v4: v3's load, then the tree in registers with warp shuffles (blockDim a multiple of 32).
extern "C" __global__ void reduce_v4_shuffle(const float* __restrict__ x, float* __restrict__ out, long long n) {
    long long i = (long long)blockIdx.x * (2 * blockDim.x) + threadIdx.x;
    float v = i < n ? x[i] : 0.f;
    if (i + blockDim.x < n) v += x[i + blockDim.x];
    v = block_sum(v);
    if (threadIdx.x == 0) out[blockIdx.x] = v;
}

// v5: many elements per thread through a grid-stride loop of float4 loads, then v4's block sum.
// x must be 16-byte aligned; the n % 4 tail is summed by block 0.
extern "C" __global__ void reduce_v5_multi(const float* __restrict__ x, float* __restrict__ out, long long n) {
    long long n4 = n / 4;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    long long stride = (long long)gridDim.x * blockDim.x;
    float a = 0.f, b = 0.f;  // two accumulators: two independent add chains keep more loads in flight
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i + stride < n4; i += 2 * stride) {
        float4 p = x4[i], q = x4[i + stride];
        a += (p.x + p.y) + (p.z + p.w);
        b += (q.x + q.y) + (q.z + q.w);
    }
    if (i < n4) {
        float4 p = x4[i];
        a += (p.x + p.y) + (p.z + p.w);
    }
    if (blockIdx.x == 0 && threadIdx.x < n - 4 * n4) a += x[4 * n4 + threadIdx.x];
    float v = block_sum(a + b);
    if (threadIdx.x == 0) out[blockIdx.x] = v;
}
// --8<-- [end:reduce-v5]
