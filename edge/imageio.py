"""Reading and writing images the way the kiosk needs it.

Reading refuses what it cannot decode completely (a truncated JPEG decodes
"successfully" in libjpeg with a grey bottom: we check for that), and
converts grayscale, RGBA and 16-bit input to float RGB, saying what it did.
Writing is atomic: temporary file, fsync, rename, fsync of the folder, so a
power cut leaves either the old state or the complete new file.
"""
from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import time
import zlib
from pathlib import Path

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".svs"}   # .svs: an Aperio slide (TIFF)
MAX_PIXELS = 100_000_000   # 100 MP: a header claiming more is refused before anything is allocated
# OpenCV's own guard for the formats we do not parse (default 2^30 pixels, i.e. 3 GB for RGB)
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))

import cv2  # noqa: E402
import numpy as np  # noqa: E402


class ImageError(Exception):
    """An input image that cannot be used; the message names the file and the reason."""


def _check_complete(path: Path, data: bytes) -> None:
    if data[:3] == b"\xff\xd8\xff":
        sos = data.rfind(b"\xff\xda")
        eoi = data.rfind(b"\xff\xd9")
        if sos < 0 or eoi < sos:
            raise ImageError(f"{path}: truncated JPEG (no end-of-image marker)")
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        if b"IEND" not in data[-32:]:
            raise ImageError(f"{path}: truncated PNG (no IEND chunk)")


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG or BMP header without decoding; None if not found."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data[:2] == b"BM" and len(data) >= 26:
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if data[:2] == b"\xff\xd8":
            i = 2
            while i + 9 < len(data):
                if data[i] != 0xFF:
                    return None
                marker = data[i + 1]
                if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                    i += 2
                    continue
                length = struct.unpack(">H", data[i + 2:i + 4])[0]
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                    h, w = struct.unpack(">HH", data[i + 5:i + 9])
                    return w, h
                i += 2 + length
    except struct.error:
        return None
    return None


