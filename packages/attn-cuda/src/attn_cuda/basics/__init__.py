"""The CUDA course before attention: each kernel file teaches one idea, each wrapper checks its inputs.

=================  ===========================================================================
``hello``          a kernel is a function run by every thread of a grid (device printf)
``vector_add``     indexing, bounds, grid-stride loops, coalescing, 16-byte loads
``softmax``        the online softmax (running max and sum) in one block per row
``matmul``         naive -> shared-memory tiled -> register-blocked -> tensor cores
``reduction``      the classic successive optimisations of a parallel sum
``overlap``        copy/compute/copy across several streams against one stream
=================  ===========================================================================
"""

from .hello import hello
from .matmul import MATMUL_VARIANTS, matmul
from .overlap import overlap_pipeline
from .reduction import REDUCTION_VARIANTS, reduce_sum
from .softmax import softmax
from .vector_add import vector_add

__all__ = [
    "MATMUL_VARIANTS",
    "REDUCTION_VARIANTS",
    "hello",
    "matmul",
    "overlap_pipeline",
    "reduce_sum",
    "softmax",
    "vector_add",
]
