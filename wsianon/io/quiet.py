"""Third-party libraries' own output stays quiet: a library that cannot parse a value it read from a
slide says so in a warning or a log record that quotes the value (tifffile logs
``parsing GDAL_NODATA tag raised ValueError("invalid literal for int() ...: 'Doe^Jane'")``), and
Python prints a log record no handler takes on stderr (``logging.lastResort``): the console of
``wsianon run``/``verify``, a local worker's, a Dask worker's log.  What matters reaches the report
in our own words; the libraries' words are dropped unless ``WSIANON_DEBUG`` is set.

Closed world: every record that no handler was configured for is dropped (``lastResort``), and
the libraries that read slides do not pass their records on to handlers a host process (a Dask
worker) configured for its own loggers."""

from __future__ import annotations

import logging
import os
import warnings

# the readers and writers of slide data (their loggers quote what they read)
LIBRARY_LOGGERS = (
    "tifffile",
    "pydicom",
    "wsidicom",
    "wsidicomizer",
    "opentile",
    "highdicom",
    "PIL",
    "imagecodecs",
    "openslide",
    "zarr",
    "numcodecs",
)


def quiet_libraries() -> None:
    """Silence library warnings and log records in this process (idempotent; a no-op with
    ``WSIANON_DEBUG`` in the environment)."""
    if os.environ.get("WSIANON_DEBUG"):
        return
    warnings.simplefilter("ignore")
    logging.lastResort = logging.NullHandler()
    for name in LIBRARY_LOGGERS:
        lg = logging.getLogger(name)
        lg.propagate = False
        if not any(isinstance(h, logging.NullHandler) for h in lg.handlers):
            lg.addHandler(logging.NullHandler())


def debug_traceback(exc: BaseException) -> None:
    """With ``WSIANON_DEBUG`` in the environment, print ``exc``'s whole traceback (its message
    included: it can quote a slide's value, so only when asked) on stderr; otherwise nothing.
    Where an internal error is reduced to its type (a slide's outcome, an audit, ``inspect``)."""
    if os.environ.get("WSIANON_DEBUG"):
        import sys
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
