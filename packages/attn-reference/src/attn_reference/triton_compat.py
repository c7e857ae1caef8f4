"""Shared by the Triton backends (attn-triton, attn-flashmla): running under Triton's CPU interpreter.

attn-reference does not depend on Triton: everything here imports it lazily and does nothing without it.
"""

from __future__ import annotations

import functools
import os


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.cache
def patch_interpreter_for_numpy2() -> None:
    """Work around triton-lang/triton#9171 in Triton 3.6's interpreter (fixed upstream by #9172).

    The interpreter turns a 1-element array (what program_id() and scalar loads yield) into an index with
    ``int(array)``, which numpy >= 2.4 refuses for arrays of shape (1,): loops whose bounds derive from
    program_id() or from a loaded value then fail. The fix is upstream's: reduce the array to a scalar
    first. Call it only under the interpreter; idempotent, and one patch serves every package.
    """
    try:
        from triton.runtime import interpreter
    except ImportError:  # pragma: no cover
        return
    original = getattr(interpreter, "_patch_lang_tensor", None)
    if original is None or getattr(original, "_attn_numpy2_patched", False):
        return

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patched._attn_numpy2_patched = True
    interpreter._patch_lang_tensor = patched
