// Step 0: a kernel runs once per thread. Each thread prints where it sits in the grid; the output order
// between blocks is not defined, which is the first lesson about GPU execution.
extern "C" __global__ void hello(int tag) {
    printf("hello from block %d thread %d (tag %d)\n", blockIdx.x, threadIdx.x, tag);
}
