"""wsianon against peer de-identifiers on the same slides: what each leaves in its outputs.

    python benchmarks/bench_peers.py [--peers-venv .venv-peers] [--only svs,dicom,...] [--workdir DIR] [--json FILE]

``make bench-peers`` builds ``.venv-peers`` (PathSafe, dicognito and deid from PyPI, beside
wsianon's own environment, never inside it) and runs this.  EMPAIA wsi-anon (C) and ImageDePHI are
not on PyPI: ``--wsi-anon PATH`` (its console program, built from its sources) and ``--imagedephi
CHECKOUT`` (a source checkout, its dependencies installed in the peers' environment) add them.  A
peer that is not there is reported as such; wsianon always runs.  ``--fields-only``: the same
slides without the hidden tokens.

The slides are the test suite's fixture generators (``tests/fixtures``), one per format, each with
a canary in every identifying field a redactor of that format is expected to know ("fields": the
Aperio ImageDescription keys, NDPI tags and properties, Philips/BIF/SCN XML attributes, MRXS
Slidedat.ini keys, DICOM patient/study attributes) and tokens planted where list-based redactors
do not look ("hidden": EXIF and GPS IFDs, an ICC profile's text, private BYTE/UNDEFINED/UTF-16
tags, another tool's orphaned XML with a base64 label, an unlinked IFD, bytes after the last
structure; MRXS: an unknown Slidedat.ini key, section and key name, Data and Index bytes no record
references; DICOM: text in nested sequences, issuers, a code's meaning, a private block, the
preamble, an ICC profile, a COM segment in every JPEG frame).  Every tool gets its own copy of the
inputs.  Its outputs are then judged the same way for every tool: every output byte searched for
every canary and token (ASCII, UTF-16 and base64 forms: ``wsianon.io.scan``, the same search
``wsianon verify`` uses for values it is given), and the label / macro images still in them
counted (OpenSlide's associated images; DICOM LABEL and OVERVIEW instances), and whether the
output still opens (OpenSlide; pydicom).  "claims clean": the tool exited 0 (PathSafe verifies its
outputs by default and exits non-zero when it finds something; wsianon: the slide verified).
"wsianon verify passes / fails": what ``wsianon verify`` (no source, no canaries: structure and
vocabulary only) says of that tool's outputs — an auditor's view of any tool's work.

Not a test: nothing here is asserted.  The search knows the planted values, which wsianon's own
verification never relies on; it is the yardstick for all tools alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import project_key, wsianon_cmd  # noqa: E402

SHARED = ROOT.parent / "shared" / "testdata"
FORMATS = ("svs", "gt450", "ndpi", "bif", "philips", "scn", "mrxs", "dicom", "dicom-planted")
TIFF_EXT = {".svs", ".ndpi", ".bif", ".tiff", ".tif", ".scn", ".mrxs"}
DICOM_PREAMBLE = "BNCHPREAMBLE4471"
DICOM_FRAME_COM = "BNCHFRAMECOM9932"


class Case:
    def __init__(self, name: str, fmt: str, inputs: list[Path], fields: dict[str, str], hidden: dict[str, str], images: int):
        self.name, self.fmt, self.inputs, self.fields, self.hidden, self.images = name, fmt, inputs, fields, hidden, images


# --- the slides ------------------------------------------------------------------------------


def _tiff_case(folder: Path, fmt: str, plant: bool = True) -> Case:
    from tests.fixtures.bif_gen import identifying_values, make_bif
    from tests.fixtures.ndpi_gen import make_ndpi_info
    from tests.fixtures.philips_gen import make_philips
    from tests.fixtures.plant import plant_tiff
    from tests.fixtures.scn_gen import make_scn
    from tests.fixtures.svs_gen import write_svs

    clean = folder / "clean"
    clean.mkdir(parents=True)
    ifd = 0
    if fmt in ("svs", "gt450"):
        fx = write_svs(clean / "slide.svs", bigtiff=fmt == "gt450", gt450=fmt == "gt450")
        src, fields = fx.path, dict(fx.canaries)
    elif fmt == "ndpi":
        info = make_ndpi_info(clean / "slide.ndpi")
        src, fields = info.path, dict(info.canaries)
    elif fmt == "bif":
        bif = make_bif(clean / "slide.bif")
        src, fields, ifd = bif.path, {f"value{i}": v for i, v in enumerate(identifying_values(bif))}, -1
    elif fmt == "philips":
        ph = make_philips(clean / "slide.tiff")
        src, fields = ph.path, ph.text_canaries()
    else:
        scn = make_scn(clean / "slide.scn")
        src, fields, ifd = scn.path, scn.text_canaries(), -1
    dest = folder / "in" / src.name
    dest.parent.mkdir()
    if not plant:
        shutil.copy2(src, dest)
        return Case(fmt, fmt, [dest], fields, {}, images=2)
    hidden = plant_tiff(src, dest, ifd=ifd)
    return Case(fmt, fmt, [dest], fields, hidden, images=2)


def _mrxs_case(folder: Path, plant: bool = True) -> Case:
    from tests.fixtures.mrxs_gen import make_mrxs, text_canaries
    from tests.fixtures.plant import plant_mrxs

    info = make_mrxs(folder / "in", "slide")
    hidden = plant_mrxs(info.folder.parent, info.folder.name) if plant else {}
    return Case("mrxs", "mrxs", [info.mrxs, info.folder], text_canaries(info), hidden, images=2)


def _with_frame_comments(path: Path, text: str) -> None:
    """A COM segment after SOI in every JPEG frame of an encapsulated instance."""
    import pydicom
    from pydicom.encaps import encapsulate, generate_frames

    ds = pydicom.dcmread(path)
    if not ds.file_meta.TransferSyntaxUID.is_compressed:
        return
    com = b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text.encode()
    frames = [f[:2] + com + f[2:] for f in generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1)))]
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path, enforce_file_format=True)


def _dicom_case(folder: Path, plant: bool = True) -> Case:
    """wsidicomizer's conversion of the SVS fixture, label and overview included, with the patient
    and study attributes set to canaries (``tests/fixtures/dicom_gen``) and a COM in every frame."""
    import pydicom

    from tests.fixtures.dicom_gen import make_dicom

    fx = make_dicom(folder / "in" / "slide")
    for f in fx.files:
        if plant and "VOLUME" in list(pydicom.dcmread(f, stop_before_pixels=True).ImageType):
            _with_frame_comments(f, DICOM_FRAME_COM)
    return Case("dicom", "dicom", [fx.path], dict(fx.canaries), {"frame-com": DICOM_FRAME_COM} if plant else {}, images=2)


def _dicom_planted_case(folder: Path, plant: bool = True) -> Case | None:
    """highdicom's real VL WSI test image as VOLUME + LABEL with identifiers in every place of
    ``tests/fixtures/dicom_plant`` (nested sequences, issuers, a code's meaning, a private block,
    LabelText), plus the preamble and the optical path's ICC profile."""
    import pydicom

    from tests.fixtures.dicom_gen import CANARIES
    from tests.fixtures.dicom_plant import PLACES, token, write_planted
    from tests.fixtures.dicom_redteam import TOKEN, plant_icc

    src = SHARED / "dicom" / "highdicom_sm_image.dcm"
    if not src.exists():
        return None
    paths = write_planted(src, folder / "in" / "slide", planted=plant)
    for p in paths:
        ds = pydicom.dcmread(p)
        for kw, value in CANARIES.items():
            setattr(ds, kw, value)
        if plant and p.name == "volume.dcm":
            ds.preamble = DICOM_PREAMBLE.encode().ljust(128, b"\0")
            op = ds.OpticalPathSequence[0]
            if "ICCProfile" in op:
                op.ICCProfile = plant_icc(bytes(op.ICCProfile))
        ds.save_as(p, enforce_file_format=True)
    hidden = {place: token(place) for place in PLACES}
    hidden.update(preamble=DICOM_PREAMBLE, icc=TOKEN)
    if not plant:
        hidden = {}
    return Case("dicom-planted", "dicom", [paths[0].parent], dict(CANARIES), hidden, images=1)


