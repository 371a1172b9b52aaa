"""Interfaces of the decoding stage: betas, stimulus features, split, ridge fit and prediction.

Arrays travel between nodes as ``.npy`` files with a TSV naming their rows (``stim_id``);
decoders as safetensors + JSON sidecar. Nothing is pickled.
"""

from __future__ import annotations

import json
import os

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
from ._specs import default_first
from .threads import (
    limit_threads,
    num_threads_trait,
    threads_file_trait,
    write_threads_file,
)


class _SingleTrialBetasInputSpec(BaseInterfaceInputSpec):
    bold_file = File(exists=True, mandatory=True, desc="preprocessed 4D BOLD run (fMRIPrep)")
    events_file = File(exists=True, mandatory=True, desc="BIDS events.tsv with a stim_file column")
    confounds_file = File(exists=True, desc="fMRIPrep desc-confounds_timeseries.tsv")
    mask_file = File(exists=True, mandatory=True, desc="brain mask of the run")
    method = traits.Enum(
        *default_first(D.glm.betas_method, "lss", "lsa"),
        usedefault=True,
        desc="least-squares separate or all",
    )
    hrf_model = traits.Str(D.glm.hrf_model, usedefault=True, desc="nilearn HRF model name")
    drift_model = traits.Enum(
        *default_first(D.glm.drift_model, "cosine", "polynomial", None),
        usedefault=True,
        desc="drift model",
    )
    high_pass = traits.Float(D.glm.high_pass, usedefault=True, desc="cosine drift cut-off (Hz)")
    confounds = traits.Either(
        traits.Str,
        traits.List(traits.Str),
        default=D.glm.confounds,
        usedefault=True,
        desc="confound preset or list of confound columns",
    )
    noise_model = traits.Enum(
        *default_first(D.glm.noise_model, "ols", "ar1"), usedefault=True, desc="GLM noise model"
    )
    repetition_time = traits.Float(desc="TR in seconds (default: from the BOLD header)")
    run_label = traits.Str(desc="run label written into the trials table")
    stim_column = traits.Str(desc="events column naming each stimulus (default stim_file)")
    stim_map = File(exists=True, desc="TSV (value, stim_file) mapping stim_column to images")
    stim_template = traits.Str(desc="format string naming each value's image, e.g. img_{value}.png")
    trial_filter = traits.Str(desc="pandas query choosing the trial rows (others are nuisance)")
    num_threads = num_threads_trait()


class _SingleTrialBetasOutputSpec(TraitedSpec):
    betas_file = File(exists=True, desc="4D NIfTI, one volume per trial")
    trials_file = File(exists=True, desc="trials table (run, onset, stim_file, stim_id, ...)")
    threads_file = threads_file_trait()


class SingleTrialBetas(SimpleInterface):
    """Estimate one beta per trial for a run (all trials solved together).

    See :func:`nipype_brainrecon.glm.estimate_single_trial_betas`.
    """

    input_spec = _SingleTrialBetasInputSpec
    output_spec = _SingleTrialBetasOutputSpec

    def _run_interface(self, runtime):
        from ..bids.events import EventsSpec
        from ..glm import estimate_single_trial_betas, load_events, save_betas

        inputs = self.inputs
        spec = EventsSpec(
            **{
                name: getattr(inputs, name)
                for name in ("stim_column", "stim_map", "stim_template", "trial_filter")
                if isdefined(getattr(inputs, name))
            }
        )
        events = inputs.events_file if spec.is_default else load_events(inputs.events_file, spec)
        with limit_threads(inputs.num_threads) as threads:
            betas, trials = estimate_single_trial_betas(
                inputs.bold_file,
                events,
                inputs.confounds_file if isdefined(inputs.confounds_file) else None,
                inputs.mask_file,
                method=inputs.method,
                hrf_model=inputs.hrf_model,
                drift_model=inputs.drift_model,
                high_pass=inputs.high_pass,
                confounds=inputs.confounds,
                noise_model=inputs.noise_model,
                t_r=inputs.repetition_time if isdefined(inputs.repetition_time) else None,
                run=inputs.run_label if isdefined(inputs.run_label) else None,
            )
        betas_file, trials_file = save_betas(
            betas,
            trials,
            os.path.join(runtime.cwd, "betas.nii.gz"),
            os.path.join(runtime.cwd, "trials.tsv"),
        )
        self._results.update(
            betas_file=str(betas_file),
            trials_file=str(trials_file),
            threads_file=write_threads_file(threads, runtime.cwd),
        )
        return runtime


