"""The MLA conformance suite: the reference passes it, and broken backends fail it."""

from __future__ import annotations

import textwrap

import pytest
import torch

from attn_reference.testing.mla import REFERENCE_MLA_BACKEND, MLAConformance

pytest_plugins = ["pytester"]


class TestReferenceMLAConformance(MLAConformance):
    """The reference (fp32) against itself in fp64. Its semantics are checked independently, by plain
    loops over tokens and heads, in test_mla.py."""

    backend = REFERENCE_MLA_BACKEND
    device = "cpu"
    size = "tiny"
    oracle_accum_dtype = torch.float64


@pytest.mark.gpu
class TestReferenceMLAConformanceGPU(MLAConformance):
    """The full grid (FlashMLA's shapes) on a GPU: the oracle must hold where the kernels are tested."""

    backend = REFERENCE_MLA_BACKEND
    device = "cuda"
    size = "full"
    oracle_accum_dtype = torch.float64


BROKEN_BACKENDS = textwrap.dedent(
    """
    import dataclasses

    import torch

    from attn_reference import mla
    from attn_reference.testing.mla import REFERENCE_MLA_BACKEND, MLAConformance, MLAFeatures


    def ignores_causal(*args, **kwargs):
        kwargs["causal"] = False
        return mla.flash_mla_with_kvcache(*args, **kwargs)


    def reads_padding(q, k_cache, block_table, cache_seqlens, *args, **kwargs):
        # Rounds each length up to whole blocks, reading the NaN slots past the end of the sequence.
        if cache_seqlens is not None and kwargs.get("indices") is None:
            page = k_cache.shape[1]
            cache_seqlens = (cache_seqlens + page - 1) // page * page
        return mla.flash_mla_with_kvcache(q, k_cache, block_table, cache_seqlens, *args, **kwargs)


    def base2_lse(*args, **kwargs):
        out, max_logits, lse = mla.flash_mla_sparse_fwd(*args, **kwargs)
        return out, max_logits * 1.4426950408889634, lse * 1.4426950408889634


    class TestIgnoresCausal(MLAConformance):
        backend = dataclasses.replace(REFERENCE_MLA_BACKEND, name="no-causal", flash_mla_with_kvcache=ignores_causal)
        device = "cpu"


    class TestReadsPadding(MLAConformance):
        backend = dataclasses.replace(REFERENCE_MLA_BACKEND, name="padding", flash_mla_with_kvcache=reads_padding)
        device = "cpu"


    class TestBase2Lse(MLAConformance):
        backend = dataclasses.replace(REFERENCE_MLA_BACKEND, name="base2", flash_mla_sparse_fwd=base2_lse)
        device = "cpu"


    class TestOverclaims(MLAConformance):
        # Declares less than it does: the undeclared features must raise, and here they do not.
        backend = dataclasses.replace(
            REFERENCE_MLA_BACKEND,
            name="overclaims",
            features=MLAFeatures(dtypes=(torch.bfloat16,), head_dims=(576,), page_sizes=(64,), sparse=True,
                                 fp8=True, attn_sink=False, extra_cache=False),
        )
        device = "cpu"
    """
)


def test_conformance_catches_broken_backends(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_broken=BROKEN_BACKENDS)
    # Only the tests each breakage concerns, to keep this quick.
    select = (
        "(IgnoresCausal and (dense_decode or sparse_decode)) or (ReadsPadding and dense_decode) "
        "or (Base2Lse and prefill) or (Overclaims and (undeclared or matches))"
    )
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-rf", "-k", select)
    failed = {line.split(" ")[1].split("::", 1)[1] for line in result.outlines if line.startswith("FAILED ")}

    def failures(cls: str) -> list[str]:
        return sorted(name for name in failed if name.startswith(cls + "::"))

    # Ignoring causal fails exactly the causal dense cases (s_q > 1), and nothing sparse.
    causal = failures("TestIgnoresCausal")
    assert causal and all("-causal" in name for name in causal), causal
    # Reading past the sequence brings NaN into out.
    padding = failures("TestReadsPadding")
    assert padding and all("test_dense_decode_matches_reference" in n for n in padding), padding
    # A base-2 lse in sparse prefill fails every prefill comparison.
    base2 = failures("TestBase2Lse")
    assert base2 and all("test_sparse_prefill_matches_reference" in n for n in base2), base2
    # Undeclared dtype, head dim, page size, attn_sink and extra cache each fail to raise.
    overclaims = {n.split("::")[1] for n in failures("TestOverclaims")}
    assert overclaims == {
        "test_undeclared_dtypes_raise",
        "test_undeclared_head_dims_raise",
        "test_undeclared_page_sizes_raise",
        "test_undeclared_attn_sink_raises",
        "test_undeclared_extra_cache_raises",
    }, overclaims
    # Everything else selected passes: the failures above are the only ones.
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == len(causal) + len(padding) + len(base2) + len(overclaims)
    assert outcomes.get("passed", 0) > 20
