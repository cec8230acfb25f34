"""Loading samples made elsewhere: accepted layouts, and each rejection with its message."""

from __future__ import annotations

import io
import stat
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from biaslab.datasets.dots import render_counts
from biaslab.design import DotsDataset
from biaslab.images import to_uint8
from biaslab.probes import samples
from biaslab.probes.samples import (
    DOT_RADIUS_RANGE,
    MAX_IMAGES,
    MAX_UPLOAD_BYTES,
    InvalidSamples,
    SamplesTooLarge,
    UnsupportedSampleFile,
    load_samples,
    load_samples_file,
    natural_order_key,
    probe_dots,
)


def rendered(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 9, size=n)
    images = render_counts(counts, image_size=32, dot_radius=0.08, noise=0.03, rng=rng)
    return images, counts


def npz_bytes(*, compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def png_bytes(image: np.ndarray, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def png_zip(images: np.ndarray) -> bytes:
    return zip_bytes({f"{index:04d}.png": png_bytes(image) for index, image in enumerate(images)})


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">L", len(body)) + kind + body + struct.pack(">L", zlib.crc32(kind + body))


def declared_png(width: int, height: int) -> bytes:
    """Return a valid PNG that declares `width` x `height` RGB pixels but holds one row.

    Pillow's decompression-bomb check reads only the header, so this triggers it
    without the gigabytes that such an image would take.
    """
    header = struct.pack(">LLBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + b"\xff" * 3 * width)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", pixels)
        + png_chunk(b"IEND", b"")
    )


def npy_header(shape: tuple[int, ...], dtype: str = "|u1") -> bytes:
    """Return just the header of an .npy file that declares `shape`, with no data after it."""
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape}, }}"
    header = header.ljust(118) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()


def rejection(data: bytes) -> str:
    with pytest.raises(InvalidSamples) as caught:
        load_samples(data)
    return str(caught.value)


# Accepted files


def test_npz_uint8_counts_match():
    images, counts = rendered()
    loaded = load_samples(npz_bytes(images=to_uint8(images)))
    assert loaded.file_format == "npz"
    assert loaded.array_name == "images"
    assert loaded.stored_dtype == "uint8"
    assert loaded.layout == "NHWC"
    result = probe_dots(loaded.images, 0.08)
    assert result.counts == counts.tolist()
    assert result.image_size == (32, 32)
    assert result.histogram.total == 40
    assert result.histogram.unrecognized == 0


def test_npz_float_converted_like_probe():
    images, _ = rendered()
    loaded = load_samples(npz_bytes(compressed=True, samples=images))
    assert loaded.array_name == "samples"
    assert loaded.stored_dtype == "float32"
    assert loaded.images.dtype == np.uint8
    np.testing.assert_array_equal(loaded.images, to_uint8(images))


def test_npz_float64_big_endian():
    images, _ = rendered(8)
    loaded = load_samples(npz_bytes(images=images.astype(">f8")))
    assert loaded.stored_dtype == ">f8"
    np.testing.assert_array_equal(loaded.images, to_uint8(images))


def test_npz_nchw_transposed():
    images, counts = rendered()
    loaded = load_samples(npz_bytes(images=images.transpose(0, 3, 1, 2)))
    assert loaded.layout == "NCHW"
    assert loaded.images.shape == (40, 32, 32, 3)
    np.testing.assert_array_equal(loaded.images, to_uint8(images))
    assert probe_dots(loaded.images, 0.08).counts == counts.tolist()


def test_npz_array_choice():
    images, _ = rendered(4)
    other = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    first = load_samples(npz_bytes(a=to_uint8(images), b=other))
    assert first.array_name == "a", "without images or samples the first array is read"
    named = load_samples(npz_bytes(a=other, samples=other, images=to_uint8(images)))
    assert named.array_name == "images", "images wins over samples and over order"
    assert named.images.shape == (4, 32, 32, 3)


def test_npy_loads():
    images, _ = rendered(4)
    buffer = io.BytesIO()
    np.save(buffer, to_uint8(images))
    loaded = load_samples(buffer.getvalue())
    assert loaded.file_format == "npy"
    np.testing.assert_array_equal(loaded.images, to_uint8(images))


def test_png_zip_sorted_order():
    images, counts = rendered()
    pixels = to_uint8(images)
    members = {f"out/{index:04d}.png": png_bytes(pixels[index]) for index in range(40)}
    shuffled = dict(reversed(list(members.items())))
    loaded = load_samples(zip_bytes({"out/": b"", **shuffled}, zipfile.ZIP_DEFLATED))
    assert loaded.file_format == "png-zip"
    np.testing.assert_array_equal(loaded.images, pixels)
    assert probe_dots(loaded.images, 0.08).counts == counts.tolist()


