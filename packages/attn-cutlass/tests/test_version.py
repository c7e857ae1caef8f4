"""The installed metadata version is the one the package reports (release check: ci/check_release.py)."""

import importlib.metadata

import attn_cutlass


def test_installed_version_matches_module_version():
    assert importlib.metadata.version("attn-cutlass") == attn_cutlass.__version__
