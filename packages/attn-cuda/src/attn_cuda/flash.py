"""Host side of the attention kernels: tile configurations, name expressions, shared memory, launches.

Everything here up to :func:`flash_fwd` is plain arithmetic on shapes and is unit-tested on the CPU; the
launchers need a GPU. Validation of user input happens one level up, in :mod:`attn_cuda.interface`.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import struct
import threading

import torch

from .runtime import device_arch, f32, i32, i64, launch, package_module

LOG2E = 1.4426950408889634

#: torch dtype -> the C++ element type the templates are instantiated with.
CTYPES = {torch.float16: "__half", torch.bfloat16: "__nv_bfloat16", torch.float32: "float"}
#: Head dims the tensor-core kernels are instantiated for.
HEAD_DIMS = (64, 128)
DTYPES = (torch.float16, torch.bfloat16)


def _bool(x: bool) -> str:
    return "true" if x else "false"


@dataclasses.dataclass(frozen=True)
class FwdConfig:
    """Tile shape of the tensor-core forward: BM = 16 * row_tiles * warps query rows, BN keys per step.

    ``kernel`` picks the source template: ``flash_fwd_mma`` (the first version: 16 rows per warp, Q held
    in registers, K and V in one cp.async group) or ``flash_fwd_mma_wide`` (``row_tiles`` m16 tiles per
    warp, Q re-read from shared memory, K and V in separate groups, per-tile masking; ``min_blocks`` is
    its ``__launch_bounds__`` occupancy hint).
    """

    head_dim: int
    block_n: int = 64
    warps: int = 4
    kernel: str = "flash_fwd_mma"
    row_tiles: int = 1
    min_blocks: int = 1
    #: BN of the causal instantiation when it differs (the causal mask needs a few more registers)
    causal_block_n: int | None = None

    def for_causal(self, causal: bool) -> FwdConfig:
        """The config that runs: ``causal_block_n`` replaces ``block_n`` for causal calls when set."""
        if causal and self.causal_block_n is not None:
            return dataclasses.replace(self, block_n=self.causal_block_n, causal_block_n=None)
        return self

    @property
    def block_m(self) -> int:
        return 16 * self.row_tiles * self.warps

    @property
    def threads(self) -> int:
        return 32 * self.warps

    def smem_bytes(self, elt: int = 2) -> int:
        # Q tile, plus K and V tiles twice each (double buffering).
        return (self.block_m + 4 * self.block_n) * self.head_dim * elt

    def grid(
        self, batch: int, heads_q: int, seqlen_q: int, heads_first: bool = False
    ) -> tuple[int, int, int]:
        """(query blocks, heads, batch), or with ``heads_first`` (causal) (heads, query blocks, batch)."""
        m_blocks = math.ceil(seqlen_q / self.block_m)
        return (heads_q, m_blocks, batch) if heads_first else (m_blocks, heads_q, batch)

    def name(self, dtype: torch.dtype, causal: bool) -> str:
        if self.kernel == "flash_fwd_mma":
            return f"flash_fwd_mma<{CTYPES[dtype]}, {self.head_dim}, {self.block_n}, {self.warps}, {_bool(causal)}>"
        return (
            f"{self.kernel}<{CTYPES[dtype]}, {self.head_dim}, {self.block_n}, {self.warps}, {self.row_tiles}, "
            f"{self.min_blocks}, {_bool(causal)}>"
        )


@dataclasses.dataclass(frozen=True)
class BwdConfig:
    """Tile shape of the tensor-core backward: BN = 16 * warps keys per block, BM queries per step."""

    head_dim: int
    block_m: int
    warps: int = 4
    pair_dq: bool = False  # dQ added two floats per atomic (float2 atomicAdd, sm_90 and later)

    @property
    def block_n(self) -> int:
        return 16 * self.warps

    @property
    def threads(self) -> int:
        return 32 * self.warps

    def smem_bytes(self, elt: int = 2) -> int:
        # K and V once, Q and dO twice each, dS^T with rows padded by 8 elements.
        return (2 * self.block_n + 4 * self.block_m) * self.head_dim * elt + self.block_n * (
            self.block_m + 8
        ) * elt

    def grid(self, batch: int, heads_k: int, seqlen_k: int) -> tuple[int, int, int]:
        return (math.ceil(seqlen_k / self.block_n), heads_k, batch)

    def name(self, dtype: torch.dtype, causal: bool) -> str:
        pair = ", true" if self.pair_dq else ""
        return f"flash_bwd_mma<{CTYPES[dtype]}, {self.head_dim}, {self.block_m}, {self.warps}, {_bool(causal)}{pair}>"

    @property
    def filename(self) -> str:
        return "flash_bwd.cu"


@dataclasses.dataclass(frozen=True)
class TiledBwdConfig:
    """FA2's backward tiling (``flash_bwd_tiled.cu``): BN keys a block, BM queries a step, P and dS staged
    in shared memory, each product spread over a 2-D grid of warps. ``wm_s``, ``wn_kv`` and ``wm_q`` are
    the warps along the rows of S (queries), of dK and dV (keys) and of dQ (queries); the rest of each
    grid runs along its columns. dQ is always added in pairs (float2 atomics on sm_90)."""

    head_dim: int
    block_m: int
    block_n: int = 128
    warps: int = 8
    wm_s: int = 2
    wn_kv: int = 4
    wm_q: int = 2
    pair_dq = True

    @property
    def threads(self) -> int:
        return 32 * self.warps

    def smem_bytes(self, elt: int = 2) -> int:
        # K and V once, Q and dO twice each, P and dS, then the L and D rows of two steps in fp32.
        bm, bn, hd = self.block_m, self.block_n, self.head_dim
        return (2 * bn + 4 * bm) * hd * elt + 2 * bm * bn * elt + 4 * bm * 4

    def grid(self, batch: int, heads_k: int, seqlen_k: int) -> tuple[int, int, int]:
        return (math.ceil(seqlen_k / self.block_n), heads_k, batch)

    def name(self, dtype: torch.dtype, causal: bool) -> str:
        return (
            f"flash_bwd_mma_tiled<{CTYPES[dtype]}, {self.head_dim}, {self.block_m}, {self.block_n}, "
            f"{self.warps}, {self.wm_s}, {self.wn_kv}, {self.wm_q}, {_bool(causal)}>"
        )

    @property
    def filename(self) -> str:
        return "flash_bwd_tiled.cu"


#: Forward variants, each a config per head dim. ``base`` is the first kernel (kept to compare and to
#: fall back to); ``wide`` gives every warp 32 query rows so each K/V fragment feeds two mma (hd128 needs
#: BN = 32 to stay within 255 registers without spilling); ``wide8`` is 8 warps of 16 rows (BM = 128);
#: ``wide256`` is 8 warps of 32 rows (BM = 256): each K/V tile loaded into shared memory feeds twice as many
#: rows as in ``wide`` (half the L2 -> shared traffic per FLOP) at the same registers per thread; it
#: passed its GPU tests but measured slower on the H200 (hd128 16k 271 vs 295 TFLOP/s), so not a default.
#: ``wide48`` is ``wide`` with 48 keys per step at hd128 (non-causal; 32 causal): each step's fixed costs
#: (barriers, row max and sum, the O rescale) spread over 1.5x the mma; 251-255 registers, no spills
#: (NVRTC 13; 64 keys spill a register, and 48 causal spilled on sm_90a); the default since 2026-11-22.
#: ``wide48c`` is ``wide48`` with 48 keys a step causal too: since the kernel reads the causal order at
#: run time (2026-12-03) that instantiation compiles without spills on sm_90a as well (255 registers).
#: ``wide64c`` is ``wide48c`` with FA2's 64 keys a step under the causal mask: the causal instantiation
#: rescales at every tile (no lazy vote), and at 64 keys it still compiles without spills (255 registers,
#: sm_80 and sm_90a); the non-causal one stays at 48 keys, where the vote fits (at 64 it spills 12 bytes
#: on sm_90a, and 4 even without the vote).
FWD_VARIANTS: dict[str, dict[int, FwdConfig]] = {
    "base": {64: FwdConfig(64), 128: FwdConfig(128)},
    "wide": {
        64: FwdConfig(64, block_n=64, warps=4, kernel="flash_fwd_mma_wide", row_tiles=2),
        128: FwdConfig(128, block_n=32, warps=4, kernel="flash_fwd_mma_wide", row_tiles=2),
    },
    "wide8": {
        64: FwdConfig(64, block_n=64, warps=8, kernel="flash_fwd_mma_wide", row_tiles=1),
        128: FwdConfig(128, block_n=64, warps=8, kernel="flash_fwd_mma_wide", row_tiles=1),
    },
    "wide256": {
        64: FwdConfig(64, block_n=64, warps=8, kernel="flash_fwd_mma_wide", row_tiles=2),
        128: FwdConfig(128, block_n=32, warps=8, kernel="flash_fwd_mma_wide", row_tiles=2),
    },
    "wide48": {
        64: FwdConfig(64, block_n=64, warps=4, kernel="flash_fwd_mma_wide", row_tiles=2),
        128: FwdConfig(128, block_n=48, warps=4, kernel="flash_fwd_mma_wide", row_tiles=2, causal_block_n=32),
    },
    "wide48c": {
        64: FwdConfig(64, block_n=64, warps=4, kernel="flash_fwd_mma_wide", row_tiles=2),
        128: FwdConfig(128, block_n=48, warps=4, kernel="flash_fwd_mma_wide", row_tiles=2),
    },
    "wide64c": {
        64: FwdConfig(64, block_n=64, warps=4, kernel="flash_fwd_mma_wide", row_tiles=2),
        128: FwdConfig(128, block_n=48, warps=4, kernel="flash_fwd_mma_wide", row_tiles=2, causal_block_n=64),
    },
    "wide64": {
        64: FwdConfig(64, block_n=80, warps=4, kernel="flash_fwd_mma_wide", row_tiles=2, causal_block_n=96),
        128: FwdConfig(128, block_n=64, warps=4, kernel="flash_fwd_mma_wide", row_tiles=2),
    },
}
#: The variant ``flash_attn_func`` uses; ``ATTN_CUDA_FWD_VARIANT`` overrides it. All passed their GPU tests
#: on the H200. ``wide48`` measured fastest there at 16k (2026-11-22, one process: hd128 318.9 TFLOP/s
#: against wide 295.8 and base 244.4); ``wide48c`` (48 keys a step under the causal mask too) is the
#: default since the attn-bench ablations of 2026-12-03 (H200, bf16, 16k, per_head causal order, same
#: run): causal hd128 296.4 against wide48's 276.0 (1.07x), hd128 319.8 against 319.7, hd64 271.2 against
#: 271.4. With the heads_first causal order (the last 16k run of 2026-12-03): causal hd128 317 TFLOP/s.
#: ``wide64`` gives the non-causal kernels wider key tiles too: 64 at hd128 (FA2's tile) and 80 at hd64 (96
#: causal). The hd128 one first spilled 12 bytes on sm_90a (three per-thread cp.async offsets, read back
#: once a tile) and was timed that way; it now recomputes those offsets per tile (``RECOMPUTE_OFFSETS`` in
#: flash_fwd.cu) and spills nothing.
#: H200, bf16, 16k, one run of two rounds, every row checked against the reference (2026-12-03, sixth
#: session, the spilling build): hd128 339.4 / 330.9 TFLOP/s against wide64c's 327.7 / 319.2 (1.04x) and
#: flash SDPA's 342.7 / 328.0; hd64 307.8 / 300.8 against 277.2 / 265.1 (1.12x) and SDPA's 303.9 / 300.8;
#: hd64 causal (96 keys) 289.6 / 285.6 against 279.0 / 272.5 and SDPA's 297.6 / 293.6; hd128 causal is
#: wide64c's kernel.
#: ``wide64c`` was the default from the fifth session of 2026-12-03 (H200, bf16, 16k, one run, every row
#: checked): causal hd128 331.3 TFLOP/s against wide48c's 314.0 (1.06x); non-causal 48 keys.
#: ``wide64`` is the default since 2026-12-04, after its GPU tests (11 passed) and the conformance suite
#: with it as the default (87 passed, 45 skipped) on the H200; the spill-free build at 16k in the same run
#: as flash SDPA (bf16, TFLOP/s): hd128 349 against 346, causal 337 against 325, hd64 312 against 310,
#: hd64 causal 296 against 299.
DEFAULT_FWD_VARIANT = "wide64"


def _choice(what: str, given: str | None, env: str, default: str, allowed) -> str:
    """``given`` if set, else ``$env``, else ``default``; refused with the allowed values if unknown."""
    value = given or os.environ.get(env) or default
    if value not in allowed:
        raise ValueError(f"{what} must be one of {sorted(allowed)}, got {value!r} (argument or ${env})")
    return value


def fwd_variant(variant: str | None = None) -> str:
    """The forward variant to run: ``variant`` if given, else ``$ATTN_CUDA_FWD_VARIANT``, else the default."""
    return _choice("forward variant", variant, "ATTN_CUDA_FWD_VARIANT", DEFAULT_FWD_VARIANT, FWD_VARIANTS)


FWD_CONFIGS = FWD_VARIANTS[DEFAULT_FWD_VARIANT]

#: Backward variants. ``base`` gives a block 64 keys (4 warps of 16); ``wide8`` 128 keys (8 warps): each Q
#: and dO tile loaded into shared memory serves twice the keys, and dQ, added with fp32 atomics once per
#: block and query tile, takes half the atomics in all. 242-255 registers, no spills (NVRTC 13). Both passed
#: their GPU tests on the H200 (2026-11-22); ``wide8`` is the default: hd128 16k fwd+bwd 193.3 TFLOP/s
#: against 170.7 (causal 195.1 against 177.5), one process. ``ATTN_CUDA_BWD_VARIANT`` overrides it.
#: ``wide8q`` (opt-in, 2026-12-04) is ``wide8`` with twice the queries a step (32 at hd128, 64 at hd64):
#: each K and V fragment read from shared memory serves twice the queries and a block syncs half as often,
#: so a step reads about 81 bytes of shared memory per kFLOP instead of 100 at hd128. It spilled 24-84
#: bytes until the kernel read the lane afresh each step (``FRESH_LANE`` in flash_bwd.cu); now 248-255
#: registers and no spills on sm_80 and sm_90a. It passed the conformance suite on the H200 (87 passed, 45
#: skipped) and is slower there: hd128 16k bwd 149 TFLOP/s against the default's 172 (0.86x), causal 155
#: against 176 (0.88x), bf16, one run. Fewer shared-memory bytes per FLOP did not pay for the recomputed
#: addresses and the longer step; kept as an ablation (attn-bench's ``cuda/bwd_wide8q``), not profiled.
#: Both tilings make the same number of dQ atomics (seqlen_q * HD per key block and head), about 4.3e9 at
#: hd128 16k: 134e9 a second at the default's speed, a rate L2 atomics can bound. ``wide8v`` (opt-in,
#: 2026-12-04) is ``wide8`` adding each thread's neighbouring pair of dQ values with one float2 atomicAdd
#: on sm_90 (half the atomic operations; sm_80 keeps two scalar ones). It passed the conformance suite on
#: the H200 (87 passed, 45 skipped) and timed, bf16 16k, one run: hd128 bwd 168 TFLOP/s against the
#: default's 169 (0.99x), causal 180 against 176 (1.02x), hd64 158 against 148 (1.07x). In that run
#: ``wide8q`` timed 181 at hd64 (1.22x) and 147 at hd128 (0.87x): at hd64 a step of 64 queries keeps 248
#: registers, at hd128 one of 32 costs more than it saves. ``wide8qv`` (opt-in, 2026-12-04) takes the
#: faster tiling per head dim, each with paired dQ atomics: ``wide8q``'s at hd64, ``wide8``'s at hd128.
#: It passed the conformance suite on the H200 (87 passed, 45 skipped) and is the default since: hd64 16k
#: bwd 203 TFLOP/s against ``wide8``'s 147 (1.37x), fwd+bwd 226 against 175; hd128 bwd 170 against 171,
#: causal 180 against 176, fwd+bwd 201 against 200 (bf16, one run, docs/benchmarks/h200-cuda-bwd-wide8qv.md).
#: ``tiled`` (2026-12-04, ``flash_bwd_tiled.cu``) is FA2's own tiling: 128 keys a block, 64 queries a step at
#: hd128 and 128 at hd64, P and dS staged in shared memory and every product spread over a 2-D grid of
#: the 8 warps, so each fragment read from shared memory feeds several mma (about 58 bytes of ldmatrix per kFLOP
#: at hd128, where the per-warp tilings above read about 128: the ceiling they hit). Its ldmatrix addresses
#: come from one lane address per operand (``attn::swz_step``) and L and D arrive by cp.async, which is
#: what fits it into 255 registers (0-20 bytes of spills in some builds, each reloaded once a step). On the H200
#: (bf16, 16k, one run beside torch's flash backward) it passed the conformance suite (87 passed, 45
#: skipped) and timed hd128 bwd 274 TFLOP/s against ``wide8qv``'s 172 (1.59x) and flash's 312, fwd+bwd 292
#: against 200 and flash's 324 (0.90x); causal fwd+bwd 292 (0.92x); hd64 bwd 233 against 204, fwd+bwd 251
#: (0.85x flash). The default since.
BWD_VARIANTS: dict[str, dict[int, BwdConfig | TiledBwdConfig]] = {
    "base": {64: BwdConfig(64, block_m=32), 128: BwdConfig(128, block_m=16)},
    "wide8": {64: BwdConfig(64, block_m=32, warps=8), 128: BwdConfig(128, block_m=16, warps=8)},
    "wide8q": {64: BwdConfig(64, block_m=64, warps=8), 128: BwdConfig(128, block_m=32, warps=8)},
    "wide8v": {
        64: BwdConfig(64, block_m=32, warps=8, pair_dq=True),
        128: BwdConfig(128, block_m=16, warps=8, pair_dq=True),
    },
    "wide8qv": {
        64: BwdConfig(64, block_m=64, warps=8, pair_dq=True),
        128: BwdConfig(128, block_m=16, warps=8, pair_dq=True),
    },
    "tiled": {
        64: TiledBwdConfig(64, block_m=128, wm_s=2, wn_kv=4, wm_q=2),
        128: TiledBwdConfig(128, block_m=64, wm_s=2, wn_kv=4, wm_q=2),
    },
}
DEFAULT_BWD_VARIANT = "tiled"
BWD_CONFIGS = BWD_VARIANTS[DEFAULT_BWD_VARIANT]


def bwd_variant(variant: str | None = None) -> str:
    """The backward variant to run: ``variant`` if given, else ``$ATTN_CUDA_BWD_VARIANT``, else the default."""
    return _choice("backward variant", variant, "ATTN_CUDA_BWD_VARIANT", DEFAULT_BWD_VARIANT, BWD_VARIANTS)


#: Where the default's shared memory does not fit a block (``tiled`` takes 161-162 KB; sm_86 and sm_89
#: allow 99 KB), the default backward falls back to the per-warp tiling, 82-86 KB.
FALLBACK_BWD_VARIANT = "wide8qv"


def bwd_config(head_dim: int, device_index: int, variant: str | None = None) -> BwdConfig | TiledBwdConfig:
    """The backward tiling to launch on device ``device_index``: the variant asked for (argument or
    ``$ATTN_CUDA_BWD_VARIANT``) as it is, else the default, or :data:`FALLBACK_BWD_VARIANT` where the
    default does not fit the device's shared memory per block."""
    from .runtime import max_dynamic_smem

    asked = variant or os.environ.get("ATTN_CUDA_BWD_VARIANT")
    cfg = BWD_VARIANTS[bwd_variant(asked)][head_dim]
    if not asked and cfg.smem_bytes() > max_dynamic_smem(device_index):
        return BWD_VARIANTS[FALLBACK_BWD_VARIANT][head_dim]
    return cfg