class _ExtractRoiColumnsInputSpec(BaseInterfaceInputSpec):
    betas_files = InputMultiObject(
        File(exists=True),
        mandatory=True,
        desc="betas matrices (.npy or .tsv: one row per trial, one column per voxel), one per run",
    )
    trials_files = InputMultiObject(
        File(exists=True), mandatory=True, desc="trials table (TSV) of each betas matrix"
    )
    roi_indices_file = File(
        exists=True,
        mandatory=True,
        desc="ROIs as 0-based voxel columns: JSON {name: [columns]} or TSV (roi, column)",
    )
    roi_names = InputMultiObject(
        traits.Str, mandatory=True, desc="ROI name(s) of roi_indices_file, merged into one ROI"
    )


class _ExtractRoiColumnsOutputSpec(TraitedSpec):
    data_file = File(exists=True, desc="trials × voxels matrix of the ROI (float32 .npy)")
    trials_file = File(exists=True, desc="the trials of all runs, in the rows' order (TSV)")
    n_voxels = traits.Int(desc="number of ROI voxels (columns)")


class ExtractRoiColumns(SimpleInterface):
    """The matrix route of :class:`~.rois.ExtractRoiData`: the ROI's columns of every run's
    betas matrix (its columns in increasing order) as one trials × voxels matrix."""

    input_spec = _ExtractRoiColumnsInputSpec
    output_spec = _ExtractRoiColumnsOutputSpec

    def _run_interface(self, runtime):
        import numpy as np
        import pandas as pd

        from ..errors import DataError
        from ..rois import load_betas_matrix, read_voxel_rois, roi_columns

        inputs = self.inputs
        if len(inputs.betas_files) != len(inputs.trials_files):
            raise DataError(
                f"{len(inputs.betas_files)} betas files but {len(inputs.trials_files)} trials "
                "tables; give one trials table per betas matrix"
            )
        rois = read_voxel_rois(inputs.roi_indices_file)
        blocks, tables, columns, first = [], [], None, None
        for betas, trials_file in zip(inputs.betas_files, inputs.trials_files, strict=True):
            matrix = load_betas_matrix(betas)
            if first is None:
                first = (betas, matrix.shape[1])
                columns = roi_columns(
                    rois, list(inputs.roi_names), matrix.shape[1], str(inputs.roi_indices_file)
                )
            elif matrix.shape[1] != first[1]:
                raise DataError(
                    f"{betas}: {matrix.shape[1]} voxel columns but {first[0]} has {first[1]}; "
                    "give every run's betas on the same voxels"
                )
            table = pd.read_csv(trials_file, sep="\t", dtype={"stim_id": str})
            if len(table) != len(matrix):
                raise DataError(
                    f"{trials_file}: {len(table)} trials but {len(matrix)} rows in {betas}; "
                    "give one row per trial, in the trials' order"
                )
            blocks.append(matrix[:, columns])
            tables.append(table)
        data = np.concatenate(blocks, axis=0)
        data_file = os.path.join(runtime.cwd, "roi_data.npy")
        np.save(data_file, data)
        trials_out = os.path.join(runtime.cwd, "trials.tsv")
        pd.concat(tables, ignore_index=True).to_csv(trials_out, sep="\t", index=False)
        self._results.update(data_file=data_file, trials_file=trials_out, n_voxels=data.shape[1])
        return runtime


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
    progress = traits.Bool(False, usedefault=True, desc="show progress bars")
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


class _SplitTrialsInputSpec(BaseInterfaceInputSpec):
    data_file = File(exists=True, mandatory=True, desc="trials × voxels matrix (.npy)")
    trials_file = File(exists=True, mandatory=True, desc="trials table in the rows' order")
    test_set = traits.Str(
        D.decoding.test_set,
        usedefault=True,
        desc="'repeats' (stimuli shown more than once), 'column:<name>' or a list file",
    )
    source_trials_files = InputMultiObject(
        File(exists=True),
        desc="the per-run (or per-session) trials tables whose concatenation is trials_file; "
        "each row's file is then a cross-validation group label",
    )


