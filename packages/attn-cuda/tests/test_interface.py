"""CPU tier: argument checks, refused features, op registration and fake impls, tile arithmetic, bench."""

import math
import re

import pytest
import torch

import attn_cuda
from attn_cuda import basics, bench, catalog, flash
from attn_cuda.basics.matmul import MMA_LAYOUTS, MMA_ORDERS, MMA_TILES, kernel_name, launch_shape
from attn_cuda.interface import _check_supported
from attn_reference.errors import AttentionArgumentError, UnsupportedFeatureError


def _qkv(device="cpu", dtype=torch.float16, d=64, hq=4, hk=2):
    return (
        torch.randn(2, 9, hq, d, dtype=dtype, device=device),
        *(torch.randn(2, 11, hk, d, dtype=dtype, device=device),) * 2,
    )


def test_cpu_tensors_are_refused_with_the_shared_message():
    with pytest.raises(AttentionArgumentError, match="cuda"):
        attn_cuda.flash_attn_func(*_qkv())


@pytest.mark.parametrize(
    ("kw", "what"), [({"window_size": (8, -1)}, "window"), ({"softcap": 2.0}, "softcap")]
)
def test_window_and_softcap_are_unsupported(kw, what):
    with pytest.raises(UnsupportedFeatureError, match=what):
        _check_supported(kw.get("window_size", (-1, -1)), False, kw.get("softcap", 0.0))


def test_causal_alone_is_supported_and_bad_windows_are_argument_errors():
    _check_supported((-1, -1), True, 0.0)
    _check_supported((-1, 0), True, 0.0)
    with pytest.raises(AttentionArgumentError, match="window"):
        _check_supported((-5, 2), False, 0.0)


def test_ops_are_registered_with_fake_impls():
    q, k, v = (t.to("meta") for t in _qkv(d=128))
    out, lse = torch.ops.attn_cuda.flash_fwd(q, k, v, 0.1, True)
    assert out.shape == q.shape and lse.shape == (2, 4, 9) and lse.dtype == torch.float32
    dq, dk, dv = torch.ops.attn_cuda.flash_bwd(out, q, k, v, out, lse, 0.1, True)
    assert dq.shape == q.shape and dk.shape == k.shape and dv.shape == v.shape


