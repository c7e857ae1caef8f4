"""The conformance suite must fail deliberately broken backends, each for its own bug."""

import textwrap

import pytest

pytest_plugins = ["pytester"]

BROKEN_BACKENDS = textwrap.dedent(
    '''
    import torch
    import attn_reference as ar
    from attn_reference.testing.conformance import AttentionConformance, Backend, Features

    # Everything the reference does, so that only the injected bug can fail a test.
    FEATURES = Features(dtypes=(torch.float16, torch.bfloat16, torch.float32, torch.float64), head_dims=None,
                        causal=True, window=True, softcap=True, gqa=True, lse=True, backward=True, varlen=True,
                        kvcache=True, paged_kvcache=True, page_size_multiple=1)


    def top_left_causal(q, k, v, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                        return_lse=False):
        """Aligns the causal mask at the top left (query i sees keys <= i): wrong when seqlen_q != seqlen_k."""
        if causal and q.shape[1] != k.shape[1]:
            sq, sk = q.shape[1], k.shape[1]
            # In bottom-right terms a top-left mask is a window whose right edge is shifted by sq - sk.
            q = q.detach()
            mask = torch.arange(sk)[None, :] <= torch.arange(sq)[:, None]
            s = torch.einsum("bqhd,bkhd->bhqk", q.float(), k.repeat_interleave(q.shape[2] // k.shape[2], 2).float())
            s = s * (softmax_scale or q.shape[-1] ** -0.5)
            s = s.masked_fill(~mask.to(s.device), float("-inf"))
            lse = torch.logsumexp(s, -1)
            p = torch.softmax(s, -1).nan_to_num(0.0)
            out = torch.einsum("bhqk,bkhd->bqhd", p, v.repeat_interleave(q.shape[2] // v.shape[2], 2).float())
            out = out.to(q.dtype)
            return (out, lse.masked_fill(torch.isneginf(lse), float("inf"))) if return_lse else out
        return ar.flash_attn_func(q, k, v, softmax_scale, causal, window_size, softcap, return_lse)


    def no_softcap(q, k, v, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                   return_lse=False):
        """Accepts softcap and silently ignores it."""
        return ar.flash_attn_func(q, k, v, softmax_scale, causal, window_size, 0.0, return_lse)


    def reads_whole_pages(q, k_cache, v_cache, cache_seqlens=None, block_table=None, **kw):
        """Reads every slot of each sequence's last page, past cache_seqlens."""
        page = k_cache.shape[1]
        rounded = ((cache_seqlens.long() + page - 1) // page * page).int()
        if block_table is None:
            rounded = torch.clamp(rounded, max=k_cache.shape[1])
        return ar.flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=rounded, block_table=block_table, **kw)


    def backend(**fns):
        base = dict(flash_attn_func=ar.flash_attn_func, flash_attn_varlen_func=ar.flash_attn_varlen_func,
                    flash_attn_with_kvcache=ar.flash_attn_with_kvcache)
        base.update(fns)
        return Backend(name="broken", features=FEATURES, **base)


    class TestTopLeftCausal(AttentionConformance):
        backend = backend(flash_attn_func=top_left_causal)
        device = "cpu"; dtypes = (torch.float32,); size = "tiny"


    class TestNoSoftcap(AttentionConformance):
        backend = backend(flash_attn_func=no_softcap)
        device = "cpu"; dtypes = (torch.float32,); size = "tiny"


    class TestReadsWholePages(AttentionConformance):
        backend = backend(flash_attn_with_kvcache=reads_whole_pages)
        device = "cpu"; dtypes = (torch.float32,); size = "tiny"
    '''
)


@pytest.fixture
def outcomes(pytester):
    pytester.makepyfile(test_broken=BROKEN_BACKENDS)
    # Forward and kvcache tests hold every case these bugs can show in; the rest would only add time.
    result = pytester.runpytest(
        "-q", "-p", "no:cacheprovider", "--tier", "cpu", "-k", "test_forward or test_kvcache"
    )
    failed = {
        r.nodeid.split("::", 1)[1]
        for r in result.reprec.getreports("pytest_runtest_logreport")
        if r.when == "call" and r.failed
    }
    return result, failed


def test_suite_catches_each_bug(outcomes):
    result, failed = outcomes
    causal = {t for t in failed if t.startswith("TestTopLeftCausal")}
    softcap = {t for t in failed if t.startswith("TestNoSoftcap")}
    pages = {t for t in failed if t.startswith("TestReadsWholePages")}

    # Top-left causal: caught where seqlen_q != seqlen_k, and not where they are equal.
    assert "TestTopLeftCausal::test_forward[float32-causal_q<k]" in causal
    assert "TestTopLeftCausal::test_forward[float32-causal_q>k]" in causal
    assert "TestTopLeftCausal::test_forward[float32-causal_square]" not in causal
    assert "TestTopLeftCausal::test_forward[float32-q<k]" not in causal
    # Dropped softcap: every softcap case fails, nothing else does.
    assert softcap >= {
        "TestNoSoftcap::test_forward[float32-softcap]",
        "TestNoSoftcap::test_forward[float32-softcap_scale]",
    }
    assert all("softcap" in t or "everything" in t for t in softcap), softcap
    # Out-of-range reads: NaN reaches the output of every kvcache case, contiguous and paged.
    assert {
        f"TestReadsWholePages::test_kvcache[float32-{c}]" for c in ("paged", "paged_64_gqa", "contiguous")
    } <= pages
    assert all("kvcache" in t for t in pages), pages
    result.stdout.fnmatch_lines(["*NaN entries where the reference is finite*"])


def test_undeclared_feature_must_raise(pytester):
    pytester.makepyfile(
        test_undeclared=textwrap.dedent(
            """
            import torch
            import attn_reference as ar
            from attn_reference.testing.conformance import AttentionConformance, Backend, Features

            class TestClaimsLess(AttentionConformance):
                # Declares no softcap, yet computes it instead of refusing: the suite must object.
                backend = Backend(name="quiet", flash_attn_func=ar.flash_attn_func,
                                  features=Features(dtypes=(torch.float32,), head_dims=(64,), causal=True, lse=True))
                device = "cpu"; dtypes = (torch.float32,); size = "tiny"
            """
        )
    )
    result = pytester.runpytest("-q", "-p", "no:cacheprovider", "-k", "test_forward and float32 and softcap")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*DID NOT RAISE*"])