class _SplitTrialsOutputSpec(TraitedSpec):
    train_data_file = File(exists=True, desc="single training trials × voxels (.npy)")
    train_stimuli_file = File(exists=True, desc="TSV: stim_id of each training trial")
    test_data_file = File(exists=True, desc="test stimuli × voxels, mean over repeats (.npy)")
    test_stimuli_file = File(exists=True, desc="TSV: stim_id, repeats of each test stimulus")
    train_groups_file = File(
        exists=True,
        desc="TSV: source (file number), session and run (where known) of each training trial",
    )
    split_info = traits.Dict(desc="how the test set was chosen, with counts")


class SplitTrials(SimpleInterface):
    """Training = single trials of training stimuli; test = mean over each test stimulus's repeats."""

    input_spec = _SplitTrialsInputSpec
    output_spec = _SplitTrialsOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        import numpy as np
        import pandas as pd

        from ..glm.betas_io import with_stim_id
        from ..split import split_trials

        trials = pd.read_csv(
            self.inputs.trials_file, sep="\t", dtype={"stim_id": str, "stim_file": str}
        )
        trials = with_stim_id(trials, self.inputs.trials_file)
        data = np.load(self.inputs.data_file, mmap_mode="r", allow_pickle=False)
        split = split_trials(
            trials, data, test=self.inputs.test_set, source=self.inputs.trials_file
        )
        out = Path(runtime.cwd)
        np.save(out / "train_data.npy", split.train_data)
        np.save(out / "test_data.npy", split.test_data)
        pd.DataFrame({"stim_id": split.train_stimuli}).to_csv(
            out / "train_stimuli.tsv", sep="\t", index=False
        )
        pd.DataFrame({"stim_id": split.test_stimuli, "repeats": split.test_repeats}).to_csv(
            out / "test_stimuli.tsv", sep="\t", index=False
        )
        train_rows = ~np.isin(trials["stim_id"].astype(str).to_numpy(), split.test_stimuli)
        groups = _group_columns(trials, self.inputs)[train_rows]
        groups.to_csv(out / "train_groups.tsv", sep="\t", index=False)
        self._results.update(
            train_groups_file=str(out / "train_groups.tsv"),
            train_data_file=str(out / "train_data.npy"),
            train_stimuli_file=str(out / "train_stimuli.tsv"),
            test_data_file=str(out / "test_data.npy"),
            test_stimuli_file=str(out / "test_stimuli.tsv"),
            split_info=split.summary(),
        )
        return runtime


def _group_columns(trials, inputs):
    """``source`` (the trials' file, 1-based), ``session`` and ``run`` (where the table has them)
    of every row of the concatenated trials table, as strings."""
    import numpy as np
    import pandas as pd

    from ..errors import DataError

    source = np.ones(len(trials), dtype=int)
    if isdefined(inputs.source_trials_files) and len(inputs.source_trials_files) > 1:
        sizes = [len(pd.read_csv(f, sep="\t", usecols=[0])) for f in inputs.source_trials_files]
        if sum(sizes) != len(trials):
            raise DataError(
                f"{inputs.trials_file}: {len(trials)} trials but its source tables hold "
                f"{sum(sizes)}; give the tables it was concatenated from, in order"
            )
        source = np.repeat(np.arange(1, len(sizes) + 1), sizes)
    columns = {"source": source.astype(str)}
    for name in ("session", "run"):
        if name in trials.columns:
            columns[name] = trials[name].astype(str).to_numpy()
    return pd.DataFrame(columns)


def _rows_for(stimuli_file: str, features_stimuli_file: str, features_file: str):
    """Feature rows in the order of ``stimuli_file``'s stim_id column."""
    import numpy as np
    import pandas as pd

    from ..errors import DataError

    wanted = pd.read_csv(stimuli_file, sep="\t", dtype={"stim_id": str})["stim_id"].tolist()
    table = pd.read_csv(features_stimuli_file, sep="\t", dtype={"stim_id": str})
    index = {sid: i for i, sid in enumerate(table["stim_id"])}
    absent = sorted(set(wanted) - set(index))
    if absent:
        raise DataError(f"{features_file}: no features for stimulus/stimuli {absent[:5]}")
    features = np.load(features_file, mmap_mode="r", allow_pickle=False)
    return np.asarray(features[[index[s] for s in wanted]]), wanted