#: The order causal query blocks are launched in (``ATTN_CUDA_CAUSAL_ORDER``, read per call). The hardware
#: starts blocks in linear order, x fastest, and a causal block's cost grows with its position. ``per_head``:
#: the grid is (query blocks reversed, heads, batch), so head 0's blocks go first, longest first, then head
#: 1's, and the last wave is a tail of short blocks; ``heads_first`` (the default): (heads, query blocks
#: reversed, batch), the longest block of every head first. Modelled as list scheduling on 264 block slots
#: (two blocks an SM on 132 SMs) at hd128 16k, ``per_head`` finishes at 1/0.89 of the ideal time and
#: ``heads_first`` at 1/0.996. Measured on the H200 (2026-12-03, bf16, one run, ``tools/causal_order.py``):
#: heads_first 303.3 vs 276.6 TFLOP/s at hd128 16k (1.10x; 304 vs 276 in attn-bench's ablations), 283.2 vs
#: 269.3 at hd64 (1.05x), 288.3 vs 257.9 at b4 s4096 (1.12x), outputs bit for bit equal; causal hd128 16k
#: went from 0.85x to 0.93x torch's flash SDPA (301 vs 322). ``per_head`` stays for the ablation.
CAUSAL_ORDERS = ("per_head", "heads_first")
DEFAULT_CAUSAL_ORDER = "heads_first"


