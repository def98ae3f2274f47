"""``python -m bench compare REF1 REF2``: check each ref out into a temporary git worktree,
compile its Cython modules in place, run the same scenarios on the same seeded data with
both (alternating which goes first every iteration, so drift hurts neither), and print the
% change per scenario. Worktrees are removed afterwards, also on failure.

Each ref runs with the harness's own interpreter and the worktree first on PYTHONPATH:
both refs share the installed dependencies, and only the package code differs. (A venv
made with ``--system-site-packages`` from a venv would not see the venv's packages.)
"""
from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

from .report import summarize
from .runner import byte_compile


def pct_change(before: float, after: float) -> float:
    """(after − before) / before in percent."""
    return (after - before) / before * 100.0 if before else float("nan")


def compare_table(label_a: str, label_b: str, a: list[dict], b: list[dict]) -> str:
    """Median wall and rows/s per scenario for both refs, with B's % change against A."""
    by_b = {s["scenario"]: s for s in b}
    head = (f"{'scenario':<36} {label_a[:12]:>12} {label_b[:12]:>12} {'wall Δ':>8}  "
            f"{'rows/s A':>12} {'rows/s B':>12} {'rows/s Δ':>9}")
    lines = [head, "-" * len(head)]
    for sa in a:
        sb = by_b.get(sa["scenario"])
        if sb is None:
            continue
        lines.append(
            f"{sa['scenario']:<36} {sa['wall_secs']:>11.3f}s {sb['wall_secs']:>11.3f}s "
            f"{pct_change(sa['wall_secs'], sb['wall_secs']):>+7.1f}%  "
            f"{sa['rows_per_sec']:>12,.0f} {sb['rows_per_sec']:>12,.0f} "
            f"{pct_change(sa['rows_per_sec'], sb['rows_per_sec']):>+8.1f}%")
    return "\n".join(lines)


#: A slowdown within this much is never called a regression, however quiet the runs: the
#: smallest spread seen between alternated iterations of one ref on these shared machines
#: (bench compare 20d91e5 vs 78603ae, 3 iters: 2.4-5.3%).
NOISE_FLOOR_PCT = 3.0


def regressions(records: list[dict], ref_a: str, ref_b: str) -> list[str]:
    """One line per scenario where ``ref_b``'s median wall is slower than ``ref_a``'s by
    more than the measured noise: the larger spread ((max - min) / median) of either ref's
    own iterations, and at least ``NOISE_FLOOR_PCT``."""
    walls: dict[str, dict[str, list[float]]] = {}
    for r in records:
        walls.setdefault(r["scenario"], {}).setdefault(r["ref"], []).append(r["wall_secs"])
    out = []
    for scenario, by_ref in walls.items():
        a, b = by_ref.get(ref_a), by_ref.get(ref_b)
        if not a or not b:
            continue
        noise = max(NOISE_FLOOR_PCT, *((max(w) - min(w)) / statistics.median(w) * 100.0
                                       for w in (a, b)))
        change = pct_change(statistics.median(a), statistics.median(b))
        if change > noise:
            out.append(f"{scenario}: {ref_b} is {change:.1f}% slower than {ref_a} "
                       f"(noise {noise:.1f}%)")
    return out


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout.strip()


def resolve(repo: Path, ref: str) -> str:
    """The commit sha of ``ref``; ``RuntimeError`` when it names none."""
    return _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")


@contextmanager
def worktree(repo: Path, ref: str) -> Iterator[Path]:
    """A detached worktree of ``ref`` with its compiled modules built in place."""
    path = Path(tempfile.mkdtemp(prefix="rbf-compare-"))
    try:
        _git(repo, "worktree", "add", "--detach", str(path), ref)
        print(f"building {ref} in {path} ...", file=sys.stderr, flush=True)
        build = subprocess.run(
            [sys.executable, "setup.py", "build_ext", "--inplace", "--parallel", "2"],
            cwd=path, capture_output=True, text=True)
        if build.returncode != 0:
            tail = "\n".join(build.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"building {ref} failed:\n{tail}")
        byte_compile(path)
        yield path
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(path)],
                       capture_output=True)
        subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True)
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def worktrees(repo: Path, refs: list[str]) -> Iterator[list[Path]]:
    """Worktrees of every ref, all removed on exit."""
    with ExitStack() as stack:
        yield [stack.enter_context(worktree(repo, ref)) for ref in refs]


def split_by_ref(records: list[dict], refs: list[str]) -> list[list[dict]]:
    """The summaries of each ref's records, in ``refs`` order."""
    return [summarize(r for r in records if r["ref"] == ref) for ref in refs]
