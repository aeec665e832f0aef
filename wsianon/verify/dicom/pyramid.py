"""``dicom: pyramid``: every VOLUME instance is a level of the slide's one image.

A VOLUME instance is shown only as a pyramid level, so an image that is no level of the slide (a
photo of the label given ImageType VOLUME, in the same series and pyramid) was shared unseen: no
barcode search looks at VOLUME frames and its frames equal the source's. Each VOLUME's Total
Pixel Matrix must have the base level's aspect, to the rounding of its size and one pixel more
(``verify.thumbnail.aspect_ok``, the rule a kept thumbnail is held to: ``|rows * base_cols -
cols * base_rows| <= base_cols + base_rows`` whichever side is the longer).
"""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset

from wsianon.verify.dicom.common import Checks, image_kind
from wsianon.verify.thumbnail import aspect_ok  # one rule: an image that is the base scaled


def _matrix(ds: Dataset) -> tuple[int, int] | None:
    try:
        return int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows)
    except (AttributeError, TypeError, ValueError):
        return None


def off_pyramid(dsets: list[tuple[Path, Dataset]]) -> list[str]:
    """The VOLUME instances whose matrix is not a level of the largest one (names only)."""
    volumes = [(p, m) for p, ds in dsets if image_kind(ds) == "VOLUME" and (m := _matrix(ds)) is not None]
    if len(volumes) < 2:
        return []
    base_cols, base_rows = max((m for _p, m in volumes), key=lambda m: (m[0] * m[1], m))
    bad = []
    for p, (cols, rows) in volumes:
        if cols > base_cols or rows > base_rows or not aspect_ok((cols, rows), (base_cols, base_rows)):
            bad.append(p.name)
    return bad


MIN_LEVEL_SIDE = 16  # a level smaller than this on its long side is not compared (JPEG rounding dominates)


def _one_plane(ds: Dataset) -> bool:
    return int(ds.get("TotalPixelMatrixFocalPlanes", 1) or 1) == 1 and int(ds.get("NumberOfOpticalPaths", 1) or 1) == 1


def _optical_path(ds: Dataset) -> str | None:
    """The identifier of an instance's one optical path (a fluorescence channel), or None."""
    try:
        return str(ds.OpticalPathSequence[0].OpticalPathIdentifier)
    except (AttributeError, IndexError, TypeError):
        return None


def unlike_levels(dsets: list[tuple[Path, Dataset]]) -> tuple[list[str], int]:
    """(``name: why`` for every VOLUME level, the base aside, whose pixels are not the slide's,
    number of levels compared). A level is shown when the viewer zooms out: a label photo scaled
    to a level's size and aspect passed the matrix rule above. Each is rendered as a kept
    THUMBNAIL is judged (``verify.thumbnail.alike``: grey and colour differences, 64 px on the long side, blurred) and must
    match a larger level rendered the same way (the smallest at least 4x the grid; 0.80
    correlation, no 16th departing by more than 20 grey levels). Levels under
    ``MIN_LEVEL_SIDE`` on their long side are not compared. Instances of several focal
    planes or optical paths are not compared (a channel need not look like another), and an
    instance of one optical path is compared with the larger levels of its own path where it has
    any (``_optical_path``); nor is a
    level that cannot be rendered (a sparse level whose sampled points fall where it has no frame,
    a frame that does not decode: the frame checks and the readers judge that)."""
    from wsianon.verify import thumbnail as th

    volumes = [(p, ds, m) for p, ds in dsets if image_kind(ds) == "VOLUME" and _one_plane(ds) and (m := _matrix(ds)) is not None]
    if len(volumes) < 2:
        return [], 0
    base = max((m for _p, _ds, m in volumes), key=lambda m: (m[0] * m[1], m))
    bad: list[str] = []
    refs: dict[tuple, object] = {}
    n = 0
    paths = {str(p): _optical_path(ds) for p, ds, _m in volumes}
    for p, ds, m in volumes:
        others = [v for v in volumes if v[2][0] * v[2][1] > m[0] * m[1]]
        # a channel (one instance a level and optical path, as fluorescence slides are stored) is
        # compared with its own larger levels: another channel is another picture. A level with no
        # larger one of its own path is compared with the others, as before (fail closed)
        own = [v for v in others if paths[str(v[0])] == paths[str(p)]]
        others = own or others
        if m == base or not others or max(m) < MIN_LEVEL_SIDE:
            continue  # the base is the slide's image by definition (its frames are the source's)
        shape = th.grid_shape(m)
        ref_p, ref_ds, _m = others[th.pick_level([v[2] for v in others], shape)]
        try:
            key = (str(ref_p), shape)
            if key not in refs:
                refs[key] = th.dicom_reference(ref_p, ref_ds, shape)
            mine = th.dicom_reference(p, ds, shape)
        except Exception:
            # a sparse level without a frame where a point was sampled, or a frame that does not
            # decode (`dicom: frame segments`, `dicom: entropy tight` and the readers judge that)
            continue
        n += 1
        if not th.alike(mine, refs[key]):  # type: ignore[arg-type]
            bad.append(f"{p.name}: a VOLUME level whose pixels are not the slide's (another level downsampled)")
    return bad, n


def unplaced(dsets: list[tuple[Path, Dataset]]) -> list[str]:
    """``name: why`` for every instance with a frame that has no place of its own in its image
    (``io.dicomframes.unplaced_frames``): a frame no viewer draws could be any image."""
    from wsianon.io.dicomframes import unplaced_frames

    return [f"{p.name}: {why}" for p, ds in dsets if (why := unplaced_frames(ds)) is not None]


def check_pyramid(dsets: list[tuple[Path, Dataset]], verdict: Checks) -> None:
    bad = off_pyramid(dsets)
    loose = unplaced(dsets)
    unlike, compared = unlike_levels(dsets) if not bad and not loose else ([], 0)
    verdict.add(
        "dicom: pyramid",
        not bad and not loose and not unlike,
        "; ".join(
            [f"{n}: a VOLUME whose matrix is not a level of the slide's image" for n in bad[:5]]
            + [f"{x} (a frame no viewer shows)" for x in loose[:5]]
            + unlike[:5]
        )
        or "every VOLUME instance is a level of the slide's image"
        + (f" ({compared} level(s) compared with the others, pixels and aspect)" if compared else "")
        + "; every frame has a place of its own in it",
    )


__all__ = ["check_pyramid", "off_pyramid"]
