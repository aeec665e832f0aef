"""The format table (wsianon/converters/registry.py): one typed spec per format, every one with its
verification hook said explicitly, in detection order."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

from wsianon.converters import registry
from wsianon.converters.registry import (
    FORMATS,
    SHARED_CHECKS_SUFFICE,
    ClosedWorld,
    DicomRoute,
    DicomVia,
    FormatSpec,
    VerifiedBy,
    build_table,
    spec_of,
)

REPO = Path(__file__).resolve().parent.parent


def _spec(**over) -> dict:
    """The keyword arguments of a valid spec (a copy of Aperio's), with ``over`` applied."""
    base = spec_of("aperio")
    kw = {f.name: getattr(base, f.name) for f in dataclasses.fields(FormatSpec)}
    kw.update(over)
    return kw


def test_every_format_has_a_verification_hook():
    hooks = set()
    for s in FORMATS:
        if isinstance(s.verification, VerifiedBy):
            assert s.hook is None, s.name
            continue
        assert s.hook is s.verification, s.name
        assert s.hook.__name__ == f"wsianon.verify.formats.{s.name}", s.name
        assert callable(s.hook.check), s.name
        hooks.add(s.hook.__name__.rsplit(".", 1)[1])
    # every hook file is some format's hook: none lies unused beside the table
    files = {p.stem for p in (REPO / "wsianon" / "verify" / "formats").glob("*.py") if p.stem != "__init__"}
    assert files == hooks
    # the formats whose proof is the shared checks say so by name
    assert {s.name for s in FORMATS if s.verification is SHARED_CHECKS_SUFFICE} == {"ndpi", "generic-tiff"}
    assert spec_of("dicom").verification is VerifiedBy.DICOM_VERIFIER


def test_every_native_redactor_decides_in_its_own_analyze():
    """Decide once: each native redactor implements ``analyze`` (the one walk); ``inspect`` and
    ``plan`` are views of it, so none may rely on the base class (which decides nothing)."""
    from wsianon.converters.base import NativeConverter

    natives = [s for s in FORMATS if s.redactor is not None]
    assert {s.name for s in natives} >= {"aperio", "ndpi", "mrxs", "ventana", "philips", "isyntax", "leica", "generic-tiff"}
    for s in natives:
        cls = type(s.redactor)
        assert cls.analyze is not NativeConverter.analyze, s.name
        assert cls.inspect is NativeConverter.inspect, s.name  # the inventory is the decisions' view
    with pytest.raises(NotImplementedError):
        NativeConverter().analyze(Path("x"), None)  # type: ignore[arg-type]


def test_a_spec_without_a_hook_is_refused_at_construction():
    kw = _spec()
    del kw["verification"]
    with pytest.raises(TypeError, match="verification"):
        FormatSpec(**kw)
    with pytest.raises(TypeError, match="verification hook"):
        FormatSpec(**_spec(verification=None))
    with pytest.raises(TypeError, match="not in wsianon.verify.formats"):
        FormatSpec(**_spec(verification=dataclasses))  # a module, but not a verification hook
    FormatSpec(**_spec(verification=SHARED_CHECKS_SUFFICE))  # said explicitly: accepted


def test_a_format_package_without_a_hook_fails_when_imported(tmp_path):
    """The error comes at import time of the format's package, never as a silent skip later."""
    pkg = tmp_path / "wsianon_test_newformat"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from wsianon.converters.aperio import AperioConverter\n"
        "from wsianon.converters.registry import ClosedWorld, DicomRoute, DicomVia, FormatSpec\n"
        "SPEC = FormatSpec(name='aperio', title='Aperio SVS', openslide_vendor='aperio', extension='.svs',\n"
        "                  redactor=AperioConverter(), dicom=DicomRoute(DicomVia.WSIDICOMIZER), closed_world=ClosedWorld.TIFF)\n"
    )
    spec = importlib.util.spec_from_file_location("wsianon_test_newformat", pkg / "__init__.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    try:
        with pytest.raises(TypeError, match="verification"):
            spec.loader.exec_module(mod)
    finally:
        sys.modules.pop("wsianon_test_newformat", None)


def test_table_is_checked_when_built():
    specs = list(FORMATS)
    with pytest.raises(TypeError, match="duplicate"):
        build_table(specs + [spec_of("aperio")])
    with pytest.raises(TypeError, match="generic fallback"):
        build_table(specs[:-1])  # no generic fallback
    with pytest.raises(TypeError, match="generic fallback"):
        build_table([specs[0], specs[-1], *specs[1:-1]])  # generic before the vendors
    with pytest.raises(TypeError, match="DICOM"):
        build_table(specs[1:-1] + [specs[0], specs[-1]])  # DICOM not first
    with pytest.raises(TypeError, match="redactor"):
        build_table([specs[0], FormatSpec(**_spec(name="other", redactor=None)), *specs[1:]])
    with pytest.raises(TypeError, match="closed world"):  # the spec must agree with the profile's data
        build_table([s if s.name != "aperio" else dataclasses.replace(s, closed_world=ClosedWorld.NONE) for s in specs])
    with pytest.raises(TypeError, match="disagree"):  # the spec's facts are the redactor's
        FormatSpec(**_spec(extension=".tif"))
    with pytest.raises(TypeError, match="reason"):
        DicomRoute(DicomVia.REFUSED)


def test_detection_order_specific_before_generic():
    names = [s.name for s in FORMATS]
    assert names == ["dicom", "ndpi", "mrxs", "ventana", "philips", "isyntax", "leica", "aperio", "generic-tiff"]
    assert [c.name for c in registry.native_converters()] == names[1:-1]
    assert registry.generic_converter() is spec_of("generic-tiff").redactor
    assert registry.by_name("ndpi") is spec_of("ndpi").redactor
    with pytest.raises(KeyError):
        registry.by_name("dicom")  # DICOM has no native redactor


def test_detection_follows_the_table(tmp_path):
    """A vendor TIFF is claimed by its vendor even when the generic fallback is allowed."""
    from tests.fixtures.ndpi_gen import make_ndpi
    from wsianon.pipeline.detect import detect_file, expand_inputs

    ndpi, _ = make_ndpi(tmp_path / "a.ndpi")
    for allow in (False, True):
        name, conv = detect_file(ndpi, allow_generic=allow)
        assert name == "ndpi" and conv is spec_of("ndpi").redactor
    svs = REPO / "tests" / "data" / "CMU-1-Small-Region.svs"
    name, conv = detect_file(svs, allow_generic=True)
    assert name == "aperio" and conv is spec_of("aperio").redactor
    [src] = expand_inputs([svs])
    assert src.spec is spec_of("aperio") and not src.spec.is_dicom


def test_per_format_facts_are_spec_attributes():
    assert spec_of("ndpi").tifffile_kwargs == {"is_ndpi": True}  # from the NDPI profile, shared with the verifier
    assert all(not s.tifffile_kwargs for s in FORMATS if s.name != "ndpi")
    assert "restart intervals" in spec_of("ndpi").dicom.passthrough_note
    assert spec_of("ventana").dicom.refuse is not None
    assert spec_of("isyntax").dicom.via is DicomVia.PYISYNTAX and spec_of("isyntax").dicom.preflight is not None
    assert not spec_of("isyntax").openslide_reads and spec_of("isyntax").openslide_vendor is None
    assert {s.name for s in FORMATS if s.handles_tiles} == {"mrxs", "leica", "isyntax"}
    assert {s.name for s in FORMATS if s.closed_world is ClosedWorld.TIFF} == {"aperio", "ndpi", "ventana", "philips", "leica", "generic-tiff"}
    assert spec_of("mrxs").closed_world is ClosedWorld.MRXS
    assert [s.name for s in FORMATS if s.is_dicom] == ["dicom"]
    for s in FORMATS:
        if s.redactor is not None:
            assert (s.redactor.name, s.redactor.title, s.redactor.openslide_vendor, s.redactor.extension) == (s.name, s.title, s.openslide_vendor, s.extension)
