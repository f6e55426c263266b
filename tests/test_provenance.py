"""The installed-package list recorded with every run, and its on-disk cache."""

from __future__ import annotations

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
