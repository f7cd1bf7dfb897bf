"""Decoding every kind of file a user's folder holds: good images of every mode and format, and bad files."""
import io

import numpy as np
import pytest
from PIL import Image

from libraries import images
from libraries.images import ImageError, list_files, read_image

from conftest import pattern_image


def save(image: Image.Image, path, fmt=None, **kw):
    image.save(path, fmt, **kw)
    return path


@pytest.mark.parametrize("suffix, fmt", [(".jpg", "JPEG"), (".JPG", "JPEG"), (".jpeg", "JPEG"), (".png", "PNG"),
                                         (".webp", "WEBP"), (".bmp", "BMP"), (".tif", "TIFF"), (".gif", "GIF")])
def test_every_common_format_decodes_to_rgb(tmp_path, suffix, fmt):
    path = save(pattern_image("vertical", 1, 64), tmp_path / f"img{suffix}", fmt)
    array = read_image(path)
    assert array.shape == (64, 64, 3) and array.dtype == np.uint8


def test_extension_does_not_matter(tmp_path):
    path = save(pattern_image("vertical", 1, 32), tmp_path / "really_a_png.jpg", "PNG")
    assert read_image(path).shape == (32, 32, 3)


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty.jpg: empty file \(0 bytes\)"):
        read_image(tmp_path / "empty.jpg")


def test_truncated_jpeg(tmp_path):
    buffer = io.BytesIO()
    pattern_image("horizontal", 3, 128).save(buffer, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match=r"cut.jpg: truncated or incomplete image file"):
        read_image(tmp_path / "cut.jpg")


def test_text_file_named_jpg(tmp_path):
    (tmp_path / "notes.jpg").write_text("these are not pixels\n")
    with pytest.raises(ImageError, match=r"notes.jpg: not an image that Pillow can read"):
        read_image(tmp_path / "notes.jpg")


def test_cmyk_jpeg(tmp_path):
    path = save(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", "JPEG")
    array = read_image(path)
    assert array.shape == (30, 40, 3)
    r, g, b = array[15, 20].astype(int)
    assert r > 200 and g < 60 and b < 60  # cyan 0, magenta and yellow full: red


def test_greyscale_png_and_jpeg(tmp_path):
    grey = Image.fromarray(np.tile(np.arange(0, 250, 5, dtype=np.uint8), (20, 1)))
    for fmt, name in (("PNG", "g.png"), ("JPEG", "g.jpg")):
        array = read_image(save(grey, tmp_path / name, fmt))
        assert array.shape == (20, 50, 3)
        assert (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all()


def test_palette_png_with_transparency_lies_on_white(tmp_path):
    image = Image.new("P", (10, 10), 0)
    image.putpalette([0, 0, 0] + [255, 0, 0] * 255)
    image.paste(1, (0, 0, 5, 10))
    path = save(image, tmp_path / "pal.png", "PNG", transparency=0)
    array = read_image(path)
    assert tuple(array[5, 2]) == (255, 0, 0)  # opaque red half
    assert tuple(array[5, 8]) == (255, 255, 255)  # transparent half: white, not the hidden black


def test_rgba_png_is_composited_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:, :4] = (0, 0, 255, 255)
    rgba[:, 4:] = (0, 0, 0, 0)
    array = read_image(save(Image.fromarray(rgba, "RGBA"), tmp_path / "rgba.png", "PNG"))
    assert tuple(array[0, 0]) == (0, 0, 255) and tuple(array[0, 7]) == (255, 255, 255)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    ramp = (np.arange(256, dtype=np.uint16) * 257).reshape(1, 256).repeat(4, 0)  # 0..65535
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)  # a 16-bit greyscale PNG
    assert Image.open(path).mode.startswith("I")
    array = read_image(path)
    assert array.dtype == np.uint8
    np.testing.assert_array_equal(array[0, :, 0], np.arange(256))  # clipping would make it 0, 255, 255, ...


def test_16_bit_tiff(tmp_path):
    ramp = (np.arange(64, dtype=np.uint16) * 1000).reshape(8, 8)
    path = tmp_path / "deep.tif"
    Image.fromarray(ramp).save(path)
    array = read_image(path)
    assert array.max() == (63 * 1000) >> 8 and array.min() == 0


def exif_rotated_jpeg(path, orientation=6):
    """A 60x40 landscape JPEG, red on the left half, whose EXIF says 'rotate 90 degrees clockwise to view'."""
    array = np.zeros((40, 60, 3), np.uint8)
    array[:, :30] = (255, 0, 0)
    array[:, 30:] = (0, 0, 255)
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, "JPEG", exif=exif.tobytes(), quality=95)
    return path


@pytest.mark.parametrize("use_cv2", [True, False])
def test_exif_orientation_is_honoured(tmp_path, monkeypatch, use_cv2):
    if not use_cv2:
        monkeypatch.setattr(images, "cv2", None)
    array = read_image(exif_rotated_jpeg(tmp_path / "rotated.jpg"))
    assert array.shape == (60, 40, 3)  # portrait, as the camera meant
    assert array[5, 20, 0] > 200 and array[5, 20, 2] < 60  # rotated clockwise: the red left half is now on top
    assert array[55, 20, 2] > 200


def test_opencv_and_pillow_give_identical_pixels(tmp_path, monkeypatch):
    path = save(pattern_image("checker", 7, 333), tmp_path / "p.jpg", "JPEG")
    fast = read_image(path, min_size=100)
    monkeypatch.setattr(images, "cv2", None)
    slow = read_image(path, min_size=100)
    assert fast.shape == slow.shape == (167, 167, 3)  # decoded at half size: both sides stay >= 100
    np.testing.assert_array_equal(fast, slow)


def test_decompression_bomb_is_refused_quickly(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(path, optimize=True)  # 144 megapixels in a few hundred kB
    assert path.stat().st_size < 2_000_000
    with pytest.raises(ImageError, match=r"bomb.png: .*decompression bomb"):
        read_image(path)


def test_non_ascii_file_name(tmp_path):
    path = save(pattern_image("vertical", 2, 32), tmp_path / "Übersicht_太陽電池_ñ.jpg", "JPEG")
    assert read_image(path).shape == (32, 32, 3)
    assert path in list_files(tmp_path)


def test_bytes_input_names_the_source():
    with pytest.raises(ImageError, match=r"upload.bin: empty file"):
        read_image(b"", name="upload.bin")


def test_hidden_and_system_files_are_ignored(tmp_path):
    (tmp_path / "a").mkdir()
    save(pattern_image("vertical", 2, 16), tmp_path / "a" / "ok.png", "PNG")
    for name in (".DS_Store", "Thumbs.db", "desktop.ini", "._ok.png"):
        (tmp_path / "a" / name).write_bytes(b"junk")
    (tmp_path / "a" / ".git").mkdir()
    (tmp_path / "a" / ".git" / "x.png").write_bytes(b"junk")
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / "__MACOSX" / "y.png").write_bytes(b"junk")
    assert list_files(tmp_path) == [tmp_path / "a" / "ok.png"]
