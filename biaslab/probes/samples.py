"""Load samples generated elsewhere from an uploaded file, safely, and probe their dots.

Accepted files, recognised by their first bytes rather than their name:

- `.npz` (np.savez or np.savez_compressed): the array named `images`, else the one named
  `samples`, else the first array in the archive.
- `.npy` (np.save): the array it contains.
- `.zip` of PNG images, read in natural member-name order, in which digit runs compare as
  numbers ("img2.png" before "img10.png"). Each image is converted to RGB,
  transparent pixels are composited onto white (the dots' background), and all images must
  have the same size. Folders inside the archive are allowed.

Arrays have shape (N, H, W, 3), or (N, 3, H, W), which is transposed and reported as layout
"NCHW". They are uint8, or float16/32/64 with every value in [0, 1], in C order.

The file is read from memory and nothing is written to disk. Every size is checked before
the memory for it is allocated: the zip central directory, each member's declared size and
compression ratio, then the bytes actually decompressed, and the array header or PNG header
before any pixel is decoded. Arrays are never unpickled, because object arrays are rejected
from their header.
"""

from __future__ import annotations

import io
import lzma
import math
import re
import stat
import struct
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from biaslab.analysis.histogram import UNRECOGNIZED, FeatureHistogram, count_histogram
from biaslab.images import to_uint8
from biaslab.probes.count import MIN_RADIUS_PIXELS, count_dots

# Limits. A rejected file gets a message that names the limit and the value it exceeded.

# The largest file accepted. 20,000 uint8 images of 32x32 fit uncompressed (61 MB), and
# savez_compressed shrinks noisy float32 renders only 1.2x, so larger sets must be uint8.
MAX_UPLOAD_BYTES = 64 * 2**20
# The training loop probes 1,000 samples a snapshot. 20,000 gives histogram shares a standard
# error below 0.4 points, and counting them takes about a second on 2 cores.
MAX_IMAGES = 20_000
# The counter's thresholds were measured at 32x32 and 64x64. 256x256 leaves room for other
# sizes while one image stays small beside the pixel budget below.
MAX_IMAGE_PIXELS = 256 * 256
# The dataset renderer's smallest image side.
MIN_IMAGE_SIDE = 8
# Pixels over all images: 2**25 is 100 MiB as uint8 RGB, the most this loader decodes.
# It admits 20,000 images of 32x32, 8,192 of 64x64 or 512 of 256x256.
MAX_TOTAL_PIXELS = 2**25
# Bytes decompressed from an archive in total. The pixel budget as float32 fits
# (400 MiB), so a float64 set at the pixel budget must be saved as float32 or uint8.
MAX_UNCOMPRESSED_BYTES = 512 * 2**20
# Largest uncompressed-to-compressed ratio of one archive member. Noise-free float64 renders
# of 64x64 compress 27x with np.savez_compressed, noisy ones about 2x, PNGs about 1x.
# NOTE: near-constant images, such as a collapsed model's blank samples, compress about
# 1,000x and are rejected. Send them uncompressed (np.savez) or as fewer images.
MAX_COMPRESSION_RATIO = 200
# Entries in an archive, folders included: every image plus room for the folders.
MAX_ARCHIVE_MEMBERS = MAX_IMAGES + 1_000
# Central directory bytes: a generous 512 bytes per allowed entry. zipfile parses every entry
# into an object before any other check can run, so this bounds that work.
MAX_CENTRAL_DIRECTORY_BYTES = MAX_ARCHIVE_MEMBERS * 512

# The limits of DotsDataset.dot_radius, as a fraction of the image width.
DOT_RADIUS_RANGE = (0.04, 0.15)
DEFAULT_DOT_RADIUS = 0.08

