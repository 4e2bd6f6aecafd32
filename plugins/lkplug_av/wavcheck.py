"""WAV layouts that FFmpeg decodes silently wrong, found from the header before FFmpeg sees the file.

Big-endian WAV (``RIFX``) comes out byte-swapped from FFmpeg; libsndfile reads its integer PCM
right, so the file source reads those through soundfile (other RIFX encodings are refused).
24-bit samples in 4-byte slots are read wrongly by FFmpeg (as ``pcm_f24le``) and by libsndfile, and
writers disagree on where the 24 bits sit in the slot, so they are refused rather than guessed.
"""

from __future__ import annotations

import struct
from pathlib import Path

from lkplug import MediaError

WAVE_FORMAT_EXTENSIBLE = 0xFFFE


def wav_reader(path: str) -> str | None:
    """ "soundfile" for a WAV that must be read through libsndfile, None for FFmpeg; raises
    MediaError for a layout no reader here gets right. The whole chunk list is read (a ``fmt ``
    chunk may follow a large ``LIST`` or ``JUNK`` chunk)."""
    header = _header(path)
    if header is None:
        return None  # no WAV, or one that cannot be read: FFmpeg's open reports it
    order, _riff_size, _file_size, chunks = header
    fmt = chunks.get(b"fmt ")
    if fmt is None or len(fmt) < 16:
        return None
    tag, channels, _rate, _byte_rate, block_align, bits = struct.unpack(order + "HHIIHH", fmt[:16])
    valid_bits = bits
    if tag == WAVE_FORMAT_EXTENSIBLE and len(fmt) >= 20:
        valid_bits = struct.unpack(order + "H", fmt[18:20])[0] or bits
    slot_bytes = block_align // channels if channels else 0
    if tag in (1, WAVE_FORMAT_EXTENSIBLE) and valid_bits == 24 and slot_bytes == 4:
        raise MediaError(
            f"{path}: 24-bit samples in 4-byte slots; FFmpeg and libsndfile both misread this layout,"
            " so it is refused rather than decoded wrong (re-export it as plain 24- or 32-bit PCM)"
        )
    if tag == WAVE_FORMAT_EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack(order + "H", fmt[24:26])[0]  # the sub-format GUID starts with the tag
    if order == ">" and tag != 1:
        raise MediaError(
            f"{path}: big-endian (RIFX) WAV with format tag {tag}: only RIFX integer PCM is read here"
            " (FFmpeg misreads RIFX)"
        )
    if order == ">":
        return "soundfile"
    if not chunks.get(_DATA_SIZE_OK, False):
        return None  # sizes never filled in (a recorder that stopped early): FFmpeg reads to the end
    # plain PCM and float: libsndfile reads them in large blocks, far cheaper than packet by packet
    return "soundfile" if tag in (1, 3) and bits in (16, 24, 32) else None


def announced_seconds(path: str) -> float | None:
    """Seconds of audio a PCM or float WAV file's header announces (its data chunk's size over the
    fmt chunk's bytes per sample frame and rate: the files ``wav_reader`` gives to libsndfile),
    where the RIFF size and the data size agree (the data ends inside the RIFF chunk); None where a
    writer left them unset (0, or all ones where it could not seek back) or for another kind of
    file. A file cut short (a copy or a recording that did not finish) holds less than this."""
    header = _header(path)
    if header is None:
        return None
    order, riff_size, _file_size, chunks = header
    fmt, data = chunks.get(b"fmt "), chunks.get(b"data")
    if fmt is None or len(fmt) < 16 or data is None or _UNSET in (riff_size, data[1]):
        return None
    _tag, _channels, rate, _byte_rate, block_align = struct.unpack(order + "HHIIH", fmt[:14])
    start, size = data
    if not size or not rate or not block_align or start + size > 8 + riff_size:
        return None
    return size // block_align / rate


def _header(path: str) -> tuple[str, int, int, dict] | None:
    """(byte order "<" or ">", the RIFF chunk's size, the file's size, ``_chunks``) of a WAV file;
    None for another kind of file or one that cannot be read."""
    try:
        file_size = Path(path).stat().st_size
        with open(path, "rb") as file:
            head = file.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
                return None
            order = "<" if head[:4] == b"RIFF" else ">"
            return order, struct.unpack(order + "I", head[4:8])[0], file_size, _chunks(file, order, file_size)
    except OSError:
        return None


_UNSET = 0xFFFFFFFF  # a size left for a writer that could not seek back to fill it in
_DATA_SIZE_OK = b"data size ok"  # a key no chunk has: whether the data chunk's size is believable
_FMT_LIMIT = 1 << 16  # a fmt chunk is tens of bytes; more is a damaged header, not read into memory


def _chunks(file, order: str, file_size: int) -> dict:
    """The fmt chunk's bytes under ``b"fmt "``, the data chunk's (offset of its samples, size it
    gives) under ``b"data"`` and whether that size is believable (not 0, as a recorder stopped before
    closing leaves it) under ``_DATA_SIZE_OK``; other chunks are skipped without reading them."""
    found: dict = {}
    position = 12
    while position + 8 <= file_size:
        file.seek(position)
        header = file.read(8)
        if len(header) < 8:
            break
        chunk_id, size = header[:4], struct.unpack(order + "I", header[4:8])[0]
        if chunk_id == b"fmt ":
            found[chunk_id] = file.read(min(size, _FMT_LIMIT))
        elif chunk_id == b"data":
            found[_DATA_SIZE_OK] = 0 < size
            found[chunk_id] = (position + 8, size)  # where the samples start, how many bytes it says
            break  # what follows the samples does not change how they are read
        position += 8 + size + (size & 1)
    return found
