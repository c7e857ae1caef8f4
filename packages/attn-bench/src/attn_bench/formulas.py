"""FLOP and byte counts, the conventions the peers publish (pure Python, so tests check them by hand).

Attention forward: 4*b*h*s_q*s_k*d (two matmuls, 2 FLOPs per multiply-add), halved when causal with
s_q == s_k (flash-attn's convention, not the exact s(s+1)/2 pairs); other causal or windowed shapes count
the unmasked pairs exactly. Backward alone is 2.5x the forward, forward+backward 3.5x. MLA decoding uses
FlashMLA's counts: FLOPs 2*h_q*s_q*(d + d_v) per cached token, bytes the KV cache read once plus q and out.
"""

from __future__ import annotations

BWD_FACTOR = 2.5
FWD_BWD_FACTOR = 3.5


def unmasked_pairs(seqlen_q: int, seqlen_k: int, causal: bool, window: tuple[int, int] = (-1, -1)) -> int:
    """Query-key pairs a causal/windowed mask leaves, with flash-attn's bottom-right alignment.

    Query i sees key j when ``i + s_k - s_q - left <= j <= i + s_k - s_q + right`` (left/right -1 means
    unbounded; causal sets right to 0).
    """
    left, right = window
    if causal:
        right = 0
    if left < 0 and right < 0:
        return seqlen_q * seqlen_k
    total = 0
    offset = seqlen_k - seqlen_q
    for i in range(seqlen_q):
        lo = 0 if left < 0 else max(0, i + offset - left)
        hi = seqlen_k - 1 if right < 0 else min(seqlen_k - 1, i + offset + right)
        total += max(0, hi - lo + 1)
    return total


def attention_fwd_flops(
    batch: int,
    seqlen_q: int,
    seqlen_k: int,
    heads: int,
    head_dim: int,
    causal: bool = False,
    window: tuple[int, int] = (-1, -1),
    head_dim_v: int | None = None,
) -> float:
    """FLOPs of one attention forward (``heads`` = query heads)."""
    dv = head_dim if head_dim_v is None else head_dim_v
    per_pair = 2 * (head_dim + dv)  # QK^T and PV
    if window == (-1, -1) and (not causal or seqlen_q == seqlen_k):
        pairs = seqlen_q * seqlen_k / (2 if causal else 1)
    else:
        pairs = unmasked_pairs(seqlen_q, seqlen_k, causal, window)
    return float(batch * heads * pairs * per_pair)


def attention_bytes(
    batch: int, seqlen_q: int, seqlen_k: int, heads_q: int, heads_k: int, head_dim: int, elt: int
) -> float:
    """Bytes a forward must move at least: q, k, v read once, out written once."""
    q = batch * seqlen_q * heads_q * head_dim
    kv = 2 * batch * seqlen_k * heads_k * head_dim
    return float((2 * q + kv) * elt)


def attention_bwd_bytes(
    batch: int, seqlen_q: int, seqlen_k: int, heads_q: int, heads_k: int, head_dim: int, elt: int
) -> float:
    """Bytes a backward must move at least: q, k, v, out, dout read; dq, dk, dv written (lse ignored)."""
    q = batch * seqlen_q * heads_q * head_dim
    kv = 2 * batch * seqlen_k * heads_k * head_dim
    return float((5 * q + 2 * kv) * elt)


def decode_flops(batch: int, seqlen_q: int, seqlen_k: int, heads_q: int, head_dim: int) -> float:
    """FLOPs of decoding against a dense KV cache (every cached token seen)."""
    return float(4 * batch * heads_q * seqlen_q * seqlen_k * head_dim)


def decode_bytes(
    batch: int, seqlen_q: int, seqlen_k: int, heads_q: int, heads_k: int, head_dim: int, elt: int
) -> float:
    """KV cache read once, plus q read and out written."""
    cache = 2 * batch * seqlen_k * heads_k * head_dim
    q_out = 2 * batch * seqlen_q * heads_q * head_dim
    return float((cache + q_out) * elt)


def mla_decode_flops(
    total_seqlen_k: int, seqlen_q: int, heads_q: int, head_dim: int = 576, head_dim_v: int = 512
) -> float:
    """FlashMLA's count: 2 * s_q * h_q * (d + d_v) per cached token, summed over the batch."""
    return float(2 * total_seqlen_k * seqlen_q * heads_q * (head_dim + head_dim_v))


def mla_decode_bytes(
    total_seqlen_k: int,
    batch: int,
    seqlen_q: int,
    heads_q: int,
    heads_kv: int,
    elt: int,
    head_dim: int = 576,
    head_dim_v: int = 512,
) -> float:
    """FlashMLA's count: the latent cache read once (K and V share it), plus q and out."""
    cache = total_seqlen_k * heads_kv * head_dim
    q = batch * seqlen_q * heads_q * head_dim
    out = batch * seqlen_q * heads_q * head_dim_v
    return float((cache + q + out) * elt)


def mla_sparse_flops(
    seqlen_q: int, heads_q: int, topk: int, head_dim: int = 576, head_dim_v: int = 512
) -> float:
    """Each query head attends ``topk`` selected tokens: 2 * (d + d_v) FLOPs per pair."""
    return float(2 * seqlen_q * heads_q * topk * (head_dim + head_dim_v))


def mla_sparse_bytes(
    seqlen_q: int,
    seqlen_kv: int,
    heads_q: int,
    heads_kv: int,
    topk: int,
    elt: int,
    head_dim: int = 576,
    head_dim_v: int = 512,
) -> float:
    """Lower bound: latent KV read once, q read, out written, int32 indices read."""
    kv = seqlen_kv * heads_kv * head_dim
    q = seqlen_q * heads_q * head_dim
    out = seqlen_q * heads_q * head_dim_v
    return float((kv + q + out) * elt + seqlen_q * heads_kv * topk * 4)


def vector_add_bytes(n: int, elt: int) -> float:
    return float(3 * n * elt)


def softmax_bytes(rows: int, cols: int, elt: int) -> float:
    return float(2 * rows * cols * elt)


def softmax_flops(rows: int, cols: int) -> float:
    """Max, subtract, exp, sum, divide: counted as 5 per element (memory-bound either way)."""
    return float(5 * rows * cols)


def matmul_flops(m: int, n: int, k: int) -> float:
    return float(2 * m * n * k)


def matmul_bytes(m: int, n: int, k: int, elt: int) -> float:
    return float((m * k + k * n + m * n) * elt)
