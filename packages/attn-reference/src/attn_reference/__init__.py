"""attn-reference: the oracle every attention backend of this project is tested against.

Plain PyTorch, readable before fast: materialised-softmax attention (:mod:`.naive`), the
FlashAttention-1 and -2 algorithms (:mod:`.flash_v1`, :mod:`.flash_v2`) with the FlashAttention-2
backward, the flash-attn API on top of them (:mod:`.interface`), DeepSeek MLA decoding with FlashMLA's
API and its FP8 cache format (:mod:`.mla`, :mod:`.fp8_kvcache`), the shared argument validation
(:mod:`.validation`) and, in :mod:`attn_reference.testing`, input generators, the tolerance rule and
the conformance suite.
"""

from .errors import AttentionArgumentError, UnsupportedFeatureError
from .flash_v1 import flash_v1_forward
from .flash_v2 import flash_v2_backward, flash_v2_forward
from .fp8_kvcache import dequantize_kvcache_fp8, quantize_kvcache_fp8
from .interface import flash_attn_func, flash_attn_varlen_func, flash_attn_with_kvcache
from .mla import flash_mla_sparse_fwd, flash_mla_with_kvcache, get_mla_metadata
from .naive import attention_naive

__version__ = "0.1.0"

__all__ = [
    "AttentionArgumentError",
    "UnsupportedFeatureError",
    "__version__",
    "attention_naive",
    "dequantize_kvcache_fp8",
    "flash_attn_func",
    "flash_attn_varlen_func",
    "flash_attn_with_kvcache",
    "flash_mla_sparse_fwd",
    "flash_mla_with_kvcache",
    "flash_v1_forward",
    "flash_v2_backward",
    "flash_v2_forward",
    "get_mla_metadata",
    "quantize_kvcache_fp8",
]
