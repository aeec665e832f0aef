"""INI text (MRXS Slidedat.ini) read the way the redactor and the verifiers all need it."""

from __future__ import annotations

import configparser
import re


class _CaseKeeping(configparser.RawConfigParser):
    """Keys keep their case (``SLIDE_ID`` stays ``SLIDE_ID``)."""

    def optionxform(self, optionstr: str) -> str:
        return optionstr


def read_ini(text: str) -> configparser.RawConfigParser:
    """A case-keeping, interpolation-free parser over ``text`` (duplicate keys tolerated,
    ``=`` the only delimiter, ``;`` and ``#`` comments)."""
    cp = _CaseKeeping(strict=False, interpolation=None, delimiters=("=",), comment_prefixes=(";", "#"))
    cp.read_string(text)
    return cp


def natural_key(text: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key ordering runs of digits by their number (``LAYER_2`` before ``LAYER_10``); the
    digits as written break ties, so distinct texts never compare equal."""
    return tuple((0, int(p), p) if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text) if p)