def test_png_zip_natural_order_and_names():
    images, counts = rendered(12)
    pixels = to_uint8(images)
    # Sorted as plain strings, img10 and img11 would come before img2.
    members = {f"img{index}.png": png_bytes(pixels[index]) for index in range(12)}
    loaded = load_samples(zip_bytes(dict(reversed(list(members.items())))))
    assert loaded.names == tuple(f"img{index}.png" for index in range(12))
    np.testing.assert_array_equal(loaded.images, pixels)
    assert probe_dots(loaded.images, 0.08).counts == counts.tolist()


def test_natural_order_key():
    names = ["b/img10.png", "a10.png", "img2.png", "a9.png", "a01.png", "a1.png", "img10.png"]
    assert sorted(names, key=lambda name: (natural_order_key(name), name)) == [
        "a01.png",
        "a1.png",
        "a9.png",
        "a10.png",
        "b/img10.png",
        "img2.png",
        "img10.png",
    ]


def test_arrays_have_no_names():
    images, _ = rendered(2)
    assert load_samples(npz_bytes(images=images)).names is None


def test_png_transparency_on_white():
    image = np.zeros((16, 16, 4), dtype=np.uint8)  # transparent black
    image[4:8, 4:8] = (10, 20, 30, 255)
    loaded = load_samples(zip_bytes({"a.png": png_bytes(image, "RGBA")}))
    assert loaded.images[0, 0, 0].tolist() == [255, 255, 255]
    assert loaded.images[0, 5, 5].tolist() == [10, 20, 30]


def test_greyscale_png_becomes_rgb():
    image = np.full((16, 16, 3), 200, dtype=np.uint8)
    loaded = load_samples(zip_bytes({"a.png": png_bytes(image, "L")}))
    assert loaded.images.shape == (1, 16, 16, 3)
    assert loaded.images[0, 0, 0].tolist() == [200, 200, 200]


def test_load_samples_file(tmp_path):
    images, _ = rendered(4)
    path = tmp_path / "samples.npz"
    path.write_bytes(npz_bytes(images=to_uint8(images)))
    assert load_samples_file(path).images.shape == (4, 32, 32, 3)


def test_dot_radius_range_matches_design():
    low, high = DOT_RADIUS_RANGE
    DotsDataset(counts=[1], dot_radius=high)
    DotsDataset(counts=[1], dot_radius=low, image_size=64)
    for outside in (low - 1e-6, high + 1e-6):
        with pytest.raises(ValueError, match="dot_radius"):
            DotsDataset(counts=[1], dot_radius=outside, image_size=64)


# Rejections: sizes and counts


def test_too_large_file():
    with pytest.raises(SamplesTooLarge, match="above the limit of 67,108,864 bytes"):
        load_samples(b"PK\x03\x04" + bytes(MAX_UPLOAD_BYTES))


def test_too_large_file_on_disk(tmp_path):
    path = tmp_path / "big.npz"
    with path.open("wb") as file:
        file.truncate(MAX_UPLOAD_BYTES + 1)
    with pytest.raises(SamplesTooLarge):
        load_samples_file(path)


def test_too_many_images():
    data = npz_bytes(images=np.zeros((MAX_IMAGES + 1, 8, 8, 3), dtype=np.uint8))
    assert "contains 20,001 images, above the limit of 20,000" in rejection(data)


def test_too_many_pngs(monkeypatch):
    monkeypatch.setattr(samples, "MAX_IMAGES", 3)
    image = png_bytes(np.full((8, 8, 3), 255, dtype=np.uint8))
    data = zip_bytes({f"{index}.png": image for index in range(4)})
    assert "contains 4 files, above the limit of 3 images" in rejection(data)


def test_image_too_large():
    data = npz_bytes(images=np.zeros((1, 300, 300, 3), dtype=np.uint8))
    assert "300x300 = 90,000 pixels, above the limit of 65,536" in rejection(data)
    png = png_bytes(np.zeros((300, 300, 3), dtype=np.uint8))
    assert "above the limit of 65,536" in rejection(zip_bytes({"a.png": png}))


def test_png_over_pillow_bomb_limit():
    # 16,000 x 16,000 is above Pillow's 2 x MAX_IMAGE_PIXELS, so Image.open itself raises.
    message = rejection(zip_bytes({"a.png": declared_png(16_000, 16_000)}, zipfile.ZIP_DEFLATED))
    assert message == (
        "member 'a.png' has images of 16000x16000 = 256,000,000 pixels, above the limit of "
        "65,536 (256x256)"
    )
    later = zip_bytes(
        {"a.png": png_bytes(np.zeros((8, 8, 3), np.uint8)), "b.png": declared_png(16_000, 16_000)}
    )
    assert "member 'b.png' is 16000x16000 pixels but the first image is 8x8" in rejection(later)


