"""attention_naive against an independent loop-per-head computation, and its edge semantics."""

import math

import pytest
import torch

from attn_reference import attention_naive
from attn_reference.masking import key_range, visible_mask
from attn_reference.testing.inputs import attention_inputs


def loop_reference(q, k, v, scale, causal=False, window=(-1, -1), softcap=0.0):
    """Head by head, row by row, in float64, with the visibility rule written out longhand."""
    b, sq, hq, _ = q.shape
    sk, hk = k.shape[1], k.shape[2]
    out = torch.zeros(b, sq, hq, v.shape[-1], dtype=torch.float64)
    lse = torch.full((b, hq, sq), math.inf, dtype=torch.float64)
    left, right = window
    if causal:
        right = 0
    for bi in range(b):
        for h in range(hq):
            kh = h // (hq // hk)
            for i in range(sq):
                keys = [
                    j
                    for j in range(sk)
                    if (right < 0 or j <= i + sk - sq + right) and (left < 0 or j >= i + sk - sq - left)
                ]
                if not keys:
                    continue
                s = torch.stack([q[bi, i, h].double() @ k[bi, j, kh].double() for j in keys]) * scale
                if softcap:
                    s = softcap * torch.tanh(s / softcap)
                p = torch.softmax(s, 0)
                out[bi, i, h] = sum(p[n] * v[bi, j, kh].double() for n, j in enumerate(keys))
                lse[bi, h, i] = torch.logsumexp(s, 0)
    return out, lse


@pytest.mark.parametrize(
    "sq,sk,hq,hk,causal,window,softcap",
    [
        (7, 13, 2, 2, False, (-1, -1), 0.0),
        (13, 7, 4, 2, True, (-1, -1), 0.0),  # bottom-right causal: first 6 rows see nothing
        (9, 9, 3, 1, False, (2, 3), 0.0),
        (5, 11, 2, 1, True, (4, -1), 1.5),
        (1, 1, 1, 1, True, (-1, -1), 0.0),
    ],
)
def test_matches_loop_reference(sq, sk, hq, hk, causal, window, softcap):
    q, k, v = attention_inputs(2, sq, sk, hq, hk, 8, dtype=torch.float64, seed=sq * 31 + sk)
    scale = 0.37
    out, lse = attention_naive(
        q,
        k,
        v,
        softmax_scale=scale,
        causal=causal,
        window_size=window,
        softcap=softcap,
        accum_dtype=torch.float64,
        return_lse=True,
    )
    ref_out, ref_lse = loop_reference(q, k, v, scale, causal, window, softcap)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lse, ref_lse, rtol=1e-12, atol=1e-12)


def test_causal_is_bottom_right_aligned():
    # seqlen_q 2, seqlen_k 5: query 0 sees keys 0..3, query 1 sees 0..4 (as in decoding two new tokens).
    mask = visible_mask(2, 5, (-1, 0))
    assert mask.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]
    # seqlen_q 4 > seqlen_k 2: the first two queries see nothing.
    mask = visible_mask(4, 2, (-1, 0))
    assert mask.tolist() == [[False, False], [False, False], [True, False], [True, True]]


def test_window_mask_and_key_range():
    mask = visible_mask(4, 6, (1, 0))  # shift 2: query i sees keys i+1 .. i+2
    assert mask.int().tolist() == [
        [0, 1, 1, 0, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [0, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 1, 1],
    ]
    assert key_range(0, 2, 4, 6, (1, 0)) == (1, 4)
    assert key_range(0, 4, 4, 6, (-1, -1)) == (0, 6)


def test_rows_without_keys_give_zero_and_infinite_lse():
    q, k, v = attention_inputs(1, 6, 3, 2, 2, 16, dtype=torch.float32)
    out, lse = attention_naive(q, k, v, causal=True, return_lse=True)
    assert torch.all(out[:, :3] == 0)
    assert torch.all(torch.isposinf(lse[..., :3]))
    assert torch.isfinite(lse[..., 3:]).all()


def test_gqa_equals_repeated_heads():
    q, k, v = attention_inputs(2, 11, 17, 6, 2, 16, dtype=torch.float64)
    out = attention_naive(q, k, v, causal=True, accum_dtype=torch.float64)
    rep = attention_naive(
        q, k.repeat_interleave(3, 2), v.repeat_interleave(3, 2), causal=True, accum_dtype=torch.float64
    )
    # Equal up to float64 rounding: the two layouts may take different matmul kernels (a CPU's BLAS picks by
    # strides), which sum in another order; a wrong head mapping would be off by O(0.1).
    torch.testing.assert_close(out, rep, rtol=1e-12, atol=1e-12)


def test_softcap_changes_result_and_large_cap_is_identity():
    q, k, v = attention_inputs(1, 9, 9, 2, 2, 32, dtype=torch.float64)
    plain = attention_naive(q, k, v, accum_dtype=torch.float64)
    capped = attention_naive(q, k, v, softcap=1.0, accum_dtype=torch.float64)
    loose = attention_naive(q, k, v, softcap=1e6, accum_dtype=torch.float64)
    assert (plain - capped).abs().max() > 1e-2
    torch.testing.assert_close(loose, plain, rtol=1e-9, atol=1e-9)


def test_accumulation_dtypes():
    q, k, v = attention_inputs(1, 33, 47, 2, 2, 64, dtype=torch.float16)
    exact = attention_naive(q, k, v, accum_dtype=torch.float64)
    fp32 = attention_naive(q, k, v)
    lowp = attention_naive(q, k, v, accum_dtype=None)
    assert exact.dtype == fp32.dtype == lowp.dtype == torch.float16
    err32 = (fp32.double() - exact.double()).abs().max()
    err16 = (lowp.double() - exact.double()).abs().max()
    assert err32 <= err16  # the fp32 path is at least as good as computing in fp16
    _, lse64 = attention_naive(q, k, v, accum_dtype=torch.float64, return_lse=True)
    assert lse64.dtype == torch.float64


def test_default_scale_is_inverse_sqrt_head_dim():
    q, k, v = attention_inputs(1, 5, 5, 1, 1, 16, dtype=torch.float64)
    a = attention_naive(q, k, v, accum_dtype=torch.float64)
    b = attention_naive(q, k, v, softmax_scale=0.25, accum_dtype=torch.float64)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_differentiable():
    q, k, v = attention_inputs(1, 5, 7, 2, 1, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda q, k, v: attention_naive(q, k, v, causal=True, softcap=2.0, accum_dtype=torch.float64),
        (q, k, v),
    )
