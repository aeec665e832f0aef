"""The one definition of the characters kept text may hold (wsianon.profiles.alphabet), and the two
routes' alphabets as README and the module describe them."""

from wsianon.profiles.alphabet import DICOM_TEXT, NATIVE_TEXT
from wsianon.profiles.dicom import unsafe_text
from wsianon.verify.vocabulary import odd_characters


def test_both_routes_read_their_alphabet_from_the_one_definition():
    for text in ("Aperio Image Library v12.0.15", "Müller 20 µm ±0.5 °C", "浜松ホトニクス", ""):
        assert not NATIVE_TEXT.outside(text) and not DICOM_TEXT.outside(text), text
        assert odd_characters(text) == NATIVE_TEXT.outside(text) and unsafe_text(text) == DICOM_TEXT.outside(text)
    # everything neither reads as a token or a separator: box drawing (GB18030 pairs), TAG
    # characters, private use, unassigned, replacement character, no-break space, C1 controls
    for ch in ("\u2550", "\U000e0044", "\ue000", "\u0378", "\ufffd", "\u00a0", "\x85", "\x01", "\x7f"):
        assert NATIVE_TEXT.outside(f"Leica{ch}") and DICOM_TEXT.outside(f"Leica{ch}"), hex(ord(ch))
        assert odd_characters(f"Leica{ch}") and unsafe_text(f"Leica{ch}"), hex(ord(ch))


def test_the_two_alphabets_differ_where_their_tokenisers_do():
    # a combining mark stays inside the DICOM token it follows; native tokens split at it
    assert not DICOM_TEXT.outside("Jose\u0301") and NATIVE_TEXT.outside("Jose\u0301")
    # punctuation and numerics of any script: native (full-width separators, superscript units)
    for text in ("\u3001", "\uff0c", "\u00b9", "\u00bd"):
        assert not NATIVE_TEXT.outside(text) and DICOM_TEXT.outside(text), hex(ord(text))
    # the controls each allows: a NUL ends a TIFF ASCII value; DICOM text may hold a form feed
    assert not NATIVE_TEXT.outside("a\0") and DICOM_TEXT.outside("a\0")
    assert not DICOM_TEXT.outside("a\fb") and NATIVE_TEXT.outside("a\fb")
