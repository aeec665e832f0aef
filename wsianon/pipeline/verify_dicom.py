"""Verification of DICOM-route outputs, independent of the de-identification engine.

It re-reads every output with pydicom (and the source with pydicom or tifffile), and judges the
result against the resolved Annex E profile (the rule DATA, not the engine's code):

* ``dicom: profile`` — every element of every output, recursively: no private tags, no 50xx/60xx
  groups, X attributes absent, Z attributes empty, no value of a removed/blanked/dummied/cleaned
  source field left in any element, UIDs replaced;
* ``dicom: record`` — PatientIdentityRemoved, DeidentificationMethodCodeSequence (113100),
  LongitudinalTemporalInformationModified, a De-identifying Equipment (DCM 109104) item;
* ``dicom: images`` — no LABEL (unless our blank one), no OVERVIEW unless --macro keep (then flagged);
* ``dicom: uids`` — one Study/Series/FrameOfReference UID for the slide, unique SOP Instance UIDs;
* ``dicom: frames`` — every frame equals the source frame (DICOM inputs) or the source tile
  bitstream (tiled TIFF sources; JPEG compared by tables and entropy-coded data, since the DICOM
  frame carries the shared JPEGTables and colour-space markers inline);
* ``dicom: dciodvfy`` — no errors (for DICOM inputs: no error the source instance did not have);
* ``dicom: opens`` — wsidicom opens the folder, OpenSlide opens the instances as DICOM.

No identifying value is ever put into a check's detail.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import subprocess
import warnings
from collections import Counter
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from wsianon.converters.base import Inventory
from wsianon.pipeline.model import Verdict
from wsianon.profiles.dicom import DicomProfile, profile_for_policy

REGISTRY = "1.2.840.10008."
JPEG_TIFF_CODECS = {7, 6}
J2K_TIFF_CODECS = {33003, 33005, 34712, 34713}
IDENTITY_KWS = {"PatientID", "PatientName", "ContainerIdentifier", "SpecimenIdentifier"}


def _read(path: Path, pixels: bool = False) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, stop_before_pixels=not pixels)


def _kind(ds: Dataset) -> str:
    it = ds.get("ImageType")
    try:
        return str(list(it)[2]).upper()
    except Exception:
        return ""


# ---------------------------------------------------------------------------
# frames


def _pixel_value_offset(path: Path) -> tuple[Dataset, int | None, int]:
    """(header, file offset of Pixel Data's value, its length or 0xFFFFFFFF)."""
    with open(path, "rb") as fh, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(fh, stop_before_pixels=True)
        off = fh.tell()
        fh.seek(off)
        head = fh.read(12)
    if len(head) < 8 or struct.unpack("<HH", head[:4]) != (0x7FE0, 0x0010):
        return ds, None, 0
    implicit = str(ds.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2"
    if implicit:
        return ds, off + 8, struct.unpack("<I", head[4:8])[0]
    return ds, off + 12, struct.unpack("<I", head[8:12])[0]


def iter_frames(path: Path):
    """Yield every frame's bytes of an instance, reading one frame at a time."""
    ds, voff, length = _pixel_value_offset(path)
    if voff is None:
        return
    n = int(ds.get("NumberOfFrames", 1) or 1)
    with open(path, "rb") as fh:
        fh.seek(voff)
        if length == 0xFFFFFFFF:
            eot = None
            if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
                eot = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
            yield from pydicom.encaps.generate_frames(fh, number_of_frames=n, extended_offsets=eot)
        else:
            spp = int(ds.get("SamplesPerPixel", 1))
            size = int(ds.Rows) * int(ds.Columns) * spp * int(ds.BitsAllocated) // 8
            for _ in range(n):
                yield fh.read(size)


def _jpeg_parts(b: bytes) -> tuple[list[bytes], bytes] | None:
    """(DQT/DHT segments, entropy-coded data after SOS) of a JPEG; None if not a JPEG."""
    if b[:2] != b"\xff\xd8":
        return None
    tables: list[bytes] = []
    i = 2
    while i + 4 <= len(b):
        if b[i] != 0xFF:
            return None
        m = b[i + 1]
        if m == 0xD9:
            break
        if m == 0xFF:
            i += 1
            continue
        (ln,) = struct.unpack(">H", b[i + 2 : i + 4])
        seg = b[i : i + 2 + ln]
        if m in (0xDB, 0xC4):
            tables.append(seg)
        if m == 0xDA:
            return tables, b[i + 2 + ln :]
        i += 2 + ln
    return tables, b""


def _jpeg_header(b) -> tuple[list[bytes], int] | None:
    """(DQT/DHT segments, offset of the entropy-coded data) from a JPEG's first bytes; None if
    not a JPEG or no SOS within ``b``."""
    if bytes(b[:2]) != b"\xff\xd8":
        return None
    tables: list[bytes] = []
    i = 2
    n = len(b)
    while i + 4 <= n:
        if b[i] != 0xFF:
            return None
        m = b[i + 1]
        if m == 0xFF:
            i += 1
            continue
        if m == 0xD9:
            return None
        ln = (b[i + 2] << 8) | b[i + 3]
        if m in (0xDB, 0xC4):
            tables.append(bytes(b[i : i + 2 + ln]))
        if m == 0xDA:
            return tables, i + 2 + ln
        i += 2 + ln
    return None


def _split_tables(segs: list[bytes]) -> Counter:
    """Individual DQT/DHT tables (a segment may hold several)."""
    out: Counter = Counter()
    for seg in segs:
        body = seg[4:]
        if seg[1] == 0xDB:
            j = 0
            while j < len(body):
                size = 65 if body[j] >> 4 == 0 else 129
                out[b"Q" + body[j : j + size]] += 1
                j += size
        else:
            j = 0
            while j + 17 <= len(body):
                n = sum(body[j + 1 : j + 17])
                out[b"H" + body[j : j + 17 + n]] += 1
                j += 17 + n
    return out


def same_bitstream(tile: bytes, tables: bytes | None, frame: bytes, cache: dict | None = None) -> bool:
    """A DICOM frame carries the same compressed image as a TIFF tile (+ shared JPEGTables):
    identical bytes, or (JPEG) identical entropy-coded data and every source table present.
    ``cache`` remembers table checks per distinct header pair (tiles of a level share them)."""
    if frame == tile or (len(tile) % 2 and frame == tile + b"\x00"):  # fragments are padded to even length
        return True
    a, b = _jpeg_parts(tile), _jpeg_parts(frame)
    if a is None or b is None:
        return False
    if not a[1] or not (b[1] == a[1] or (len(b[1]) == len(a[1]) + 1 and b[1] == a[1] + b"\x00")):
        return False
    key = (b"".join(a[0]), b"".join(b[0]))
    if cache is not None and key in cache:
        return cache[key]
    tsegs = list(a[0])
    if tables:
        t = _jpeg_parts(tables + b"\xff\xda\x00\x02")  # tables-only stream: fake SOS to stop
        if t is not None:
            tsegs += t[0]
    need, have = _split_tables(tsegs), _split_tables(b[0])
    ok = all(have[k] >= 1 for k in need)
    if cache is not None:
        cache[key] = ok
    return ok


def _fragments(fd: int, path: Path, ds: Dataset) -> list[tuple[int, int]] | None:
    """(offset, length) of each frame's single fragment in an encapsulated instance (item headers
    read only), or None when the layout is not one fragment per frame (callers fall back to pydicom)."""
    with open(path, "rb") as fh, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmread(fh, stop_before_pixels=True)
        off = fh.tell()
    head = os.pread(fd, 12, off)
    if len(head) < 12 or struct.unpack_from("<HH", head) != (0x7FE0, 0x0010) or struct.unpack_from("<I", head, 8)[0] != 0xFFFFFFFF:
        return None
    pos = off + 12
    g, e, ln = struct.unpack("<HHI", os.pread(fd, 8, pos))  # basic offset table item
    if (g, e) != (0xFFFE, 0xE000):
        return None
    pos += 8 + ln
    out = []
    size = os.fstat(fd).st_size
    while pos + 8 <= size:
        g, e, ln = struct.unpack("<HHI", os.pread(fd, 8, pos))
        if (g, e) == (0xFFFE, 0xE0DD):
            break
        if (g, e) != (0xFFFE, 0xE000):
            return None
        out.append((pos + 8, ln))
        pos += 8 + ln
    n = int(ds.get("NumberOfFrames", 1) or 1)
    return out if len(out) == n else None


def _same_mv(tv: bytes, fv: bytes, tables: bytes | None, cache: dict) -> bool:
    """``same_bitstream`` with the headers parsed in place and table checks cached."""
    lt, lf = len(tv), len(fv)
    if fv == tv or (lf == lt + 1 and lt % 2 and fv[lt] == 0 and fv.startswith(tv)):
        return True
    a = _jpeg_header(tv[: min(lt, 65536)])
    b = _jpeg_header(fv[: min(lf, 65536)])
    if a is None or b is None:
        return same_bitstream(bytes(tv), tables, bytes(fv), cache)
    n = lt - a[1]
    m = lf - b[1]
    if n <= 0 or not (m == n or (m == n + 1 and fv[-1] == 0)):
        return False
    if fv.find(tv[a[1]:], b[1], b[1] + n) != b[1]:  # entropy-coded data identical
        return False
    key = (b"".join(a[0]), b"".join(b[0]))
    if key not in cache:
        tsegs = list(a[0])
        if tables:
            t = _jpeg_parts(tables + b"\xff\xda\x00\x02")
            if t is not None:
                tsegs += t[0]
        need, have = _split_tables(tsegs), _split_tables(b[0])
        cache[key] = all(have[k] >= 1 for k in need)
    return cache[key]


def _tile_reader(source: Path):
    import tifffile

    tf = tifffile.TiffFile(source)
    pages = []
    for i, p in enumerate(tf.pages):
        if p.is_tiled:
            pages.append((p.imagewidth, p.imagelength, i, p))
    return tf, pages


def _check_frames_tiff(source: Path, outputs: list[tuple[Path, Dataset]], verdict: Verdict) -> None:
    try:
        tf, pages = _tile_reader(source)
    except Exception as exc:
        verdict.add("dicom: frames", True, f"not comparable: the source is not a TIFF ({type(exc).__name__}); frames checked by opening only")
        return
    try:
        volumes = [(p, ds) for p, ds in outputs if _kind(ds) == "VOLUME"]
        checked = frames = 0
        problems: list[str] = []
        for path, ds in volumes:
            size = (int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows))
            match = [pg for pg in pages if (pg[0], pg[1]) == size]
            if not match:
                problems.append(f"{path.name}: no source level of the same size")
                continue
            page = match[0][3]
            codec = int(page.compression)
            if codec not in JPEG_TIFF_CODECS | J2K_TIFF_CODECS:
                verdict.add("dicom: frames", True, f"{path.name}: source codec {codec} is transcoded by design; not byte-comparable")
                continue
            if (int(page.tilewidth), int(page.tilelength)) != (int(ds.Columns), int(ds.Rows)):
                problems.append(f"{path.name}: tile size differs from the source (re-tiled)")
                continue
            tables = getattr(page, "jpegtables", None)
            cache: dict = {}
            n = 0
            with open(path, "rb") as fo, open(source, "rb") as fs:
                fdo, fds = fo.fileno(), fs.fileno()
                frags = _fragments(fdo, path, ds)
                offs, cnts = page.dataoffsets, page.databytecounts
                if frags is None:  # not one fragment per frame: pydicom assembles the frames
                    frames_iter = iter_frames(path)
                else:
                    frames_iter = (os.pread(fdo, ln, o) for o, ln in frags)
                for k, fv in enumerate(frames_iter):
                    if k >= len(offs):
                        problems.append(f"{path.name}: more frames than source tiles")
                        break
                    if not _same_mv(os.pread(fds, cnts[k], offs[k]), fv, tables, cache):
                        problems.append(f"{path.name}: frame {k} differs from source tile {k}")
                        break
                    n += 1
            if n != len(page.dataoffsets) and not problems:
                problems.append(f"{path.name}: {n} frames for {len(page.dataoffsets)} source tiles")
            checked += 1
            frames += n
        if problems:
            verdict.add("dicom: frames", False, "; ".join(problems[:5]))
        elif checked:
            verdict.add("dicom: frames", True, f"{frames} frames of {checked} levels equal the source tile bitstreams")
        elif not volumes:
            verdict.add("dicom: frames", False, "no VOLUME instance in the output")
    finally:
        tf.close()


def _frame_key(ds: Dataset) -> tuple:
    return (_kind(ds), int(ds.get("TotalPixelMatrixColumns", 0) or 0), int(ds.get("TotalPixelMatrixRows", 0) or 0),
            int(ds.get("NumberOfFrames", 1) or 1), int(ds.get("Rows", 0)), int(ds.get("Columns", 0)),
            str(ds.file_meta.get("TransferSyntaxUID", "")))


def _digest_frames(path: Path) -> list[bytes]:
    return [hashlib.sha256(f).digest() for f in iter_frames(path)]


def _check_frames_dicom(sources: list[Path], outputs: list[tuple[Path, Dataset]], verdict: Verdict) -> None:
    by_key: dict[tuple, list[Path]] = {}
    for s in sources:
        try:
            by_key.setdefault(_frame_key(_read(s)), []).append(s)
        except Exception:
            continue
    problems, frames = [], 0
    for path, ds in outputs:
        cands = by_key.get(_frame_key(ds), [])
        out_d = _digest_frames(path)
        if not any(_digest_frames(c) == out_d for c in cands):
            problems.append(f"{path.name}: no source instance with identical frames")
        frames += len(out_d)
    if problems:
        verdict.add("dicom: frames", False, "; ".join(problems[:5]))
    else:
        verdict.add("dicom: frames", True, f"{frames} frames in {len(outputs)} instances identical to the source frames")


# ---------------------------------------------------------------------------
# profile walk


def _values(elem) -> list[str]:
    v = elem.value
    if v is None or isinstance(v, (bytes, bytearray)):
        return []
    vals = list(v) if elem.VM > 1 else [v]
    return [str(x).strip() for x in vals if str(x).strip()]


def _is_deid_item(item: Dataset) -> bool:
    for p in item.get("PurposeOfReferenceCodeSequence") or []:
        if str(p.get("CodeValue", "")) == "109104":
            return True
    return False


def walk_profile(ds: Dataset, profile: DicomProfile, source_values: set[str], source_uids: set[str], problems: list[str],
                 path: tuple[str, ...] = ()) -> int:
    n = 0
    for elem in ds:
        n += 1
        tag = elem.tag
        kw = elem.keyword or f"({tag.group:04X},{tag.element:04X})"
        name = "/".join(path + (kw,))
        if tag.group % 2 == 1:
            problems.append(f"private tag {name}")
            continue
        if 0x5000 <= tag.group <= 0x60FF and (tag.group & 0xFF00) in (0x5000, 0x6000):
            problems.append(f"curve/overlay element {name}")
            continue
        action, _rule = profile.action(int(tag), path, elem.keyword or "")
        if elem.VR == "SQ":
            if action == "X" and not (kw == "ContributingEquipmentSequence" and path == ()):
                problems.append(f"{name} present (profile: remove)")
            if action == "Z" and len(elem.value):
                problems.append(f"{name} has items (profile: empty)")
            for item in elem.value:
                if kw == "ContributingEquipmentSequence" and _is_deid_item(item):
                    continue
                n += walk_profile(item, profile, source_values, source_uids, problems, path + (kw,))
            continue
        vals = _values(elem)
        if action == "K":
            continue
        if action == "X":
            problems.append(f"{name} present (profile: remove)")
            continue
        if action == "Z" and vals and elem.keyword not in IDENTITY_KWS:
            problems.append(f"{name} not empty (profile: empty)")
        if action == "U":
            for v in vals:
                if v in source_uids or not (v.startswith("2.25.") or v.startswith(REGISTRY)):
                    problems.append(f"{name} UID not replaced")
        for v in vals:
            if v in source_values:
                problems.append(f"{name} still holds a source value")
                break
    return n


# ---------------------------------------------------------------------------
# dciodvfy


class _Dciodvfy:
    """dciodvfy started in the background (it runs while the frames are compared)."""

    def __init__(self, path: Path):
        exe = shutil.which("dciodvfy")
        self.proc = None
        if exe is not None:
            try:
                self.proc = subprocess.Popen([exe, "-new", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            except OSError:
                self.proc = None

    def errors(self) -> list[str]:
        if self.proc is None:
            return ["dciodvfy could not run"]
        try:
            out, _ = self.proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            return ["dciodvfy timed out"]
        return _parse_dciodvfy(out)


def _dciodvfy_errors(path: Path) -> list[str] | None:
    if shutil.which("dciodvfy") is None:
        return None
    return _Dciodvfy(path).errors()


def _parse_dciodvfy(out: bytes) -> list[str]:
    text = out.decode("latin-1", "replace")
    errs = []
    for line in text.splitlines():
        if line.startswith("Error"):
            # values appear in <...>: drop them so nothing identifying reaches a report
            line = re.sub(r"<[^>]*>", "<>", line)
            line = re.sub(r"\[\d+\]", "", line)
            errs.append(line.strip())
    return errs


def _check_dciodvfy(outputs: list[Path], sources: list[Path] | None, verdict: Verdict, started: dict | None = None) -> None:
    if shutil.which("dciodvfy") is None:
        verdict.add("dicom: dciodvfy", True, "skipped: dciodvfy (dicom3tools) is not installed")
        return
    baseline: set[str] | None = None
    if sources:
        baseline = set()
        for s in sources:
            baseline |= set(_dciodvfy_errors(s) or [])
    bad: list[str] = []
    for f in outputs:
        errs = (started[f].errors() if started and f in started else _dciodvfy_errors(f)) or []
        new = [e for e in errs if baseline is None or e not in baseline]
        if new:
            first = new[0].split(" - ")[1] if " - " in new[0] else new[0]
            bad.append(f"{f.name}: {len(new)} error(s), e.g. {first[:120]}")
    if bad:
        verdict.add("dicom: dciodvfy", False, "; ".join(bad[:5]))
    else:
        what = "no errors" if baseline is None else "no errors beyond the source's own"
        verdict.add("dicom: dciodvfy", True, f"{len(outputs)} instances: {what}")


# ---------------------------------------------------------------------------
# readers


def _check_opens(outputs: list[Path], verdict: Verdict, sources: list[Path] | None) -> None:
    folder = outputs[0].parent
    try:
        from wsidicom import WsiDicom

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with WsiDicom.open(folder) as w:
                w.read_tile(0, (0, 0))
        verdict.add("dicom: opens with wsidicom", True, "")
    except Exception as exc:
        src_ok = _source_opens_wsidicom(sources) if sources else True
        verdict.add("dicom: opens with wsidicom", not src_ok, f"{type(exc).__name__}" + ("" if src_ok else " (the source does not open either)"))
    try:
        import openslide

        vol = next((p for p in outputs if _kind(_read(p)) == "VOLUME"), outputs[0])
        with openslide.OpenSlide(str(vol)) as s:
            vendor = s.properties.get("openslide.vendor")
            ok = vendor == "dicom" and s.level_count >= 1
            s.read_region((0, 0), s.level_count - 1, (16, 16))
            assoc = sorted(s.associated_images.keys())
        bad = [a for a in assoc if a in ("label", "macro")]
        verdict.add("dicom: opens with OpenSlide", ok and not bad, f"vendor {vendor}, associated images {assoc}")
    except Exception as exc:
        src_ok = True
        if sources:
            try:
                import openslide

                with openslide.OpenSlide(str(sources[0])):
                    pass
            except Exception:
                src_ok = False
        verdict.add("dicom: opens with OpenSlide", not src_ok, f"{type(exc).__name__}" + ("" if src_ok else " (the source does not open either)"))


def _source_opens_wsidicom(sources: list[Path]) -> bool:
    import tempfile

    try:
        from wsidicom import WsiDicom

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with WsiDicom.open(sources) as w:
                w.read_tile(0, (0, 0))
        return True
    except Exception:
        return False


# ---------------------------------------------------------------------------
# entry points


def _check_record_and_images(dsets: list[tuple[Path, Dataset]], policy, verdict: Verdict) -> None:
    rec_bad, img_bad = [], []
    for path, ds in dsets:
        codes = {str(i.get("CodeValue", "")) for i in ds.get("DeidentificationMethodCodeSequence") or []}
        if str(ds.get("PatientIdentityRemoved", "")) != "YES" or "113100" not in codes:
            rec_bad.append(f"{path.name}: PatientIdentityRemoved/DeidentificationMethodCodeSequence")
        if not str(ds.get("LongitudinalTemporalInformationModified", "")):
            rec_bad.append(f"{path.name}: LongitudinalTemporalInformationModified")
        if not any(_is_deid_item(i) for i in ds.get("ContributingEquipmentSequence") or []):
            rec_bad.append(f"{path.name}: no De-identifying Equipment (109104) item")
        kind = _kind(ds)
        if kind == "LABEL" and not (policy is not None and policy.label == "blank" and str(ds.get("BurnedInAnnotation")) == "NO"):
            img_bad.append(f"{path.name}: LABEL instance")
        if kind == "OVERVIEW":
            if policy is None or policy.macro != "keep":
                img_bad.append(f"{path.name}: OVERVIEW instance")
            elif str(ds.get("BurnedInAnnotation")) != "YES":
                img_bad.append(f"{path.name}: kept OVERVIEW not flagged BurnedInAnnotation YES")
            elif "113101" in codes:
                img_bad.append(f"{path.name}: kept OVERVIEW claims Clean Pixel Data")
    verdict.add("dicom: record", not rec_bad, "; ".join(rec_bad[:5]) or f"{len(dsets)} instances record the de-identification")
    verdict.add("dicom: images", not img_bad, "; ".join(img_bad[:5]) or "no label or overview instance (unless asked)")


def _check_uids(dsets: list[tuple[Path, Dataset]], verdict: Verdict, sources: list[Path] | None = None) -> None:
    bad = []
    src = [_read(s) for s in sources] if sources else []
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PatientID"):
        vals = {str(ds.get(kw, "")) for _p, ds in dsets}
        allowed = max(1, len({str(ds.get(kw, "")) for ds in src})) if kw == "FrameOfReferenceUID" else 1
        if len(vals) > allowed:  # a DICOM source with several frames of reference keeps that many
            bad.append(f"{kw} differs between instances")
    pyr = {str(ds.get("PyramidUID", "")) for _p, ds in dsets if _kind(ds) == "VOLUME"}
    if len(pyr) > 1:
        bad.append("PyramidUID differs between levels")
    sops = [str(ds.SOPInstanceUID) for _p, ds in dsets]
    if len(set(sops)) != len(sops):
        bad.append("SOPInstanceUID repeated")
    for p, ds in dsets:
        if str(ds.file_meta.get("MediaStorageSOPInstanceUID", "")) != str(ds.SOPInstanceUID):
            bad.append(f"{p.name}: MediaStorageSOPInstanceUID differs from SOPInstanceUID")
    verdict.add("dicom: uids", not bad, "; ".join(bad[:5]) or "one study/series/frame of reference; unique instances")


def verify_dicom_output(inv: Inventory, result_files: list[Path], ctx, verdict: Verdict, source_frames=None) -> None:
    """Add the DICOM checks for one slide's outputs to ``verdict`` (see module doc)."""
    files = [Path(f) for f in result_files]
    if not files:
        verdict.add("dicom: outputs", False, "no instance written")
        return
    policy = getattr(ctx, "policy", None)
    profile = profile_for_policy(policy) if policy is not None else DicomProfile()
    dsets = []
    for f in files:
        try:
            dsets.append((f, _read(f)))
        except Exception as exc:
            verdict.add("dicom: readable", False, f"{f.name}: {type(exc).__name__}")
            return
    verdict.add("dicom: readable", True, f"{len(files)} instances")
    started = {f: _Dciodvfy(f) for f in files} if shutil.which("dciodvfy") else None
    source_values = {f.value.strip() for f in inv.fields if f.action != "keep" and f.value and f.value.strip()}
    source_uids = set()
    if inv.format == "dicom":
        for s in inv.input_files:
            try:
                for e in _read(Path(s)).iterall():
                    if e.VR == "UI":
                        source_uids.update(v for v in _values(e) if not v.startswith(REGISTRY))
            except Exception:
                continue
    problems: list[str] = []
    n = 0
    for f, ds in dsets:
        n += walk_profile(ds, profile, source_values, source_uids, problems)
        for kw in ("SourceApplicationEntityTitle", "PrivateInformation"):
            if kw in ds.file_meta:
                problems.append(f"file meta {kw}")
    verdict.add("dicom: profile", not problems, "; ".join(sorted(set(problems))[:8]) or f"{n} elements conform to the resolved profile")
    _check_record_and_images(dsets, policy, verdict)
    _check_uids(dsets, verdict, [Path(s) for s in inv.input_files] if inv.format == "dicom" else None)
    if inv.format == "dicom":
        _check_frames_dicom([Path(s) for s in inv.input_files], dsets, verdict)
        sources = [Path(s) for s in inv.input_files]
    else:
        _check_frames_tiff(Path(inv.path), dsets, verdict)
        sources = None
    _check_dciodvfy(files, sources, verdict, started)
    _check_opens(files, verdict, sources)


def audit_dicom(inv: Inventory, files: list[Path], verdict: Verdict) -> None:
    """Check already-anonymized DICOM files (``wsianon verify``): no source to compare with."""
    from wsianon.profiles.policy import Policy

    files = [Path(f) for f in files]
    dsets = [(f, _read(f)) for f in files]
    problems: list[str] = []
    for _f, ds in dsets:
        walk_profile(ds, DicomProfile(), set(), set(), problems)
    # without the source, dates/dummies cannot be judged; private tags, X and Z can
    verdict.add("dicom: profile", not problems, "; ".join(sorted(set(problems))[:8]) or "conforms to the Basic Profile")
    _check_record_and_images(dsets, Policy(), verdict)
    _check_uids(dsets, verdict)
    _check_dciodvfy(files, None, verdict)
    _check_opens(files, verdict, None)
