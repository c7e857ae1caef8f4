"""Step one of the learning path: three small kernels that teach Triton's programming model.

* :mod:`.vector_add` — programs, ``tl.arange`` offsets and masks.
* :mod:`.softmax` — a whole row in registers; reductions; why fusing saves memory traffic.
* :mod:`.matmul` — tiles, ``tl.dot`` on tensor cores, grouped program ordering for L2 reuse, autotuning.
"""

from attn_triton.basics.matmul import matmul
from attn_triton.basics.softmax import softmax
from attn_triton.basics.vector_add import vector_add

__all__ = ["matmul", "softmax", "vector_add"]