def decode(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes as OpenCV stores them (BGR/BGRA/gray, 8/16-bit)."""
    path = Path(name)
    if not data:
        raise ImageError(f"{path}: empty file")
    _check_complete(path, data)
    size = header_size(data)
    if size is not None and (size[0] * size[1] > MAX_PIXELS or 0 in size):
        raise ImageError(f"{path}: header says {size[0]}x{size[1]} pixels: empty or larger than the "
                         f"{MAX_PIXELS // 1_000_000} MP limit")
    arr = np.frombuffer(data, np.uint8)
    tiff = data[:4] in TIFF_MAGIC
    try:
        # libtiff's complaints about scanners' JPEG-tiled TIFFs (tifffile reads them below) stay quiet
        with _opencv_quiet() if tiff else contextlib.nullcontext():
            img = cv2.imdecode(arr, cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        if tiff:
            return _decode_tiff(data, path)
        raise ImageError(f"{path}: cannot decode image ({str(e).strip().splitlines()[-1]})") from None
    if img is None or img.size == 0:
        if tiff:
            return _decode_tiff(data, path)
        raise ImageError(f"{path}: not an image OpenCV can decode")
    return img


TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")


@contextlib.contextmanager
def _opencv_quiet():
    """OpenCV's log silenced for one call (its level is process-wide: restored after)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _decode_tiff(data: bytes, path: Path) -> np.ndarray:
    """TIFFs OpenCV's libtiff does not read (slide scanners' OME-TIFF and SVS with JPEG tiles): the first
    page's full-resolution image through tifffile (imagecodecs decodes the tiles), in OpenCV's order."""
    import io

    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as t:
            page = t.pages[0]
            if page.shape and int(np.prod(page.shape[:2])) > MAX_PIXELS:
                raise ImageError(f"{path}: {page.shape[1]}x{page.shape[0]} pixels: larger than the "
                                 f"{MAX_PIXELS // 1_000_000} MP limit")
            img = page.asarray()
    except ImageError:
        raise
    except ValueError as e:   # tifffile: a compression it cannot decode without imagecodecs
        hint = " (pip install imagecodecs)" if "imagecodecs" in str(e) else ""
        raise ImageError(f"{path}: cannot decode TIFF: {str(e).splitlines()[0][:160]}{hint}") from None
    except Exception as e:    # tifffile raises many types for a damaged file
        raise ImageError(f"{path}: cannot decode TIFF ({type(e).__name__})") from None
    if img.ndim == 3 and img.shape[2] in (3, 4):
        img = img[..., [2, 1, 0, 3][:img.shape[2]]]   # RGB(A) -> OpenCV's BGR(A)
    return np.ascontiguousarray(img)


def to_rgb_float(img: np.ndarray, name: str = "<image>") -> tuple[np.ndarray, list[str]]:
    """OpenCV image -> float32 RGB in [0, 1], HxWx3, and notes on conversions made."""
    notes: list[str] = []
    if img.dtype == np.uint8:
        x = img.astype(np.float32) / 255.0
    elif img.dtype == np.uint16:
        x = img.astype(np.float32) / 65535.0
        notes.append("16-bit input")
    elif img.dtype in (np.float32, np.float64):
        x = np.clip(np.nan_to_num(img.astype(np.float32)), 0.0, 1.0)
        notes.append("floating-point input clipped to [0, 1]")
    else:
        raise ImageError(f"{name}: unsupported sample type {img.dtype}")
    if x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=2)
        notes.append("converted grayscale to RGB")
    elif x.ndim == 3 and x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
        notes.append("converted grayscale to RGB")
    elif x.ndim == 3 and x.shape[2] == 4:
        x = x[..., :3]
        notes.append("dropped the alpha channel")
    elif x.ndim != 3 or x.shape[2] != 3:
        raise ImageError(f"{name}: unsupported layout {img.shape}")
    return np.ascontiguousarray(x[..., ::-1]), notes


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, list[str], int]:
    """Read an image file -> (float32 RGB [0,1], conversion notes, source bit depth)."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{p}: no such file")
    if p.is_dir():
        raise ImageError(f"{p}: is a directory")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ImageError(f"{p}: cannot read ({e.strerror})") from None
    img = decode(data, str(p))
    rgb, notes = to_rgb_float(img, str(p))
    return rgb, notes, 16 if img.dtype == np.uint16 else 8


def read_rgb8(path: str | os.PathLike) -> np.ndarray:
    """Read an image as RGB uint8 (for training data and samples)."""
    rgb, _, _ = read_image(path)
    return to_uint8(rgb)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_uint16(rgb: np.ndarray) -> np.ndarray:
    return np.round(np.clip(rgb, 0.0, 1.0) * 65535.0).astype(np.uint16)


def encode(rgb: np.ndarray, ext: str = ".png", bits: int = 8, jpeg_quality: int = 90,
           text: dict[str, str] | None = None, pixel_size_um: float | None = None,
           in_place: bool = False) -> bytes:
    """Encode float RGB [0,1] (or uint8/uint16 RGB) as PNG, TIFF or JPEG bytes. text: carried in the file's
    own metadata, where any viewer finds it (PNG tEXt/iTXt chunks; TIFF ImageDescription and Software;
    JPEG comments): an enhanced capture says it is AI-enhanced and by which model. pixel_size_um: the
    size of a pixel on the slide, so that Fiji and QuPath measure in micrometres (TIFF: ImageJ resolution
    and unit for 8 bits, OME-TIFF PhysicalSizeX/Y for 16, both with the standard resolution tags; PNG:
    the pHYs chunk in pixels per metre). in_place: OpenCV's BGR order is made in rgb's own buffer and
    undone before returning, instead of in a copy (a capture's image: 24 MB less at an 8 MP peak); only
    for an array nobody else reads meanwhile."""
    if rgb.dtype == np.float32 or rgb.dtype == np.float64:
        rgb = to_uint16(rgb) if bits == 16 and ext != ".jpg" else to_uint8(rgb)
    if ext in (".tif", ".tiff") and (text or pixel_size_um):
        return _tiff(rgb, text or {}, pixel_size_um)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if ext in (".jpg", ".jpeg") else []
    if in_place and swap_rb(rgb):
        try:
            ok, buf = cv2.imencode(ext, rgb, params)
        finally:
            swap_rb(rgb)
    else:
        ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise ImageError(f"cannot encode image as {ext}")
    # the encoder's buffer and the metadata are joined in one copy (slicing bytes copies the image twice
    # more: 12 MB each for an 8 MP PNG, at a capture's peak of memory)
    data = memoryview(buf.reshape(-1))
    if ext == ".png" and (text or pixel_size_um):
        chunks = [_png_text(k, v) for k, v in (text or {}).items()]
        if pixel_size_um:
            ppm = round(1e6 / pixel_size_um)
            chunks.append(_png_chunk(b"pHYs", struct.pack(">IIB", ppm, ppm, 1)))   # unit 1: the metre
        return b"".join((data[:33], *chunks, data[33:]))   # after IHDR
    if text and ext in (".jpg", ".jpeg"):
        c = "\n".join(f"{k}: {v}" for k, v in text.items()).encode()[:65000]   # one comment: readers keep one
        return b"".join((data[:2], b"\xff\xfe", struct.pack(">H", len(c) + 2), c, data[2:]))   # after SOI
    return data.tobytes()


def swap_rb(img: np.ndarray, rows: int = 64) -> bool:
    """Swap an H x W x 3 array's first and third channels in its own buffer (RGB <-> BGR), in strips:
    OpenCV copies a whole image it is asked to convert in place. False (nothing done) where the array is
    not a contiguous, writeable H x W x 3 one."""
    if img.ndim != 3 or img.shape[2] != 3 or not img.flags.c_contiguous or not img.flags.writeable:
        return False
    for y in range(0, img.shape[0], rows):
        strip = img[y:y + rows]
        cv2.cvtColor(strip, cv2.COLOR_RGB2BGR, dst=strip)
    return True


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_text(key: str, value: str) -> bytes:
    """One PNG text chunk: tEXt where Latin-1 holds the text, else iTXt (UTF-8)."""
    try:
        return _png_chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        return _png_chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode())


def _tiff(rgb: np.ndarray, text: dict[str, str], pixel_size_um: float | None = None) -> bytes:
    """TIFF by tifffile (OpenCV's writes no text tags), deflate. Without a pixel size: ImageDescription
    from the text entries but Software, Software from text["Software"] (TIFF strings are 7-bit ASCII:
    others are escaped). With one: 8 bits as an ImageJ TIFF (what Fiji itself writes: resolution in
    pixels per um, unit=um; the text in its Info property), 16 bits as OME-TIFF (ImageJ's own format has
    no 16-bit RGB; Bio-Formats in Fiji and QuPath read PhysicalSizeX/Y; the text in its Description),
    both with XResolution/YResolution in pixels per centimetre for other readers."""
    import io

    import tifffile

    ascii_ = lambda t: t.encode("ascii", "backslashreplace").decode() if t else None
    desc = "; ".join(f"{k}: {v}" for k, v in text.items() if k != "Software")
    kw = dict(photometric="rgb", compression="zlib", software=ascii_(text.get("Software")))
    buf = io.BytesIO()
    rgb = np.ascontiguousarray(rgb)
    if not pixel_size_um:
        tifffile.imwrite(buf, rgb, metadata=None, description=ascii_(desc), **kw)
    elif rgb.dtype == np.uint8:
        tifffile.imwrite(buf, rgb, imagej=True, resolution=(1 / pixel_size_um, 1 / pixel_size_um),
                         metadata={"unit": "um", **({"Info": desc} if desc else {})}, **kw)
    else:
        ppcm = 1e4 / pixel_size_um
        tifffile.imwrite(buf, rgb, ome=True, resolution=(ppcm, ppcm), resolutionunit="CENTIMETER",
                         metadata={"axes": "YXS", "PhysicalSizeX": pixel_size_um, "PhysicalSizeY": pixel_size_um,
                                   "PhysicalSizeXUnit": "\u00b5m", "PhysicalSizeYUnit": "\u00b5m",
                                   **({"Description": desc} if desc else {})}, **kw)
    return buf.getvalue()


def fsync_dir(folder: str | os.PathLike) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes, mode: int = 0o644, times: dict | None = None) -> None:
    """Write bytes durably: temp file in the same folder, fsync, rename, fsync folder. times: seconds
    spent writing and in fsync are added to its "write_s" and "fsync_s"."""
    p = Path(path)
    t0 = time.perf_counter()
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            t1 = time.perf_counter()
            os.fsync(f.fileno())
            t2 = time.perf_counter()
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    t3 = time.perf_counter()
    fsync_dir(p.parent)
    if times is not None:
        times["write_s"] = times.get("write_s", 0.0) + (t1 - t0) + (t3 - t2)
        times["fsync_s"] = times.get("fsync_s", 0.0) + (t2 - t1) + (time.perf_counter() - t3)


def write_image(path: str | os.PathLike, rgb: np.ndarray, bits: int = 8, jpeg_quality: int = 90) -> None:
    p = Path(path)
    atomic_write(p, encode(rgb, p.suffix.lower(), bits, jpeg_quality))


def list_images(paths: list[str | os.PathLike]) -> list[Path]:
    """Image files among `paths` (files, or folders searched recursively), sorted and unique."""
    out: list[Path] = []
    for d in map(Path, paths):
        if d.is_file():
            out.append(d)
        elif d.is_dir():
            out.extend(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
        else:
            raise FileNotFoundError(f"{d}: no such file or directory")
    return sorted(set(out))
