"""MLA decoding with DeepSeek FlashMLA's Python API, in Triton and the CuTe DSL, without a C++ build.

``import attn_flashmla as flash_mla`` runs programs written for ``flash_mla``: :func:`get_mla_metadata`,
:func:`flash_mla_with_kvcache` (dense and sparse FP8 decoding) and :func:`flash_mla_sparse_fwd` (sparse
prefill), checked against ``attn_reference.mla``. Dense decoding runs the CuTe DSL Hopper kernel on sm_90
(when ``nvidia-cutlass-dsl`` is installed: the ``sm90`` extra) and Triton elsewhere (sm_80+, or the CPU
interpreter under ``TRITON_INTERPRET=1``). Importing this package touches no GPU and compiles nothing.
"""

__version__ = "0.1.0"

from attn_flashmla.interface import (
    FlashMLASchedMeta,
    flash_mla_sparse_fwd,
    flash_mla_with_kvcache,
    get_mla_metadata,
)

__all__ = [
    "FlashMLASchedMeta",
    "__version__",
    "flash_mla_sparse_fwd",
    "flash_mla_with_kvcache",
    "get_mla_metadata",
]
