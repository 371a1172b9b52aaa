"""Feature extractors and their registry (:func:`register_extractor`, :func:`get_extractor`).

The built-in extractors are registered by
:mod:`nipype_brainrecon.evaluation.builtin_extractors`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np

from ..batching import batches
from ..errors import DataError, UsageError
from .images import check_images

Kind = Literal["identification", "distance"]


class FeatureExtractor:
    """Turns images into one or more named feature sets.

    Parameters
    ----------
    name : str
        Registry name (e.g. ``"alexnet"``).
    outputs : mapping of str to {"identification", "distance"}
        Label of each feature set (e.g. ``"AlexNet(2)"``) and how
        :func:`~nipype_brainrecon.evaluation.evaluate` scores it.
    fn : callable
        ``fn(images)`` with images an array (n, H, W, 3) (uint8 or floats in [0, 1]) returning
        a dict label → array (n, d).
    source : str
        Where the weights came from (a file, a model id, or "none"), for provenance.
    batch_size : int
        Images passed to ``fn`` at once.
    implementation : str
        Which code computes the features (e.g. ``"torchvision 0.28.0"``, ``"rewrite"``), for
        provenance; empty when not applicable.
    """

    def __init__(
        self,
        name: str,
        outputs: Mapping[str, Kind],
        fn: Callable[[np.ndarray], Mapping[str, np.ndarray]],
        *,
        source: str = "none",
        batch_size: int = 64,
        implementation: str = "",
    ) -> None:
        for label, kind in outputs.items():
            if kind not in ("identification", "distance"):
                raise UsageError(f"extractor {name!r}: output {label!r} has unknown kind {kind!r}")
        self.name = name
        self.outputs: dict[str, Kind] = dict(outputs)
        self.source = source
        self.batch_size = int(batch_size)
        self.implementation = str(implementation)
        self._fn = fn

    def __repr__(self) -> str:
        return (
            f"FeatureExtractor({self.name!r}, outputs={list(self.outputs)}, "
            f"source={self.source!r}, implementation={self.implementation!r})"
        )

    def __call__(self, images: Any) -> dict[str, np.ndarray]:
        """Features of ``images`` (n, H, W, 3): a dict label → float array (n, d)."""
        arr = check_images(images, f"images for the {self.name!r} extractor", ndims=(4,))
        parts: dict[str, list[np.ndarray]] = {label: [] for label in self.outputs}
        for sl in batches(len(arr), self.batch_size):
            got = self._fn(arr[sl])
            for label in self.outputs:
                if label not in got:
                    raise DataError(f"extractor {self.name!r} returned no {label!r} features")
                parts[label].append(np.asarray(got[label]).reshape(sl.stop - sl.start, -1))
        return {label: np.concatenate(chunks, axis=0) for label, chunks in parts.items()}


_REGISTRY: dict[str, Callable[..., FeatureExtractor]] = {}


def register_extractor(
    name: str, factory: Callable[..., FeatureExtractor], *, overwrite: bool = False
) -> None:
    """Make ``get_extractor(name, **kwargs)`` call ``factory(**kwargs)``.

    Parameters
    ----------
    name : str
        Case-insensitive name.
    factory : callable
        Returns a :class:`FeatureExtractor`; it should fail early (e.g. with
        :class:`~nipype_brainrecon.errors.MissingInputError`) when what it needs is absent.
    overwrite : bool
        Replace an existing registration; otherwise re-registering a name is an error.
    """
    key = str(name).strip().lower()
    if not key:
        raise UsageError("register_extractor: give a non-empty name")
    if not callable(factory):
        raise UsageError(f"register_extractor({name!r}): factory must be callable")
    if key in _REGISTRY and not overwrite:
        raise UsageError(
            f"extractor {key!r} is already registered; pass overwrite=True to replace it"
        )
    _REGISTRY[key] = factory


def available_extractors() -> list[str]:
    """Names that :func:`get_extractor` knows (whether or not their weights are present)."""
    return sorted(_REGISTRY)


def get_extractor(name: str, **kwargs: Any) -> FeatureExtractor:
    """Build the extractor registered as ``name`` with ``kwargs``.

    Raises
    ------
    UsageError
        Unknown name.
    MissingInputError
        The extractor needs weights that are not present locally (the message says where it
        looked and how to provide them).
    """
    key = str(name).strip().lower()
    if key not in _REGISTRY:
        raise UsageError(
            f"unknown feature extractor {name!r}; choose from {', '.join(available_extractors())}"
        )
    extractor = _REGISTRY[key](**kwargs)
    if not isinstance(extractor, FeatureExtractor):
        raise UsageError(f"extractor factory {key!r} returned {type(extractor).__name__}")
    return extractor
