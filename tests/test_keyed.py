"""One keyed-derivation module (wsianon/io/keyed.py): values pinned so archive jobs stay stable.

The vectors were computed with the derivations as they were before they moved into one module;
a change here changes every pseudonym, patient token, date shift or SLIDE_ID of a resumed job.
"""

from __future__ import annotations

import ast
from pathlib import Path

from wsianon.converters import dpufs
from wsianon.converters.dicom.engine import remap  # the DICOM route's UID mapping
from wsianon.converters.mrxs import keyed_slide_id
from wsianon.io import keyed
from wsianon.pipeline.keys import pseudonym_from

K = bytes(range(32))
ROOT = Path(__file__).resolve().parents[1]


def test_slide_pseudonyms_are_unchanged_in_every_mode():
    src = Path("/x/a.svs")
    assert pseudonym_from(K, "relpath", source=src, relpath="dir/a.svs") == "WSI-beab8822565de2b1"
    assert pseudonym_from(K, "relpath", source=src, relpath=b"dir/\xff.svs") == "WSI-8b3c8f6629fd9ecd"
    assert pseudonym_from(K, "content", source=src, content="abc123") == "WSI-bde98b8a2cf63263"
    assert pseudonym_from(K, "path", source=src) == "WSI-f131706c846df193"
    assert keyed.keyed_hex(K, "skipped", "dir/b.txt") == "902949d6577e36f2"


def test_uids_tokens_shifts_and_slide_ids_are_unchanged():
    assert keyed.keyed_uid(K, "1.2.3.4") == "2.25.157910775163533369044210656696165106212"
    assert keyed.keyed_uid(K, "x", "study") == "2.25.171797563623041458969779114656235030981"
    assert keyed.keyed_token(K, "patient", "PID-1") == "8D1A28182A55DE38"
    assert keyed.date_offset_days(K, "PAT") == -2106
    assert keyed_slide_id(K, "0123ABCD0123ABCD0123ABCD0123ABCD01") == "695CB5AAB15425B6C5B0870CCD1B1F30A6"


def test_domains_separate_purposes():
    assert keyed.keyed_uid(K, "1.2.3.4") != keyed.keyed_uid(K, "1.2.3.4", "study")
    assert keyed.keyed_hex(K, "slide-relpath", "a") != keyed.keyed_hex(K, "slide-content", "a")
    assert keyed.keyed_uid(K, "1.2.3.4") != keyed.keyed_uid(b"\x01" * 32, "1.2.3.4")
    assert remap(K, "1.2.840.10008.1.2.4.50") == "1.2.840.10008.1.2.4.50"


def test_philips_native_and_dicom_route_map_a_uid_alike():
    # Philips TIFF / iSyntax native outputs used a second keyed_uid with another message layout
    assert dpufs.keyed_uid is keyed.keyed_uid
    assert dpufs.keyed_uid(K, "1.2.3.4") == remap(K, "1.2.3.4")


def test_hmac_is_called_only_in_the_keyed_module():
    offenders = []
    for py in (ROOT / "wsianon").rglob("*.py"):
        if py.name == "keyed.py" and py.parent.name == "io":
            continue
        for node in ast.walk(ast.parse(py.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "new" and isinstance(node.value, ast.Name) and node.value.id == "hmac":
                offenders.append(str(py.relative_to(ROOT)))
    assert offenders == []