class _FitDecoderInputSpec(BaseInterfaceInputSpec):
    train_data_file = File(exists=True, mandatory=True, desc="training trials × voxels (.npy)")
    train_stimuli_file = File(exists=True, mandatory=True, desc="stim_id of each training row")
    features_file = File(exists=True, mandatory=True, desc="target features of every stimulus")
    features_stimuli_file = File(exists=True, mandatory=True, desc="stim_id of each feature row")
    alphas = traits.Either(
        traits.Enum("default", "paper"),
        traits.List(traits.Float),
        default=D.decoding.alphas,
        usedefault=True,
        desc="alpha grid: 'default' (wide), 'paper' (1e-6..1) or explicit values",
    )
    n_folds = traits.Int(
        D.decoding.n_folds, usedefault=True, desc="cross-validation folds for the alpha choice"
    )
    cv_groups = traits.Enum(
        *default_first(D.decoding.cv_groups, "run", "session", "none"),
        usedefault=True,
        desc="folds hold out whole runs or sessions (labels from train_groups_file; fewer than "
        "2: contiguous folds), or 'none': n_folds contiguous folds",
    )
    train_groups_file = File(
        exists=True, desc="source, session and run of each training row (SplitTrials)"
    )
    backend = traits.Enum(
        *default_first(D.decoding.backend, "auto", "numpy", "torch"),
        usedefault=True,
        desc="solver backend",
    )
    fit_intercept = traits.Bool(
        True, usedefault=True, desc="fit an intercept (centre the targets) as well as weights"
    )
    target_label = traits.Str(mandatory=True, desc="what is decoded (z or c)")
    roi_label = traits.Str(mandatory=True, desc="ROI the voxels come from")
    metadata = traits.Dict(desc="provenance written into the decoder sidecar")
    use_gpu = traits.Bool(False, usedefault=True, desc="schedule on a GPU (MultiProc n_gpu_procs)")
    num_threads = num_threads_trait()


class _FitDecoderOutputSpec(TraitedSpec):
    decoder_file = File(exists=True, desc="decoder weights (safetensors)")
    sidecar_file = File(exists=True, desc="decoder sidecar (JSON)")
    alpha_counts = traits.Dict(desc="how many targets chose each alpha")
    cv_folds = traits.Str(desc="the folds of the alpha choice, as recorded in the sidecar")
    threads_file = threads_file_trait()


class FitDecoder(SimpleInterface):
    """Fit a ridge decoder (alpha chosen per target by cross-validation) and save it.

    The folds hold out whole runs (``cv_groups="run"``) or sessions where the training rows'
    labels tell them (``train_groups_file``), else they are ``n_folds`` contiguous ones; the
    sidecar's ``Metadata.CVFolds`` says which.
    """

    input_spec = _FitDecoderInputSpec
    output_spec = _FitDecoderOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        import numpy as np

        from ..ridge import fit_ridge_cv, save_decoder

        inputs = self.inputs
        y, _ = _rows_for(
            inputs.train_stimuli_file, inputs.features_stimuli_file, inputs.features_file
        )
        check_varies(
            y,
            f"{inputs.features_file}: the {inputs.target_label} features of the "
            f"{len(y)} training trials of {inputs.train_stimuli_file} are all the same",
        )
        x = np.load(inputs.train_data_file, allow_pickle=False)
        metadata = dict(inputs.metadata) if isdefined(inputs.metadata) else {}
        folds, cv_folds = _cv_folds(inputs, len(x))
        metadata.update(target=inputs.target_label, roi=inputs.roi_label, CVFolds=cv_folds)
        alphas = inputs.alphas if isinstance(inputs.alphas, str) else np.asarray(inputs.alphas)
        with limit_threads(inputs.num_threads) as threads:
            decoder = fit_ridge_cv(
                x,
                y,
                alphas=alphas,
                n_folds=inputs.n_folds,
                fit_intercept=inputs.fit_intercept,
                backend=inputs.backend,
                metadata=metadata,
                folds=folds,
            )
        stem = Path(runtime.cwd) / f"target-{inputs.target_label}_roi-{inputs.roi_label}_decoder"
        weights, sidecar = save_decoder(decoder, stem, metadata)
        self._results.update(
            decoder_file=str(weights),
            sidecar_file=str(sidecar),
            alpha_counts={f"{a:g}": int(n) for a, n in decoder.alpha_counts().items()},
            cv_folds=cv_folds,
            threads_file=write_threads_file(threads, runtime.cwd),
        )
        return runtime


