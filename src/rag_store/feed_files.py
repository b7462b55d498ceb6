"""What the feed staging model remembers of each feed file it has read.

A file's fingerprint is its size, modification time (nanoseconds) and inode, taken before the
file is read. Staging reads a file again only when its fingerprint differs from the one stored
with its rows: a new file, a file rewritten in place (size or time), or one replaced by a rename
(inode). DuckDB's own `last_modified` has one-second resolution, too coarse for a producer that
rewrites a file twice within a second.
"""

from __future__ import annotations

import os


def file_fingerprint(path: str) -> str | None:
    """`size:mtime_ns:inode` of `path`, or None when it is gone (deleted after the listing)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return f"{info.st_size}:{info.st_mtime_ns}:{info.st_ino}"
