"""The flash-attn API of the reference: flash_attn_func, the varlen and kvcache variants."""

import torch

import attn_reference as ar
from attn_reference.testing.inputs import attention_inputs, kvcache_inputs, pad, varlen_inputs


def test_flash_attn_func_forward_backward_and_lse():
    q, k, v = attention_inputs(2, 113, 203, 4, 2, 32, dtype=torch.float64, requires_grad=True)
    out, lse = ar.flash_attn_func(q, k, v, causal=True, window_size=(50, -1), softcap=3.0, return_lse=True)
    ref, ref_lse = ar.attention_naive(
        q, k, v, causal=True, window_size=(50, -1), softcap=3.0, accum_dtype=torch.float64, return_lse=True
    )
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lse, ref_lse, rtol=1e-12, atol=1e-12)
    assert lse.shape == (2, 4, 113)
    dout = torch.randn_like(out)
    g = torch.autograd.grad(out, (q, k, v), dout)
    r = torch.autograd.grad(ref, (q, k, v), dout)
    for a, b in zip(g, r):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert ar.flash_attn_func(q, k, v).shape == (2, 113, 4, 32)


def test_varlen_equals_per_sequence_and_padded_batch():
    lens_q, lens_k = [17, 0, 45, 1], [45, 13, 17, 1]
    x = varlen_inputs(lens_q, lens_k, 4, 2, 16, dtype=torch.float64, requires_grad=True)
    out, lse = ar.flash_attn_varlen_func(*x.args(), causal=True, return_lse=True)
    assert out.shape == x.q.shape and lse.shape == (4, sum(lens_q))
    qp = pad(x.q.detach(), x.cu_seqlens_q, x.max_seqlen_q)
    kp = pad(x.k.detach(), x.cu_seqlens_k, x.max_seqlen_k)
    vp = pad(x.v.detach(), x.cu_seqlens_k, x.max_seqlen_k)
    q0 = 0
    for i, (nq, nk) in enumerate(zip(lens_q, lens_k)):
        ref, ref_lse = ar.attention_naive(
            qp[i : i + 1, :nq],
            kp[i : i + 1, :nk],
            vp[i : i + 1, :nk],
            causal=True,
            accum_dtype=torch.float64,
            return_lse=True,
        )
        torch.testing.assert_close(out[q0 : q0 + nq], ref[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(lse[:, q0 : q0 + nq], ref_lse[0], rtol=1e-12, atol=1e-12)
        q0 += nq
    # The second sequence has no queries, the one after sees keys: gradients flow to every token of k.
    out.sum().backward()
    assert x.k.grad is not None and torch.isfinite(x.k.grad).all()


def test_kvcache_paged_equals_contiguous_and_dense():
    lens = [45, 0, 77, 1]
    paged = kvcache_inputs(3, lens, 4, 2, 32, page_size=16, dtype=torch.float32, seed=5)
    flat = kvcache_inputs(3, lens, 4, 2, 32, page_size=None, capacity=80, dtype=torch.float32, seed=5)
    torch.testing.assert_close(paged.q, flat.q)
    assert torch.isnan(paged.k_cache).any() and torch.isnan(flat.k_cache).any()
    out_p, lse_p = ar.flash_attn_with_kvcache(
        paged.q,
        paged.k_cache,
        paged.v_cache,
        cache_seqlens=paged.cache_seqlens,
        block_table=paged.block_table,
        causal=True,
        return_lse=True,
    )
    out_f, lse_f = ar.flash_attn_with_kvcache(
        flat.q, flat.k_cache, flat.v_cache, cache_seqlens=flat.cache_seqlens, causal=True, return_lse=True
    )
    assert torch.isfinite(out_p).all()
    torch.testing.assert_close(out_p, out_f)
    torch.testing.assert_close(lse_p, lse_f)
    for b, n in enumerate(lens):
        ref, ref_lse = ar.attention_naive(
            paged.q[b : b + 1],
            paged.k[b][None],
            paged.v[b][None],
            causal=True,
            accum_dtype=torch.float64,
            return_lse=True,
        )
        torch.testing.assert_close(out_p[b : b + 1], ref.float(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(lse_p[b : b + 1], ref_lse.float(), rtol=1e-5, atol=1e-6)
        if n == 0:
            assert torch.all(out_p[b] == 0) and torch.isposinf(lse_p[b]).all()


def test_kvcache_defaults_to_the_whole_cache():
    x = kvcache_inputs(2, [9, 9], 2, 2, 16, page_size=None, capacity=9, dtype=torch.float64)
    out = ar.flash_attn_with_kvcache(x.q, x.k_cache, x.v_cache)
    ref = ar.attention_naive(x.q, x.k_cache, x.v_cache, accum_dtype=torch.float64)
    torch.testing.assert_close(out, ref)
    out_int = ar.flash_attn_with_kvcache(x.q, x.k_cache, x.v_cache, cache_seqlens=9)
    torch.testing.assert_close(out_int, ref)
