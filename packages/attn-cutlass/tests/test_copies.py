"""attn_cutlass.copies: the thread partition of a tile (CPU), argument checks (CPU), the copy kernels'
PTX for sm_90a / sm_80 (CPU, fake tensors), and bitwise round trips on the GPU (sm80 / sm90 tiers)."""

import re

import pytest
import torch

from attn_cutlass import copies
from attn_reference import capability
from attn_reference.errors import AttentionArgumentError, UnsupportedFeatureError

FNS = {"vectorized": copies.copy_vectorized, "cp_async": copies.copy_cp_async, "tma": copies.copy_tma}


# ---------------------------------------------------------------------------------------------------------
# The partition (CPU)


@pytest.fixture(scope="module")
def p128():
    return copies.tile_partition(128)


@pytest.fixture(scope="module")
def p32():
    return copies.tile_partition(32)


def _vectors(part):
    """Each thread's copies as (row, first col, width), checked to be contiguous runs of one row."""
    v = part["values_per_copy"]
    out = []
    for t in part["threads"]:
        runs = []
        for k in range(0, len(t["coords"]), v):
            chunk = t["coords"][k : k + v]
            assert [r for r, _ in chunk] == [chunk[0][0]] * v, "a copy spans two rows"
            assert [c for _, c in chunk] == list(range(chunk[0][1], chunk[0][1] + v)), (
                "a copy is not contiguous"
            )
            runs.append((chunk[0][0], chunk[0][1], v))
        out.append(runs)
    return out


def test_128bit_partition_layouts(p128):
    # Thread t = (t % 8, t // 8) -> column 8 (t % 8), row t // 8 of a (16, 64) block; value v -> column + v.
    assert p128["layout_tv"] == "((8,16),8):((128,1),16)"
    assert p128["tiler"] == "(16:1, 64:1)"
    assert p128["values_per_copy"] == 8 and p128["copies_per_thread"] == 4
    assert p128["partition_shape"] == "((8, 1), 4, 1)"


