"""Presenting results: per-scenario summaries (medians over iterations), the console table,
and ``python -m bench report``'s Markdown table and PNG chart of rows/s.

Rates are end to end: source rows (or bytes) read over the harness's wall time,
interpreter start included, the same way peers are timed.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Iterable

COLUMNS = ("scenario", "rows", "iters", "wall s", "tool s", "rows/s", "MB/s", "path", "par",
           "cpu s", "RSS MB", "base+budget MB")


def summarize(records: Iterable[dict]) -> list[dict]:
    """One summary per scenario (first-seen order) over its records."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["scenario"], []).append(r)
    out = []
    for name, rs in groups.items():
        wall = statistics.median(r["wall_secs"] for r in rs)
        last = rs[-1]
        res = last["result"]
        out.append({
            "scenario": name,
            "rows": last["rows"],
            "iters": len(rs),
            "wall_secs": wall,
            "tool_secs": statistics.median(r["result"]["duration_secs"] for r in rs),
            # rows read: a filtering transform writes fewer rows than it processes
            "rows_per_sec": res["records_read"] / wall if wall else 0.0,
            "mb_per_sec": res["bytes_read"] / wall / 1e6 if wall else 0.0,
            "path": res.get("path", ""),
            "parallelism": res.get("parallelism", ""),
            "cpu_secs": statistics.median(r["result"]["process_cpu_secs"] for r in rs),
            "peak_rss_mb": max(r["result"]["peak_rss_mb"] for r in rs),
            # what the peak must stay under (results from before the budget have none)
            "baseline_rss_mb": res.get("baseline_rss_mb"),
            "max_memory_mb": res.get("max_memory_mb"),
            "impl": last.get("impl", ""),
            "git_sha": last.get("git_sha", ""),
            "git_dirty": last.get("git_dirty", False),
            "timestamp": last.get("timestamp", ""),
        })
    return out


def _cells(s: dict) -> list[str]:
    return [s["scenario"], f"{s['rows']:,}", str(s["iters"]), f"{s['wall_secs']:.3f}",
            f"{s['tool_secs']:.3f}", f"{s['rows_per_sec']:,.0f}", f"{s['mb_per_sec']:,.1f}",
            str(s["path"]), str(s["parallelism"]), f"{s['cpu_secs']:.2f}",
            f"{s['peak_rss_mb']:.0f}", _limit(s)]


def _limit(s: dict) -> str:
    if s.get("max_memory_mb") is None:
        return "-"
    return f"{s['baseline_rss_mb']:.0f}+{s['max_memory_mb']:.0f}"


def console_table(summaries: list[dict], notes: Iterable[tuple[str, str]] = ()) -> str:
    """Aligned text table; ``notes`` are (scenario, "skipped: ..."/"FAILED: ...") lines."""
    rows = [list(COLUMNS)] + [_cells(s) for s in summaries]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i in (0, 7) else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += [f"{name}: {note}" for name, note in notes]
    return "\n".join(lines)


def select(records: list[dict], last: int | None = None,
           shas: list[str] | None = None) -> list[dict]:
    """The records of the last ``last`` invocations (run ids, in file order) and of commits
    starting with one of ``shas``."""
    if shas:
        records = [r for r in records if any(r.get("git_sha", "").startswith(s) for s in shas)]
    if last:
        runs = list(dict.fromkeys(r["run_id"] for r in records))[-last:]
        records = [r for r in records if r["run_id"] in set(runs)]
    return records


def latest(records: list[dict]) -> list[dict]:
    """Summaries of the most recent invocation (run_id) of each (scenario, git sha, dirty),
    ordered by scenario then time."""
    def key(r: dict) -> tuple[str, str, bool]:
        return r["scenario"], r["git_sha"], r["git_dirty"]

    last_run = {key(r): r["run_id"] for r in records}
    summaries = []
    for k, run_id in last_run.items():
        summaries += summarize(r for r in records if key(r) == k and r["run_id"] == run_id)
    return sorted(summaries, key=lambda s: (s["scenario"], s["timestamp"]))


def _sha(s: dict) -> str:
    return s["git_sha"][:7] + ("+dirty" if s["git_dirty"] else "")


def markdown(summaries: list[dict], machine: dict | None = None) -> str:
    """The report's Markdown: one row per summary."""
    head = ["# Benchmark results", "",
            "Latest result per scenario and git sha: medians over the iterations; rows/s and "
            "MB/s are end to end (interpreter start included); every number comes from a "
            "verified destination (count, sum, distinct).", ""]
    if machine:
        head += [f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
                 f"{machine.get('memory_gb', '?')} GB.", ""]
    cols = ["scenario", "rows", "git sha", "date", "impl", "iters", "wall s", "tool s",
            "rows/s", "MB/s", "path", "par", "cpu s", "RSS MB", "base+budget MB"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for s in summaries:
        c = _cells(s)
        row = [c[0], c[1], _sha(s), s["timestamp"][:10], s["impl"], *c[2:]]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(head + lines) + "\n"


def chart(summaries: list[dict], path: Path) -> None:
    """Horizontal bars of rows/s, the newest summary of each scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    newest: dict[str, dict] = {}
    for s in sorted(summaries, key=lambda s: s["timestamp"]):
        newest[s["scenario"]] = s
    chosen = [newest[n] for n in sorted(newest)]
    labels = [f"{s['scenario']}\n{s['rows']:,} rows @ {_sha(s)}" for s in chosen]
    values = [s["rows_per_sec"] for s in chosen]
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(chosen) + 1.2))
    bars = ax.barh(labels, values, color="#3b7dd8")
    ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], padding=3, fontsize=8)
    ax.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    ax.tick_params(axis="y", labelsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("rows/s (end to end, verified)")
    ax.set_title("rapidbyte-fast: rows/s per scenario")
    ax.margins(x=0.15)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
