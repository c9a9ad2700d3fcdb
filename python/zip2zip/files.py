"""Finding the text files named on a command line (files, and folders searched recursively)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from fnmatch import fnmatch
from pathlib import Path


def collect_files(
    paths: Sequence[str | os.PathLike[str]],
    globs: Sequence[str],
    on_skip: Callable[[str], None] | None = None,
) -> list[tuple[Path, str]]:
    """The files to measure, as (path, label), in the order given, each once.

    A file argument is taken as is (label: the path as given). A folder is walked recursively
    for files whose name matches one of ``globs``, skipping hidden files and folders (``.git``);
    their labels start with the folder's own name (``chat/a.txt``). Only regular files are read:
    in a folder, anything else (a FIFO, a device, a link to one) is skipped and named to
    ``on_skip``, since reading it could block or never end.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: a folder holds no matching file, or a path names something that is neither
            a regular file nor a folder.
    """
    found: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(given)
        if path.is_file():
            candidates = [(path, path.as_posix())]
        elif path.exists() and not path.is_dir():
            raise ValueError(f"{path}: not a regular file")
        elif path.is_dir():
            root = path.resolve()
            candidates = []
            for folder, subfolders, names in os.walk(root):
                subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
                for name in sorted(names):
                    if not name.startswith(".") and any(fnmatch(name, pattern) for pattern in globs):
                        file = Path(folder) / name
                        label = file.relative_to(root.parent).as_posix() if root.parent != root else file.as_posix()
                        if not file.is_file():
                            if on_skip is not None:
                                on_skip(label)
                            continue
                        candidates.append((file, label))
            if not candidates:
                raise ValueError(f"no files matching {' '.join(globs)} under {path}")
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
        for file, label in candidates:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                found.append((file, label))
    return found
