"""The budget's arithmetic: what per_worker derives, how workers share it, how a cgroup
limit lowers it, and how max_memory is configured."""
from __future__ import annotations

import pytest

from rapidbyte_fast import memory_budget as mb
from rapidbyte_fast.config import load_config
from rapidbyte_fast.errors import ConfigError

MB = 1 << 20


def _held(s: mb.Sizing, units: int) -> float:
    """What the model says a worker holds: ``units`` batches, its reserve, the overhead."""
    return units * s.batch_bytes * mb.BATCH_OVERHEAD + mb.WORKER_RESERVE


@pytest.mark.parametrize("kw,held,queues", [
    ({}, 2, 1),
    ({"transforms": True}, 4, 2),
    ({"compressed": True}, 5, 1),
    ({"transforms": True, "compressed": True}, 7, 2),
])
@pytest.mark.parametrize("budget", [48 * MB, 64 * MB, 256 * MB, 1024 * MB])
@pytest.mark.parametrize("bpr", [0.0, 120.0, 45_000.0])
def test_a_workers_batches_and_queues_fit_its_share(kw, held, queues, budget, bpr):
    s = mb.per_worker(budget, bytes_per_row=bpr, **kw)
    assert s.worker_bytes == budget - mb.RUN_RESERVE
    assert 1 <= s.queue_batches <= 16
    assert mb.MIN_BATCH_BYTES <= s.batch_bytes <= 64 * MB
    if s.batch_bytes > mb.MIN_BATCH_BYTES and s.queue_batches > 1:
        assert _held(s, held + queues * s.queue_batches) <= s.worker_bytes
    if bpr:
        assert s.batch_rows <= max(1, s.batch_bytes // bpr) + 1


def test_the_default_budget_keeps_narrow_batches_at_their_row_cap_and_deepens_queues():
    s = mb.per_worker(256 * MB, bytes_per_row=120.0)
    assert (s.batch_rows, s.batch_bytes) == (100_000, 12_000_000)
    assert s.queue_batches == 13  # of 12 MB (100k rows): 15 in hand at most


def test_wide_rows_get_fewer_rows_per_batch():
    s = mb.per_worker(64 * MB, bytes_per_row=45_000.0)
    assert s.batch_rows == s.batch_bytes // 45_000
    assert s.queue_batches == mb.TARGET_QUEUE


def test_configured_bounds_still_cap_what_the_budget_allows():
    s = mb.per_worker(4096 * MB, bytes_per_row=100.0, max_batch_bytes=1 * MB,
                      max_batch_rows=5000, max_inflight_batches=3)
    assert (s.batch_bytes, s.batch_rows, s.queue_batches) == (500_000, 5000, 3)


def test_workers_share_the_budget():
    one = mb.per_worker(256 * MB, 1, bytes_per_row=45_000.0)
    four = mb.per_worker(256 * MB, 4, bytes_per_row=45_000.0)
    assert four.worker_bytes == (256 * MB - mb.RUN_RESERVE) // 4
    assert four.batch_bytes < one.batch_bytes


def test_passthrough_queues_raw_chunks_within_the_share():
    assert mb.per_worker(256 * MB, raw=True).queue_batches == 16
    s = mb.per_worker(48 * MB, 2, raw=True)
    assert s.queue_batches * mb.RAW_CHUNK_BYTES * mb.BATCH_OVERHEAD + mb.WORKER_RESERVE \
        <= s.worker_bytes + 2 * mb.RAW_CHUNK_BYTES


def test_a_lower_cgroup_limit_lowers_the_budget_and_says_so():
    b = mb.resolve(256 * MB, baseline=100 * MB, cgroup=300 * MB)
    assert b.bytes == 200 * MB
    assert b.describe() == ("memory budget 200 MB (cgroup memory limit 300 MB minus baseline "
                            "100 MB; resources.max_memory is 256 MB)")
    high = mb.resolve(256 * MB, baseline=100 * MB, cgroup=8192 * MB)
    assert high.bytes == 256 * MB
    assert high.describe() == ("memory budget 256 MB (resources.max_memory), baseline RSS "
                               "100 MB, cgroup memory limit 8,192 MB")
    assert mb.resolve(256 * MB, baseline=100 * MB, cgroup=None).cgroup_limit is None
    # a cgroup that leaves almost nothing still leaves the least budget that can run
    assert mb.resolve(256 * MB, baseline=100 * MB, cgroup=110 * MB).bytes == 48 * MB


def test_tasks_side_by_side_share_the_budget_and_pay_the_run_reserve_once():
    b = mb.resolve(256 * MB, baseline=100 * MB, cgroup=None)
    half = b.shared(2)
    assert half.bytes == mb.RUN_RESERVE + (256 * MB - mb.RUN_RESERVE) // 2
    assert (half.baseline, half.configured) == (b.baseline, b.configured)
    two = mb.per_worker(half.bytes).worker_bytes * 2
    assert mb.per_worker(b.bytes).worker_bytes - 2 <= two <= mb.per_worker(b.bytes).worker_bytes


def _tree(tmp_path, cgroup_line: str, files: dict[str, str]):
    tmp_path.mkdir(parents=True, exist_ok=True)
    proc = tmp_path / "cgroup"
    proc.write_text(cgroup_line + "\n")
    root = tmp_path / "sys"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return str(root), str(proc)


def test_cgroup_v2_the_lowest_memory_max_up_the_tree(tmp_path):
    root, proc = _tree(tmp_path, "0::/user.slice/job", {
        "cgroup.controllers": "cpu memory",
        "user.slice/memory.max": "536870912\n",
        "user.slice/job/memory.max": "max\n"})
    assert mb.cgroup_limit(root, proc) == 512 * MB
    root, proc = _tree(tmp_path / "b", "0::/", {"cgroup.controllers": "memory",
                                                 "memory.max": "max\n"})
    assert mb.cgroup_limit(root, proc) is None


def test_cgroup_v1_hierarchical_limit_then_limit_in_bytes(tmp_path):
    root, proc = _tree(tmp_path, "4:memory:/docker/abc", {
        "memory/docker/abc/memory.limit_in_bytes": "9223372036854771712\n",
        "memory/docker/abc/memory.stat": "cache 0\nhierarchical_memory_limit 1073741824\n"})
    assert mb.cgroup_limit(root, proc) == 1024 * MB
    # the namespace hides the path: the mount's own directory is this cgroup
    root, proc = _tree(tmp_path / "b", "4:memory:/process_api/x", {
        "memory/memory.limit_in_bytes": "805306368\n"})
    assert mb.cgroup_limit(root, proc) == 768 * MB
    root, proc = _tree(tmp_path / "c", "4:memory:/", {
        "memory/memory.limit_in_bytes": "9223372036854771712\n"})
    assert mb.cgroup_limit(root, proc) is None
    assert mb.cgroup_limit(str(tmp_path / "none"), str(tmp_path / "no-such-file")) is None


def _cfg(resources: dict):
    return load_config({"version": "1.0", "pipeline": "p",
                        "source": {"use": "generate", "config": {"rows": 1},
                                   "streams": [{"name": "small"}]},
                        "destination": {"use": "postgres", "config": {"url": "postgresql://x"}},
                        "resources": resources})


def test_max_memory_takes_sizes_and_defaults_to_256mb():
    assert _cfg({}).resources.max_memory == 256 * MB
    assert _cfg({"max_memory": "256MB"}).resources.max_memory == 256 * MB
    assert _cfg({"max_memory": "1.5gb"}).resources.max_memory == 1536 * MB


@pytest.mark.parametrize("value,message", [
    ("10mb", "resources.max_memory: must be at least 48mb"),
    ("lots", "resources.max_memory: must be a size"),
])
def test_a_bad_max_memory_is_named(value, message):
    with pytest.raises(ConfigError) as info:
        _cfg({"max_memory": value})
    assert message in str(info.value)


def test_peak_resident_bytes_is_this_images_peak():
    blob = bytearray(64 << 20)
    blob[::4096] = b"x" * (len(blob) // 4096)  # every page touched: 64 MB resident at once
    now = mb.resident_bytes()
    peak = mb.peak_resident_bytes()  # (read second: the process may grow in between)
    assert peak >= now and peak >= len(blob)