def build(fmt: str, folder: Path, plant: bool = True) -> Case | None:
    """``plant=False``: the same slide with its field canaries only (no hidden tokens)."""
    folder.mkdir(parents=True)
    if fmt == "mrxs":
        return _mrxs_case(folder, plant)
    if fmt == "dicom":
        return _dicom_case(folder, plant)
    if fmt == "dicom-planted":
        return _dicom_planted_case(folder, plant)
    return _tiff_case(folder, fmt, plant)


# --- judging an output -----------------------------------------------------------------------


def _files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file()) if out.exists() else []


def _slide_files(out: Path) -> list[Path]:
    """The outputs that are the slide (not a tool's own report, log or certificate)."""
    skip = ("wsianon-report", "wsianon-certificate", "certificate", "report", ".log", ".csv", ".json", ".pdf", ".html")
    return [p for p in _files(out) if not any(s in p.name for s in skip)]


def found(values: dict[str, str], files: list[Path]) -> list[str]:
    from wsianon.io.scan import Canary, Scanner

    if not values:
        return []
    sc = Scanner([Canary(k, v) for k, v in values.items()])
    hits: set[str] = set()
    for p in files:
        hits.update(f.canary for f in sc.scan_file(p, p.name))
        hits.update(k for k, v in values.items() if len(v) >= 5 and v in p.name)  # a name keeps it too
    return sorted(hits)