def causal_order(order: str | None = None) -> str:
    """The causal launch order: ``order`` if given, else ``$ATTN_CUDA_CAUSAL_ORDER``, else the default."""
    return _choice("causal order", order, "ATTN_CUDA_CAUSAL_ORDER", DEFAULT_CAUSAL_ORDER, CAUSAL_ORDERS)


#: How the wide kernels rescale the running output (``ATTN_CUDA_RESCALE``, read per call). ``lazy`` (the
#: default): a row keeps its running max until a tile's max exceeds it by more than :data:`RESCALE_SLACK`
#: (log2 units), so most tiles skip the O rescale (non-causal instantiations only: the causal ones are at
#: their register limit); ``always``: FlashAttention-2's rescale at every tile. Both compute the same
#: softmax (the max cancels); see ``flash_fwd.cu``. Measured on the H200 (2026-12-03, bf16, 16k, attn-bench
#: ablations, same run): hd128 328.7 against 312.7 TFLOP/s (1.05x), hd64 278.9 against 267.7 (1.04x).
RESCALE_MODES = ("lazy", "always")
DEFAULT_RESCALE = "lazy"
#: The stale max lets a probability reach 2^8 = 256: inside fp16/bf16 range (same relative rounding as
#: below 1) and harmless to fp32 sums.
RESCALE_SLACK = 8.0


