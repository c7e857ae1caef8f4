"""FlashAttention-1 and -2 forward, and the FlashAttention-2 backward, against naive attention."""

import pytest
import torch

from attn_reference import attention_naive, flash_v1_forward, flash_v2_backward, flash_v2_forward
from attn_reference.testing.inputs import attention_inputs

CONFIGS = [
    # (sq, sk, hq, hk, d, causal, window, softcap)
    (113, 203, 2, 2, 64, False, (-1, -1), 0.0),
    (203, 113, 4, 2, 32, True, (-1, -1), 0.0),
    (113, 113, 3, 1, 40, True, (-1, -1), 0.0),
    (97, 203, 2, 1, 16, False, (33, 7), 0.0),
    (203, 97, 2, 2, 16, True, (45, -1), 5.0),
    (1, 203, 4, 1, 64, True, (-1, -1), 0.0),
    (17, 5, 2, 2, 8, False, (-1, 0), 2.0),
]
BLOCKS = [(64, 64), (16, 48), (7, 13)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(map(str, c)))
@pytest.mark.parametrize("blocks", BLOCKS, ids=str)
@pytest.mark.parametrize("algo", [flash_v1_forward, flash_v2_forward], ids=["v1", "v2"])
def test_forward_equals_naive(cfg, blocks, algo):
    sq, sk, hq, hk, d, causal, window, softcap = cfg
    q, k, v = attention_inputs(2, sq, sk, hq, hk, d, dtype=torch.float32, seed=sq + sk + d)
    kw = dict(causal=causal, window_size=window, softcap=softcap)
    ref, ref_lse = attention_naive(q, k, v, accum_dtype=torch.float64, return_lse=True, **kw)
    out, lse = algo(q, k, v, block_m=blocks[0], block_n=blocks[1], **kw)
    # fp32 arithmetic in a different order: equal to fp32 rounding
    torch.testing.assert_close(out, ref, rtol=2e-5, atol=2e-6)
    assert torch.equal(torch.isinf(lse), torch.isinf(ref_lse))
    torch.testing.assert_close(lse, ref_lse.float(), rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("algo", [flash_v1_forward, flash_v2_forward], ids=["v1", "v2"])
def test_forward_float64_is_exact(algo):
    q, k, v = attention_inputs(1, 37, 53, 2, 1, 24, dtype=torch.float64)
    ref = attention_naive(q, k, v, causal=True, accum_dtype=torch.float64)
    out, _ = algo(q, k, v, causal=True, block_m=8, block_n=16, accum_dtype=torch.float64)
    torch.testing.assert_close(out, ref, rtol=1e-13, atol=1e-13)


def test_forward_low_precision_inputs_keep_dtype():
    q, k, v = attention_inputs(2, 41, 29, 2, 2, 32, dtype=torch.bfloat16)
    out, lse = flash_v2_forward(q, k, v)
    assert out.dtype == torch.bfloat16 and lse.dtype == torch.float32
    ref = attention_naive(q, k, v, accum_dtype=torch.float64)
    assert (out.double() - ref.double()).abs().max() < 1e-2


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(map(str, c)))
def test_backward_equals_autograd_through_naive(cfg):
    sq, sk, hq, hk, d, causal, window, softcap = cfg
    q, k, v = attention_inputs(2, sq, sk, hq, hk, d, dtype=torch.float64, seed=7, requires_grad=True)
    kw = dict(causal=causal, window_size=window, softcap=softcap)
    ref = attention_naive(q, k, v, accum_dtype=torch.float64, **kw)
    dout = torch.randn(ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ref_grads = torch.autograd.grad(ref, (q, k, v), dout)
    out, lse = flash_v2_forward(q, k, v, accum_dtype=torch.float64, **kw)
    grads = flash_v2_backward(
        dout, q, k, v, out, lse, block_m=32, block_n=16, accum_dtype=torch.float64, **kw
    )
    for name, g, r in zip(("dq", "dk", "dv"), grads, ref_grads):
        assert g.shape == r.shape, name
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10, msg=name)


def test_backward_float32_close_to_float64():
    q, k, v = attention_inputs(1, 113, 203, 4, 2, 32, dtype=torch.float32, seed=9)
    out, lse = flash_v2_forward(q, k, v, causal=True)
    dout = torch.randn_like(out)
    dq, dk, dv = flash_v2_backward(dout, q, k, v, out, lse, causal=True)
    q64, k64, v64 = (t.double().requires_grad_() for t in (q, k, v))
    ref = attention_naive(q64, k64, v64, causal=True, accum_dtype=torch.float64)
    rq, rk, rv = torch.autograd.grad(ref, (q64, k64, v64), dout.double())
    for g, r in ((dq, rq), (dk, rk), (dv, rv)):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g.double(), r, rtol=1e-4, atol=1e-5)