def _nonuniform(img) -> bool:
    lo, hi = img.convert("L").getextrema()
    return lo != hi


def _is_dicom(p: Path) -> bool:
    try:
        with open(p, "rb") as fh:
            return fh.read(132)[128:] == b"DICM"
    except OSError:
        return False


def images_left(case: Case, files: list[Path]) -> tuple[int, bool]:
    """(label/macro images left that are not blank, the output opens)."""
    if any(_is_dicom(p) for p in files):
        import pydicom

        left, opened = 0, False
        for p in filter(_is_dicom, files):
            try:
                ds = pydicom.dcmread(p)
            except Exception:
                continue
            opened = True
            kinds = set(ds.get("ImageType", []))
            if kinds & {"LABEL", "OVERVIEW"}:
                try:
                    a = ds.pixel_array
                    left += int(a.min() != a.max())
                except Exception:
                    left += 1
        return left, opened
    import openslide

    mains = [p for p in files if p.suffix.lower() in TIFF_EXT]
    if not mains:
        return 0, False
    try:
        with openslide.OpenSlide(str(mains[0])) as s:
            names = [n for n in s.associated_images if n in ("label", "macro")]
            return sum(_nonuniform(s.associated_images[n]) for n in names), True
    except Exception:
        return 0, False


# --- the tools -------------------------------------------------------------------------------


def _peer_python(venv: Path | None, module: str) -> Path | None:
    if venv is None:
        return None
    py = venv / "bin" / "python"
    if not py.exists():
        return None
    ok = subprocess.run([str(py), "-c", f"import {module}"], capture_output=True).returncode == 0
    return py if ok else None


def _copy_inputs(case: Case, dest: Path) -> list[Path]:
    dest.mkdir(parents=True)
    out = []
    for p in case.inputs:
        q = dest / p.name
        (shutil.copytree if p.is_dir() else shutil.copy2)(p, q)
        out.append(q)
    return out


