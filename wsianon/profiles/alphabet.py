"""The characters a kept text value may hold: one definition for the native and the DICOM routes.

The vocabulary judges tokens (runs of letters and digits); a character that is neither part of a
token nor a separator the tokens split at is read by no rule, so text spelled in such characters
was never judged at all (red team stop 39: a name as GB18030 pairs that decode to box-drawing
symbols, a name in Unicode TAG characters after "Leica", an ISO 2022 escape sequence).  An
:class:`Alphabet` says which characters are allowed; everything else makes a value unsafe (the
redactors blank or dummy it, the verifiers refuse it).

The two routes differ in two classes, for reasons of how their text is tokenised:

* DICOM (:data:`DICOM_TEXT`) admits combining marks: pydicom decodes a PN or LO of the declared
  character set, and a mark stays inside the token of the letter it follows.  It admits only
  decimal digits (other numerics, such as superscripts, are symbols to it) and no non-ASCII
  punctuation.
* Native text (:data:`NATIVE_TEXT`) admits the punctuation and numerics of any script (NDPI and
  Leica XML values carry full-width separators and superscript units) and no combining marks
  (its tokens are split on them).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Alphabet:
    controls: str  # the ASCII control characters allowed (printable ASCII always is)
    classes: frozenset[str]  # Unicode general categories allowed beyond ASCII: a major class ("L") or one category ("Nd")
    symbols: frozenset[str]  # single characters allowed beyond those

    def outside(self, text: str) -> bool:
        """Whether ``text`` holds a character outside this alphabet."""
        for ch in text:
            if " " <= ch <= "~" or ch in self.controls or ch in self.symbols:
                continue
            if ch < "\x80":
                return True
            cat = unicodedata.category(ch)
            if cat[0] not in self.classes and cat not in self.classes:
                return True
        return False


# symbols real slide text carries (units, signs, arrows of a scale) besides ASCII's
NATIVE_TEXT = Alphabet("\t\r\n\0", frozenset("LNP"), frozenset("µ°²³¹±×÷·®©™€£¥¢§¶¬→←≤≥≈"))

# units and signs of instrument and code texts; the ideographic space of Japanese PN components
DICOM_TEXT = Alphabet("\t\n\f\r", frozenset({"L", "M", "Nd"}), frozenset("\u00b5\u00b0\u00b2\u00b3\u00b1\u00d7\u00ae\u2122\u00a9\u3000"))
