"""The two errors every backend raises for bad input.

Backends share them so that callers (and the conformance suite) can tell "you passed something wrong"
from "this backend does not do that" without parsing messages.
"""

from __future__ import annotations


class AttentionArgumentError(ValueError):
    """An argument is invalid: the message names it, says what it was and what is allowed."""


class UnsupportedFeatureError(NotImplementedError):
    """A valid request that this backend does not implement (a head dim, a dtype, a feature)."""


def describe(t) -> str:
    """Short description of a tensor for error messages: shape, dtype and device."""
    try:
        return f"shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"
    except AttributeError:
        return f"{type(t).__name__} {t!r}"
