"""The interface computing the stimulus features decoded: z (VAE latents) and c (captions).

Arrays travel between nodes as ``.npy`` files with a TSV naming their rows (``stim_id``).
"""

from __future__ import annotations

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..config import DEFAULTS as D
from .threads import (
    limit_threads,
    num_threads_trait,
    threads_file_trait,
    write_threads_file,
)


class _StimulusFeaturesInputSpec(BaseInterfaceInputSpec):
    trials_files = InputMultiObject(
        File(exists=True), mandatory=True, desc="trials tables naming the stimuli shown"
    )
    stimuli_dir = traits.Directory(exists=True, mandatory=True, desc="the dataset's stimuli/")
    captions_file = File(
        exists=True, desc="captions table (stim_file, caption); needed when c is a target"
    )
    dataset_dir = traits.Directory(exists=True, desc="BIDS root (stimulus links may point in it)")
    model = traits.Str(mandatory=True, desc="diffusers model folder or hub id")
    resolution = traits.Int(
        desc="image size before VAE encoding (px); default the model's native size "
        f"(a local folder's, else {D.decoding.resolution})"
    )
    targets = traits.List(
        traits.Enum("z", "c"),
        value=["z", "c"],
        usedefault=True,
        minlen=1,
        desc="features to compute: z (VAE latents of the images), c (caption embeddings)",
    )
    batch_size = traits.Int(
        D.decoding.feature_batch_size, usedefault=True, desc="images (or captions) per model call"
    )
    cache_dir = traits.Directory(desc="feature cache shared across subjects and reruns")
    device = traits.Str(desc="torch device (default: CUDA if available, else CPU)")
    progress = traits.Bool(
        False, usedefault=True, nohash=True, desc="show progress bars (not part of the hash)"
    )
    use_gpu = traits.Bool(False, usedefault=True, desc="schedule on a GPU (MultiProc n_gpu_procs)")
    num_threads = num_threads_trait()


class _StimulusFeaturesOutputSpec(TraitedSpec):
    z_file = File(exists=True, desc="VAE latents z of every stimulus (.npy), if a target")
    c_file = File(
        exists=True, desc="mean caption embeddings c of every stimulus (.npy), if a target"
    )
    stimuli_file = File(exists=True, desc="TSV naming the rows: stim_id, stim_file")
    model_info = traits.Dict(desc="model identity and feature shapes")
    threads_file = threads_file_trait()


class StimulusFeatures(SimpleInterface):
    """Encode every stimulus shown: z from the VAE, c from the text encoder (cached on disk)."""

    input_spec = _StimulusFeaturesInputSpec
    output_spec = _StimulusFeaturesOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        import numpy as np
        import pandas as pd

        from ..bids import resolve_stim_file
        from ..diffusion.models import load_text_encoder, load_vae, model_identity
        from ..features import encode_captions_c, encode_images_z

        inputs = self.inputs
        stimuli_dir = Path(inputs.stimuli_dir)
        dataset_dir = Path(inputs.dataset_dir) if isdefined(inputs.dataset_dir) else stimuli_dir
        device = inputs.device if isdefined(inputs.device) else None
        cache = inputs.cache_dir if isdefined(inputs.cache_dir) else None
        files = _shown_stimuli(inputs.trials_files)
        stim_ids = sorted(files)
        source = Path(
            inputs.captions_file if isdefined(inputs.captions_file) else inputs.trials_files[0]
        )
        paths = [
            resolve_stim_file(files[s], stimuli_dir, dataset_dir=dataset_dir, source=source)
            for s in stim_ids
        ]
        captions = _captions_of(inputs, paths, files, stim_ids, stimuli_dir, dataset_dir)
        model = inputs.model
        model_id = model_identity(model) if Path(model).is_dir() else model
        resolution = _resolution(inputs)
        out = Path(runtime.cwd)
        info = {"model": str(model), "model_id": model_id, "resolution": resolution}
        with limit_threads(inputs.num_threads) as threads:
            if "z" in inputs.targets:
                z = encode_images_z(
                    paths,
                    lambda: load_vae(model, device=device),
                    resolution=resolution,
                    batch_size=inputs.batch_size,
                    device=device,
                    cache_dir=cache,
                    model_id=model_id,
                    progress=inputs.progress,
                )
                np.save(out / "z.npy", z)
                self._results["z_file"] = str(out / "z.npy")
                info["z_shape"] = list(z.shape[1:])
            if "c" in inputs.targets:
                c = encode_captions_c(
                    {s: captions[p] for s, p in zip(stim_ids, paths, strict=True)},
                    text_encoder=lambda: load_text_encoder(model, device=device),
                    batch_size=max(inputs.batch_size, 16),
                    device=device,
                    cache_dir=cache,
                    model_id=model_id,
                    progress=inputs.progress,
                )
                check_varies(c, f"{inputs.captions_file}: every shown image has the same captions")
                np.save(out / "c.npy", c)
                self._results["c_file"] = str(out / "c.npy")
                info["c_shape"] = list(c.shape[1:])
        pd.DataFrame({"stim_id": stim_ids, "stim_file": [files[s] for s in stim_ids]}).to_csv(
            out / "stimuli.tsv", sep="\t", index=False
        )
        self._results.update(
            stimuli_file=str(out / "stimuli.tsv"),
            model_info=info,
            threads_file=write_threads_file(threads, out),
        )
        return runtime


