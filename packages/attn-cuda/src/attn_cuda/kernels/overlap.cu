// Stream overlap: a kernel with enough arithmetic per element that copy and compute take similar time.
//
// The host splits the work into chunks and, for each chunk, issues host->device copy, this kernel and
// device->host copy on one of several streams. With one stream the three phases run one after another;
// with several, chunk i's kernel overlaps chunk i+1's upload and chunk i-1's download (the copy engines
// and the SMs are separate hardware), which is what the measurement shows.
extern "C" __global__ void busy_transform(const float* __restrict__ x, float* __restrict__ y, long long n, int iters) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float v = x[i];
        for (int k = 0; k < iters; ++k) v = __sinf(v) * 0.5f + v * 0.75f + 0.1f;  // a contraction: stays finite
        y[i] = v;
    }
}
