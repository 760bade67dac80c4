"""Folders a command writes into: checked before any work, and left as found when it fails."""
import contextlib
import os
import shutil
import tempfile


class FolderError(OSError):
    """A folder that cannot be written (a file in the way, no permission): one line."""


def _nearest(path):
    """The nearest part of `path` that exists (itself, or a parent), as the user wrote it."""
    probe = path
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe.rstrip(os.sep))
    return probe or "."


def writable_folder(path, flag="--out", folder_of=None):
    """Fail early, in one line, where `path` cannot become a writable folder (it need not exist
    yet; nothing is created). folder_of: the file path the folder is for, as the user named it."""
    probe, named = _nearest(path), folder_of or path
    if not os.path.isdir(probe):
        where = "is a file" if probe == path and folder_of is None else \
            f"lies under the file {probe}"
        raise FolderError(f"{flag} {named} {where}; give a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise FolderError(f"{flag} {named}: {probe} is not writable")
    return path


@contextlib.contextmanager
def making(path, flag="--out"):
    """Create folder `path` for the body; if the body fails, remove what this call created
    while it is still empty (a failed command leaves no empty folders behind)."""
    writable_folder(path, flag)
    created, probe = [], os.path.abspath(path)
    while not os.path.exists(probe):
        created.append(probe)
        probe = os.path.dirname(probe)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise FolderError(f"{flag} {path}: {e.strerror}") from None
    try:
        yield path
    except BaseException:
        for folder in created:                          # deepest first
            with contextlib.suppress(OSError):
                os.rmdir(folder)                        # only while empty
        raise


def can_write_file(path, flag="--out"):
    """Fail early where file `path` exists (nothing is overwritten) or its folder is unusable."""
    if os.path.exists(path):
        raise FolderError(f"{flag} {path} exists; choose another (nothing is overwritten)")
    writable_folder(os.path.dirname(path) or ".", flag, folder_of=path)


def move_aside(paths, folder, what):
    """Move files into a new subfolder `what-N` of `folder` (never deleting); its path."""
    target = tempfile.mkdtemp(prefix=f"{what}-", dir=folder)
    for p in paths:
        shutil.move(p, target)
    return target
