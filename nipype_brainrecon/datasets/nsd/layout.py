"""Where the Natural Scenes Dataset (NSD) keeps each file a conversion reads.

The release (``s3://natural-scenes-dataset/``) is mirrored under one folder, ``NSD_ROOT``; every
path here is relative to it and spelt as in the release (see docs/nsd.md for the sources).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ...errors import MissingInputError, UsageError

#: The release's bucket, named in messages so that a user knows where a missing file comes from.
NSD_BUCKET = "s3://natural-scenes-dataset"
#: COCO 2017 annotations, the source of the captions.
COCO_ANNOTATIONS_URL = "http://images.cocodataset.org/annotations/annotations_trainval2017.zip"
#: Betas are stored as int16 percent signal change times this factor.
BETA_SCALE = 300.0
#: The GLM version converted (the one Takagi & Nishimoto 2023 and Brain-Diffuser use).
BETAS_VERSION = "betas_fithrf_GLMdenoise_RR"
#: Functional preparations with volume betas.
SPACES = ("func1pt8mm", "func1mm")
#: Atlases converted to ``*_dseg`` images, by their release names.
ATLASES = ("streams", "nsdgeneral", "prf-visualrois")
#: The release's BIDS task name of the core NSD experiment.
TASK = "nsdcore"
#: The subjects of the release.
SUBJECTS = range(1, 9)

_SESSION_FILE = re.compile(r"^betas_session(\d\d)\.nii\.gz$")


@dataclass(frozen=True)
class NsdLayout:
    """The release's paths for one subject and functional preparation.

    Parameters
    ----------
    root : path
        The folder holding ``nsddata/``, ``nsddata_betas/`` and ``nsddata_stimuli/``.
    subject : int
        NSD subject number, 1-8 (``subj01`` ... ``subj08``).
    space : str
        ``func1pt8mm`` (1.8 mm) or ``func1mm``.
    """

    root: Path
    subject: int
    space: str = "func1pt8mm"

    def __post_init__(self) -> None:
        if self.subject not in SUBJECTS:
            raise UsageError(f"subject={self.subject!r}: NSD subjects are numbered 1 to 8")
        if self.space not in SPACES:
            raise UsageError(f"space={self.space!r}: choose one of {', '.join(SPACES)}")
        object.__setattr__(self, "root", Path(self.root))

    @property
    def subj(self) -> str:
        """The release's subject folder name, ``subjXX``."""
        return f"subj{self.subject:02d}"

    @property
    def expdesign(self) -> Path:
        return self.root / "nsddata/experiments/nsd/nsd_expdesign.mat"

    @property
    def stim_info(self) -> Path:
        return self.root / "nsddata/experiments/nsd/nsd_stim_info_merged.csv"

    @property
    def responses(self) -> Path:
        return self.root / f"nsddata/ppdata/{self.subj}/behav/responses.tsv"

    @property
    def stimuli(self) -> Path:
        return self.root / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5"

    @property
    def betas_dir(self) -> Path:
        return self.root / f"nsddata_betas/ppdata/{self.subj}/{self.space}/{BETAS_VERSION}"

    def betas(self, session: int) -> Path:
        """The session's betas, ``betas_sessionNN.nii.gz`` (sessions numbered from 1)."""
        return self.betas_dir / f"betas_session{session:02d}.nii.gz"

    def betas_sessions(self) -> list[int]:
        """The sessions whose betas file is present, in order."""
        if not self.betas_dir.is_dir():
            return []
        found = (_SESSION_FILE.match(p.name) for p in self.betas_dir.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def roi(self, atlas: str) -> Path:
        """An atlas on the functional grid, ``nsddata/ppdata/subjXX/<space>/roi/<atlas>.nii.gz``."""
        return self.root / f"nsddata/ppdata/{self.subj}/{self.space}/roi/{atlas}.nii.gz"

    def ctab(self, atlas: str) -> Path:
        """The atlas's label table: the subject's FreeSurfer ``label/<atlas>.mgz.ctab``, else
        fsaverage's (where ``nsd_access`` reads it)."""
        own = self.root / f"nsddata/freesurfer/{self.subj}/label/{atlas}.mgz.ctab"
        fsaverage = self.root / f"nsddata/freesurfer/fsaverage/label/{atlas}.mgz.ctab"
        return own if own.is_file() or not fsaverage.is_file() else fsaverage

    def coco_captions(self, split: str, coco_dir: Path | None) -> Path:
        """COCO's ``captions_<split>.json``: in ``coco_dir`` (or its ``annotations/``), else
        where ``nsd_access`` unpacks them (``nsddata_stimuli/stimuli/nsd/annotations/``)."""
        name = f"captions_{split}.json"
        if coco_dir is None:
            return self.root / "nsddata_stimuli/stimuli/nsd/annotations" / name
        coco_dir = Path(coco_dir)
        nested = coco_dir / "annotations" / name
        return nested if nested.is_file() and not (coco_dir / name).is_file() else coco_dir / name

    def release_path(self, path: Path) -> str:
        """``path`` relative to the root, as the release names it."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()


def require(layout: NsdLayout, path: Path, what: str) -> Path:
    """``path`` if it is a file, else a :class:`MissingInputError` naming it and its source."""
    if path.is_file():
        return path
    rel = layout.release_path(path)
    if path.name.startswith("captions_"):
        source = f"COCO 2017 annotations ({COCO_ANNOTATIONS_URL}); pass their folder with --coco"
    else:
        source = f"the NSD release, {NSD_BUCKET}/{rel}"
    raise MissingInputError(f"{path}: {what} not found; it comes from {source}")
