"""The installed-package list recorded with every run, and its on-disk cache."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pg.record import provenance


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    provenance.package_lock.cache_clear()
    yield tmp_path / "cache" / "pg"
    provenance.package_lock.cache_clear()


def test_lock_lists_installed_distributions_and_is_cached_on_disk(cache_home: Path) -> None:
    lock = provenance.package_lock()
    assert lock == provenance._read_package_lock()
    lines = lock.splitlines()
    names = [line.split("==")[0].lower() for line in lines]
    assert names == sorted(set(names))
    assert any(line.startswith("torch==") for line in lines)
    assert any(line.lower().startswith("mlflow==") for line in lines)
    cached = list(cache_home.glob("packages-*.txt"))
    assert len(cached) == 1
    assert cached[0].read_text(encoding="utf-8") == lock


def test_a_second_process_reads_the_cache_not_the_metadata(cache_home: Path) -> None:
    provenance.package_lock()
    (cached,) = cache_home.glob("packages-*.txt")
    cached.write_text("only==1\n", encoding="utf-8")
    provenance.package_lock.cache_clear()  # as a new process would start
    assert provenance.package_lock() == "only==1\n"


def test_installing_or_removing_a_distribution_changes_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setattr(sys, "path", [*sys.path, str(site)])
    before = provenance._installed_fingerprint()
    assert provenance._installed_fingerprint() == before
    (site / "newpkg-1.0.dist-info").mkdir()
    added = provenance._installed_fingerprint()
    assert added != before
    (site / "newpkg-1.0.dist-info").rmdir()
    (site / "newpkg-1.1.dist-info").mkdir()
    assert provenance._installed_fingerprint() not in (before, added)


def test_a_folder_without_distributions_on_the_path_keeps_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run's working directory is on its import path; every run has another one.
    before = provenance._installed_fingerprint()
    for name in ("run-a", "run-b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "outputs").mkdir()
        monkeypatch.setattr(sys, "path", [str(tmp_path / name), *sys.path])
        assert provenance._installed_fingerprint() == before
        monkeypatch.undo()


def test_only_the_newest_lists_are_kept(cache_home: Path) -> None:
    cache_home.mkdir(parents=True)
    for i in range(provenance.KEPT_LOCKS + 5):
        old = cache_home / f"packages-old{i:02d}.txt"
        old.write_text("x==1\n", encoding="utf-8")
        os.utime(old, (1_000_000 + i, 1_000_000 + i))
    lock = provenance.package_lock()
    kept = sorted(p.name for p in cache_home.glob("packages-*.txt"))
    assert len(kept) == provenance.KEPT_LOCKS
    (current,) = [p for p in cache_home.glob("packages-*.txt") if "old" not in p.name]
    assert current.read_text(encoding="utf-8") == lock
    # the oldest went first
    assert "packages-old00.txt" not in kept and "packages-old20.txt" in kept


def test_an_unwritable_cache_still_gives_the_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    provenance.package_lock.cache_clear()
    try:
        assert provenance.package_lock() == provenance._read_package_lock()
    finally:
        provenance.package_lock.cache_clear()
