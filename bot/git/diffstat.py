"""Pure parsing of `git diff --numstat -z --no-renames` into per-file and total line counts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FileStat:
    path: str
    added: int | None  # None for a binary file
    deleted: int | None


@dataclass(frozen=True)
class DiffStat:
    files: tuple[FileStat, ...]

    @property
    def insertions(self) -> int:
        return sum(f.added or 0 for f in self.files)

    @property
    def deletions(self) -> int:
        return sum(f.deleted or 0 for f in self.files)

    def summary(self) -> str:
        """`3 files changed, 10 insertions(+), 2 deletions(-)`, as git prints it."""
        count = len(self.files)
        return (
            f"{count} file{'s' if count != 1 else ''} changed, "
            f"{self.insertions} insertion{'s' if self.insertions != 1 else ''}(+), "
            f"{self.deletions} deletion{'s' if self.deletions != 1 else ''}(-)"
        )


def _count(field: str) -> int | None:
    return None if field == "-" else int(field)


def parse_numstat(raw: bytes) -> DiffStat:
    """Each record is `added<TAB>deleted<TAB>path<NUL>`; `-` counts mark binary files."""
    files: list[FileStat] = []
    for record in raw.split(b"\0"):
        if not record.strip():
            continue
        added, deleted, path = record.decode("utf-8", "surrogateescape").lstrip("\n").split("\t", 2)
        files.append(FileStat(path, _count(added), _count(deleted)))
    return DiffStat(tuple(files))