def test_tile_configurations_fit_the_hardware():
    for d in flash.HEAD_DIMS:
        for variant, configs in flash.FWD_VARIANTS.items():
            f = configs[d]
            assert f.head_dim == d, variant
            assert f.smem_bytes() <= 163 * 1024, variant  # A100's opt-in limit
            assert f.threads <= 1024 and f.block_m == 16 * f.row_tiles * f.warps
            assert (f.block_m * d // 8) % f.threads == 0 and (f.block_n * d // 8) % f.threads == 0  # cp.async
            assert f.block_n % 16 == 0
        for variant, configs in flash.BWD_VARIANTS.items():
            b = configs[d]
            assert b.smem_bytes() <= 163 * 1024, variant
            assert (b.block_m * d // 8) % b.threads == 0, variant
    assert flash.FWD_VARIANTS["base"][128].grid(2, 16, 1000) == (16, 16, 2)
    assert flash.FWD_VARIANTS["wide"][128].grid(2, 16, 1000) == (8, 16, 2)
    # wide48: 48 keys per step at hd128, 32 when causal (the causal mask's registers); hd64 is wide's.
    w48 = flash.FWD_VARIANTS["wide48"]
    assert w48[128].for_causal(False).name(torch.bfloat16, False) == (
        "flash_fwd_mma_wide<__nv_bfloat16, 128, 48, 4, 2, 1, false>"
    )
    assert w48[128].for_causal(True).name(torch.bfloat16, True) == (
        "flash_fwd_mma_wide<__nv_bfloat16, 128, 32, 4, 2, 1, true>"
    )
    assert w48[64].for_causal(True) == flash.FWD_VARIANTS["wide"][64]
    assert w48[128].for_causal(False).smem_bytes() == (128 + 4 * 48) * 128 * 2
    assert flash.BWD_VARIANTS["base"][128].grid(2, 4, 1000) == (16, 4, 2)
    assert flash.BWD_VARIANTS["wide8"][128].grid(2, 4, 1000) == (8, 4, 2)  # 128 keys a block
    assert (
        flash.FWD_VARIANTS["base"][64].name(torch.bfloat16, True)
        == "flash_fwd_mma<__nv_bfloat16, 64, 64, 4, true>"
    )
    assert (
        flash.FWD_VARIANTS["wide"][128].name(torch.float16, False)
        == "flash_fwd_mma_wide<__half, 128, 32, 4, 2, 1, false>"
    )
    for tile in MMA_TILES.values():  # the tensor-core matmul's block tiles
        assert tile.smem <= 163 * 1024 and tile.threads <= 1024
        assert (tile.bm * tile.bk // 8) % tile.threads == 0 and (tile.bk * tile.bn // 8) % tile.threads == 0
        assert tile.bk % 64 == 0 and tile.bn % 64 == 0  # rows of the 64-element swizzle
        assert tile.wm % 16 == 0 and tile.wn % 16 == 0
    assert launch_shape("mma", 333, 264, "128x128") == ((3, 3), (256,), 96 * 1024)
    assert launch_shape("mma", 333, 264, "128x256") == ((2, 3), (256,), 144 * 1024)
    assert (
        kernel_name("mma", torch.bfloat16, "plain", "128x256")
        == "matmul_mma<__nv_bfloat16, 128, 256, 64, 3, 64, 64, 1, 1>"
    )
    # The default tile (where its 144 KB fit); the CPU tier compiles (and checks for spills) every tile x order.
    assert kernel_name("mma", torch.float16) == "matmul_mma<__half, 128, 256, 64, 3, 64, 64, 8, 1>"
    names = catalog.kernels()["matmul.cu"]
    for tile in MMA_TILES:
        for order in MMA_ORDERS:
            for dtype in (torch.float16, torch.bfloat16):
                assert kernel_name("mma", dtype, order, tile) in names
        for layout in MMA_LAYOUTS:
            assert kernel_name("mma", torch.float16, "grouped", tile, layout) in names
    # The other shared-memory layouts: a last template argument, and 8 more elements a row when padded.
    assert (
        kernel_name("mma", torch.float16, "grouped", "128x128", "padded")
        == "matmul_mma<__half, 128, 128, 64, 3, 64, 32, 8, 1, 1>"
    )
    assert launch_shape("mma", 333, 264, "128x128", "padded") == (
        (3, 3),
        (256,),
        3 * (128 * 72 + 64 * 136) * 2,
    )
    assert launch_shape("mma", 333, 264, "128x128", "plain") == ((3, 3), (256,), 96 * 1024)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"tile": "64x64"}, f"matmul: tile must be one of {sorted(MMA_TILES)}, got '64x64'"),
        ({"order": "zigzag"}, f"matmul: order must be one of {sorted(MMA_ORDERS)}, got 'zigzag'"),
        ({"layout": "diagonal"}, f"matmul: layout must be one of {sorted(MMA_LAYOUTS)}, got 'diagonal'"),
        ({"variant": "fast"}, f"matmul: variant must be one of {sorted(basics.MATMUL_VARIANTS)}, got 'fast'"),
    ],
)
def test_matmul_options_are_validated_with_the_allowed_values(kw, message):
    # Checked before anything about the tensors, so CPU tensors reach it.
    a, b = torch.randn(16, 16, dtype=torch.float16), torch.randn(16, 16, dtype=torch.float16)
    with pytest.raises(ValueError, match=re.escape(message)):
        basics.matmul(a, b, **kw)


@pytest.mark.parametrize(
    ("x", "got"),
    [
        (torch.zeros(3), "shape (3,), dtype torch.float32, device cpu"),
        (torch.zeros(2, dtype=torch.float16), "dtype torch.float16"),
        ([1.0, 2.0], "got list"),
    ],
)
def test_reduce_sum_names_what_it_was_given(x, got):
    with pytest.raises(
        ValueError, match=re.escape("reduce_sum: x must be a float32 CUDA tensor; ") + ".*" + re.escape(got)
    ):
        basics.reduce_sum(x)