def other_rescale() -> str:
    """The rescale mode that is not the default (the ablation variant's)."""
    return next(m for m in RESCALE_MODES if m != DEFAULT_RESCALE)


def rescale_mode(rescale: str | None = None) -> str:
    """The rescale mode: ``rescale`` if given, else ``$ATTN_CUDA_RESCALE``, else the default."""
    return _choice("rescale mode", rescale, "ATTN_CUDA_RESCALE", DEFAULT_RESCALE, RESCALE_MODES)


#: Scalar (teaching) kernels: (BM, BN) per version; one thread per query row.
SCALAR_TILES = {"v1": (64, 16), "v2": (64, 32)}


def scalar_name(version: str, dtype: torch.dtype, head_dim: int, causal: bool) -> str:
    bm, bn = SCALAR_TILES[version]
    return f"flash_fwd_scalar_{version}<{CTYPES[dtype]}, {head_dim}, {bm}, {bn}, {_bool(causal)}>"


def preprocess_name(dtype: torch.dtype, head_dim: int) -> str:
    return f"flash_bwd_preprocess<{CTYPES[dtype]}, {head_dim}>"


def all_instantiations() -> dict[str, list[str]]:
    """Every (file -> name expressions) the package launches: what the CPU tier compiles for each arch."""
    fwd, scalar = [], []
    bwd: dict[str, list[str]] = {"flash_bwd.cu": [], "flash_bwd_tiled.cu": []}
    for dtype in DTYPES:
        for hd in HEAD_DIMS:
            bwd["flash_bwd.cu"].append(preprocess_name(dtype, hd))
            for causal in (False, True):
                for configs in FWD_VARIANTS.values():
                    name = configs[hd].for_causal(causal).name(dtype, causal)
                    if name not in fwd:  # wide48's hd64 is wide's
                        fwd.append(name)
                for configs in BWD_VARIANTS.values():
                    bwd[configs[hd].filename].append(configs[hd].name(dtype, causal))
                for version in SCALAR_TILES:
                    scalar.append(scalar_name(version, dtype, hd, causal))
    return {"flash_fwd.cu": fwd, **bwd, "flash_scalar.cu": scalar}