def test_128bit_partition_exact_mapping(p128):
    assert copies.thread_coords(0) == [(r, c) for r in (0, 16, 32, 48) for c in range(8)]
    assert copies.thread_coords(1)[:8] == [(0, c) for c in range(8, 16)]
    assert copies.thread_coords(7)[:8] == [(0, c) for c in range(56, 64)]
    assert copies.thread_coords(8)[:8] == [(1, c) for c in range(8)]
    assert copies.thread_coords(127) == [(r, c) for r in (15, 31, 47, 63) for c in range(56, 64)]
    for t in range(copies.THREADS):
        rows = [r for r, _ in copies.thread_coords(t)[::8]]
        assert rows == [t // 8 + 16 * k for k in range(4)]
        assert {c for _, c in copies.thread_coords(t)} == set(range(8 * (t % 8), 8 * (t % 8) + 8))
    assert copies.thread_offsets(1)[:8] == list(range(8, 16))
    assert copies.thread_offsets(8)[8:16] == list(range(17 * 64, 17 * 64 + 8))


def test_offsets_are_the_row_major_coordinates(p128, p32):
    for part in (p128, p32):
        for t in part["threads"]:
            assert t["offsets"] == [64 * r + c for r, c in t["coords"]]


@pytest.mark.parametrize("bits", [128, 32])
def test_threads_cover_the_tile_exactly_once(bits, p128, p32):
    part = p128 if bits == 128 else p32
    every = [o for t in part["threads"] for o in t["offsets"]]
    assert len(every) == 64 * 64
    assert sorted(every) == list(range(64 * 64))
    vectors = _vectors(part)
    # Every copy is one aligned vector: bits / 8 bytes starting at a multiple of bits / 8 bytes.
    assert all(c % part["values_per_copy"] == 0 for runs in vectors for _, c, _ in runs)


def test_32bit_partition(p32):
    # 2 values per copy: 32 threads span a row, 128 threads 4 rows, 16 copies per thread.
    assert p32["layout_tv"] == "((32,4),2):((8,1),4)"
    assert p32["values_per_copy"] == 2 and p32["copies_per_thread"] == 16
    assert copies.thread_coords(0, bits=32)[:4] == [(0, 0), (0, 1), (4, 0), (4, 1)]
    assert copies.thread_coords(1, bits=32)[:2] == [(0, 2), (0, 3)]
    assert copies.thread_coords(32, bits=32)[:2] == [(1, 0), (1, 1)]
    for t in range(copies.THREADS):
        rows = [r for r, _ in copies.thread_coords(t, bits=32)[::2]]
        assert rows == [t // 32 + 4 * k for k in range(16)]


@pytest.mark.parametrize("bits, bytes_per_instruction", [(128, 512), (32, 128)])
def test_a_warp_instruction_touches_contiguous_bytes(bits, bytes_per_instruction, p128, p32):
    # Copy k of the 32 lanes of a warp: one coalesced, contiguous span. 16-byte vectors move 4 rows per
    # instruction, 4-byte ones a single 128-byte row: 4x the instructions for the same tile.
    part = p128 if bits == 128 else p32
    v = part["values_per_copy"]
    for w in range(copies.THREADS // 32):
        for k in range(part["copies_per_thread"]):
            offs = sorted(
                o for t in part["threads"][32 * w : 32 * w + 32] for o in t["offsets"][k * v : k * v + v]
            )
            assert offs == list(range(offs[0], offs[0] + bytes_per_instruction // 2))


def test_partition_bits_are_checked():
    with pytest.raises(AttentionArgumentError, match="bits must be"):
        copies.tile_partition(48)


# ---------------------------------------------------------------------------------------------------------
# Argument checks (CPU: the device is checked after everything else)


@pytest.mark.parametrize("kind", list(FNS))
def test_cpu_tensor_is_rejected_naming_the_argument(kind):
    x = torch.zeros(64, 64, dtype=torch.float16)
    with pytest.raises(AttentionArgumentError, match=rf"copy_{kind}: x must be a CUDA tensor.*device cpu"):
        FNS[kind](x)


@pytest.mark.parametrize("kind", list(FNS))
@pytest.mark.parametrize(
    "x, message",
    [
        ([[1.0]], r"x must be a torch\.Tensor, got list"),
        (torch.zeros(64, 64), r"x must be float16 or bfloat16, got shape \(64, 64\), dtype torch\.float32"),
        (torch.zeros(2, 64, 64, dtype=torch.float16), r"x must be 2-D \(M, N\), got shape \(2, 64, 64\)"),
        (torch.zeros(128, 128, dtype=torch.bfloat16)[:, :64], r"x must be contiguous .*strides \(128, 1\)"),
        (torch.zeros(64, 128, dtype=torch.bfloat16).t(), r"x must be contiguous"),
        (torch.zeros(100, 64, dtype=torch.float16), r"multiples of the 64 x 64 tile, got shape \(100, 64\)"),
        (torch.zeros(64, 96, dtype=torch.float16), r"multiples of the 64 x 64 tile, got shape \(64, 96\)"),
        (torch.empty(2**15, 2**16, dtype=torch.float16, device="meta"), r"fewer than 2\*\*31 elements"),
        (torch.empty(64, 65536 * 64, dtype=torch.float16, device="meta"), r"at most 4194240 columns"),
    ],
    ids=["list", "float32", "3d", "strided", "transposed", "rows", "cols", "numel", "grid_y"],
)
def test_invalid_arguments(kind, x, message):
    with pytest.raises(AttentionArgumentError, match=rf"copy_{kind}: .*{message}"):
        FNS[kind](x)


@pytest.mark.parametrize(
    "cap, refused",
    [
        ((9, 0), set()),
        ((8, 0), {"tma"}),
        ((8, 9), {"tma"}),
        ((10, 0), {"tma"}),
        ((7, 5), {"vectorized", "cp_async", "tma"}),
        (None, {"vectorized", "cp_async", "tma"}),
    ],
)
def test_arch_requirements_asked_at_call_time(monkeypatch, cap, refused):
    asked = []

    def fake(device=None):
        asked.append(device)
        return cap

    monkeypatch.setattr(capability, "cuda_capability", fake)
    for kind in copies.KINDS:
        if kind in refused:
            with pytest.raises(UnsupportedFeatureError, match="TMA" if cap and cap >= (8, 0) else "sm80"):
                copies._require_arch(kind, torch.device("cuda", 0))
        else:
            copies._require_arch(kind, torch.device("cuda", 0))
    assert len(asked) == len(copies.KINDS)


# ---------------------------------------------------------------------------------------------------------
# PTX (CPU: fake tensors, compiled for a chosen arch)


@pytest.fixture(scope="module")
def ptx():
    cache = {}

    def get(kind, arch, dtype="bfloat16"):
        if (kind, arch, dtype) not in cache:
            cache[kind, arch, dtype] = copies.compile_copy(kind, dtype, arch=arch, keep_ptx=True).ptx
        return cache[kind, arch, dtype]

    return get


def _count(pattern, text):
    return len(re.findall(pattern, text))


@pytest.mark.parametrize("arch, dtype", [("sm_90a", "bfloat16"), ("sm_80", "float16")])
def test_vectorized_copy_uses_128bit_global_accesses(ptx, arch, dtype):
    text = ptx("vectorized", arch, dtype)
    assert text is not None and f".target {arch}" in text
    # 64 x 64 elements / 128 threads / 8 per vector: 4 vector loads and 4 vector stores per thread.
    assert _count(r"ld\.global\.v4\.b32", text) == 4
    assert _count(r"st\.global\.v4\.b32", text) == 4
    assert not re.search(r"(ld|st)\.global\.(u|b|f)16", text), "scalar 16-bit accesses"
    assert "ld.local" not in text


@pytest.mark.parametrize("arch, dtype", [("sm_90a", "float16"), ("sm_80", "bfloat16")])
def test_cp_async_copy_uses_16byte_cp_async_and_a_barrier(ptx, arch, dtype):
    text = ptx("cp_async", arch, dtype)
    assert text is not None and f".target {arch}" in text
    assert _count(r"cp\.async\.cg\.shared\.global \[[^\]]+\], \[[^\]]+\], 16", text) == 4
    assert "cp.async.commit_group" in text and "cp.async.wait_group" in text
    assert "bar.sync" in text, "shared memory is read by other threads than wrote it"
    assert _count(r"ld\.shared\.v4\.b32", text) == 4 and _count(r"st\.global\.v4\.b32", text) == 4
    assert "ld.global" not in text, "the load must not go through registers"


def test_tma_copy_uses_bulk_tensor_copies_and_an_mbarrier(ptx):
    text = ptx("tma", "sm_90a")
    assert text is not None and ".target sm_90a" in text
    load = r"cp\.async\.bulk\.tensor\.2d\.shared::cta\.global\.tile\.mbarrier::complete_tx::bytes"
    store = r"cp\.async\.bulk\.tensor\.2d\.global\.shared::cta\.tile\.bulk_group"
    # One load and one store instruction, each under its own elect.sync: one lane issues them.
    assert _count(load, text) == 1 and _count(store, text) == 1
    assert _count(r"elect\.sync", text) == 4  # barrier init, expect_tx, load, store
    assert "mbarrier.init.shared.b64" in text and "mbarrier.arrive.expect_tx" in text
    assert "mbarrier.try_wait.parity" in text
    assert "fence.proxy.async.shared::cta" in text
    assert "cp.async.bulk.commit_group" in text and "cp.async.bulk.wait_group.read" in text
    assert not re.search(r"(ld|st)\.global", text), "the data must not pass through registers"


def test_tma_copy_for_sm80_is_refused():
    with pytest.raises(Exception):  # noqa: B017 - the DSL raises its own error types
        copies.compile_copy("tma", arch="sm_80")


@pytest.mark.parametrize("kind", ["vectorized", "tma"])
def test_host_wrapper_tensors_declare_the_tile_divisibility(kind):
    """What ``_run`` passes (from a CPU tensor here) compiles to the same instructions as the fake tensors:
    the divisibility declared by ``_to_cute`` is what allows 128-bit accesses and the TMA descriptor."""
    from cutlass.cute.runtime import make_fake_stream

    from attn_cutlass.compile import compile_kernel

    x = torch.zeros(192, 320, dtype=torch.float16)
    mx = copies._to_cute(x)
    assert "(?{div=64},?{div=64}):(?{i64 div=64},1)" in str(mx)
    res = compile_kernel(
        copies.make_kernel(kind, x.dtype),
        mx,
        copies._to_cute(torch.empty_like(x)),
        make_fake_stream(),
        arch="sm_90a",
        keep_ptx=True,
    )
    needle = "ld.global.v4" if kind == "vectorized" else "cp.async.bulk.tensor"
    assert needle in res.ptx


# ---------------------------------------------------------------------------------------------------------
# GPU: bitwise round trips (sm80 tier: vectorized and cp.async, which also run on Hopper; sm90: TMA)

SHAPES = [(64, 64), (192, 320), (1088, 576), (64, 4096), (4096, 64), (2112, 1984)]
DTYPES = [torch.float16, torch.bfloat16]


def _random_bits(shape, dtype, seed=0):
    """Every 16-bit pattern is fair game (NaN payloads, infinities, subnormals): a copy must keep them."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    return torch.randint(-(2**15), 2**15, shape, dtype=torch.int16, device="cuda", generator=g).view(dtype)


def _check_round_trip(kind, shape, dtype):
    x = _random_bits(shape, dtype, seed=shape[0] * 7 + shape[1])
    before = x.clone()
    y = FNS[kind](x)
    torch.cuda.synchronize()
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert y.data_ptr() != x.data_ptr()
    assert torch.equal(y.view(torch.int16), x.view(torch.int16)), f"{kind} {shape} {dtype}: copy differs"
    assert torch.equal(x.view(torch.int16), before.view(torch.int16)), "the input was modified"


@pytest.mark.sm80
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["vectorized", "cp_async"])
def test_sm80_copies_are_bitwise_exact(kind, shape, dtype):
    _check_round_trip(kind, shape, dtype)


@pytest.mark.sm90
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_tma_copy_is_bitwise_exact(shape, dtype):
    _check_round_trip("tma", shape, dtype)


@pytest.mark.sm80
@pytest.mark.parametrize("kind", list(FNS))
def test_copy_of_a_row_slice_reads_only_that_slice(kind):
    if kind == "tma" and not capability.is_hopper():
        pytest.skip("TMA needs sm_90")
    big = _random_bits((320, 192), torch.bfloat16, seed=1)
    x = big[128:256]  # contiguous, 16-byte aligned, not at the start of its storage
    y = FNS[kind](x)
    torch.cuda.synchronize()
    assert torch.equal(y.view(torch.int16), x.view(torch.int16))


@pytest.mark.sm80
@pytest.mark.parametrize("kind", list(FNS))
def test_empty_and_misaligned_inputs(kind):
    if kind == "tma" and not capability.is_hopper():
        pytest.skip("TMA needs sm_90")
    assert FNS[kind](torch.empty(0, 128, dtype=torch.float16, device="cuda")).shape == (0, 128)
    flat = torch.zeros(64 * 64 + 8, dtype=torch.float16, device="cuda")
    x = flat[1 : 1 + 64 * 64].view(64, 64)  # contiguous but 2 bytes off a 16-byte boundary
    with pytest.raises(AttentionArgumentError, match=rf"copy_{kind}: x's data must be 16-byte aligned"):
        FNS[kind](x)


@pytest.mark.sm80
def test_tma_is_refused_off_hopper():
    if capability.is_hopper():
        pytest.skip("this GPU is a Hopper: the TMA copy runs (test_tma_copy_is_bitwise_exact)")
    with pytest.raises(UnsupportedFeatureError, match="Hopper"):
        copies.copy_tma(torch.zeros(64, 64, dtype=torch.float16, device="cuda"))


@pytest.mark.sm80
def test_each_copy_compiles_once_per_dtype(monkeypatch):
    built = []
    make_kernel = copies.make_kernel

    def counting(kind, dtype):
        built.append((kind, dtype))
        return make_kernel(kind, dtype)

    monkeypatch.setattr(copies, "_cache", {})
    monkeypatch.setattr(copies, "make_kernel", counting)
    kinds = ["vectorized", "cp_async"] + (["tma"] if capability.is_hopper() else [])
    for kind in kinds:
        for dtype in DTYPES:
            for shape in [(64, 64), (256, 128), (640, 1024)]:
                x = _random_bits(shape, dtype)
                assert torch.equal(FNS[kind](x).view(torch.int16), x.view(torch.int16))
    assert sorted(built, key=str) == sorted(((k, d) for k in kinds for d in DTYPES), key=str)
    assert set(copies.copy_cache_info()) == set(built)
