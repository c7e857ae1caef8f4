"""Run every code block of the documentation that claims to run.

A fenced block claims to run when the line before it (blank lines allowed in between) is an HTML comment::

    <!-- runnable -->                      run it on the CPU (TRITON_INTERPRET=1); it must exit 0
    <!-- runnable: gpu <reason> -->        needs a GPU: skipped here, with the reason printed

Only Python blocks may be runnable. Blocks run one after another, each in a fresh namespace, in ``-j``
interpreters (default 2), so torch is imported once per interpreter rather than once per block. A block's text is what the reader sees: pymdownx.snippets lines
(``--8<-- "path"`` or ``--8<-- "path:section"``, paths from the repository root) are expanded first, so
examples usually live in ``docs/examples/*.py`` (ruff-checked) and are included by the pages. Every file in
``docs/examples/`` must be included by some runnable block, so no example goes untested.

    python ci/check_docs_code.py [-j JOBS] [--list] [PAGES...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
MARKER = re.compile(r"^\s*<!--\s*runnable(?:\s*:\s*(?P<kind>gpu)\b\s*(?P<reason>.*?))?\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^\s`]*)")
SNIPPET = re.compile(r"^\s*-{1,}8<-{1,}\s+\"(?P<target>[^\"]+)\"\s*$")
SECTION = re.compile(r"-{1,}8<-{1,}\s+\[\s*(?P<type>start|end)\s*:\s*(?P<name>[a-z][-_0-9a-z]*)\s*\]")
TIMEOUT_S = 600


@dataclass
class Block:
    page: Path
    line: int
    code: str
    gpu_reason: str | None
    includes: list[Path]

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def read_snippet(target: str) -> tuple[str, Path]:
    """The text ``--8<-- "target"`` stands for (whole file, or a section of it), as pymdownx.snippets does."""
    path, _, section = target.partition(":")
    file = ROOT / path
    if not file.is_file():
        raise SystemExit(f"snippet file not found: {path}")
    lines = file.read_text().splitlines()
    if not section:
        return "\n".join(line for line in lines if not SECTION.search(line)), file
    out, inside, found = [], False, False
    for line in lines:
        m = SECTION.search(line)
        if m and m["name"] == section:
            inside, found = m["type"] == "start", True
            continue
        if m:
            continue
        if inside:
            out.append(line)
    if not found:
        raise SystemExit(f"snippet section not found: {target}")
    return "\n".join(out), file


def expand(code: str) -> tuple[str, list[Path]]:
    out, files = [], []
    for line in code.splitlines():
        m = SNIPPET.match(line)
        if m:
            text, file = read_snippet(m["target"])
            out.append(text)
            files.append(file)
        else:
            out.append(line)
    return "\n".join(out) + "\n", files


def blocks_of(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    found, pending, i = [], None, 0
    while i < len(lines):
        marker = MARKER.match(lines[i])
        if marker:
            pending = (i + 1, marker["reason"] or "needs a GPU" if marker["kind"] else None)
            i += 1
            continue
        fence = FENCE.match(lines[i])
        if fence:
            close = re.compile(rf"^\s*{re.escape(fence['fence'][0])}{{{len(fence['fence'])},}}\s*$")
            j = i + 1
            while j < len(lines) and not close.match(lines[j]):
                j += 1
            if pending is not None:
                if fence["info"].lower() not in ("python", "py", "python3"):
                    raise SystemExit(f"{page}:{pending[0]}: only python blocks can be runnable")
                indent = len(fence["indent"])
                code, files = expand("\n".join(line[indent:] for line in lines[i + 1 : j]))
                found.append(Block(page, pending[0], code, pending[1], files))
            pending = None
            i = j + 1
            continue
        if lines[i].strip():
            pending = None  # a marker applies to the very next block only
        i += 1
    return found


_RUNNER = """
import json, sys, time, traceback
for where, code in json.load(open(sys.argv[1])):
    start = time.perf_counter()
    try:
        exec(compile(code, where, "exec"), {"__name__": "__main__"})
        ok, err = True, ""
    except BaseException:  # noqa: BLE001 - report every failure, run the remaining blocks
        ok, err = False, traceback.format_exc()
    print(json.dumps({"where": where, "ok": ok, "err": err, "secs": time.perf_counter() - start}), flush=True)
"""


def run(blocks: list[Block]) -> list[tuple[Block, bool, str, float]]:
    """Run ``blocks`` one after another in one fresh interpreter (torch is imported once, not per block)."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory() as tmp:
        todo = Path(tmp) / "blocks.json"
        todo.write_text(json.dumps([(b.where, b.code) for b in blocks]))
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _RUNNER, str(todo)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
            )
            out, log = proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as e:
            out, log = e.stdout or "", f"timed out after {TIMEOUT_S} s"
            out = out.decode() if isinstance(out, bytes) else out
    done = {}
    for line in out.splitlines():
        if line.startswith('{"where"'):
            r = json.loads(line)
            done[r["where"]] = r
    results = []
    for b in blocks:
        r = done.get(b.where)
        if r is None:
            results.append((b, False, f"did not run (the runner died):\n{log}", 0.0))
        else:
            results.append((b, r["ok"], r["err"], r["secs"]))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="*", type=Path, help="markdown pages (default: all of docs/)")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="interpreters running blocks in parallel")
    parser.add_argument("--list", action="store_true", help="list the runnable blocks, run nothing")
    args = parser.parse_args()
    pages = [p.resolve() for p in args.pages] or sorted(DOCS.rglob("*.md"))
    blocks = [b for page in pages for b in blocks_of(page)]
    if not args.pages:
        used = {f.resolve() for b in blocks for f in b.includes}
        untested = [p for p in sorted(EXAMPLES.glob("*.py")) if p.resolve() not in used]
        if untested:
            names = ", ".join(str(p.relative_to(ROOT)) for p in untested)
            print(f"FAIL: examples not included by any runnable block: {names}")
            return 1
    cpu = [b for b in blocks if b.gpu_reason is None]
    for b in blocks:
        if b.gpu_reason is not None:
            print(f"skip  {b.where}: {b.gpu_reason}")
    if args.list:
        for b in cpu:
            print(f"run   {b.where} ({', '.join(str(f.relative_to(ROOT)) for f in b.includes) or 'inline'})")
        return 0
    failed = 0
    shards = [cpu[i :: args.jobs] for i in range(args.jobs) if cpu[i :: args.jobs]]
    with ThreadPoolExecutor(len(shards) or 1) as pool:
        for results in pool.map(run, shards):
            for block, ok, output, secs in results:
                print(f"{'ok   ' if ok else 'FAIL '} {block.where} ({secs:.1f} s)")
                if not ok:
                    failed += 1
                    print("\n".join("    " + line for line in output.rstrip().splitlines()[-30:]))
    print(
        f"{len(cpu) - failed} of {len(cpu)} runnable blocks ran; {len(blocks) - len(cpu)} GPU blocks skipped"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
