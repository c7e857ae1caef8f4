"""Release check: each package releases alone, as tag ``<name>-v<version>``.

    python ci/check_release.py                        # every package: the state of the tree
    python ci/check_release.py attn-cuda              # one package
    python ci/check_release.py attn-cuda-v0.2.0       # a release tag: what must hold to push it

Checks, per package: the pyproject version is a plain ``X.Y.Z`` (optionally with a PEP 440 pre/post/dev
suffix); ``__version__`` in ``src/<module>/__init__.py`` equals it; ``CHANGELOG.md`` has an entry
``## <version>`` (or ``## [<version>]``). For a tag, also: it is ``<name>-v<version>`` with the package's
current version, and the changelog entry is dated (not ``unreleased``). The installed metadata version is
checked by each package's ``tests/test_version.py``.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
VERSION = re.compile(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?")
TAG = re.compile(rf"(?P<name>attn-[a-z0-9]+(-[a-z0-9]+)*)-v(?P<version>{VERSION.pattern})")


def module_version(init: Path) -> str | None:
    """The literal ``__version__ = "..."`` of a module, read without importing it."""
    for node in ast.parse(init.read_text()).body:
        targets = getattr(node, "targets", [])
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in targets):
            return ast.literal_eval(node.value)
    return None


def changelog_entry(changelog: Path, version: str) -> str | None:
    """The heading line of the changelog entry for ``version``, if there is one."""
    heading = re.compile(rf"^##\s+\[?v?{re.escape(version)}\]?(\s|$)")
    for line in changelog.read_text().splitlines():
        if heading.match(line):
            return line
    return None


def check(name: str, tag_version: str | None = None) -> tuple[str, list[str]]:
    """(the package's version, what is wrong with releasing it)."""
    pkg = ROOT / "packages" / name
    project = tomllib.loads((pkg / "pyproject.toml").read_text())["project"]
    version = project["version"]
    module = name.replace("-", "_")
    errors = []
    if project["name"] != name:
        errors.append(f"pyproject name {project['name']!r} is not the folder name {name!r}")
    if not VERSION.fullmatch(version):
        errors.append(f"version {version!r} is not X.Y.Z[aN|bN|rcN][.postN][.devN]")
    init = pkg / "src" / module / "__init__.py"
    found = module_version(init) if init.is_file() else None
    if found != version:
        errors.append(f"{init.relative_to(ROOT)}: __version__ is {found!r}, pyproject says {version!r}")
    changelog = pkg / "CHANGELOG.md"
    entry = changelog_entry(changelog, version) if changelog.is_file() else None
    if entry is None:
        errors.append(f"{changelog.relative_to(ROOT)} has no entry '## {version}' for the current version")
    if tag_version is not None:
        if tag_version != version:
            errors.append(f"tag {name}-v{tag_version} does not match the package version {version}")
        elif entry is not None and "unreleased" in entry.lower():
            errors.append(f"changelog entry {entry!r} is still unreleased: date it before tagging")
    return version, errors


def main(argv: list[str]) -> int:
    packages = sorted(p.name for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").is_file())
    tag_version = None
    if not argv:
        targets = packages
    elif len(argv) == 1 and argv[0] in packages:
        targets = argv
    elif len(argv) == 1 and (m := TAG.fullmatch(argv[0])) and m["name"] in packages:
        targets, tag_version = [m["name"]], m["version"]
    else:
        print(f"expected nothing, a package name or a tag <name>-v<version>; got {argv}", file=sys.stderr)
        print(f"packages: {', '.join(packages)}", file=sys.stderr)
        return 2
    failed = False
    for name in targets:
        version, errors = check(name, tag_version)
        failed |= bool(errors)
        for e in errors:
            print(f"FAIL {name}: {e}", file=sys.stderr)
        if not errors:
            print(f"ok   {name} {version} (tag {name}-v{version})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