def run_wsianon(case: Case, work: Path, key: Path, target: str) -> dict:
    inputs = _copy_inputs(case, work / "in")
    out = work / "out"
    cmd = [
        *wsianon_cmd(),
        "run",
        "--target",
        target,
        *[str(p) for p in inputs if not p.is_dir() or case.fmt == "dicom"],
        "-o",
        str(out),
        "--key-file",
        str(key),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    status = None
    try:
        status = [s["status"] for s in json.loads((out / "wsianon-report.json").read_text())["slides"]]
    except (OSError, ValueError, KeyError):
        pass
    shared = [p for p in _files(out) if p.name not in ("wsianon-report.json", "wsianon-report.html", "wsianon-certificate.json", "wsianon-certificate.pdf")]
    return {"rc": r.returncode, "claims_clean": r.returncode == 0 and status == ["ok"], "files": shared, "all_files": _files(out), "note": ""}


def run_pathsafe(case: Case, work: Path, py: Path) -> dict:
    inputs = _copy_inputs(case, work / "in")
    out = work / "out"
    src = inputs[0] if len(inputs) == 1 else work / "in"
    exe = py.parent / "pathsafe"
    r = subprocess.run([str(exe), "deidentify", str(src), "-o", str(out), "--workers", "1"], capture_output=True, text=True, cwd=work)
    files = _slide_files(out)
    return {"rc": r.returncode, "claims_clean": r.returncode == 0 and bool(files), "files": files, "all_files": _files(out), "note": ""}


def run_dicognito(case: Case, work: Path, py: Path) -> dict:
    inputs = _copy_inputs(case, work / "in")
    out = work / "out"
    r = subprocess.run(
        [str(py), "-m", "dicognito", "--output-directory", str(out), "--quiet", *[str(p) for p in inputs]], capture_output=True, text=True, cwd=work
    )
    files = _files(out)
    return {"rc": r.returncode, "claims_clean": r.returncode == 0 and bool(files), "files": files, "all_files": files, "note": ""}


def run_deid(case: Case, work: Path, py: Path) -> dict:
    inputs = _copy_inputs(case, work / "in")
    out = work / "out"
    out.mkdir()
    exe = py.parent / "deid"
    r = subprocess.run(
        [str(exe), "--quiet", "--outfolder", str(out), "identifiers", "--action", "all", "--input", str(inputs[0])], capture_output=True, text=True, cwd=work
    )
    files = _files(out)
    return {"rc": r.returncode, "claims_clean": r.returncode == 0 and bool(files), "files": files, "all_files": files, "note": ""}


def run_wsi_anon(case: Case, work: Path, exe: Path) -> dict:
    """EMPAIA wsi-anon's console program: writes ``<name>.<ext>`` (and an MRXS folder) beside the
    input; those new files are its outputs."""
    inputs = _copy_inputs(case, work / "in")
    before = set(_files(work / "in"))
    r = subprocess.run([str(exe), str(inputs[0]), "-n", "anonslide"], capture_output=True, text=True, cwd=work / "in")
    files = [p for p in _files(work / "in") if p not in before]
    return {"rc": r.returncode, "claims_clean": r.returncode == 0 and bool(files), "files": files, "all_files": files, "note": ""}


def run_imagedephi(case: Case, work: Path, py: Path, src: Path) -> dict:
    """ImageDePHI (a source checkout on PYTHONPATH, its dependencies in the peers' environment),
    default profile: its ``Redacted_*`` folder holds what it redacted; ``Failed_*`` what it could not
    (not counted as output)."""
    inputs = _copy_inputs(case, work / "in")
    out = work / "out"
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=str(src))
    code = "from imagedephi.main import imagedephi; imagedephi()"
    target = inputs[0] if len(inputs) == 1 and inputs[0].is_file() else work / "in"
    recursive = ["-r"] if target.is_dir() else []  # -r with a file finds nothing
    r = subprocess.run([str(py), "-c", code, "run", *recursive, str(target), "-o", str(out)], capture_output=True, text=True, cwd=work, env=env)
    everything = _files(out)
    files = [p for p in everything if any(part.startswith("Redacted_") for part in p.relative_to(out).parts[:-1])]
    failed = any(part.startswith("Failed_") and not part.endswith(".yaml") for p in everything for part in p.relative_to(out).parts[:-1])
    note = "put in its Failed folder" if failed else ("" if files else "found no image it takes")
    return {"rc": r.returncode, "claims_clean": r.returncode == 0 and bool(files) and not failed, "files": files, "all_files": everything, "note": note}


