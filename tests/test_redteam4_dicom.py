"""Red team, round 4, DICOM (rt4dcm): places an identifier reached OUT with the slide verified,
or passed ``wsianon verify`` — bytes of a binary attribute no check judged (Encrypted Content),
the File Meta's Implementation Class UID, header bytes no reader shows (reserved bytes of an
explicit VR header, a delimiter's length, an element repeated), native samples' unused bits,
and a frame that has no place in the image (a picture no viewer draws).  Each is closed on the
output side and judged by the verifier from the output alone."""

from __future__ import annotations

import json
import shutil
import struct
import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.sequence import Sequence

from wsianon.io.dicomframes import unplaced_frames
from wsianon.verify.dicom_attrs import check_dicom_attributes

from .conftest import shared

HD = "dicom/highdicom_sm_image.dcm"
GREY = "dicom/highdicom_sm_image_grayscale.dcm"
L0 = "dicom/wsi2dcm-cmu-1-small-region/level-0-frames-0-30.dcm"
MARKS = (b"Doe^Jane", b"MRN4711", b"RDQX9")


def _read(p: Path, pixels: bool = True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(p, stop_before_pixels=not pixels)


def _out_bytes(out: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file())


def _source(tmp_path: Path, rel: str, edit) -> Path:
    ds = _read(shared(rel))
    edit(ds)
    p = tmp_path / "in" / Path(rel).name
    p.parent.mkdir(parents=True)
    ds.save_as(p)
    return p


def _run(cli, src: Path, out: Path):
    code, stdout, stderr = cli("run", "--target", "dicom", str(src), "-o", str(out))
    (slide,) = json.loads((out / "wsianon-report.json").read_text())["slides"]
    return code, stdout + stderr, slide


def _shared_ok(cli, tmp_path: Path, src: Path) -> Path:
    """Run ``src``; the slide is shared, no planted byte anywhere in OUT or on the console, and
    the output passes the closed world on its own."""
    out = tmp_path / "out"
    code, console, slide = _run(cli, src, out)
    assert code == 0 and slide["status"] == "ok", (console, slide["verification"])
    assert not [m for m in MARKS if m in _out_bytes(out) + console.encode()]
    (dcm,) = sorted(out.rglob("*.dcm"))
    assert check_dicom_attributes([dcm])[0] == []
    return dcm


def _copy(tmp_path: Path, dcm: Path, name: str, data: bytes | None = None) -> Path:
    p = tmp_path / "planted" / name / dcm.parent.name / dcm.name
    p.parent.mkdir(parents=True)
    p.write_bytes(dcm.read_bytes() if data is None else data)
    return p


def _judged(cli, path: Path, needle: str, check: str = "FAIL dicom: closed world") -> None:
    """The planted copy fails the closed world by ``needle`` and `wsianon verify` by ``check``;
    no planted value is printed."""
    found, _n = check_dicom_attributes([path])
    assert any(needle in f for f in found), found
    code, stdout, _ = cli("verify", str(path))
    assert code == 1 and check in stdout, stdout
    assert not [m for m in MARKS if m.decode() in stdout + "\n".join(found)]


# ---------------------------------------------------------------------------
# 1. a binary attribute no check judges


def _encrypted(ds: Dataset) -> None:
    item = Dataset()
    item.EncryptedContentTransferSyntaxUID = "1.2.840.10008.1.2.1"
    item.EncryptedContent = b"Doe^Jane MRN4711 RDQX9 "
    ds.EncryptedAttributesSequence = Sequence([item])


def test_encrypted_attributes_are_removed_and_binary_values_judged(tmp_path, cli):
    """Before: the Encrypted Attributes Sequence (PS3.15 E.1.1: the original attributes,
    encrypted) has no Annex E row, so the route kept it, and no check judged the bytes of an
    OB/OW/OF/OD/OL/OV/UN value other than an ICC profile or a palette: a DICOM input's Encrypted
    Content (here plain text) was shared and verified. Now the route removes the sequence (a
    wsianon row, X) and any binary value no check judges; the closed world refuses one."""
    dcm = _shared_ok(cli, tmp_path, _source(tmp_path, HD, _encrypted))
    assert "EncryptedAttributesSequence" not in _read(dcm, pixels=False)
    ds = _read(dcm)
    _encrypted(ds)
    planted = tmp_path / "planted" / "enc" / dcm.parent.name / dcm.name
    planted.parent.mkdir(parents=True)
    ds.save_as(planted)
    _judged(cli, planted, "EncryptedAttributesSequence/EncryptedContent: bytes no check judges")


def test_engine_removes_a_binary_value_no_check_judges():
    """The engine's closed world on its own (an item of the sequence walked at its path, the
    sequence's own row aside): a binary value no check judges goes, whatever Annex E says."""
    from wsianon.converters.dicom.engine import Engine, Identity
    from wsianon.profiles.dicom import DicomProfile

    item = Dataset()
    item.EncryptedContentTransferSyntaxUID = "1.2.840.10008.1.2.1"
    item.EncryptedContent = b"Doe^Jane"
    engine = Engine(DicomProfile(), b"k" * 32, Identity(slide="WSI-0", patient="WSI-0"))
    engine._walk(item, ("EncryptedAttributesSequence",))
    assert "EncryptedContent" not in item and "EncryptedContentTransferSyntaxUID" in item


# ---------------------------------------------------------------------------
# 2. the File Meta's Implementation Class UID


def test_file_meta_implementation_uid_is_judged(tmp_path, cli):
    """Before: the closed world judged the data set's UIDs (registry or keyed) but not the File
    Meta's: an Implementation Class UID under any root with an identifier's digits passed
    `verify`. The route writes pydicom's own; now any other that is neither the registry's nor
    keyed is a finding."""
    dcm = _shared_ok(cli, tmp_path, shared(HD))
    ds = _read(dcm)
    ds.file_meta.ImplementationClassUID = "1.2.3.4711.19790101"
    planted = tmp_path / "planted" / "meta" / dcm.parent.name / dcm.name
    planted.parent.mkdir(parents=True)
    ds.save_as(planted)
    _judged(cli, planted, "file meta ImplementationClassUID")


# ---------------------------------------------------------------------------
# 3. header bytes no reader shows


def test_header_bytes_no_reader_shows_are_judged(tmp_path, cli):
    """Before: pydicom (and so every check that walks the parsed data set) passes over the two
    reserved bytes of an explicit VR header with a 4-byte length, the length of an Item or
    Sequence Delimitation Item, and keeps only the last of an element repeated in a data set;
    only Pixel Data's header was judged. Initials in the reserved bytes of a sequence's header
    passed `verify` (dciodvfy too). Now the header is walked byte by byte from the file."""
    dcm = _shared_ok(cli, tmp_path, shared(HD))
    data = dcm.read_bytes()
    sq = b"\x40\x00\x60\x05SQ\x00\x00"  # (0040,0560) Specimen Description Sequence
    assert data.count(sq) == 1
    _judged(cli, _copy(tmp_path, dcm, "reserved", data.replace(sq, sq[:6] + b"JD")), "reserved bytes of an element header")

    # an undefined-length sequence (legal, and passes) whose delimiter's length holds digits
    ds = _read(dcm)
    ds["SpecimenDescriptionSequence"].is_undefined_length = True
    for item in ds.SpecimenDescriptionSequence:
        item.is_undefined_length_sequence_item = True
    undefined = tmp_path / "undefined" / dcm.parent.name / dcm.name
    undefined.parent.mkdir(parents=True)
    ds.save_as(undefined)
    raw = undefined.read_bytes()
    assert check_dicom_attributes([undefined])[0] == []
    for name, delim in (("seq", b"\xfe\xff\xdd\xe0"), ("item", b"\xfe\xff\x0d\xe0")):
        assert raw.count(delim + bytes(4)) >= 1
        planted = _copy(tmp_path, dcm, name, raw.replace(delim + bytes(4), delim + b"4711", 1))
        found, _n = check_dicom_attributes([planted])
        assert any("Delimitation Item with a non-zero length" in f for f in found), found

    # an element repeated: the first value (which pydicom drops) holds the name
    pn = b"\x10\x00\x10\x00PN"
    head = struct.pack("<HHH", 0x10, 0x10, 0)[:4] + b"PN" + struct.pack("<H", 8) + b"Doe^Jane"
    found, _n = check_dicom_attributes([_copy(tmp_path, dcm, "dup", data.replace(pn, head + pn, 1))])
    assert any("out of ascending tag order, or one repeated" in f for f in found), found


# ---------------------------------------------------------------------------
# 4. native samples' unused bits


def _high_byte_text(ds: Dataset) -> None:
    """16-bit samples that store 8 bits, the high byte of each holding text."""
    a = ds.pixel_array.astype("<u2").reshape(-1) & 0xFF
    text = np.frombuffer((b"Doe^Jane MRN4711 RDQX9 " * (a.size // 23 + 1))[: a.size], dtype="u1").astype("<u2")
    ds.PixelData = (a | (text << 8)).tobytes()
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 8, 7
    if "PixelPaddingValue" in ds:
        del ds.PixelPaddingValue


def test_native_unused_bits_are_zeroed_and_judged(tmp_path, cli):
    """Before: native Pixel Data was copied verbatim, so the bits of each sample outside Bits
    Stored / High Bit (which every reader masks: an overlay, or text in the high byte of 16-bit
    samples) were shared and verified. Now the route zeroes them (the frames are compared with
    the source's with those bits zeroed) and the verifier refuses any set."""
    dcm = _shared_ok(cli, tmp_path, _source(tmp_path, GREY, _high_byte_text))
    ds = _read(dcm)
    words = np.frombuffer(ds.PixelData, dtype="<u2")
    assert int(ds.BitsStored) == 8 and not (words >> 8).any() and (words & 0xFF).any()
    data = bytearray(dcm.read_bytes())
    at = len(data) - len(ds.PixelData)
    data[at + 1] = ord("J")  # one sample's high byte
    _judged(cli, _copy(tmp_path, dcm, "bits", bytes(data)), "bits outside Bits Stored")


# ---------------------------------------------------------------------------
# 5. a frame with no place in the image


def _extra_frame(ds: Dataset) -> None:
    n = int(ds.NumberOfFrames)
    frames = list(generate_frames(ds.PixelData, number_of_frames=n))
    ds.PixelData = encapsulate(frames + [frames[5]])  # stands for any picture: a label photo
    ds.NumberOfFrames = n + 1


def test_frame_without_a_place_in_the_image_is_refused_and_judged(tmp_path, cli):
    """Before: a TILED_FULL level with one frame more than its tile grid was shared: the frame
    is copied with the others (identical to the source's), no viewer draws it, no check looked at
    its picture, and `run` accepted dciodvfy's NumberOfFrames error because the source has it
    too. Now the route refuses such an instance and `dicom: pyramid` fails it."""
    src = _source(tmp_path, L0, _extra_frame)
    out = tmp_path / "out"
    code, console, slide = _run(cli, src, out)
    assert code == 1 and slide["status"] == "error" and not list(out.rglob("*.dcm")), console
    assert "frames without a place of their own" in console
    planted = tmp_path / "planted" / "WSI-0" / "0001-volume.dcm"
    planted.parent.mkdir(parents=True)
    shutil.copy(src, planted)
    code, stdout, _ = cli("verify", str(planted))
    assert code == 1 and "FAIL dicom: pyramid" in stdout and "a frame no viewer shows" in stdout, stdout


def _sparse(positions: list[tuple[int, int]], frames: int | None = None) -> Dataset:
    ds = Dataset()
    ds.Rows = ds.Columns = 10
    ds.TotalPixelMatrixColumns = ds.TotalPixelMatrixRows = 20
    ds.NumberOfFrames = len(positions) if frames is None else frames
    ds.DimensionOrganizationType = "TILED_SPARSE"
    items = []
    for col, row in positions:
        pos = Dataset()
        pos.ColumnPositionInTotalImagePixelMatrix, pos.RowPositionInTotalImagePixelMatrix = col, row
        pos.ZOffsetInSlideCoordinateSystem = "0"
        item = Dataset()
        item.PlanePositionSlideSequence = Sequence([pos])
        items.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(items)
    return ds


def test_sparse_frames_each_have_a_place_of_their_own():
    grid = [(1, 1), (11, 1), (1, 11), (11, 11)]
    assert unplaced_frames(_sparse(grid)) is None
    assert unplaced_frames(_sparse(grid[:3])) is None  # sparse: a tile may be absent
    assert unplaced_frames(_sparse(grid + [(11, 11)])) == "two frames at the same place"
    assert unplaced_frames(_sparse(grid + [(21, 1)])) == "a frame placed outside the total pixel matrix"
    assert unplaced_frames(_sparse(grid, frames=5)) == "frame positions not one a frame"
    full = _sparse(grid)
    del full.PerFrameFunctionalGroupsSequence
    full.DimensionOrganizationType = "TILED_FULL"
    assert unplaced_frames(full) is None
    full.TotalPixelMatrixFocalPlanes = 2
    assert unplaced_frames(full) == "more or fewer frames than its tile grid"


# ---------------------------------------------------------------------------
# 6. a transfer syntax whose frames no check judges


def _rle_with_text(ds: Dataset) -> None:
    """RLE Lossless frames, each with text after its segments (a decoder stops at the pixels)."""
    from pydicom.uid import RLELossless

    ds.compress(RLELossless)
    frames = [f + b"Doe^Jane MRN4711 RDQX9 " for f in generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames))]
    ds.PixelData = encapsulate([f + b"\0" * (len(f) % 2) for f in frames])


def test_transfer_syntax_whose_frames_no_check_judges_is_refused_and_judged(tmp_path, cli):
    """Before: a DICOM input in RLE Lossless, text after each frame's segments, was shared and
    verified: its frames are copied as they are, and no check judged RLE frames (nor those of
    encapsulated uncompressed, JPEG XL, MPEG or deflated frames). Now the route refuses a
    transfer syntax whose frames no check judges and the closed world fails one."""
    src = _source(tmp_path, HD, _rle_with_text)
    out = tmp_path / "out"
    code, console, slide = _run(cli, src, out)
    assert code == 1 and slide["status"] == "error" and not list(out.rglob("*.dcm")), console
    assert "a transfer syntax whose frames no check judges" in console
    assert not [m for m in MARKS if m in _out_bytes(out) + console.encode()]
    dcm = _shared_ok(cli, tmp_path / "clean", shared(HD))
    ds = _read(dcm)
    _rle_with_text(ds)
    planted = tmp_path / "planted" / "rle" / dcm.parent.name / dcm.name
    planted.parent.mkdir(parents=True)
    ds.save_as(planted)
    _judged(cli, planted, "file meta TransferSyntaxUID: not one whose frames a check judges")


# ---------------------------------------------------------------------------
# 7. a VOLUME level whose pixels are not the slide's


def _label_as_level(folder: Path) -> None:
    """The wsi2dcm slide with level 3 (277x370, one frame) replaced by a picture of the same size
    that is not the slide (dark strokes on white, as a handwritten label): same matrix, aspect,
    ImageType VOLUME."""
    from turbojpeg import TurboJPEG

    p = folder / "level-3-frames-0-1.dcm"
    ds = _read(p)
    h, w = int(ds.Rows), int(ds.Columns)
    img = np.full((h, w, 3), 255, np.uint8)
    rng = np.random.default_rng(1)
    for y in range(20, h - 40, 40):
        for x in range(10, w - 20, 14):
            if rng.random() < 0.7:
                img[y : y + 22, x : x + 9] = 20
    ds.PixelData = encapsulate([TurboJPEG().encode(img, quality=90)])
    ds.save_as(p)


def test_volume_level_that_is_not_the_slide_is_quarantined_and_judged(tmp_path, cli):
    """Before: a level replaced by another picture of the same size (a label photo scaled to the
    level's matrix: the aspect rule of round 3 holds) was shared and verified — its frames equal
    the source's, VOLUME frames get no barcode search, and a viewer shows it when zoomed out. Now
    every level (16 px and more on its long side) must be a larger level downsampled, judged as a
    kept THUMBNAIL is (`dicom: pyramid`); the clean slide's levels pass."""
    src = tmp_path / "in" / "slide"
    shutil.copytree(shared(str(Path(L0).parent)), src)
    _label_as_level(src)
    out = tmp_path / "out"
    code, console, slide = _run(cli, src, out)
    assert slide["status"] != "ok" and not list(out.rglob("*.dcm")), console
    checks = {c["check"]: c for c in slide["verification"]["checks"]}
    assert not checks["dicom: pyramid"]["ok"] and "0004-volume.dcm: a VOLUME level whose pixels are not the slide's" in checks["dicom: pyramid"]["detail"]
    clean = tmp_path / "clean"
    code, stdout, stderr = cli("run", "--target", "dicom", shared(str(Path(L0).parent)), "-o", str(clean))
    assert code == 0, stdout + stderr
    code, stdout, _ = cli("verify", str(clean))
    assert code == 0 and "level(s) compared with the others" in stdout, stdout


def test_removed_label_is_not_held_to_the_frame_rules(tmp_path, cli):
    """The two refusals above apply to the instances that will be shared: a LABEL instance that
    the run removes (the default) in RLE Lossless does not refuse its slide."""
    from pydicom.uid import RLELossless

    folder = tmp_path / "in" / "slide"
    folder.mkdir(parents=True)
    shutil.copy(shared("dicom/openslide-python_boxes_0.dcm"), folder / "a.dcm")
    label = _read(shared("dicom/openslide-python_boxes_1.dcm"))
    label.ImageType = ["ORIGINAL", "PRIMARY", "LABEL", "NONE"]
    label.compress(RLELossless)
    label.save_as(folder / "b.dcm")
    out = tmp_path / "out"
    code, console, slide = _run(cli, folder, out)
    assert code == 0 and slide["status"] == "ok", (console, slide.get("verification"))
    assert [p.name for p in out.rglob("*.dcm")] == ["0001-volume.dcm"]


# ---------------------------------------------------------------------------
# 8. bytes in a palette's increments


def _palette(ds: Dataset, channels: list[np.ndarray]) -> None:
    pal = Dataset()
    for name, vals in zip(("Red", "Green", "Blue"), channels):
        setattr(pal, f"{name}PaletteColorLookupTableDescriptor", [len(vals), 0, 16])
        setattr(pal, f"{name}PaletteColorLookupTableData", np.asarray(vals, "<u2").tobytes())
    ds.OpticalPathSequence[0].PaletteColorLookupTableSequence = Sequence([pal])


def _text_steps() -> np.ndarray:
    """A rising ramp whose steps are the bytes of text (68, 111, 101, ... for "Doe")."""
    steps = np.frombuffer((b"Doe^Jane MRN4711 RDQX9 " * 12)[:255], dtype="u1").astype(np.int64)
    return np.concatenate([[0], np.cumsum(steps)])


def _jet() -> list[np.ndarray]:
    x = np.linspace(0, 1, 256)
    return [np.round(np.clip(np.minimum(4 * x - a, -4 * x + b), 0, 1) * 65535) for a, b in ((1.5, 4.5), (0.5, 3.5), (-0.5, 2.5))]


def test_palette_whose_steps_hold_text_is_quarantined_and_a_colour_map_kept(tmp_path, cli):
    """Before: a palette channel was accepted when it turned direction at most 4 times, so a
    rising ramp whose increments are the bytes of a name (255 bytes a channel) was shared and
    verified. Now a channel must be exactly a few straight segments (io.palette): the route makes
    a colour map within 1 of that form exactly so (a jet map made with floats moves by 1 at most)
    and the verifier refuses any other."""
    text = _source(tmp_path / "t", HD, lambda ds: _palette(ds, [_text_steps()] * 3))
    out = tmp_path / "out"
    code, console, slide = _run(cli, text, out)
    # red team 14: the route removes an optical path's palette that is no ramp (Type 3): shared
    # without it; the verifier refuses it (its finding, on a planted copy)
    assert code == 0 and slide["status"] == "ok", console
    (dcm,) = sorted(out.rglob("*.dcm"))
    assert "PaletteColorLookupTableSequence" not in _read(dcm).OpticalPathSequence[0]
    planted = _source(tmp_path / "p", HD, lambda ds: _palette(ds, [_text_steps()] * 3))
    found, _n = check_dicom_attributes([planted])
    assert any("PaletteColorLookupTableData: palette data is not a colour ramp" in f for f in found)
    # red team 14: a map of several segments (jet) carries free numbers in its segments' end
    # points: the route now removes it from the optical path (Type 3) and the slide is shared; a
    # fluorescence ramp (one line a channel, made with floats) is kept within 1
    dcm = _shared_ok(cli, tmp_path / "j", _source(tmp_path / "j", HD, lambda ds: _palette(ds, _jet())))
    assert "PaletteColorLookupTableSequence" not in _read(dcm).OpticalPathSequence[0]
    ramp = [np.zeros(256), np.round(np.linspace(0, 65535, 256) * 0.8), np.round(np.linspace(0, 30000, 256))]
    dcm = _shared_ok(cli, tmp_path / "r", _source(tmp_path / "r", HD, lambda ds: _palette(ds, ramp)))
    pal = _read(dcm).OpticalPathSequence[0].PaletteColorLookupTableSequence[0]
    for name, vals in zip(("Red", "Green", "Blue"), ramp):
        kept = np.frombuffer(pal[f"{name}PaletteColorLookupTableData"].value, "<u2").astype(np.int64)
        assert np.abs(kept - vals).max() <= 1
