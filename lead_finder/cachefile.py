"""Where the cache file lives, and whether it may live there.

The default is the user data dir (``platformdirs``); ``LEAD_FINDER_CACHE`` or an argument moves it.
A network share is refused (SQLite's locking is not reliable there), and the folders lead_finder
creates are 0700, the files 0600.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

import platformdirs

from .errors import StoreError

__all__ = [
    "CACHE_ENV",
    "CACHE_FILENAME",
    "NETWORK_FS_TYPES",
    "SIDE_FILES",
    "default_cache_path",
    "ensure_private",
    "file_path",
    "network_fs_type",
    "refuse_network_share",
]

log = logging.getLogger("lead_finder.store")

#: Environment variable that moves the cache file.
CACHE_ENV = "LEAD_FINDER_CACHE"
CACHE_FILENAME = "cache.sqlite3"
#: File system types (from /proc/mounts) on which SQLite's locking cannot be trusted.
NETWORK_FS_TYPES = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "sshfs", "fuse.sshfs", "9p"}
)
#: SQLite's companion files, which hold data too.
SIDE_FILES = ("-wal", "-shm", "-journal")


def default_cache_path() -> Path:
    """The cache file: `LEAD_FINDER_CACHE` if set, else `cache.sqlite3` in the user data dir."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return file_path(env)
    return Path(platformdirs.user_data_dir("lead_finder")) / CACHE_FILENAME


def file_path(value: str | os.PathLike[str]) -> Path:
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(value))))
    # A directory means "keep the cache in there".
    return path / CACHE_FILENAME if path.is_dir() else path


def _is_unc(text: str) -> bool:
    r"""`\\server\share\...` or `//server/share/...` (also `\\?\UNC\...`), on any platform."""
    if text.startswith(("\\\\?\\", "//?/")):
        return text[4:].upper().startswith("UNC")
    return text.startswith(("\\\\", "//")) and len(text) > 2 and text[2] not in "\\/"


_OCTAL = re.compile(r"\\([0-7]{3})")


def network_fs_type(path: str | os.PathLike[str], mount_table: str) -> str | None:
    """The network file system type `path` lives on according to `mount_table`, else None.

    `mount_table` is the text of /proc/mounts; the mount point that is the longest prefix of the
    resolved path decides.
    """
    target = os.path.realpath(os.fspath(path))
    best: tuple[int, str] | None = None
    for line in mount_table.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        # /proc/mounts escapes spaces, tabs, newlines and backslashes as octal.
        point = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), parts[1])
        fstype = parts[2]
        inside = point == "/" or target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), fstype)
    if best is not None and best[1].lower() in NETWORK_FS_TYPES:
        return best[1]
    return None


def _read_mount_table() -> str | None:
    """The Linux mount table, or None where there is none (macOS, Windows)."""
    try:
        with open("/proc/mounts", encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def _windows_remote_drive(path: Path) -> bool:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import ctypes

        drive = path.drive
        if drive and not _is_unc(drive):
            drive_remote = 4
            return bool(ctypes.windll.kernel32.GetDriveTypeW(drive + "\\") == drive_remote)
    return False


def refuse_network_share(raw: str, path: Path) -> None:
    why: str | None = None
    if _is_unc(raw) or _is_unc(str(path)):
        why = "a UNC path (\\\\server\\share)"
    elif _windows_remote_drive(path):
        why = "a mapped network drive"
    else:
        table = _read_mount_table()
        fstype = network_fs_type(path.parent, table) if table else None
        if fstype:
            why = f"a network file system ({fstype})"
    if why:
        raise StoreError(
            f"The lead_finder cache {path} is on {why}. SQLite cannot lock files reliably there, "
            f"so two users or processes could pay twice or corrupt the cache. Put it on a local "
            f"disk: pass cache_path= or set {CACHE_ENV}. A team shares one cache by running "
            f"`lead-finder serve` on one machine instead."
        )


def ensure_private(path: Path, mode: int) -> None:
    if os.name != "posix":
        return
    try:
        os.chmod(path, mode)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("Could not restrict permissions of %s: %s", path, exc)
