"""What a scene means: its captions (six templates, every one naming every object's shape and
colour) and semantic vectors (of a scene, or a bag of words of any image's captions).
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from ...errors import UsageError
from .scenes import BACKGROUNDS, COLOURS, SHAPES, SIZES, Scene, SceneObject

__all__ = ["SEMANTIC_FEATURES", "caption_semantics", "scene_captions", "scene_semantics"]


#: Names of the entries of :func:`scene_semantics`.
SEMANTIC_FEATURES: tuple[str, ...] = (
    tuple(f"shape-{s}" for s in SHAPES)
    + tuple(f"colour-{c}" for c in COLOURS)
    + tuple(f"size-{z}" for z in SIZES)
    + tuple(f"background-{b}" for b in BACKGROUNDS)
)


# ----------------------------------------------------------------------------- captions


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _np(obj: SceneObject, *, with_size: bool) -> str:
    """Noun phrase with its article, e.g. 'a small red triangle', 'an orange star'."""
    words = ([obj.size] if with_size else []) + [obj.colour, obj.shape]
    return f"{_article(words[0])} {' '.join(words)}"


def _where(obj: SceneObject) -> str:
    h = "left" if obj.x < 1 / 3 else "right" if obj.x > 2 / 3 else "centre"
    v = "top" if obj.y < 1 / 3 else "bottom" if obj.y > 2 / 3 else "middle"
    if h == "centre" and v == "middle":
        return "in the centre"
    if v == "middle":
        return f"on the {h}"
    if h == "centre":
        return f"at the {v}"
    return f"in the {v} {h} corner"


def _relation(a: SceneObject, b: SceneObject) -> str:
    """Where ``a`` is relative to ``b``."""
    dx, dy = b.x - a.x, b.y - a.y
    if abs(dx) >= abs(dy):
        return "on the left of" if dx > 0 else "on the right of"
    return "above" if dy > 0 else "below"


def _one_object_captions(o: SceneObject, bg: str) -> list[str]:
    return [
        f"{_np(o, with_size=True)} on a {bg} background",
        f"{_np(o, with_size=False)} {_where(o)}",
        f"a picture of {_np(o, with_size=True)}",
        f"a {bg} background with {_np(o, with_size=False)} {_where(o)}",
        f"one {o.size} {o.shape}, coloured {o.colour}, {_where(o)}",
        f"a single {o.colour} {o.shape} against {bg}",
    ]


def _two_object_captions(a: SceneObject, b: SceneObject, bg: str) -> list[str]:
    return [
        f"{_np(a, with_size=True)} {_relation(a, b)} {_np(b, with_size=False)}",
        f"{_np(a, with_size=False)} and {_np(b, with_size=False)} on a {bg} background",
        f"two shapes: {_np(a, with_size=True)} and {_np(b, with_size=True)}",
        f"a {bg} picture with {_np(b, with_size=False)} and {_np(a, with_size=False)}",
        f"{_np(b, with_size=False)} {_relation(b, a)} {_np(a, with_size=True)} on {bg}",
        f"{_np(b, with_size=True)} next to {_np(a, with_size=False)}",
    ]


def scene_captions(
    scene: Scene, n_captions: int = 5, rng: np.random.Generator | int | None = None
) -> list[str]:
    """Captions of a scene, each from a different template.

    Every caption names every object's shape and colour; templates differ in whether they give
    size, position, spatial relation or background.

    Parameters
    ----------
    scene : Scene
    n_captions : int
        Number of captions (1 to 6).
    rng : numpy.random.Generator or int, optional
        Chooses which templates; ``None`` takes the first ``n_captions`` templates.

    Returns
    -------
    list of str
    """
    if len(scene.objects) == 1:
        candidates = _one_object_captions(scene.objects[0], scene.background)
    else:
        candidates = _two_object_captions(*scene.objects, scene.background)
    if not 1 <= n_captions <= len(candidates):
        raise UsageError(f"captions per image {n_captions}: use 1 to {len(candidates)}")
    if rng is None:
        return candidates[:n_captions]
    rng = np.random.default_rng(rng)
    order = rng.permutation(len(candidates))[:n_captions]
    return [candidates[i] for i in order]


# ----------------------------------------------------------------------------- semantics


def scene_semantics(scene: Scene) -> np.ndarray:
    """Fixed-length semantic vector of a scene: what is there, not where.

    Entries (named by :data:`SEMANTIC_FEATURES`): count of objects of each shape, of each colour,
    of each size, and a one-hot background colour. Positions do not enter, so two scenes with the
    same objects in different places have the same vector.

    Parameters
    ----------
    scene : Scene

    Returns
    -------
    numpy.ndarray
        Shape ``(len(SEMANTIC_FEATURES),)``, float64.
    """
    vec = np.zeros(len(SEMANTIC_FEATURES))
    index = {name: i for i, name in enumerate(SEMANTIC_FEATURES)}
    for obj in scene.objects:
        vec[index[f"shape-{obj.shape}"]] += 1
        vec[index[f"colour-{obj.colour}"]] += 1
        vec[index[f"size-{obj.size}"]] += 1
    vec[index[f"background-{scene.background}"]] = 1
    return vec


_STOPWORDS = frozenset(
    "a an the of on in at to and with one two is are by for from its it this that next against "
    "picture image photo coloured colored shapes shape single".split()
)


def caption_semantics(
    captions: dict[str, list[str]], max_words: int = 64
) -> tuple[np.ndarray, list[str]]:
    """Bag-of-words semantic vectors from captions (for stimuli without a :class:`Scene`).

    The vocabulary is the ``max_words`` content words found in the most images (ties broken
    alphabetically), skipping stop words and words seen in a single image. Each image's entry is
    the fraction of its captions that contain the word.

    Parameters
    ----------
    captions : dict
        Image -> list of captions.
    max_words : int
        Vocabulary size at most.

    Returns
    -------
    features : numpy.ndarray
        Shape ``(len(captions), n_words)``, rows in ``captions`` order.
    vocabulary : list of str
    """
    tokenised = {
        k: [set(re.findall(r"[a-z]+", c.lower())) - _STOPWORDS for c in v]
        for k, v in captions.items()
    }
    doc_freq: Counter[str] = Counter()
    for sets in tokenised.values():
        doc_freq.update(set().union(*sets) if sets else set())
    vocab = sorted((w for w, n in doc_freq.items() if n >= 2), key=lambda w: (-doc_freq[w], w))
    vocab = sorted(vocab[:max_words])
    features = np.zeros((len(captions), len(vocab)))
    col = {w: j for j, w in enumerate(vocab)}
    for i, sets in enumerate(tokenised.values()):
        for words in sets:
            for w in words:
                if w in col:
                    features[i, col[w]] += 1.0 / len(sets)
    return features, vocab