def test_backward_variant_selection(monkeypatch):
    monkeypatch.delenv("ATTN_CUDA_BWD_VARIANT", raising=False)
    assert flash.bwd_variant() == flash.DEFAULT_BWD_VARIANT == "tiled"
    # FA2's tiles: 128 keys a block, 64 queries a step at hd128 and 128 at hd64, 8 warps.
    assert flash.BWD_CONFIGS[64].block_m == 128 and flash.BWD_CONFIGS[128].block_m == 64
    assert all(config.pair_dq and config.block_n == 128 for config in flash.BWD_CONFIGS.values())
    assert flash.BWD_CONFIGS[128].name(torch.bfloat16, True) == (
        "flash_bwd_mma_tiled<__nv_bfloat16, 128, 64, 128, 8, 2, 4, 2, true>"
    )
    assert flash.BWD_CONFIGS[128].grid(2, 4, 1000) == (8, 4, 2)
    # K, V, two stages of Q and dO, P and dS, two stages of L and D rows: within an A100's 163 KB.
    assert flash.BWD_CONFIGS[128].smem_bytes() == (2 * 128 + 4 * 64) * 128 * 2 + 2 * 64 * 128 * 2 + 4 * 64 * 4
    assert flash.BWD_CONFIGS[128].filename == "flash_bwd_tiled.cu"
    assert flash.BWD_VARIANTS["wide8"][128].filename == "flash_bwd.cu"
    monkeypatch.setenv("ATTN_CUDA_BWD_VARIANT", "wide8")
    assert flash.bwd_variant() == "wide8" and flash.bwd_variant("base") == "base"
    assert flash.BWD_VARIANTS["wide8"][128].name(torch.bfloat16, True) == (
        "flash_bwd_mma<__nv_bfloat16, 128, 16, 8, true>"
    )
    assert flash.BWD_VARIANTS["wide8"][128].block_n == 128
    with pytest.raises(ValueError, match="backward variant"):
        flash.bwd_variant("nope")
    names = flash.all_instantiations()
    for configs in flash.BWD_VARIANTS.values():  # every variant is compiled by the CPU tier
        assert configs[128].name(torch.float16, False) in names[configs[128].filename]


def test_default_backward_falls_back_where_its_shared_memory_does_not_fit(monkeypatch):
    """sm_86 / sm_89 allow 99 KB a block: the default (tiled, ~162 KB) gives way to the per-warp tiling
    there, on H100/A100 it stays; a variant asked for by name is never swapped."""
    from attn_cuda import runtime

    monkeypatch.delenv("ATTN_CUDA_BWD_VARIANT", raising=False)
    limits = {0: 227 * 1024, 1: 163 * 1024, 2: 99 * 1024}
    monkeypatch.setattr(runtime, "max_dynamic_smem", limits.__getitem__)
    for d in flash.HEAD_DIMS:
        tiled, fallback = flash.BWD_VARIANTS["tiled"][d], flash.BWD_VARIANTS[flash.FALLBACK_BWD_VARIANT][d]
        assert flash.bwd_config(d, 0) == flash.bwd_config(d, 1) == tiled
        assert fallback.smem_bytes() <= limits[2] < tiled.smem_bytes()
        assert flash.bwd_config(d, 2) == fallback
        assert flash.bwd_config(d, 2, "tiled") == tiled  # asked for: launched as asked (and refused there)
        monkeypatch.setenv("ATTN_CUDA_BWD_VARIANT", "tiled")
        assert flash.bwd_config(d, 2) == tiled
        monkeypatch.delenv("ATTN_CUDA_BWD_VARIANT")


def test_forward_variant_selection(monkeypatch):
    monkeypatch.delenv("ATTN_CUDA_FWD_VARIANT", raising=False)
    assert flash.fwd_variant() == flash.DEFAULT_FWD_VARIANT == "wide64"
    assert flash.fwd_variant("base") == "base"
    monkeypatch.setenv("ATTN_CUDA_FWD_VARIANT", "wide8")
    assert flash.fwd_variant() == "wide8"
    with pytest.raises(ValueError, match="variant"):
        flash.fwd_variant("nope")
    names = flash.all_instantiations()["flash_fwd.cu"]
    for configs in flash.FWD_VARIANTS.values():  # every variant is compiled by the CPU tier
        for causal in (False, True):
            assert configs[128].for_causal(causal).name(torch.float16, causal) in names