def test_pillow_bomb_error_is_invalid(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    message = rejection(zip_bytes({"a.png": png_bytes(np.zeros((16, 16, 3), np.uint8))}))
    assert message.startswith("member 'a.png' is too large to decode (")
    assert message.endswith("each image may have at most 65,536 pixels (256x256)")


def test_png_header_must_come_first():
    no_header = (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"tEXt", b"Comment\x00late") + declared_png(8, 8)[8:]
    )
    assert "its first chunk is b'tEXt', not a 13-byte IHDR" in rejection(
        zip_bytes({"a.png": no_header})
    )
    truncated = b"\x89PNG\r\n\x1a\n\x00\x00"
    assert "member 'a.png' is not a readable PNG: it ends inside its header" in rejection(
        zip_bytes({"a.png": truncated})
    )


def test_declared_total_pixels_rejected_before_data():
    # The header alone declares 20,000 images of 64x64; no data follows it.
    message = rejection(npy_header((20_000, 64, 64, 3)))
    assert "81,920,000 pixels in all, above the limit of 33,554,432" in message


def test_huge_declared_shape_allocates_nothing():
    message = rejection(npy_header((10**12, 64, 64, 3)))
    assert "above the limit of 20,000" in message


def test_truncated_array():
    assert "is truncated" in rejection(npy_header((2, 8, 8, 3)) + bytes(100))


def test_float64_over_byte_limit(monkeypatch):
    monkeypatch.setattr(samples, "MAX_UNCOMPRESSED_BYTES", 10_000)
    message = rejection(npy_header((10, 16, 16, 3), "<f8"))
    assert "contains 61,440 bytes of float64, above the limit of 10,000 bytes" in message
    assert "save it as float32 or uint8" in message


# Rejections: values and layouts


def test_nan_and_outside_counted():
    images, _ = rendered(4)
    images[0, 0, 0, 0] = np.nan
    images[1, 0, 0, 0] = np.nan
    images[2, 0, 0, 0] = 1.5
    images[3, 1, 1, 1] = -0.1
    images[3, 2, 2, 2] = np.inf
    message = rejection(npz_bytes(images=images))
    assert "5 invalid values (2 NaN, 3 outside [0, 1])" in message


def test_wrong_shapes_and_dtypes():
    cases = {
        "has shape (2, 8, 8)": np.zeros((2, 8, 8), dtype=np.uint8),
        "has shape (2, 8, 8, 4)": np.zeros((2, 8, 8, 4), dtype=np.uint8),
        "has dtype int64": np.zeros((2, 8, 8, 3), dtype=np.int64),
        "contains no images": np.zeros((0, 8, 8, 3), dtype=np.uint8),
        "each side must be at least 8": np.zeros((2, 4, 4, 3), dtype=np.uint8),
    }
    for expected, array in cases.items():
        assert expected in rejection(npz_bytes(images=array)), expected


@pytest.mark.parametrize(
    "header",
    [
        "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 8, 8, 3) ",
        "(",
        "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 8, 8, 3), 'x': 'a",
    ],
    ids=["unclosed brace", "lone bracket", "unclosed string"],
)
def test_malformed_npy_header(header):
    text = header.ljust(118) + "\n"
    data = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode()
    message = rejection(data)
    assert "has an invalid .npy header" in message, message
    assert "', (" not in message, f"a Python tuple in the message: {message}"


def test_negative_dimension_names_shape():
    message = rejection(npy_header((-1, 8, 8, 3)))
    assert "has shape (-1, 8, 8, 3)" in message, message


def test_object_array_never_unpickled():
    array = np.empty((1, 8, 8, 3), dtype=object)
    array[...] = 0
    assert "has dtype object" in rejection(npz_bytes(images=array))


def test_fortran_order_rejected():
    buffer = io.BytesIO()
    np.save(buffer, np.asfortranarray(np.zeros((2, 8, 8, 3), dtype=np.uint8)))
    assert "Fortran order" in rejection(buffer.getvalue())


def test_unknown_file_type():
    with pytest.raises(UnsupportedSampleFile, match="unsupported file type"):
        load_samples(b"GIF89a....")


def test_dot_radius_too_small_for_width():
    images, _ = rendered(2)
    with pytest.raises(InvalidSamples, match="is 1.92 px in images 32 px wide") as caught:
        probe_dots(images, 0.06)
    assert caught.value.field == "dot_radius"


def test_images_too_narrow_for_any_radius():
    narrow = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(InvalidSamples) as caught:
        probe_dots(narrow, 0.08)
    message = str(caught.value)
    assert message.endswith(
        "so use images at least 32 px wide, or 17 px at the largest dot_radius, 0.15"
    ), message


