"""Knowledge-graph files as they ship: plain or compressed (.bz2, .gz, .xz), read as numbered byte
lines in constant memory, with the compressed bytes read so far (for a progress bar) and a start
line (to resume a killed load).

A plain file resumes by seeking to the byte offset of its start line; a compressed one cannot seek,
so the lines before the start are decompressed again and passed over without being parsed.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
from collections.abc import Iterator
from pathlib import Path

COMPRESSIONS = {".bz2": "bz2", ".gz": "gzip", ".xz": "xz"}


def split_compression(path: Path) -> tuple[str, str | None]:
    """('.nt', 'bz2') for 'dump.nt.bz2', ('.nt', None) for 'dump.nt'."""
    path = Path(path)
    compression = COMPRESSIONS.get(path.suffix.lower())
    if compression is None:
        return path.suffix.lower(), None
    return Path(path.stem).suffix.lower(), compression


class DumpFile:
    """One input file open for reading lines; use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.size = self.path.stat().st_size
        self.compression = split_compression(self.path)[1]
        self._raw: io.BufferedReader = open(self.path, "rb")
        self._stream: io.BufferedIOBase = self._decompressor()

    def _decompressor(self) -> io.BufferedIOBase:
        if self.compression == "bz2":
            return bz2.BZ2File(self._raw)
        if self.compression == "gzip":
            return gzip.GzipFile(fileobj=self._raw)
        if self.compression == "xz":
            return lzma.LZMAFile(self._raw)
        return self._raw

    @property
    def position(self) -> int:
        """Bytes of the file (compressed, as stored) read so far."""
        try:
            return self._raw.tell()
        except (OSError, ValueError):  # closed
            return self.size

    def lines(self, start_line: int = 0, start_offset: int = 0) -> Iterator[tuple[int, int, bytes]]:
        """(line number from 1, byte offset of the line in the uncompressed text, the line with its
        end) for the lines after `start_line`; `start_offset` is where line start_line + 1 begins."""
        number, offset = 0, 0
        if start_line and self.compression is None:
            self._raw.seek(start_offset)
            number, offset = start_line, start_offset
        for line in self._stream:
            number += 1
            if number > start_line:
                yield number, offset, line
            offset += len(line)

    def read_all(self, limit: int) -> bytes:
        """The whole uncompressed content; ValueError past `limit` bytes."""
        data = self._stream.read(limit + 1)
        if len(data) > limit:
            raise ValueError(f"more than {limit} bytes uncompressed")
        return data

    def close(self) -> None:
        if self._stream is not self._raw:
            self._stream.close()
        self._raw.close()

    def __enter__(self) -> DumpFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