def _launch_of(monkeypatch, variable: str, env: str | None, *call):
    """``flash.flash_fwd(*call[0], **call[1])`` with ``$variable`` set to ``env`` (or unset) and the kernel
    faked: the (grid, args) it launched."""
    if env is None:
        monkeypatch.delenv(variable, raising=False)
    else:
        monkeypatch.setenv(variable, env)
    launched = []
    monkeypatch.setattr(flash, "module_for", lambda filename, name, arch=None: None)
    monkeypatch.setattr(
        flash, "launch", lambda mod, name, grid, threads, args, smem: launched.append((grid, args))
    )
    args, kwargs = call
    flash.flash_fwd(*args, **kwargs)
    (launch,) = launched
    return launch


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("order", [None, "per_head", "heads_first"])
@pytest.mark.parametrize("env", [None, "per_head"])
def test_causal_order_sets_the_grid_and_the_kernel_flag(monkeypatch, causal, order, env):
    """What the forward launches: the grid's axes and the ``heads_first`` argument, the kernel faked. An
    explicit ``order`` wins over ``$ATTN_CUDA_CAUSAL_ORDER``, which wins over the default (heads_first)."""
    q, k, v = (torch.zeros(2, 1000, 16, 128, dtype=torch.bfloat16) for _ in range(3))
    grid, args = _launch_of(
        monkeypatch, "ATTN_CUDA_CAUSAL_ORDER", env, (q, k, v, 0.1, causal), dict(order=order)
    )
    heads_first = causal and (order or env or "heads_first") == "heads_first"
    assert grid == ((16, 8, 2) if heads_first else (8, 16, 2))  # 1000 rows in blocks of 128
    assert args[-2].value == int(heads_first)  # the wide kernel's last argument is the rescale slack


@pytest.mark.parametrize("rescale", [None, "lazy", "always"])
@pytest.mark.parametrize("env", [None, "always", "lazy"])
@pytest.mark.parametrize("variant", ["wide48c", "base"])
def test_rescale_mode_sets_the_slack_argument(monkeypatch, rescale, env, variant):
    """The wide kernels get the slack (8, or -inf: rescale every tile) as their last argument; an explicit
    ``rescale`` wins over ``$ATTN_CUDA_RESCALE``, which wins over the default. The first kernel has
    no such argument (it always rescales)."""
    q, k, v = (torch.zeros(1, 300, 2, 128, dtype=torch.float16) for _ in range(3))
    call = (q, k, v, 0.1, False), dict(variant=variant, rescale=rescale)
    _, args = _launch_of(monkeypatch, "ATTN_CUDA_RESCALE", env, *call)
    if variant == "base":
        assert len(args) == 23  # 9 scalars and tensors, 12 strides, the scale and the order flag
        return
    lazy = (rescale or env or flash.DEFAULT_RESCALE) == "lazy"
    assert args[-1].value == (flash.RESCALE_SLACK if lazy else -math.inf)


def test_wgmma_forward_launch(monkeypatch):
    """The opt-in sm_90a forward, kernel faked: one block per 128 query rows of a (head, batch), 384
    threads, its tiles and barriers in shared memory, and a refusal on any other architecture."""
    q = torch.zeros(2, 300, 8, 128, dtype=torch.bfloat16)
    k = v = torch.zeros(2, 203, 2, 128, dtype=torch.bfloat16)
    monkeypatch.setattr(flash, "device_arch", lambda device: "sm_90a")
    monkeypatch.setattr(flash, "_tensor_maps", lambda tensors, device: torch.zeros(384, dtype=torch.uint8))
    monkeypatch.setattr(flash, "module_for", lambda filename, name, arch=None: filename)
    launched = []
    monkeypatch.setattr(
        flash,
        "launch",
        lambda mod, name, grid, threads, args, smem: launched.append((mod, name, grid, threads, smem)),
    )
    flash.flash_fwd(q, k, v, 0.1, True, kernel="wgmma")
    assert launched == [
        (
            "flash_fwd_sm90.cu",
            "flash_fwd_sm90<__nv_bfloat16, 128, true, true>",
            (3, 8, 2),
            384,
            7 * 32768 + 80 + 1024,
        )
    ]
    assert all(flash.sm90_smem_bytes(d) <= 227 * 1024 for d in flash.HEAD_DIMS)
    assert set(catalog.hopper_kernels()["flash_fwd_sm90.cu"]) == set(flash.sm90_instantiations())
    monkeypatch.setattr(flash, "device_arch", lambda device: "sm_80")
    with pytest.raises(RuntimeError, match="sm_90a"):
        flash.flash_fwd(q, k, v, 0.1, True, kernel="wgmma")


