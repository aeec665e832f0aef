"""Verification of outputs, independent of the redactors: only io, profile data and third-party readers."""