# -- the sm_90a forward (TMA + wgmma) ---------------------------------------------------------------------

#: kernels/flash_fwd_sm90.cu: TMA loads, wgmma, a producer and two consumer warpgroups taking turns at the
#: tensor cores (``pingpong``), 128 x 128 blocks; Hopper only (sm_90a). The default forward on sm_90a since
#: 2026-12-05 (:func:`fwd_kernel`): it passed the GPU tier on 2026-12-04 at 1.47x torch's flash SDPA (hd128 16k).
SM90_FWD_FILE = "flash_fwd_sm90.cu"
SM90_BLOCK = 128  # query rows a block, and keys a K/V tile
SM90_STAGES = 3  # must match STAGES in the kernel
SM90_THREADS = 384
SM90_TMA_COLS = 64  # a TMA box is 64 elements (128 bytes, the swizzle span) wide


#: The tensor-core forwards ``flash_attn_func`` can run (``$ATTN_CUDA_FWD_KERNEL``, read per call): ``mma``
#: (FA-2 on mma.sync, any sm_80+ GPU) or ``wgmma`` (the Hopper kernel above).
FWD_KERNELS = ("mma", "wgmma")


def fwd_kernel(kernel: str | None = None, device=None) -> str:
    """``kernel`` if given, else ``$ATTN_CUDA_FWD_KERNEL``, else the default for ``device``: ``wgmma`` on
    sm_90a, ``mma`` anywhere else (and where no CUDA device is named)."""
    if kernel in ("scalar_v1", "scalar_v2"):  # the teaching kernels: by name only
        return kernel
    hopper = device is not None and torch.device(device).type == "cuda" and device_arch(device) == "sm_90a"
    default = "wgmma" if hopper else "mma"
    return _choice("forward kernel", kernel, "ATTN_CUDA_FWD_KERNEL", default, FWD_KERNELS)


