"""Write files atomically: a reader sees the old file or the new one, never half of one.

The content goes to a hidden temporary file in the destination's own folder
(``.<name>.<random>.tmp<suffix>``: the same file system, so the final rename
is atomic; the suffix kept because writers such as ``np.savez`` and
matplotlib look at it), is flushed to disk with fsync, then renamed over the
destination with ``os.replace``. The destination's folder is never created
here: the caller decides where files may appear, and a missing folder is
reported as a UserError.
"""

import os
import re
import secrets
from pathlib import Path

from data.errors import UserError

TOKEN_HEX_BYTES = 6  # a temporary file's random part: 12 hex digits
# .<name>.<random>.tmp<suffix>: what atomic_write names its temporary files, and only that
_TEMPORARY = re.compile(rf"\.(.+)\.[0-9a-f]{{{2 * TOKEN_HEX_BYTES}}}\.tmp(.*)", re.DOTALL)


def atomic_write(path, write):
    """Create or replace ``path`` with what ``write`` puts into a temporary file.

    path:  str or Path of the destination; its folder must exist.
    write: callable ``write(tmp_path)`` that writes the whole content to the
           Path ``tmp_path`` (which already exists, empty, and ends with the
           suffix of ``path``); its return value is ignored.
    Returns the destination as a Path.
    Raises UserError when the file system refuses (missing or unwritable folder,
    full disk, ...): "<path>: cannot write (<reason>); the previous file, if any,
    is unchanged". Any exception, KeyboardInterrupt included, removes the
    temporary file before it propagates, and the previous file stays as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(TOKEN_HEX_BYTES)}.tmp{path.suffix}")
    try:
        # 0o666 lets the umask decide the permissions, as for any new file (mkstemp's 0o600 would
        # make every saved file private to its owner).
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as err:
        raise _cannot_write(path, err) from None
    try:
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _cannot_write(path, err) from err
        raise
    _fsync_folder(path.parent)
    return path


def atomic_write_text(path, text, encoding="utf-8"):
    """Create or replace the text file ``path`` (CSV, JSON, ...) atomically.

    path:     str or Path; its folder must exist.
    text:     str, the whole content.
    encoding: text encoding.
    Returns the destination as a Path. Raises UserError as ``atomic_write`` does.
    """
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding=encoding))


def same_file(a, b):
    """True if the paths ``a`` and ``b`` name one file: through symlinks, ``..`` and hard
    links (a path that does not exist yet is compared by where it resolves to)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return Path(a).resolve() == Path(b).resolve()


def refuse_to_write_over(out, inputs, option="--out"):
    """UserError if ``out`` is one of the files ``inputs`` (str or Path) the command reads."""
    for source in inputs:
        if same_file(out, source):
            raise UserError(f"{option} {out}: that is {source}, which this command reads; "
                            f"choose another {option}")  # fmt: skip


MAX_NUMBERED = 9_999  # folders of one name: more is a loop gone wrong, not a user's runs


def numbered(wanted):
    """``wanted``, ``wanted-2``, ``wanted-3``, ... (Paths), up to ``wanted-9999``."""
    wanted = Path(wanted)
    yield wanted
    for n in range(2, MAX_NUMBERED + 1):
        yield wanted.with_name(f"{wanted.name}-{n}")


def new_folder(wanted):
    """A new, empty folder for a run's files: ``wanted``, or ``wanted-2``, ``wanted-3``, ...

    wanted: str or Path. The first of these names that does not exist yet (or is an empty
    folder) is created, with its parents, and returned as a Path: a second run never
    writes over the first one's files.
    Raises UserError when the folder cannot be created.
    """
    for folder in numbered(wanted):
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            if folder.is_dir() and not any(folder.iterdir()):
                return folder
        except OSError as err:
            raise UserError(f"{folder}: cannot create this folder ({err.strerror})") from None
    raise UserError(
        f"{wanted}: {MAX_NUMBERED:,} folders of that name exist already; choose another --out"
    )


def remove_leftover_temporaries(folder):
    """Delete the temporary files that killed atomic writes left in ``folder``.

    folder: str or Path of an existing folder.
    Only plain files named exactly as ``atomic_write`` names them
    (``.<name>.<12 hex digits>.tmp<suffix of name>``) are removed: a SIGKILL gives
    no chance to clean up, and nothing else ever has such a name.
    Returns the sorted list of the names removed.
    """
    removed = []
    for entry in Path(folder).iterdir():
        match = _TEMPORARY.fullmatch(entry.name)
        if (
            match
            and Path(match[1]).suffix == match[2]
            and entry.is_file()
            and not entry.is_symlink()
        ):
            entry.unlink()
            removed.append(entry.name)
    return sorted(removed)


def _fsync(path):
    """Flush ``path``'s data to the disk, so the rename never publishes an empty file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder):
    """Make the rename itself durable (POSIX); systems that cannot open a folder skip it."""
    try:
        _fsync(folder)
    except OSError:
        pass  # e.g. Windows: folders cannot be opened; the rename is still atomic


def _cannot_write(path, err):
    """The one UserError for a failed write of ``path``, naming the reason."""
    reason = err.strerror or str(err)
    folder = path.parent
    if not folder.exists():
        reason += f": the folder '{folder}' does not exist; create it first"
    elif not folder.is_dir():
        reason += f": '{folder}' is a file, not a folder"
    return UserError(f"{path}: cannot write ({reason}); the previous file, if any, is unchanged")