# numpy's own default limit on the length of an .npy header.
_MAX_NPY_HEADER_BYTES = 10_000
# Arrays are decoded and converted to uint8 in pieces of about this many bytes.
_READ_CHUNK_BYTES = 4 * 2**20
_NPY_MAGIC = b"\x93NUMPY"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
# Leading bytes of archive and compressed formats that are rejected inside an archive.
_NESTED_ARCHIVE_MAGICS = (
    b"PK\x03\x04",
    b"PK\x05\x06",
    b"\x1f\x8b",  # gzip
    b"BZh",  # bzip2
    b"\xfd7zXZ\x00",  # xz
    b"7z\xbc\xaf\x27\x1c",  # 7-Zip
    b"Rar!\x1a\x07",  # RAR
    b"\x28\xb5\x2f\xfd",  # zstd
)
_NESTED_ARCHIVE_SUFFIXES = (".zip", ".npz", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar")
# Modes of 8-bit PNGs. 16-bit greyscale opens as "I;16" or "I" and is rejected.
_PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA"})
# End of central directory record: signature, 4 x uint16 (disk numbers, entries on this disk,
# entries in total), 2 x uint32 (directory size and offset), uint16 comment length.
_END_RECORD = struct.Struct("<4s4H2LH")
# The chunk that follows the PNG signature: length, type "IHDR", width, height (big-endian).
_PNG_HEADER = struct.Struct(">L4sLL")
_MAX_ZIP_COMMENT_BYTES = 0xFFFF

FileFormat = Literal["npz", "npy", "png-zip"]
Layout = Literal["NHWC", "NCHW"]


class InvalidSamples(ValueError):
    """A sample file or probe setting that cannot be used; `field` names the input at fault."""

    def __init__(self, message: str, *, field: str = "file") -> None:
        super().__init__(message)
        self.field = field


class SamplesTooLarge(InvalidSamples):
    """A file larger than MAX_UPLOAD_BYTES."""


class UnsupportedSampleFile(InvalidSamples):
    """A file that is neither an .npz, an .npy nor a .zip archive."""


@dataclass(frozen=True)
class SampleSet:
    """Images loaded from a file, with a description of how they were stored."""

    images: np.ndarray  # uint8, (N, H, W, 3)
    file_format: FileFormat
    array_name: str | None  # the .npz member read; None for .npy and PNG archives
    stored_dtype: str  # the stored array's dtype; "uint8" for PNGs
    layout: Layout  # the stored array's axis order; NCHW arrays were transposed
    # The archive member of each image, for PNG archives; None for arrays.
    names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ProbeResult:
    """Dot counts of a sample set: one per image in input order, None when unrecognized."""

    counts: list[int | None]
    histogram: FeatureHistogram
    image_size: tuple[int, int]  # (H, W)


def load_samples_file(path: Path) -> SampleSet:
    """Load samples from a file on disk, checking its size before reading it."""
    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise SamplesTooLarge(_too_large_message(size))
    with path.open("rb") as stream:
        # Read one byte past the limit, in case the file grew after stat().
        return load_samples(stream.read(MAX_UPLOAD_BYTES + 1))


def load_samples(data: bytes) -> SampleSet:
    """Load samples from the bytes of an .npz, .npy or .zip of PNGs; raise InvalidSamples."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise SamplesTooLarge(_too_large_message(len(data)))
    if data.startswith(_NPY_MAGIC):
        images, dtype, layout = _read_npy(io.BytesIO(data), "the .npy array")
        return SampleSet(images, "npy", None, dtype, layout)
    if data.startswith(_ZIP_MAGICS):
        return _load_archive(data)
    raise UnsupportedSampleFile(
        f"unsupported file type (it starts with {data[:8]!r}); send an .npz or .npy file "
        "written by numpy, or a .zip of PNG images"
    )


def probe_dots(images: np.ndarray, dot_radius: float | tuple[float, float]) -> ProbeResult:
    """Count the dots in uint8 or float images (N, H, W, 3) and histogram the counts.

    `dot_radius` is one radius, or the (smallest, largest) radius of dots that vary in size.
    """
    bounds = dot_radius if isinstance(dot_radius, tuple) else (dot_radius,)
    for radius in bounds:
        check_dot_radius(radius, images.shape[1], images.shape[2])
    counts = count_dots(images, dot_radius)
    return ProbeResult(
        counts=[None if count == UNRECOGNIZED else int(count) for count in counts],
        histogram=count_histogram(counts),
        image_size=(int(images.shape[1]), int(images.shape[2])),
    )


def check_dot_radius_range(dot_radius: float) -> None:
    """Raise InvalidSamples unless the radius lies within DOT_RADIUS_RANGE."""
    low, high = DOT_RADIUS_RANGE
    if not low <= dot_radius <= high:
        raise InvalidSamples(
            f"{dot_radius:g} is outside {low:g} to {high:g} of the image width",
            field="dot_radius",
        )


def check_dot_radius(dot_radius: float, height: int, width: int) -> None:
    """Raise InvalidSamples unless the radius is in range and its dots fit and can be counted.

    A dot must have a radius of at least MIN_RADIUS_PIXELS and fit within the image height.
    """
    check_dot_radius_range(dot_radius)
    radius_pixels = dot_radius * width
    if radius_pixels < MIN_RADIUS_PIXELS:
        smallest = MIN_RADIUS_PIXELS / width
        high = DOT_RADIUS_RANGE[1]
        advice = f"use a dot_radius of at least {smallest:.3f} or wider images"
        if smallest > high:
            advice = (
                f"use images at least {math.ceil(MIN_RADIUS_PIXELS / dot_radius)} px wide, or "
                f"{math.ceil(MIN_RADIUS_PIXELS / high)} px at the largest dot_radius, {high:g}"
            )
        raise InvalidSamples(
            f"{dot_radius:g} is {radius_pixels:.2f} px in images {width} px wide; the dot "
            f"counter needs at least {MIN_RADIUS_PIXELS} px, so {advice}",
            field="dot_radius",
        )
    if 2 * radius_pixels > height:
        raise InvalidSamples(
            f"{dot_radius:g} is {radius_pixels:.2f} px in images {width} px wide, so a dot is "
            f"{2 * radius_pixels:.1f} px tall in images {height} px tall; use a dot_radius of "
            f"at most {height / (2 * width):.3f} or taller images",
            field="dot_radius",
        )


def _too_large_message(size: int) -> str:
    return (
        f"the file has {size:,} bytes, above the limit of {MAX_UPLOAD_BYTES:,} bytes "
        f"({MAX_UPLOAD_BYTES // 2**20} MiB); send fewer images, or uint8 instead of float"
    )


# Archives


def _load_archive(data: bytes) -> SampleSet:
    """Load an .npz (when any member is an .npy array) or a .zip of PNGs."""
    _check_central_directory(data)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as error:
        raise InvalidSamples(f"the file is not a valid zip archive: {error}") from error
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ARCHIVE_MEMBERS:
            raise InvalidSamples(
                f"the archive has {len(infos):,} entries, above the limit of "
                f"{MAX_ARCHIVE_MEMBERS:,}"
            )
        members = _checked_members(infos)
        if any(info.filename.endswith(".npy") for info in members):
            return _load_npz(archive, members)
        return _load_png_archive(archive, members)


def _check_central_directory(data: bytes) -> None:
    """Reject an archive whose end record declares too many entries or too large a directory.

    zipfile reads the whole central directory when it opens an archive, so this runs first.
    """
    search_from = max(0, len(data) - _END_RECORD.size - _MAX_ZIP_COMMENT_BYTES)
    start = data.rfind(b"PK\x05\x06", search_from)
    if start < 0 or start + _END_RECORD.size > len(data):
        raise InvalidSamples("the file is not a valid zip archive: no end of central directory")
    fields = _END_RECORD.unpack_from(data, start)
    entries, directory_bytes = fields[4], fields[5]
    # ZIP64 archives store 0xFFFF here, far above MAX_ARCHIVE_MEMBERS, so they are rejected.
    if entries > MAX_ARCHIVE_MEMBERS:
        raise InvalidSamples(
            f"the archive declares {entries:,} entries, above the limit of {MAX_ARCHIVE_MEMBERS:,}"
        )
    if directory_bytes > MAX_CENTRAL_DIRECTORY_BYTES:
        raise InvalidSamples(
            f"the archive's central directory has {directory_bytes:,} bytes, above the limit "
            f"of {MAX_CENTRAL_DIRECTORY_BYTES:,}"
        )


def _checked_members(infos: list[zipfile.ZipInfo]) -> list[zipfile.ZipInfo]:
    """Check every entry's name, type, declared size and ratio; return the file members."""
    members = []
    declared_total = 0
    for info in infos:
        name = info.filename
        _check_member_name(name)
        file_type = stat.S_IFMT(info.external_attr >> 16)
        if file_type == stat.S_IFLNK:
            raise InvalidSamples(f"member {name!r} is a symbolic link; archive only PNG files")
        if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise InvalidSamples(f"member {name!r} is not a regular file")
        if info.flag_bits & 0x1:
            raise InvalidSamples(f"member {name!r} is encrypted; send an unencrypted archive")
        if info.is_dir():
            continue
        if name.lower().endswith(_NESTED_ARCHIVE_SUFFIXES):
            raise _nested_archive_error(name)
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > MAX_COMPRESSION_RATIO:
            raise InvalidSamples(
                f"member {name!r} declares a compression ratio of {ratio:,.0f}, above the "
                f"limit of {MAX_COMPRESSION_RATIO}"
            )
        declared_total += info.file_size
        if declared_total > MAX_UNCOMPRESSED_BYTES:
            raise InvalidSamples(
                f"the archive declares more than {MAX_UNCOMPRESSED_BYTES:,} bytes uncompressed, "
                f"the limit ({MAX_UNCOMPRESSED_BYTES // 2**20} MiB)"
            )
        members.append(info)
    return members


def _check_member_name(name: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        raise InvalidSamples(f"member {name!r} has an absolute path; use relative names")
    if ".." in parts:
        raise InvalidSamples(f"member {name!r} contains '..'; use names inside the archive")


def _nested_archive_error(name: str) -> InvalidSamples:
    return InvalidSamples(f"member {name!r} is an archive; nested archives are not accepted")


class _MemberReader:
    """Read one archive member in pieces, counting actual bytes against its declared size.

    zipfile stops at the declared size and checks the CRC at the end. Counting here keeps
    the limits independent of that behaviour and of the compression method.
    """

    def __init__(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
        self._info = info
        self._stream: IO[bytes] = archive.open(info)
        self.bytes_read = 0

    def read(self, size: int) -> bytes:
        try:
            data = self._stream.read(size)
        except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError) as error:
            raise InvalidSamples(f"member {self._info.filename!r} is corrupt: {error}") from error
        self.bytes_read += len(data)
        if self.bytes_read > self._info.file_size:
            raise InvalidSamples(
                f"member {self._info.filename!r} decompresses to more than its declared "
                f"{self._info.file_size:,} bytes"
            )
        return data

    def read_rest(self) -> bytes:
        """Read to the end of the member, which also makes zipfile check its CRC."""
        pieces = []
        while piece := self.read(_READ_CHUNK_BYTES):
            pieces.append(piece)
        return b"".join(pieces)

    def close(self) -> None:
        self._stream.close()


def _load_npz(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo]) -> SampleSet:
    for info in members:
        if not info.filename.endswith(".npy"):
            raise InvalidSamples(
                f"member {info.filename!r} is not an .npy array; an .npz contains only arrays"
            )
    by_name = {info.filename.removesuffix(".npy"): info for info in members}
    info = by_name.get("images") or by_name.get("samples") or members[0]
    array_name = info.filename.removesuffix(".npy")
    reader = _MemberReader(archive, info)
    try:
        images, dtype, layout = _read_npy(reader, f"array {array_name!r}")
        reader.read_rest()
    finally:
        reader.close()
    return SampleSet(images, "npz", array_name, dtype, layout)


# Arrays


def _read_npy(stream: io.BytesIO | _MemberReader, label: str) -> tuple[np.ndarray, str, Layout]:
    """Read an .npy array from its header onwards; return uint8 (N, H, W, 3) images.

    The header is checked before any data is read, so a header that declares a huge or
    pickled array costs nothing.
    """
    magic = stream.read(len(_NPY_MAGIC))
    if magic != _NPY_MAGIC:
        if magic.startswith(_NESTED_ARCHIVE_MAGICS):
            raise InvalidSamples(f"{label} is an archive; nested archives are not accepted")
        raise InvalidSamples(f"{label} is not an .npy array (it starts with {magic!r})")
    version = tuple(stream.read(2))
    header_stream = io.BytesIO(_NPY_MAGIC + bytes(version) + _read_header_bytes(stream, version))
    try:
        np.lib.format.read_magic(header_stream)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran_order, dtype = read_header(
            header_stream, max_header_size=_MAX_NPY_HEADER_BYTES
        )
    # numpy parses the header as a Python literal, so a malformed one can raise a
    # SyntaxError or a tokenize.TokenError as well as a ValueError.
    except (ValueError, SyntaxError) as error:
        raise InvalidSamples(f"{label} has an invalid .npy header: {error}") from error
    except tokenize.TokenError as error:
        raise InvalidSamples(
            f"{label} has an invalid .npy header: {error.args[0]}, so a bracket or quote is "
            "not closed; save the array with np.save or np.savez"
        ) from error

    layout, (n, height, width) = _check_array_header(label, shape, fortran_order, dtype)
    stored_shape = tuple(shape[1:])
    image_bytes = int(np.prod(stored_shape)) * dtype.itemsize
    per_chunk = max(1, _READ_CHUNK_BYTES // image_bytes)
    images = np.empty((n, height, width, 3), dtype=np.uint8)
    nan_values = 0
    outside_values = 0
    for start in range(0, n, per_chunk):
        size = min(per_chunk, n - start)
        raw = stream.read(size * image_bytes)
        if len(raw) != size * image_bytes:
            raise InvalidSamples(
                f"{label} is truncated: its header declares shape {tuple(shape)} but the data "
                "ends early"
            )
        chunk = np.frombuffer(raw, dtype=dtype).reshape((size, *stored_shape))
        if layout == "NCHW":
            chunk = chunk.transpose(0, 2, 3, 1)
        if _is_float(dtype):
            nan = np.isnan(chunk)
            nan_values += int(np.count_nonzero(nan))
            outside_values += int(np.count_nonzero((chunk < 0) | (chunk > 1)))
            if nan_values or outside_values:
                continue  # keep counting bad values, but stop converting
        images[start : start + size] = to_uint8(chunk)

    if nan_values or outside_values:
        raise InvalidSamples(
            f"{label} has {nan_values + outside_values:,} invalid values ({nan_values:,} NaN, "
            f"{outside_values:,} outside [0, 1]); float images must lie in [0, 1]"
        )
    return images, str(dtype), layout


def _is_float(dtype: np.dtype) -> bool:
    # Either byte order: np.frombuffer reads big-endian arrays as they are stored.
    return dtype.kind == "f" and dtype.itemsize in (2, 4, 8)


def _read_header_bytes(stream: io.BytesIO | _MemberReader, version: tuple[int, ...]) -> bytes:
    """Read the header length field and the header that follows it."""
    if version == (1, 0):
        length_field = stream.read(2)
        length = struct.unpack("<H", length_field)[0] if len(length_field) == 2 else 0
    elif version == (2, 0):
        length_field = stream.read(4)
        length = struct.unpack("<I", length_field)[0] if len(length_field) == 4 else 0
    else:
        raise InvalidSamples(
            f"unsupported .npy format version {version}; save the array with np.save or "
            "np.savez, which write version 1.0 or 2.0 for plain arrays"
        )
    if length > _MAX_NPY_HEADER_BYTES:
        raise InvalidSamples(
            f"the .npy header has {length:,} bytes, above numpy's limit of "
            f"{_MAX_NPY_HEADER_BYTES:,}"
        )
    return length_field + stream.read(length)


def _check_array_header(
    label: str, shape: tuple[int, ...], fortran_order: bool, dtype: np.dtype
) -> tuple[Layout, tuple[int, int, int]]:
    """Check an array's shape, order and dtype; return its layout and (N, H, W)."""
    if not (_is_float(dtype) or (dtype.kind == "u" and dtype.itemsize == 1)):
        raise InvalidSamples(
            f"{label} has dtype {dtype}; use uint8 (0-255) or float16/32/64 in [0, 1]"
        )
    if len(shape) != 4 or 3 not in (shape[1], shape[3]) or min(shape) < 0:
        raise InvalidSamples(
            f"{label} has shape {tuple(shape)}; use (N, H, W, 3) or (N, 3, H, W) RGB images"
        )
    if fortran_order:
        raise InvalidSamples(
            f"{label} is stored in Fortran order; save np.ascontiguousarray(images) instead"
        )
    if shape[3] == 3:
        layout: Layout = "NHWC"
        n, height, width = shape[0], shape[1], shape[2]
    else:
        layout = "NCHW"
        n, height, width = shape[0], shape[2], shape[3]
    _check_image_counts(label, n, height, width)
    data_bytes = n * height * width * 3 * dtype.itemsize
    if data_bytes > MAX_UNCOMPRESSED_BYTES:
        raise InvalidSamples(
            f"{label} contains {data_bytes:,} bytes of {dtype}, above the limit of "
            f"{MAX_UNCOMPRESSED_BYTES:,} bytes ({MAX_UNCOMPRESSED_BYTES // 2**20} MiB); "
            "save it as float32 or uint8"
        )
    return layout, (n, height, width)


def _check_image_counts(label: str, n: int, height: int, width: int) -> None:
    """Check the number of images, the image size and the total pixels against the limits."""
    if n == 0:
        raise InvalidSamples(f"{label} contains no images")
    if n > MAX_IMAGES:
        raise InvalidSamples(f"{label} contains {n:,} images, above the limit of {MAX_IMAGES:,}")
    if min(height, width) < MIN_IMAGE_SIDE:
        raise InvalidSamples(
            f"{label} has images of {height}x{width} pixels; each side must be at least "
            f"{MIN_IMAGE_SIDE}"
        )
    if height * width > MAX_IMAGE_PIXELS:
        raise InvalidSamples(
            f"{label} has images of {height}x{width} = {height * width:,} pixels, above the "
            f"limit of {MAX_IMAGE_PIXELS:,} (256x256)"
        )
    if n * height * width > MAX_TOTAL_PIXELS:
        raise InvalidSamples(
            f"{label} contains {n:,} images of {height}x{width}, {n * height * width:,} pixels in "
            f"all, above the limit of {MAX_TOTAL_PIXELS:,}; send fewer images"
        )


# PNG archives


def natural_order_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Return a sort key that compares digit runs as numbers: "img2" before "img10"."""
    parts = re.split(r"(\d+)", name)
    # (0, number) and (1, text) keep numbers and text apart, so they never compare.
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in parts if part)


def _load_png_archive(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo]) -> SampleSet:
    # Names that tie on the natural key ("a01", "a1") keep their plain order.
    members = sorted(members, key=lambda info: (natural_order_key(info.filename), info.filename))
    if not members:
        raise InvalidSamples("the archive contains no images")
    if len(members) > MAX_IMAGES:
        raise InvalidSamples(
            f"the archive contains {len(members):,} files, above the limit of {MAX_IMAGES:,} images"
        )
    images: np.ndarray | None = None
    first_size: tuple[int, int] | None = None
    decompressed = 0
    for index, info in enumerate(members):
        reader = _MemberReader(archive, info)
        try:
            data = reader.read_rest()
        finally:
            reader.close()
        decompressed += len(data)
        if decompressed > MAX_UNCOMPRESSED_BYTES:
            raise InvalidSamples(
                f"the archive decompresses to more than {MAX_UNCOMPRESSED_BYTES:,} bytes, "
                f"the limit ({MAX_UNCOMPRESSED_BYTES // 2**20} MiB)"
            )
        pixels = _decode_png(info.filename, data, first_size)
        if images is None:
            height, width = pixels.shape[:2]
            first_size = (height, width)
            _check_image_counts("the archive", len(members), height, width)
            images = np.empty((len(members), height, width, 3), dtype=np.uint8)
        images[index] = pixels
    assert images is not None  # members is not empty
    names = tuple(info.filename for info in members)
    return SampleSet(images, "png-zip", None, "uint8", "NHWC", names)


def _decode_png(name: str, data: bytes, expected_size: tuple[int, int] | None) -> np.ndarray:
    """Decode one PNG member to uint8 (H, W, 3), checking its header before its pixels."""
    if data.startswith(_NESTED_ARCHIVE_MAGICS):
        raise _nested_archive_error(name)
    if not data.startswith(_PNG_SIGNATURE):
        raise InvalidSamples(f"member {name!r} is not a PNG image; archive only PNG files")

    # The size comes from the header, before Pillow allocates anything for the pixels.
    height, width = _png_size(name, data)
    if expected_size is None:
        _check_image_counts(f"member {name!r}", 1, height, width)
    elif (height, width) != expected_size:
        raise InvalidSamples(
            f"member {name!r} is {height}x{width} pixels but the first image is "
            f"{expected_size[0]}x{expected_size[1]}; all images must have one size"
        )

    try:
        image = Image.open(io.BytesIO(data), formats=["PNG"])
    except Image.DecompressionBombError as error:
        raise _png_too_large(name, error) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise InvalidSamples(f"member {name!r} is not a readable PNG: {error}") from error
    with image:
        if image.size != (width, height):
            raise InvalidSamples(
                f"member {name!r} is not a readable PNG: its header gives {height}x{width} "
                f"pixels, its image {image.size[1]}x{image.size[0]}"
            )
        if image.mode not in _PNG_MODES:
            raise InvalidSamples(
                f"member {name!r} has PNG mode {image.mode}; save 8-bit RGB, RGBA, "
                "greyscale or palette PNGs"
            )
        try:
            image.load()
        except Image.DecompressionBombError as error:
            raise _png_too_large(name, error) from error
        except (OSError, SyntaxError, ValueError) as error:
            raise InvalidSamples(f"member {name!r} is not a readable PNG: {error}") from error
        return np.asarray(_to_rgb(image), dtype=np.uint8)


def _png_size(name: str, data: bytes) -> tuple[int, int]:
    """Return (height, width) from the IHDR chunk, which a PNG must have first."""
    if len(data) < len(_PNG_SIGNATURE) + _PNG_HEADER.size:
        raise InvalidSamples(f"member {name!r} is not a readable PNG: it ends inside its header")
    length, chunk_type, width, height = _PNG_HEADER.unpack_from(data, len(_PNG_SIGNATURE))
    if chunk_type != b"IHDR" or length != 13:
        raise InvalidSamples(
            f"member {name!r} is not a readable PNG: its first chunk is {chunk_type!r}, "
            "not a 13-byte IHDR"
        )
    return height, width


def _png_too_large(name: str, error: Exception) -> InvalidSamples:
    # Pillow's own limit (Image.MAX_IMAGE_PIXELS) is far above this loader's.
    return InvalidSamples(
        f"member {name!r} is too large to decode ({error}); each image may have at most "
        f"{MAX_IMAGE_PIXELS:,} pixels (256x256)"
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert to RGB, compositing any transparency onto white, the dots' background."""
    if image.mode in ("RGBA", "LA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")
