"""Miyawaki et al. (2008): the V1 "figure image" session as arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError, MissingInputError


def load_miyawaki(path: str | Path) -> dict[str, np.ndarray]:
    """Read the V1 figure-image session of Miyawaki et al. (2008) (``V1_mean_figure.mat``).

    Parameters
    ----------
    path : path
        The ``.mat`` file or the folder holding ``V1_mean_figure.mat``.

    Returns
    -------
    dict
        ``images``: (80, 10, 10) uint8 in {0, 1}, one per presentation (each column of ``I2``
        reshaped column-major); ``responses``: (80, 797) float64 V1 voxel responses;
        ``image_ids``: (80,) int64 in 0..9, presentations of the same image share an id (numbered in
        order of first presentation); ``unique_images``: (10, 10, 10) uint8, ``unique_images[i]`` is
        the image with id ``i``.

    Raises
    ------
    MissingInputError
        The file does not exist.
    DataError
        The file cannot be read as MATLAB data or lacks ``I2``/``R2`` of the expected shapes.
    """
    import scipy.io

    path = Path(path)
    if path.is_dir():
        path = path / "V1_mean_figure.mat"
    if not path.is_file():
        raise MissingInputError(
            f"{path}: Miyawaki file not found; give V1_mean_figure.mat or its folder"
        )
    try:
        contents = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises several types for damaged files
        raise DataError(
            f"{path}: cannot be read as a MATLAB file ({exc}); fetch a fresh copy"
        ) from exc
    pixels, responses = contents.get("I2"), contents.get("R2")
    if pixels is None or responses is None:
        raise DataError(f"{path}: variables I2 and R2 not found; is this V1_mean_figure.mat?")
    pixels, responses = np.asarray(pixels), np.asarray(responses)
    if pixels.ndim != 2 or pixels.shape[0] != 100 or responses.ndim != 2:
        raise DataError(f"{path}: I2 has shape {pixels.shape}, expected (100, n) of 10x10 images")
    if responses.shape[1] != pixels.shape[1]:
        raise DataError(
            f"{path}: R2 has {responses.shape[1]} presentations but I2 has {pixels.shape[1]}"
        )
    if not np.isin(pixels, (0, 1)).all():
        raise DataError(f"{path}: I2 holds values other than 0 and 1; expected binary images")
    # Each column is one image stored column-major (MATLAB order).
    images = pixels.T.reshape(-1, 10, 10).transpose(0, 2, 1).astype(np.uint8)
    unique, first, ids = np.unique(
        images.reshape(len(images), -1), axis=0, return_index=True, return_inverse=True
    )
    order = np.argsort(first)  # number images by first presentation
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    image_ids = rank[np.asarray(ids).ravel()].astype(np.int64)
    return {
        "images": images,
        "responses": responses.T.astype(np.float64),
        "image_ids": image_ids,
        "unique_images": unique[order].reshape(-1, 10, 10).astype(np.uint8),
    }