def test_forward_kernel_selection(monkeypatch):
    """The default forward is the wgmma one on sm_90a and the mma one on any other GPU (or with no CUDA
    device named); ``$ATTN_CUDA_FWD_KERNEL`` or a caller's ``kernel`` overrides it; the teaching kernels
    only by name; anything else is refused by name."""
    monkeypatch.delenv("ATTN_CUDA_FWD_KERNEL", raising=False)
    assert flash.fwd_kernel() == "mma"
    assert flash.fwd_kernel(device=torch.device("cpu")) == "mma"
    for arch, default in (("sm_90a", "wgmma"), ("sm_80", "mma"), ("sm_89", "mma"), ("sm_100a", "mma")):
        monkeypatch.setattr(flash, "device_arch", lambda device, arch=arch: arch)
        assert flash.fwd_kernel(device=torch.device("cuda", 0)) == default, arch
        monkeypatch.setenv("ATTN_CUDA_FWD_KERNEL", "mma" if default == "wgmma" else "wgmma")
        assert flash.fwd_kernel(device=torch.device("cuda", 0)) != default  # the variable wins
        assert flash.fwd_kernel("scalar_v2", torch.device("cuda", 0)) == "scalar_v2"
        monkeypatch.delenv("ATTN_CUDA_FWD_KERNEL")
    assert flash.fwd_kernel("scalar_v1") == "scalar_v1"
    monkeypatch.setenv("ATTN_CUDA_FWD_KERNEL", "wgmma")
    assert flash.fwd_kernel() == "wgmma"
    assert flash.fwd_kernel("mma") == "mma"  # an explicit kernel wins
    monkeypatch.setenv("ATTN_CUDA_FWD_KERNEL", "scalar_v2")  # not a tensor-core forward
    with pytest.raises(ValueError, match="ATTN_CUDA_FWD_KERNEL"):
        flash.fwd_kernel()
    q = k = v = torch.zeros(1, 8, 2, 64, dtype=torch.float16)
    with pytest.raises(ValueError, match="forward kernel"):
        flash.flash_fwd(q, k, v, 0.1, False, kernel="nope")


@pytest.mark.parametrize("option", [dict(variant="base"), dict(order="per_head"), dict(rescale="always")])
def test_mma_options_are_refused_for_the_wgmma_forward(monkeypatch, option):
    """``variant``, ``order`` and ``rescale`` choose among the mma kernel's forms: asked of a call that runs
    the wgmma kernel (the default on sm_90a) they raise instead of being ignored."""
    monkeypatch.delenv("ATTN_CUDA_FWD_KERNEL", raising=False)
    monkeypatch.setattr(flash, "device_arch", lambda device: "sm_90a")
    q = k = v = torch.zeros(1, 8, 2, 64, dtype=torch.float16)
    (name,) = option
    with pytest.raises(ValueError, match=f"{name}=.*kernel='mma'"):
        flash.flash_fwd(q, k, v, 0.1, False, kernel="wgmma", **option)


def test_tensor_maps_are_encoded_once_per_tensor_layout(monkeypatch):
    """The wgmma forward's descriptors are cached by what they encode: the same tensors again cost no
    encoding; another address, shape or stride does; the cache stays bounded."""
    encoded = []
    monkeypatch.setattr(flash, "_encode_tensor_map", lambda t: encoded.append(t.data_ptr()) or bytes(128))
    monkeypatch.setattr(flash, "_TENSOR_MAPS", flash.collections.OrderedDict())
    q, k, v = (torch.zeros(1, 64, 2, 64, dtype=torch.float16) for _ in range(3))
    first = flash._tensor_maps((q, k, v), torch.device("cpu"))
    assert first.shape == (384,) and len(encoded) == 3
    assert flash._tensor_maps((q, k, v), torch.device("cpu")) is first and len(encoded) == 3
    flash._tensor_maps((q, k, v[:, :32]), torch.device("cpu"))  # another shape: encoded anew
    assert len(encoded) == 6
    for i in range(flash._TENSOR_MAPS_KEPT + 5):
        flash._tensor_maps((torch.zeros(1, 8 + i, 2, 64, dtype=torch.float16),) * 3, torch.device("cpu"))
    assert len(flash._TENSOR_MAPS) == flash._TENSOR_MAPS_KEPT


def test_tma_layout_of_a_strided_tensor():
    """The 4-D tensor map of a (batch, seq, heads, dim) view: sizes and byte strides innermost first."""
    base = torch.zeros(3, 50, 4, 256, dtype=torch.float16)
    t = base[:, :40, :, :128]  # a view: rows of 4 * 256 elements, heads 256 apart
    dims, strides, box = flash.tma_layout(t)
    assert dims == [128, 40, 4, 3]
    assert strides == [4 * 256 * 2, 256 * 2, 50 * 4 * 256 * 2]
    assert box == [64, 128, 1, 1]