def tools(venv: Path | None, wsi_anon: Path | None = None, imagedephi: Path | None = None) -> list[tuple[str, object, set[str]]]:
    """(name, runner or a reason it is absent, formats it takes)."""
    everything = {"svs", "gt450", "ndpi", "bif", "philips", "scn", "mrxs", "dicom"}
    ps = _peer_python(venv, "pathsafe")
    dg = _peer_python(venv, "dicognito")
    di = _peer_python(venv, "deid")
    idp = _peer_python(venv, "tifftools") if imagedephi else None
    absent = f"not installed in {venv}" if venv else "no --peers-venv"
    return [
        ("wsianon native", lambda c, w, k: run_wsianon(c, w, k, "native"), everything),
        ("wsianon dicom", lambda c, w, k: run_wsianon(c, w, k, "dicom"), everything),
        ("PathSafe", (lambda c, w, k: run_pathsafe(c, w, ps)) if ps else absent, everything),
        ("wsi-anon", (lambda c, w, k: run_wsi_anon(c, w, wsi_anon)) if wsi_anon else "no --wsi-anon", everything - {"scn", "dicom"}),
        ("ImageDePHI", (lambda c, w, k: run_imagedephi(c, w, idp, imagedephi)) if idp and imagedephi else "no --imagedephi", everything),
        ("dicognito", (lambda c, w, k: run_dicognito(c, w, dg)) if dg else absent, {"dicom"}),
        ("deid", (lambda c, w, k: run_deid(c, w, di)) if di else absent, {"dicom"}),
    ]


def peer_versions(venv: Path | None) -> dict[str, str]:
    py = _peer_python(venv, "importlib")
    if py is None:
        return {}
    code = "import importlib.metadata as m, json\nv={}\nfor n in ('pathsafe','dicognito','deid'):\n    try: v[n]=m.version(n)\n    except Exception: pass\nprint(json.dumps(v))"
    r = subprocess.run([str(py), "-c", code], capture_output=True, text=True)
    return json.loads(r.stdout or "{}")


def audit(files: list[Path]) -> tuple[str, list[str]]:
    """``wsianon verify`` of a tool's outputs without the source (what an auditor can run on any
    output): ("fails" (exit 1) / "passes" (exit 0) / "error", the names of the checks that failed)."""
    dicom = sorted({p.parent for p in files if _is_dicom(p)})
    mains = [p for p in files if p.suffix.lower() in TIFF_EXT and not _is_dicom(p)]
    paths = [str(p) for p in dicom + mains]
    if not paths:
        return "nothing to audit", []
    r = subprocess.run([*wsianon_cmd(), "verify", "--json", "--allow-generic", *paths], capture_output=True, text=True)
    failed: set[str] = set()
    try:
        for s in json.loads(r.stdout):
            failed.update(c["check"] for c in s.get("checks", []) if not c["ok"])
    except (ValueError, TypeError, KeyError):
        pass
    # a file it cannot judge at all: one line "error: PATH: reason" (the reason is wsianon's wording)
    failed.update("error: " + line.rsplit(": ", 1)[-1] for line in r.stderr.splitlines() if line.startswith("error:"))
    return {0: "passes", 1: "fails"}.get(r.returncode, "error"), sorted(failed)


