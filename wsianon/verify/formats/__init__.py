"""Per-format verification hooks, written against the output only (never a redactor's code).

Each module ``<format>.py`` has ``check(inv, out_main, out_files, policy, verdict[, source_state])``
and may declare ``HANDLES_TILES`` (it compares the pyramid itself), ``OPENSLIDE_READS = False``,
``snapshot(path)`` (source state taken before anything is written) and ``frame_reference(path)``
(decoded source frames for the DICOM verifier).  The format table
(``wsianon/converters/registry.py``) names each format's hook, or says explicitly that the shared
checks are sufficient.
"""
