"""``dicom: dciodvfy``: the external IOD validator (dicom3tools), started early and read late."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from wsianon.verify.dicom.common import Checks

# ---------------------------------------------------------------------------
# dciodvfy


class Dciodvfy:
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
    return Dciodvfy(path).errors()


_NAME = re.compile(r"<[A-Za-z][A-Za-z0-9]*>")
_PATH = re.compile(r"</((?:[A-Za-z0-9]*\([0-9a-fA-F]{4},[0-9a-fA-F]{4}\)(?:\[\d+\])?/?)+)>")
_SEGMENT = re.compile(r"([A-Za-z0-9]*)\(([0-9a-fA-F]{4}),([0-9a-fA-F]{4})\)")


def _path_ok(path: re.Match) -> bool:
    """An attribute path of ``-new`` (``</Seq(gggg,eeee)[1]/Keyword(gggg,eeee)>``) names only:
    every keyword is the dictionary's for its tag (or none, for a tag it does not know)."""
    from pydicom.datadict import keyword_for_tag

    return all(not name or name == keyword_for_tag(int(group + elem, 16)) for name, group, elem in _SEGMENT.findall(path.group(1)))


_NUMBER = re.compile(r"(expected (?:multiple of )?|length is )(?:0x)?[0-9A-Fa-f.]+(?: dec)?")  # "... - expected 262144 dec"


def _words(line: str) -> str:
    """One dciodvfy message with nothing it quotes from the file: its own words, the attribute
    path (dictionary keywords and tags) and the names after ``Module=``/``Element=`` stay; at the
    first value (``" = "``: ``= <value>``, ``= 'c'``, a bare value) the message ends in
    ``= <>``, and at anything else it quotes (a ``<...>`` or quotes that are no such name: a
    private creator in a path, a value of the old format) in ``<>``. The rest of the line is
    dropped whole: where a value ends cannot be told (it may hold ``>``, ``<``, quotes or
    `` - ``: red team stop 39 kept what followed the first ``>`` of a value)."""
    out: list[str] = []
    pos = 0
    while pos < len(line):
        hits = [i for i in (line.find(" = ", pos), line.find("<", pos), line.find("'", pos), line.find('"', pos)) if i >= 0]
        if not hits:
            out.append(line[pos:])
            break
        i = min(hits)
        out.append(line[pos:i])
        if line.startswith(" = ", i):
            out.append(" = <>")
            break
        if line[i] == "<":
            path = _PATH.match(line, i)
            if path is not None and _path_ok(path):
                out.append(path.group(0))
                pos = path.end()
                continue
            name = _NAME.match(line, i)
            if name is not None and line[:i].endswith(("Module=", "Element=")):
                out.append(name.group(0))
                pos = name.end()
                continue
        out.append("<>")
        break
    return _NUMBER.sub(r"\1", re.sub(r"\[\d+\]", "", "".join(out)))  # an item's or a value's index: no name


def _parse_dciodvfy(out: bytes) -> list[str]:
    """The error messages of dciodvfy's output, each as :func:`_words` keeps it (nothing
    identifying reaches a report)."""
    text = out.decode("latin-1", "replace")
    return [_words(line).strip() for line in text.splitlines() if line.startswith("Error")]


_ABSENT = re.compile(r"Error - </(?:[^>]*/)?([A-Za-z0-9]*\([0-9a-fA-F]{4},[0-9a-fA-F]{4}\))> - Missing attribute for Type ")
_ZERO = re.compile(r"Error - </[^>]*> - Value is zero")


def valueless(errs: list[str]) -> list[str]:
    """The errors of one instance that are about an attribute it does not have (Missing attribute,
    or another message on the path of an attribute dciodvfy also reports missing) or about a
    number that is zero: such an error holds no value, so nothing can be hidden in it. Without
    the source (``wsianon verify``) they cannot be told from the source's own non-conformance
    (``run`` compares them with the source's errors), and do not fail the check."""
    absent = {m.group(0)[len("Error - ") : m.group(0).index("> - ") + 1] for e in errs if (m := _ABSENT.match(e))}
    return [e for e in errs if _ABSENT.match(e) or _ZERO.match(e) or any(e.startswith(f"Error - {a} - ") for a in absent)]


_SPARSE_COUNT = "Error - </NumberOfFrames(0028,0008)> - NumberOfFrames does not match expected value for tiled total pixel matrix"


def sparse_miscount(errs: list[str], path: Path) -> list[str]:
    """dciodvfy's frame count error of a TILED_SPARSE instance: it expects the full tile grid
    (frames times focal planes and optical paths) whatever the Dimension Organization Type, while
    PS3.3 lets a sparse level omit tiles, so every valid sparse instance gets it. Its value is the
    frame count, which ``dicom: pyramid`` judges (one position a frame, inside the matrix, none
    twice; ``io.dicomframes.unplaced_frames``): it holds nothing else."""
    hits = [e for e in errs if e.startswith(_SPARSE_COUNT)]
    if not hits:
        return []
    from wsianon.verify.dicom.common import read_dataset

    try:
        sparse = str(read_dataset(path).get("DimensionOrganizationType", "") or "").upper() == "TILED_SPARSE"
    except Exception:
        return []
    return hits if sparse else []


