"""Files: finding the text files named on a command line (files, and folders searched
recursively), and saving without leaving half-written files (`write_atomic`, `staged_save`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from fnmatch import fnmatch
from pathlib import Path

from zip2zip.errors import UsageError


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
        UsageError: a folder holds no matching file, or a path names something that is neither
            a regular file nor a folder.
    """
    found: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(given)
        if path.is_file():
            candidates = [(path, path.as_posix())]
        elif path.exists() and not path.is_dir():
            raise UsageError(f"{path}: not a regular file")
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
                raise UsageError(f"no files matching {' '.join(globs)} under {path}")
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
        for file, label in candidates:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                found.append((file, label))
    return found


class SaveError(OSError):
    """A save that could not be completed (a full disk, a write limit, no permission). The
    folder or file it was writing is as it was before."""


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` through a temporary file in the same folder,
    renamed over ``path`` once whole: ``path`` holds the old content or the new, never a part.

    Raises:
        SaveError: the write failed; ``path`` is unchanged.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    temporary = path.with_name(f".{path.name}.{os.getpid()}.saving")
    try:
        with open(temporary, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise SaveError(f"could not write {path}: {error.strerror or error}") from error


@contextlib.contextmanager
def staged_save(directory: str | os.PathLike[str]) -> Iterator[Path]:
    """A folder to save into instead of ``directory``: once the block has written everything,
    each file moves into ``directory`` by a rename (which needs no space), replacing the old
    one; if anything fails first, the staged files are removed and ``directory`` is as it was.

    The staging folder is inside ``directory`` (``.zip2zip-saving-*``), so the renames stay on
    one file system.

    Raises:
        SaveError: the block failed to write (the original error is its ``__cause__``). Errors
            that say the save itself is wrong (``ValueError``, ``TypeError``) pass unchanged.
    """
    target = Path(directory)
    created = not target.exists()
    try:
        target.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".zip2zip-saving-", dir=target))
    except OSError as error:
        raise SaveError(f"could not save to {target}: {error.strerror or error}") from error
    try:
        try:
            yield stage
        except (ValueError, TypeError):
            raise
        except Exception as error:  # tokenizers reports a failed write as a bare Exception
            raise SaveError(f"could not save to {target}: {getattr(error, 'strerror', None) or error}") from error
        files = sorted(p for p in stage.rglob("*") if p.is_file())
        for file in files:
            destination = target / file.relative_to(stage)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, destination)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created and target.is_dir() and not any(target.iterdir()):
            target.rmdir()  # a folder this save made and that nothing moved into