def sm90_fwd_name(dtype: torch.dtype, head_dim: int, causal: bool, pingpong: bool = True) -> str:
    return f"flash_fwd_sm90<{CTYPES[dtype]}, {head_dim}, {_bool(causal)}, {_bool(pingpong)}>"


def sm90_smem_bytes(head_dim: int) -> int:
    """Q, the K and V rings, their mbarriers, and 1 KB to align the tiles to the swizzle's 1024 bytes."""
    tile = SM90_BLOCK * head_dim * 2
    return tile * (1 + 2 * SM90_STAGES) + 8 * (1 + 3 * SM90_STAGES) + 1024


def sm90_instantiations() -> list[str]:
    return [
        sm90_fwd_name(dt, hd, c, pp)
        for dt in DTYPES
        for hd in HEAD_DIMS
        for c in (False, True)
        for pp in (True, False)
    ]


def tma_layout(t: torch.Tensor) -> tuple[list[int], list[int], list[int]]:
    """A (batch, seq, heads, dim) tensor as the kernel's 4-D tensor map: sizes and byte strides innermost
    first (dim, seq, heads, batch), and the box one load brings (64 elements x 128 rows)."""
    b, s, h, d = t.shape
    e = t.element_size()
    return (
        [d, s, h, b],
        [t.stride(1) * e, t.stride(2) * e, t.stride(0) * e],
        [SM90_TMA_COLS, SM90_BLOCK, 1, 1],
    )


def _encode_tensor_map(t: torch.Tensor) -> bytes:
    """The 128-byte TMA descriptor of ``t`` (:func:`tma_layout`, 128-byte swizzle, zero fill past the edges)."""
    from cuda.bindings import driver as cu

    data_type = {
        torch.float16: cu.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
        torch.bfloat16: cu.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
    }
    dims, strides, box = tma_layout(t)
    err, tmap = cu.cuTensorMapEncodeTiled(
        data_type[t.dtype],
        len(dims),
        t.data_ptr(),
        [cu.cuuint64_t(x) for x in dims],
        [cu.cuuint64_t(x) for x in strides],
        [cu.cuuint32_t(x) for x in box],
        [cu.cuuint32_t(1)] * len(dims),
        cu.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE,
        cu.CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_128B,
        cu.CUtensorMapL2promotion.CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
        cu.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
    )
    if err != cu.CUresult.CUDA_SUCCESS:
        raise RuntimeError(
            f"cuTensorMapEncodeTiled refused a tensor of shape {tuple(t.shape)}, strides {t.stride()}: {err}"
        )
    return struct.pack("<16Q", *(int(x) for x in tmap.opaque))


#: Device buffers of encoded tensor maps, keyed by all a map depends on (each tensor's address, dtype, sizes
#: and strides): a forward on the same tensors, or on new ones the allocator put in the same place, skips
#: the encoding and the host-to-device copy. A buffer is never written after it is made.
_TENSOR_MAPS: collections.OrderedDict = collections.OrderedDict()
_TENSOR_MAPS_KEPT = 64
_tensor_maps_lock = threading.Lock()


