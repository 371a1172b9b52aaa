"""Fingerprints of a small simulation, to check that new options leave existing datasets unchanged.

Run as ``python tests/synthetic/golden_sim.py OUT.json [PRESET]`` to (re)write a reference; the
tests in ``test_simulate_realism.py`` compare fresh simulations with ``data/golden_oracle_sim.json``
(``--preset oracle``: every realism option off, saved before those options existed) and
``data/golden_default_sim.json`` (the defaults, saved when issue 22 made the realism default).
Files are fingerprinted by content, not bytes, so gzip or version strings do not matter: NIfTI by
their decoded array, header zooms and affine; ``.npz`` per array; JSON per top-level key (the
``software`` / ``GeneratedBy`` entries, which carry the version, are skipped); other files by bytes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

#: The small configuration fingerprinted (seconds to simulate).
GOLDEN_KWARGS = {
    "n_subjects": 1,
    "n_runs": 2,
    "n_train": 16,
    "n_test": 4,
    "n_repeats": 2,
    "image_size": 32,
    "seed": 11,
}
_SKIP_KEYS = {"software", "GeneratedBy"}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _array_sha(arr: np.ndarray) -> str:
    arr = np.ascontiguousarray(arr)
    return _sha(f"{arr.dtype.str}{arr.shape}".encode() + arr.tobytes())


def fingerprint(root: Path) -> dict[str, object]:
    """Content fingerprints of every file under ``root``, keyed by relative path."""
    out: dict[str, object] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel.endswith(".nii.gz"):
            img = nib.load(path)
            out[rel] = {
                "data": _array_sha(np.asarray(img.dataobj)),
                "zooms": [float(z) for z in img.header.get_zooms()],
                "affine": _array_sha(img.affine),
            }
        elif rel.endswith(".npz"):
            with np.load(path, allow_pickle=False) as npz:
                out[rel] = {k: _array_sha(npz[k]) for k in sorted(npz.files)}
        elif rel.endswith(".json"):
            obj = json.loads(path.read_text(encoding="utf-8"))
            out[rel] = {
                k: _sha(json.dumps(v, sort_keys=True).encode())
                for k, v in sorted(obj.items())
                if k not in _SKIP_KEYS
            }
        else:
            out[rel] = _sha(path.read_bytes())
    return out


if __name__ == "__main__":
    import tempfile

    from nipype_brainrecon.synthetic.simulate import simulate_dataset
    from nipype_brainrecon.synthetic.simulate.presets import preset_options

    preset = preset_options(sys.argv[2] if len(sys.argv) > 2 else "default")
    with tempfile.TemporaryDirectory() as tmp:
        root = simulate_dataset(Path(tmp) / "sim", **GOLDEN_KWARGS, **preset)
        prints = fingerprint(root)
    Path(sys.argv[1]).write_text(json.dumps(prints, indent=1, sort_keys=True) + "\n")
    print(f"{len(prints)} files fingerprinted")
