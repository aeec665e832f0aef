"""A value a redactor keeps under a safe key only as the format's vocabulary."""

from __future__ import annotations


def vocabulary_value(value: str, fmt: str) -> bool:
    """Every token of ``value`` is structural (a number, a version) or a word of ``fmt``'s
    vocabulary — what the verifier's vocabulary check accepts. A safe key's value that is not is
    blanked by the redactor instead of being kept for that check to quarantine the slide."""
    from wsianon.verify.vocabulary import odd_characters, unknown_tokens, vocabulary

    return not odd_characters(value) and not unknown_tokens(value, vocabulary(fmt))