def test_dot_taller_than_images():
    flat = np.zeros((2, 8, 512, 3), dtype=np.uint8)
    with pytest.raises(InvalidSamples) as caught:
        probe_dots(flat, 0.08)
    message = str(caught.value)
    assert "a dot is 81.9 px tall in images 8 px tall" in message, message
    assert message.endswith("use a dot_radius of at most 0.008 or taller images"), message
    assert caught.value.field == "dot_radius"


# Rejections: archives


def test_compression_bomb():
    data = zip_bytes({"a.png": bytes(50 * 2**20)}, zipfile.ZIP_DEFLATED)
    assert len(data) < 100_000
    assert "declares a compression ratio of" in rejection(data)
    assert "above the limit of 200" in rejection(data)


def test_declared_total_over_limit(monkeypatch):
    monkeypatch.setattr(samples, "MAX_UNCOMPRESSED_BYTES", 1_000)
    image = png_bytes(np.full((16, 16, 3), 255, dtype=np.uint8))
    data = zip_bytes({f"{index}.png": image for index in range(20)})
    assert "declares more than 1,000 bytes uncompressed" in rejection(data)


def test_member_larger_than_declared():
    data = bytearray(zip_bytes({"a.png": bytes(5_000)}, zipfile.ZIP_DEFLATED))
    # Shrink the uncompressed size in the central directory entry (offset 24) to 100 bytes.
    entry = data.index(b"PK\x01\x02")
    data[entry + 24 : entry + 28] = struct.pack("<L", 100)
    assert "member 'a.png' is corrupt" in rejection(bytes(data))


def test_too_many_entries_declared():
    data = bytearray(zip_bytes({"a.png": b"x"}))
    end = data.rindex(b"PK\x05\x06")
    data[end + 8 : end + 12] = struct.pack("<2H", 0xFFFF, 0xFFFF)
    assert "declares 65,535 entries, above the limit of 21,000" in rejection(bytes(data))


def test_path_traversal_and_absolute():
    png = png_bytes(np.full((8, 8, 3), 255, dtype=np.uint8))
    assert "member '../a.png' contains '..'" in rejection(zip_bytes({"../a.png": png}))
    assert "contains '..'" in rejection(zip_bytes({"a/../../b.png": png}))
    info = zipfile.ZipInfo("a.png")
    info.filename = "/etc/a.png"  # ZipInfo() strips a leading slash; a crafted archive need not
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, png)
    assert "member '/etc/a.png' has an absolute path" in rejection(buffer.getvalue())


def test_symlink_member():
    info = zipfile.ZipInfo("a.png")
    info.create_system = 3  # Unix
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, "/etc/passwd")
    assert "member 'a.png' is a symbolic link" in rejection(buffer.getvalue())


def test_nested_archive():
    png = png_bytes(np.full((8, 8, 3), 255, dtype=np.uint8))
    inner = zip_bytes({"a.png": png})
    assert "member 'inner.zip' is an archive" in rejection(zip_bytes({"inner.zip": inner}))
    disguised = zip_bytes({"a.png": png, "b.png": inner})
    assert "member 'b.png' is an archive" in rejection(disguised)
    in_npz = zip_bytes({"images.npy": inner})
    assert "is an archive; nested archives are not accepted" in rejection(in_npz)


def test_non_png_members():
    png = png_bytes(np.full((8, 8, 3), 255, dtype=np.uint8))
    message = rejection(zip_bytes({"a.png": png, "notes.txt": b"hello"}))
    assert "member 'notes.txt' is not a PNG image" in message
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8)).save(jpeg, format="JPEG")
    assert "member 'b.png' is not a PNG image" in rejection(zip_bytes({"b.png": jpeg.getvalue()}))
    broken = png[:40]
    assert "member 'c.png' is not a readable PNG" in rejection(zip_bytes({"c.png": broken}))


def test_npz_with_other_members():
    array = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    np.save(buffer, array)
    data = zip_bytes({"images.npy": buffer.getvalue(), "readme.txt": b"hi"})
    assert "member 'readme.txt' is not an .npy array" in rejection(data)


def test_mixed_sizes():
    small = png_bytes(np.full((16, 16, 3), 255, dtype=np.uint8))
    large = png_bytes(np.full((16, 24, 3), 255, dtype=np.uint8))
    message = rejection(zip_bytes({"a.png": small, "b.png": large}))
    assert "member 'b.png' is 16x24 pixels but the first image is 16x16" in message


def test_empty_and_invalid_archives():
    assert "the archive contains no images" in rejection(zip_bytes({}))
    assert "not a valid zip archive" in rejection(b"PK\x03\x04garbage")
    assert "the archive contains no images" in rejection(zip_bytes({"dir/": b""}))


def test_sixteen_bit_png():
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), 40_000, dtype=np.uint16)).save(buffer, format="PNG")
    assert "has PNG mode I;16" in rejection(zip_bytes({"a.png": buffer.getvalue()}))
