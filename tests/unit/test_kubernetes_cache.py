"""The lab's Kubernetes binaries cache: found when complete and built by today's recipe,
built again otherwise (a half-copied folder or an older recipe is never used)."""

from __future__ import annotations

from pathlib import Path

from interlock_lab import kubernetes


def fill(cache: Path, recipe: str | None, skip: str | None = None) -> Path:
    where = kubernetes.folder(cache)
    where.mkdir(parents=True)
    for b in kubernetes.BINARIES:
        if b != skip:
            (where / b).write_bytes(b"\x7fELF")
    if recipe is not None:
        (where / ".complete").write_text(recipe + "\n")
    return where


def test_a_complete_folder_of_this_recipe_is_used(tmp_path: Path) -> None:
    where = fill(tmp_path, kubernetes.RECIPE)
    found = kubernetes.cached(tmp_path)
    assert found is not None and found.folder == where and not found.built
    assert [p.name for p in found.files] == list(kubernetes.BINARIES)


def test_an_unfinished_or_older_folder_is_not(tmp_path: Path) -> None:
    assert kubernetes.cached(tmp_path) is None
    fill(tmp_path / "unfinished", None)
    assert kubernetes.cached(tmp_path / "unfinished") is None
    fill(tmp_path / "older", kubernetes.VERSION)  # before the recipe was recorded
    assert kubernetes.cached(tmp_path / "older") is None
    fill(tmp_path / "short", kubernetes.RECIPE, skip="kubelet")
    assert kubernetes.cached(tmp_path / "short") is None
