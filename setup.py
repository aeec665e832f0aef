"""Only the optional C extension lives here; everything else is in pyproject.toml.

``wsianon.io._markers`` (the JPEG marker search) is optional: where no C compiler is available
the install goes on and ``wsianon.io.jpeg`` uses its numpy search instead."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("wsianon.io._markers", ["wsianon/io/_markers.c"], optional=True)])