def _tensor_maps(tensors, device: torch.device) -> torch.Tensor:
    """The tensors' TMA descriptors, 128 bytes each, in one device buffer the kernel reads them from."""
    key = (str(device), tuple((t.data_ptr(), t.dtype, tuple(t.shape), t.stride()) for t in tensors))
    with _tensor_maps_lock:
        buf = _TENSOR_MAPS.get(key)
        if buf is None:
            raw = bytearray(b"".join(_encode_tensor_map(t) for t in tensors))
            buf = _TENSOR_MAPS[key] = torch.frombuffer(raw, dtype=torch.uint8).to(device)
            if len(_TENSOR_MAPS) > _TENSOR_MAPS_KEPT:
                _TENSOR_MAPS.popitem(last=False)
        else:
            _TENSOR_MAPS.move_to_end(key)
    if buf.is_cuda:  # an evicted buffer must outlive the launches queued on this stream
        buf.record_stream(torch.cuda.current_stream(buf.device))
    return buf


def _flash_fwd_sm90(q, k, v, out, lse, softmax_scale: float, causal: bool, pingpong: bool) -> None:
    b, sq, hq, d = q.shape
    sk, hk = k.shape[1], k.shape[2]
    if device_arch(q.device) != "sm_90a":
        raise RuntimeError(f"the wgmma forward runs on Hopper (sm_90a) only, not {device_arch(q.device)}")
    if sk == 0:  # a tensor map cannot describe an empty tensor; no key: O = 0, lse = +inf
        out.zero_()
        lse.fill_(math.inf)
        return
    q, k, v = _tma_operand(q), _tma_operand(k), _tma_operand(v)
    name = sm90_fwd_name(q.dtype, d, causal, pingpong)
    maps = _tensor_maps((q, k, v), q.device)
    args = [
        maps,
        out,
        lse,
        i32(sq),
        i32(sk),
        i32(hq),
        i32(hq // hk),
        *_strides(out),
        f32(softmax_scale * LOG2E),
    ]
    grid = (math.ceil(sq / SM90_BLOCK), hq, b)
    launch(module_for(SM90_FWD_FILE, name), name, grid, SM90_THREADS, args, smem=sm90_smem_bytes(d))


# -- compile on first use --------------------------------------------------------------------------------


def module_for(filename: str, name: str, arch: str | None = None):
    """The compiled module holding one instantiation (compiled once, then cached in memory and on disk)."""
    return package_module(filename, (name,), arch)


def _aligned(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself if cp.async can read it (16-byte aligned base and row strides), else an aligned copy."""
    elt = t.element_size()
    ok = t.data_ptr() % 16 == 0 and all((s * elt) % 16 == 0 for s in t.stride()[:-1]) and t.stride(-1) == 1
    return t if ok else t.contiguous().clone()


def _tma_operand(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a tensor map can describe it: aligned (:func:`_aligned`), and copied where a dimension of
    more than one element has stride 0 (an ``expand``ed view, e.g. K/V broadcast over heads), which a TMA
    box cannot step through."""
    t = _aligned(t)
    if any(st == 0 and n > 1 for st, n in zip(t.stride(), t.shape)):
        t = t.contiguous()
    return t


def _strides(t: torch.Tensor):
    """(batch, seq, head) strides in elements of a (batch, seq, heads, dim) tensor, as int64 arguments."""
    return [i64(t.stride(0)), i64(t.stride(1)), i64(t.stride(2))]


def flash_fwd(
    q,
    k,
    v,
    softmax_scale: float,
    causal: bool,
    *,
    kernel: str | None = None,
    variant: str | None = None,
    order: str | None = None,
    rescale: str | None = None,
    pingpong: bool = True,
):
    """Run a forward kernel: ``kernel`` is ``"mma"`` (tensor cores, FA-2), ``"wgmma"`` (Hopper: TMA and wgmma),
    ``"scalar_v2"`` or ``"scalar_v1"`` (default :func:`fwd_kernel`: ``wgmma`` on sm_90a, else ``mma``);
    ``variant`` picks the mma kernel's tiling (:data:`FWD_VARIANTS`, default :func:`fwd_variant`), ``order``
    the causal launch order of the tensor-core kernels (:data:`CAUSAL_ORDERS`, default :func:`causal_order`),
    ``rescale`` how the wide kernels rescale the output (:data:`RESCALE_MODES`, default :func:`rescale_mode`),
    ``pingpong`` whether the wgmma kernel's consumer warpgroups take turns at the tensor cores.

    q (b, s_q, h_q, d), k and v (b, s_k, h_k, d), CUDA fp16/bf16, validated by the caller. Returns
    out (b, s_q, h_q, d) and lse (b, h_q, s_q) float32.
    """
    b, sq, hq, d = q.shape
    sk, hk = k.shape[1], k.shape[2]
    out = torch.empty((b, sq, hq, d), dtype=q.dtype, device=q.device)
    lse = torch.empty((b, hq, sq), dtype=torch.float32, device=q.device)
    if out.numel() == 0:
        return out, lse
    group = hq // hk
    kernel = fwd_kernel(kernel, q.device)
    mma_only = {"variant": variant, "order": order, "rescale": rescale}
    if kernel != "mma" and any(x is not None for x in mma_only.values()):
        given = ", ".join(f"{n}={x!r}" for n, x in mma_only.items() if x is not None)
        raise ValueError(
            f"{given}: options of the mma forward, and this call runs {kernel!r}; pass kernel='mma'"
        )
    if kernel == "mma":
        q, k, v = _aligned(q), _aligned(k), _aligned(v)
        v_name = fwd_variant(variant)
        if softmax_scale <= 0:  # the wide kernel folds the scale into its running max: needs scale > 0
            v_name = "base"
        cfg = FWD_VARIANTS[v_name][d].for_causal(causal)
        name = cfg.name(q.dtype, causal)
        args = [q, k, v, out, lse, i32(sq), i32(sk), i32(hq), i32(group)]
        heads_first = causal and causal_order(order) == "heads_first"
        args += _strides(q) + _strides(k) + _strides(v) + _strides(out)
        args += [f32(softmax_scale * LOG2E), i32(int(heads_first))]
        mode = rescale_mode(rescale)  # validated for every kernel, used by the wide ones
        if cfg.kernel == "flash_fwd_mma_wide":
            args.append(f32(RESCALE_SLACK if mode == "lazy" else -math.inf))
        launch(
            module_for("flash_fwd.cu", name),
            name,
            cfg.grid(b, hq, sq, heads_first),
            cfg.threads,
            args,
            smem=cfg.smem_bytes(),
        )
    elif kernel == "wgmma":
        _flash_fwd_sm90(q, k, v, out, lse, softmax_scale, causal, pingpong)
    else:  # scalar_v1 / scalar_v2 (fwd_kernel refused anything else)
        version = kernel.split("_")[1]
        bm, _ = SCALAR_TILES[version]
        name = scalar_name(version, q.dtype, d, causal)
        mod = module_for("flash_scalar.cu", name)
        strides = _strides(q) + _strides(k) + _strides(v) + _strides(out)
        if version == "v2":
            args = [q, k, v, out, lse, i32(sq), i32(sk), i32(hq), i32(group), *strides, f32(softmax_scale)]
            launch(mod, name, (math.ceil(sq / bm), hq, b), bm, args)
        else:
            o_ws = torch.empty((b, hq, sq, d), dtype=torch.float32, device=q.device)
            ml_ws = torch.empty((b, hq, sq, 2), dtype=torch.float32, device=q.device)
            args = [
                q,
                k,
                v,
                out,
                lse,
                o_ws,
                ml_ws,
                i32(sq),
                i32(sk),
                i32(hq),
                i32(group),
                *strides,
                f32(softmax_scale),
            ]
            launch(mod, name, (hq, b), bm, args)
    return out, lse


def flash_bwd(dout, q, k, v, out, lse, softmax_scale: float, causal: bool, *, variant: str | None = None):
    """FlashAttention-2 backward on tensor cores: (dq, dk, dv) in the inputs' dtype, contiguous.

    ``variant`` picks the tiling (:data:`BWD_VARIANTS`, default :func:`bwd_config`)."""
    b, sq, hq, d = q.shape
    sk, hk = k.shape[1], k.shape[2]
    dk = torch.empty((b, sk, hk, d), dtype=q.dtype, device=q.device)
    dv = torch.empty_like(dk)
    if q.numel() == 0 or k.numel() == 0:
        return torch.zeros_like(q), dk.zero_(), dv.zero_()
    q, k, v, dout, out = (_aligned(t) for t in (q, k, v, dout, out))
    lse = lse.contiguous()
    delta = torch.empty((b, hq, sq), dtype=torch.float32, device=q.device)
    rows = b * hq * sq
    pre = preprocess_name(q.dtype, d)
    warps_per_block = 4
    launch(
        module_for("flash_bwd.cu", pre),
        pre,
        math.ceil(rows / warps_per_block),
        32 * warps_per_block,
        [out, dout, delta, i32(sq), i32(hq), *_strides(out), *_strides(dout), i64(rows)],
    )
    dq_accum = torch.zeros((b, sq, hq, d), dtype=torch.float32, device=q.device)
    cfg = bwd_config(
        d, q.device.index if q.device.index is not None else torch.cuda.current_device(), variant
    )
    name = cfg.name(q.dtype, causal)
    args = [q, k, v, dout, lse, delta, dq_accum, dk, dv, i32(sq), i32(sk), i32(hq), i32(hk)]
    args += _strides(q) + _strides(k) + _strides(v) + _strides(dout)
    args += [f32(softmax_scale), f32(softmax_scale * LOG2E)]
    launch(
        module_for(cfg.filename, name), name, cfg.grid(b, hk, sk), cfg.threads, args, smem=cfg.smem_bytes()
    )
    return dq_accum.to(q.dtype), dk, dv