def judge(case: Case, res: dict) -> dict:
    files = res["files"]
    imgs, opens = images_left(case, files)
    verdict, failed = audit(files)
    return {
        "note": res.get("note", ""),
        "wsianon_verify": verdict,
        "wsianon_verify_failed": failed,
        "claims_clean": res["claims_clean"],
        "rc": res["rc"],
        "outputs": len(files),
        "opens": opens,
        "fields_left": found(case.fields, files),
        "fields_total": len(case.fields),
        "hidden_left": found(case.hidden, files),
        "hidden_total": len(case.hidden),
        "images_left": imgs,
        "images_total": case.images,
        # the tool's own report / certificate / log beside the outputs
        "in_reports": found(case.fields | case.hidden, [p for p in res["all_files"] if p not in files]),
    }


def cell(j: dict | str) -> str:
    if isinstance(j, str):
        return j
    if not j["outputs"]:
        return "no output" + (f" ({j['note']})" if j.get("note") else " (refused)" if j["rc"] else "")
    parts = [
        f"{len(j['fields_left'])}/{j['fields_total']} fields",
        *([f"{len(j['hidden_left'])}/{j['hidden_total']} hidden"] if j["hidden_total"] else []),
        f"{j['images_left']}/{j['images_total']} images" if j["opens"] else "images not checked",
    ]
    if j["in_reports"]:
        parts.append(f"{len(j['in_reports'])} in its report")
    if not j["opens"]:
        parts.append("does not open")
    parts.append("claims clean" if j["claims_clean"] else "flags it")
    parts.append(f"wsianon verify {j['wsianon_verify']}")
    return ", ".join(parts)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peers-venv", type=Path, default=ROOT / ".venv-peers")
    ap.add_argument("--wsi-anon", type=Path, default=None, help="EMPAIA wsi-anon's console program (bin/wsi-anon.out of a build), if you have one")
    ap.add_argument(
        "--imagedephi", type=Path, default=None, help="an ImageDePHI source checkout (its dependencies installed in the peers' environment), if you have one"
    )
    ap.add_argument("--fields-only", action="store_true", help="the slides without the hidden tokens (a canary in every identifying field only)")
    ap.add_argument("--only", default=",".join(FORMATS), help="formats, comma-separated: " + ",".join(FORMATS))
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    venv = a.peers_venv.resolve() if a.peers_venv and a.peers_venv.exists() else None
    wsi_anon = a.wsi_anon.resolve() if a.wsi_anon else None
    idp = a.imagedephi.resolve() if a.imagedephi else None
    root = Path(tempfile.mkdtemp(prefix="bench-peers-", dir=a.workdir))
    key = project_key(root)
    results: dict = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "peers": peer_versions(venv), "cases": {}}
    table = []
    try:
        for fmt in a.only.split(","):
            case = build(fmt, root / "cases" / fmt, plant=not a.fields_only)
            if case is None:
                print(f"{fmt}: skipped (its source sample is not in {SHARED})", flush=True)
                continue
            row: dict = {}
            for name, runner, takes in tools(venv, wsi_anon, idp):
                if case.fmt not in takes:
                    continue
                if isinstance(runner, str):
                    row[name] = runner
                    continue
                work = root / "runs" / fmt / name.replace(" ", "-")
                work.mkdir(parents=True)
                t0 = time.perf_counter()
                try:
                    res = runner(case, work, key)
                    row[name] = judge(case, res)
                    row[name]["seconds"] = round(time.perf_counter() - t0, 2)
                except Exception as exc:  # a peer's crash is a result, not the benchmark's failure
                    row[name] = f"crashed ({type(exc).__name__})"
                print(f"{fmt:14s} {name:15s} {cell(row[name])}", flush=True)
            results["cases"][fmt] = row
            table.append((fmt, row))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    names = [n for n, _r, _t in tools(venv, wsi_anon, idp)]
    print("\n| slide | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for fmt, row in table:
        print(f"| {fmt} | " + " | ".join(cell(row[n]) if n in row else "—" for n in names) + " |")
    if a.json:
        a.json.write_text(json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
