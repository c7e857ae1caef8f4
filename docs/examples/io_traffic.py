# HBM traffic of one attention head, standard versus flash (the IO-complexity argument, in bytes).
N, d, M = 16384, 128, 228 * 1024  # sequence length, head dim, on-chip memory per SM (bytes, H100/H200)
elt = 2  # bf16

# Standard: write S (N x N), read it for softmax, write P, read P for P V; plus Q, K, V, O.
standard = 4 * N * d * elt + 4 * N * N * elt
# Flash: Q, O once; K and V once per Q block of B_r rows; B_r ~ M / (4 d) rows fit on chip.
block_r = M // (4 * d * elt)
flash = 2 * N * d * elt + (N // block_r) * 2 * N * d * elt
print(f"standard {standard / 2**30:.2f} GiB, flash {flash / 2**30:.3f} GiB, ratio {standard / flash:.0f}x")
print(f"Theta(N^2 d^2 / M) reads of K, V: {N * N * d * d / M / 2**20:.0f} Mi elements")
assert flash < standard