def test_tma_operands_of_expanded_views_are_copied():
    """A broadcast (stride 0) dimension cannot be a tensor map's; such a view is copied, others are not."""
    kv = torch.randn(2, 9, 1, 64, dtype=torch.float16)
    expanded = kv.expand(2, 9, 4, 64)
    t = flash._tma_operand(expanded)
    assert 0 not in t.stride() and torch.equal(t, expanded)
    plain = torch.randn(2, 9, 4, 64, dtype=torch.float16)
    assert flash._tma_operand(plain) is plain
    assert flash._tma_operand(kv) is kv  # stride of a one-element dimension is never stepped through


def test_wgmma_host_constants_match_the_kernel():
    """The launch (grid, threads, shared memory, tensor-map boxes) and the kernel's constants agree: a box
    of another size would leave the kernel's mbarriers waiting for bytes that never come."""
    import re

    from attn_cuda import runtime as rt

    src = rt.kernel_source(flash.SM90_FWD_FILE)
    const = {m[0]: int(m[1]) for m in re.findall(r"constexpr int (\w+) = (\d+);", src)}
    assert const["BM"] == const["BN"] == flash.SM90_BLOCK
    assert const["STAGES"] == flash.SM90_STAGES
    assert const["THREADS"] == flash.SM90_THREADS == 3 * 128
    assert const["ROW_BYTES"] == flash.SM90_TMA_COLS * 2  # a box row: 64 16-bit elements


def test_rescale_mode_selection(monkeypatch):
    monkeypatch.delenv("ATTN_CUDA_RESCALE", raising=False)
    assert flash.rescale_mode() == flash.DEFAULT_RESCALE == "lazy"
    assert flash.other_rescale() == "always"
    monkeypatch.setenv("ATTN_CUDA_RESCALE", "lazy")
    assert flash.rescale_mode() == "lazy" and flash.rescale_mode("always") == "always"
    with pytest.raises(ValueError, match="rescale mode"):
        flash.rescale_mode("sometimes")


def test_causal_order_selection(monkeypatch):
    monkeypatch.delenv("ATTN_CUDA_CAUSAL_ORDER", raising=False)
    assert flash.causal_order() == flash.DEFAULT_CAUSAL_ORDER == "heads_first"
    monkeypatch.setenv("ATTN_CUDA_CAUSAL_ORDER", "per_head")
    assert flash.causal_order() == "per_head" and flash.causal_order("heads_first") == "heads_first"
    with pytest.raises(ValueError, match="causal order"):
        flash.causal_order("longest")
    assert flash.FWD_VARIANTS["wide48"][128].grid(2, 16, 1000, heads_first=True) == (16, 8, 2)


def test_bench_description_normalises():
    # attn-bench is not a dependency of attn-cuda: this check runs where both are installed.
    normalise = pytest.importorskip("attn_bench.backend", reason="attn-bench is not installed").normalise

    b = normalise(bench.backend, kind="backend")
    assert b.name == "cuda" and set(b.impls) == {
        "attention_fwd",
        "attention_bwd",
        "vector_add",
        "softmax",
        "matmul",
    }
    shape = dict(batch=1, seqlen_q=16384, seqlen_k=16384, heads_q=16, heads_k=16, head_dim=128)
    assert b.why_not("attention_fwd", "mma", shape, "cuda") is None
    assert "head dim" in b.why_not("attention_fwd", "mma", {**shape, "head_dim": 96}, "cuda")
    assert b.why_not("attention_fwd", "scalar", shape, "cuda") is not None
    assert b.why_not("matmul", "naive", dict(m=8192, n=8192, k=8192), "cuda") is not None
    assert b.why_not("attention_fwd", "mma", shape, "cpu") is not None


def test_entry_point_is_declared():
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="attn_bench.backends")}
    assert eps.get("cuda") == "attn_cuda.bench:backend"


def test_the_matmul_tile_falls_back_where_shared_memory_is_short(monkeypatch):
    import importlib

    from attn_cuda import runtime

    mm = importlib.import_module("attn_cuda.basics.matmul")  # the module: basics.matmul is the function

    monkeypatch.setattr(runtime, "max_dynamic_smem", lambda index: 227 * 1024)  # Hopper
    assert mm.default_tile(0) == "128x256"
    monkeypatch.setattr(runtime, "max_dynamic_smem", lambda index: 99 * 1024)  # sm_86 / sm_89
    assert mm.default_tile(0) == "128x128" == mm.MMA_FALLBACK_TILE