def _shown_stimuli(trials_files) -> dict[str, str]:
    """``{stim_id: stim_file}`` of every trial of the tables (stim_id derived where absent)."""
    import pandas as pd

    from ..errors import DataError
    from ..glm.betas_io import with_stim_id

    files: dict[str, str] = {}
    for trials_file in trials_files:
        table = pd.read_csv(trials_file, sep="\t", dtype={"stim_id": str, "stim_file": str})
        if "stim_file" not in table.columns:
            raise DataError(
                f"{trials_file}: needs a stim_file column naming each trial's image "
                "(relative to stimuli/)"
            )
        table = with_stim_id(table, trials_file)
        for sid, sfile in zip(table["stim_id"], table["stim_file"], strict=True):
            if files.setdefault(sid, sfile) != sfile:
                raise DataError(
                    f"{trials_file}: stimulus id {sid!r} names two files "
                    f"({files[sid]!r}, {sfile!r}); image file names must be unique"
                )
    return files


def _captions_of(inputs, paths, files, stim_ids, stimuli_dir, dataset_dir) -> dict:
    """The captions of the shown images (``{}`` when c is not a target)."""
    from ..bids import read_captions
    from ..errors import DataError, UsageError

    if "c" not in inputs.targets:
        return {}
    if not isdefined(inputs.captions_file):
        raise UsageError(
            "StimulusFeatures: c is a target but no captions_file was given; give the captions "
            "table (stim_file, caption) or decode z only (targets=['z'])"
        )
    captions = read_captions(inputs.captions_file, stimuli_dir, dataset_dir=dataset_dir)
    lacking = [files[s] for s, p in zip(stim_ids, paths, strict=True) if p not in captions]
    if lacking:
        raise DataError(
            f"{inputs.captions_file}: no caption for {len(lacking)} shown image(s), "
            f"e.g. {lacking[:3]}; add rows to the captions table"
        )
    return captions


def _resolution(inputs) -> int:
    """The image size for z: given, else the model's native size (a hub id: the default)."""
    if isdefined(inputs.resolution):
        return int(inputs.resolution)
    from ..diffusion.models import local_folder, native_resolution

    folder = local_folder(inputs.model)
    return D.decoding.resolution if folder is None else native_resolution(folder)


def check_varies(features, message: str) -> None:
    """Refuse features identical for every row (nothing to decode), with ``message`` + the fix.

    >>> import numpy as np
    >>> check_varies(np.eye(2), "x")
    >>> check_varies(np.ones((3, 2)), "t.tsv: all rows equal")
    Traceback (most recent call last):
    ...
    nipype_brainrecon.errors.DataError: t.tsv: all rows equal, so the target is constant and cannot be decoded; give the stimuli different content, or leave this target out
    """
    import numpy as np

    from ..errors import DataError

    values = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    if len(values) < 2:
        return
    scale = max(1.0, float(np.abs(values).max()))
    if float(np.abs(values - values[:1]).max()) <= 1e-6 * scale:
        raise DataError(
            f"{message}, so the target is constant and cannot be decoded; give the stimuli "
            "different content, or leave this target out"
        )