def _cv_folds(inputs, n_rows: int):
    """``(folds, description)``: group folds of ``cv_groups`` where the labels give at least
    2 groups, else ``(None, ...)`` (``n_folds`` contiguous folds)."""
    import pandas as pd

    from ..errors import DataError
    from ..ridge.cv import group_folds

    kind, k = inputs.cv_groups, int(inputs.n_folds)
    if kind == "none":
        return None, f"contiguous: {k} folds"
    labels = None
    if isdefined(inputs.train_groups_file):
        table = pd.read_csv(inputs.train_groups_file, sep="\t", dtype=str, keep_default_na=False)
        if len(table) != n_rows:
            raise DataError(
                f"{inputs.train_groups_file}: {len(table)} rows for {n_rows} training trials "
                f"of {inputs.train_data_file}; give the groups of these trials (SplitTrials)"
            )
        keys = ["session"] if kind == "session" else ["source", "session", "run"]
        keys = [c for c in keys if c in table.columns]
        if keys:
            labels = table[keys].agg("|".join, axis=1).to_numpy()
    n_groups = 0 if labels is None else len(set(labels))
    if n_groups < 2:
        return None, f"contiguous: {k} folds (fewer than 2 {kind}s known)"
    folds = group_folds(labels, k)
    return folds, f"leave-{kind}s-out: {len(folds)} folds of {n_groups} {kind}s"


class _PredictDecoderInputSpec(BaseInterfaceInputSpec):
    decoder_file = File(exists=True, mandatory=True, desc="decoder weights (safetensors)")
    test_data_file = File(exists=True, mandatory=True, desc="test stimuli × voxels (.npy)")
    test_stimuli_file = File(exists=True, mandatory=True, desc="stim_id of each test row")
    features_file = File(exists=True, desc="true features of every stimulus, to score against")
    features_stimuli_file = File(exists=True, desc="stim_id of each feature row")
    train_stimuli_file = File(exists=True, desc="training stim_ids, for the mean-feature baseline")


class _PredictDecoderOutputSpec(TraitedSpec):
    predicted_file = File(exists=True, desc="predicted features of the test stimuli (.npy)")
    scores_file = File(desc="decoding scores with chance and baseline (JSON)")
    scores = traits.Dict(desc="decoding scores with chance and baseline")


class PredictDecoder(SimpleInterface):
    """Predict features of the test stimuli and score them against the true features.

    Scores: mean per-target Pearson r over test stimuli (chance 0), pattern r per stimulus with
    the mean-training-feature baseline, and two-way identification (chance 0.5).
    """

    input_spec = _PredictDecoderInputSpec
    output_spec = _PredictDecoderOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        import numpy as np

        from ..evaluation.metrics import decoding_scores
        from ..ridge import load_decoder

        inputs = self.inputs
        decoder = load_decoder(inputs.decoder_file)
        x = np.load(inputs.test_data_file, allow_pickle=False)
        if x.ndim != 2 or x.shape[1] != decoder.n_voxels:
            from ..errors import DataError

            meta = decoder.metadata
            raise DataError(
                f"{inputs.decoder_file}: decoder fitted on {decoder.n_voxels} voxels (subject "
                f"{meta.get('subject', '?')}, ROI {meta.get('roi', '?')}) but "
                f"{inputs.test_data_file} has {x.shape[-1]}; use the decoder of this subject "
                "and ROI"
            )
        predicted = decoder.predict(x).reshape((len(x), *decoder.target_shape))
        out = Path(runtime.cwd)
        np.save(out / "predicted.npy", predicted.astype(np.float32))
        self._results["predicted_file"] = str(out / "predicted.npy")
        if isdefined(inputs.features_file) and isdefined(inputs.features_stimuli_file):
            truth, _ = _rows_for(
                inputs.test_stimuli_file, inputs.features_stimuli_file, inputs.features_file
            )
            baseline = None
            if isdefined(inputs.train_stimuli_file):
                train, _ = _rows_for(
                    inputs.train_stimuli_file, inputs.features_stimuli_file, inputs.features_file
                )
                baseline = train.mean(axis=0)
            scores = decoding_scores(truth, predicted, baseline=baseline)
            scores.update(
                target=decoder.metadata.get("target"),
                roi=decoder.metadata.get("roi"),
                n_voxels=decoder.n_voxels_used,
            )
            (out / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
            self._results.update(scores_file=str(out / "scores.json"), scores=scores)
        return runtime
