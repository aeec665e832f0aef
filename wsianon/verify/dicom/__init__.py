"""Verification of DICOM-route outputs, in the verification layer (never imports a redactor).

Modules, one concept each (``wsianon/pipeline/verify_dicom.py`` runs them for one slide):

* ``common.py`` — reading instances, image kind, shared constants;
* ``profile.py`` — ``dicom: profile`` (the Annex E walk);
* ``images.py`` — ``dicom: record``, ``dicom: images``, ``dicom: barcodes``;
* ``uids.py`` — ``dicom: uids``;
* ``photometric.py`` — ``dicom: photometric``;
* ``jpeg.py`` — JPEG frames against source tiles (tables + entropy-coded data);
* ``decode.py`` — decoding re-tiled / re-encoded frames, PSNR, sampling;
* ``frames.py`` — ``dicom: frames`` and ``dicom: frame segments``;
* ``validator.py`` — ``dicom: dciodvfy``;
* ``opens.py`` — ``dicom: opens``.

``wsianon/verify/dicom_attrs.py`` (closed world) and ``wsianon/verify/dicom_text.py`` (text
vocabulary) are the two checks that need no source at all.
"""
