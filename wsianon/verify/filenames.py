"""Names in an audited output: file names, folder names and symbolic-link targets.

A name is shared with the files it names (a folder copied, an archive packed, a link's target
path kept by ``tar`` or ``rsync -l``): ``Doe_Jane_19790101.svs`` or a folder ``MRN98765432/``
identifies the patient whatever the files hold (red team 17: ``verify`` judged contents only).
A name passes when it has one of the forms wsianon writes (a keyed pseudonym ``WSI-<16 hex>``,
DICOM instances ``NNNN-volume.dcm``, MRXS ``Index.dat`` / ``DataNNNN.dat`` / ``Slidedat.ini``, the
record's files) or when it passes the rules text is judged by (:mod:`wsianon.verify.vocabulary`):
every token the format's vocabulary or structure, and no number of 4 or more digits (one run, or
digit runs holding 4 or more together: a date written ``12.03.79``).  A name a pseudonym map
chose is the user's declaration (``Vocab.with_names``), accepted whole.  The check's detail says
what kind of name failed and how many, never the name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from wsianon.profiles.names import grouped_numbers, has_long_number
from wsianon.verify.vocabulary import Vocab, unknown_tokens

CHECK = "names"

# the forms wsianon itself writes (the verifier knows the output's form, never the redactor's choices)
_PSEUDONYM = re.compile(r"WSI-[0-9a-f]{16}")
_OWN_FILES = re.compile(r"[0-9]{4}-(?:volume|label|overview|thumbnail)\.dcm|Index\.dat|Data[0-9]{4}\.dat|Slidedat\.ini")
RECORD_NAMES = frozenset({"wsianon-report.json", "wsianon-report.html", "wsianon-certificate.json", "wsianon-certificate.pdf"})
CARDS_DIR = "wsianon-report-cards"
_CARD_PAGE = re.compile(r"[0-9]{4,}\.html")
# extensions of slide files and of the files beside them: a name is judged without them
_EXTENSIONS = frozenset(
    {"svs", "tif", "tiff", "ndpi", "vms", "vmu", "scn", "bif", "mrxs", "dcm", "isyntax", "qptiff", "svslide", "dat", "ini", "json", "html", "pdf"}
)

# what kind of name failed (the detail names kinds, never a name)
FILE = "file name"
FOLDER = "folder name"
LINK = "link target"


def own_name(name: str, parent: str = "") -> bool:
    """Whether ``name`` (one path component; ``parent`` the name of its folder) is a form wsianon
    writes: a keyed pseudonym with or without an extension, a DICOM instance, an MRXS member, a
    record file or a card page of a paged record."""
    base, dot, ext = name.rpartition(".")
    if _PSEUDONYM.fullmatch(name) or (dot and ext.lower() in _EXTENSIONS and _PSEUDONYM.fullmatch(base)):
        return True
    if _OWN_FILES.fullmatch(name) or name in RECORD_NAMES or name == CARDS_DIR:
        return True
    return parent == CARDS_DIR and _CARD_PAGE.fullmatch(name) is not None


def name_ok(name: str, vocab: Vocab, parent: str = "") -> bool:
    """Whether one path component may stand in a shared output (see the module's rules)."""
    if not name or name in (".", "..") or own_name(name, parent):
        return True
    stem = name
    base, dot, ext = name.rpartition(".")
    if dot and base and ext.lower() in _EXTENSIONS:
        stem = base
    if vocab.names and stem in vocab.names:
        return True  # a pseudonym map's name, whole
    rest = vocab.names_rx.sub(" ", stem) if vocab.names_rx is not None else stem  # a map's names inside it
    if has_long_number(rest) or grouped_numbers(rest):
        return False
    return not unknown_tokens(rest, vocab)


@dataclass
class NameJudge:
    """Collects the names one audited item shows and judges them (one ``names`` check)."""

    vocab: Vocab
    accepted: frozenset[str] = frozenset()  # names accepted whole (``verify --rename keep``: a slide's own)
    bad: dict[str, int] = field(default_factory=dict)
    judged: int = 0
    seen: set[tuple[str, str, str]] = field(default_factory=set)

    def name(self, name: str, kind: str, parent: str = "") -> None:
        if (name, kind, parent) in self.seen:
            return
        self.seen.add((name, kind, parent))
        self.judged += 1
        if name not in self.accepted and not name_ok(name, self.vocab, parent):
            self.bad[kind] = self.bad.get(kind, 0) + 1

    def link(self, path: Path) -> None:
        """A symbolic link's target as written (each component of it; ``..`` and ``.`` are no names)."""
        try:
            target = os.readlink(path)
        except OSError:
            return
        parts = [p for p in target.split("/") if p not in ("", ".", "..")]
        for k, p in enumerate(parts):
            self.name(p, LINK, parts[k - 1] if k else "")

    def path(self, path: Path, root: Path | None) -> None:
        """``path`` and every folder between ``root`` (a folder given to ``verify``, not judged
        itself) and it; without a root, the name of ``path`` alone.  Links among them: their
        targets too."""
        path = Path(os.path.abspath(path))
        chain = [path]
        top = Path(os.path.abspath(root)) if root is not None else None
        if top is not None and top in path.parents:
            chain = [p for p in [path, *path.parents] if top in p.parents]
        for p in chain:
            self.name(p.name, FOLDER if p != path or (p.is_dir() and not p.is_symlink()) else FILE, p.parent.name)
            if p.is_symlink():
                self.link(p)

    def add_check(self, verdict) -> None:
        if self.bad:
            kinds = ", ".join(f"{n} {k}(s)" for k, n in sorted(self.bad.items()))
            verdict.add(
                CHECK,
                False,
                f"names outside the vocabulary or holding a number of 4 or more digits: {kinds} (a name is shared with what it names;"
                " wsianon names its outputs WSI-<16 hex>)",
            )
        else:
            verdict.add(CHECK, True, f"{self.judged} name(s) judged: pseudonyms, wsianon's own names or the vocabulary")
