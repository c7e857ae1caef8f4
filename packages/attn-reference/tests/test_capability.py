"""Capability checks and the tier plugin."""

import textwrap

import pytest
import torch

from attn_reference import capability

pytest_plugins = ["pytester"]


def test_tiers_on_this_machine():
    assert capability.tier_unavailable("cpu") is None
    if not torch.cuda.is_available():
        assert capability.cuda_capability() is None
        assert capability.current_tier() == "cpu"
        for tier in ("gpu", "sm80", "sm90"):
            assert "needs" in capability.tier_unavailable(tier)
    with pytest.raises(ValueError, match="tier must be one of"):
        capability.tier_unavailable("sm70")


def test_tier_option_selects_and_skips(pytester):
    pytester.makepyfile(
        test_tiers=textwrap.dedent(
            """
            import pytest

            def test_cpu(): pass

            @pytest.mark.gpu
            def test_gpu(): pass

            @pytest.mark.sm90
            def test_hopper(): pass

            @pytest.mark.slow
            def test_slow(): pass
            """
        )
    )
    cpu = pytester.runpytest("--tier", "cpu", "-p", "no:cacheprovider")
    cpu.assert_outcomes(passed=1, skipped=1, deselected=2)  # the slow test is skipped without --run-slow
    slow = pytester.runpytest("--tier", "cpu", "--run-slow", "-p", "no:cacheprovider")
    slow.assert_outcomes(passed=2, deselected=2)
    if not torch.cuda.is_available():
        gpu = pytester.runpytest("--tier", "sm90", "-rs", "-p", "no:cacheprovider")
        gpu.assert_outcomes(skipped=2, deselected=2)
        gpu.stdout.fnmatch_lines(["*needs a CUDA GPU*"])


def test_a_kernel_runs_on_the_device_of_its_tensors():
    from attn_reference.errors import AttentionArgumentError

    cuda = torch.device
    assert capability.common_device([cuda("cuda", 1), cuda("cuda", 1)], current=0) == 1
    assert capability.common_device([cuda("cuda")], current=2) == 2  # "cuda" means the current device
    assert capability.common_device([], current=3) == 3  # no tensor (hello): the current device
    assert capability.common_device([cuda("cpu"), cuda("cuda", 1)], current=0) == 1
    with pytest.raises(AttentionArgumentError, match=r"several devices \(cuda:0, cuda:1\)"):
        capability.common_device([cuda("cuda", 0), cuda("cuda", 1)], current=0)


def test_device_guard_is_a_no_op_without_cuda_tensors():
    import contextlib

    assert isinstance(capability.device_guard(torch.zeros(1), None, 3), contextlib.nullcontext)
    with capability.device_guard():
        pass
    if torch.cuda.is_available():
        guard = capability.device_guard(torch.zeros(1), torch.zeros(1, device="cuda"))
        assert isinstance(guard, torch.cuda.device)