# the transfer syntaxes dicom3tools builds before 2023 do not know (PS3.5 2023a added HTJ2K): such a
# dciodvfy takes their encapsulated Pixel Data for native, says so and stops reading there
_UNKNOWN_TS = frozenset({"1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"})
_UNREAD = ("Error - Undefined value length of other byte/word element is illegal in non-encapsulated transfer syntax", "Error - Dicom dataset read failed")


def pixel_data_unread(errs: list[str], path: Path) -> list[str]:
    """dciodvfy's two read errors on an instance in a transfer syntax it predates (HTJ2K): it reads
    every attribute (and validates them: its other errors still count) and stops at the
    encapsulated Pixel Data, which it takes for native. Counted (not failed) only where Pixel
    Data is the one element of undefined length besides sequences and items — else its read
    could have stopped earlier, before attributes it then never saw. The messages hold no value;
    the frames are judged by the frame checks."""
    if not all(u in errs for u in _UNREAD):
        return []
    from wsianon.verify.dicom.common import read_dataset

    try:
        ds = read_dataset(path)
        if str(ds.file_meta.get("TransferSyntaxUID", "")) not in _UNKNOWN_TS:
            return []
        stack = [ds]
        while stack:
            for elem in stack.pop():
                if elem.VR == "SQ":
                    stack.extend(elem.value)
                elif elem.is_undefined_length and elem.tag != 0x7FE00010:
                    return []
    except Exception:
        return []
    return [e for e in errs if e in _UNREAD]


def concatenation_miscount(errs: list[str], path: Path, proven: set[str]) -> list[str]:
    """dciodvfy's frame count error of one part of a concatenation: it expects the full tile grid
    in every instance, while PS3.3 C.7.6.16.2.2 splits the grid's frames over the parts. Counted
    (not failed) only for a part of a concatenation ``proven`` whole (``proven_concatenations``:
    parts numbered 1..N, frames from offset 0 without overlap or gap, exactly the grid's, every
    part describing the same image — what ``dicom: pyramid`` also requires): its value is then the
    part's frame count, which holds nothing else."""
    hits = [e for e in errs if e.startswith(_SPARSE_COUNT)]
    if not hits:
        return []
    from wsianon.io.dicomframes import concatenation_part
    from wsianon.verify.dicom.common import read_dataset

    try:
        part = concatenation_part(read_dataset(path))
    except Exception:
        return []
    return hits if part is not None and part[0] in proven else []


def proven_concatenations(outputs: list[Path]) -> set[str]:
    """The Concatenation UIDs of ``outputs`` whose parts make one whole exactly
    (``io.dicomframes.concatenation_problems`` finds nothing in them)."""
    from wsianon.io.dicomframes import concatenation_groups, concatenation_problems
    from wsianon.verify.dicom.common import read_dataset

    try:
        dsets = [(f, read_dataset(f)) for f in outputs]
    except Exception:
        return set()
    return {uid for uid, parts in concatenation_groups(dsets).items() if not concatenation_problems(parts)}


def check_dciodvfy(outputs: list[Path], sources: list[Path] | None, verdict: Checks, started: dict | None = None, accept_unrun: bool = False) -> None:
    if shutil.which("dciodvfy") is None:  # not run: fails the slide unless --accept-unrun-checks
        verdict.add(
            "dicom: dciodvfy",
            accept_unrun,
            "not run: dciodvfy (dicom3tools) is not installed "
            + ("(accepted by --accept-unrun-checks)" if accept_unrun else "(install dicom3tools, or pass --accept-unrun-checks)"),
            not_run=True,
        )
        return
    baseline: set[str] | None = None
    if sources:
        baseline = set()
        for s in sources:
            baseline |= set(_dciodvfy_errors(s) or [])
    bad: list[str] = []
    absent = 0
    proven = proven_concatenations(outputs) if baseline is None else set()
    for f in outputs:
        errs = (started[f].errors() if started and f in started else _dciodvfy_errors(f)) or []
        if baseline is None:  # no source: errors without a value are the output's own non-conformance
            accepted = valueless(errs) + sparse_miscount(errs, f) + concatenation_miscount(errs, f, proven) + pixel_data_unread(errs, f)
            absent += len(accepted)
            errs = [e for e in errs if e not in accepted]
        new = [e for e in errs if baseline is None or e not in baseline]
        if new:
            first = new[0].split(" - ", 1)[1] if " - " in new[0] else new[0]
            bad.append(f"{f.name}: {len(new)} error(s), e.g. {first[:120]}")
    if bad:
        verdict.add("dicom: dciodvfy", False, "; ".join(bad[:5]))
    else:
        what = "no errors" if baseline is None else "no errors beyond the source's own"
        if absent:
            what = (
                f"no errors holding a value ({absent} about attributes absent or zero, a sparse level's or a concatenation part's frame count"
                " dciodvfy takes for a full grid's, or its stop at Pixel Data in a transfer syntax it predates (HTJ2K):"
                " non-conformance that holds nothing; compared with the source by `run`)"
            )
        verdict.add("dicom: dciodvfy", True, f"{len(outputs)} instances: {what}")
