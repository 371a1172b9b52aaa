"""Interfaces of the decoding stage: split, ridge fit and prediction.

The betas (:mod:`.betas`), ROI data (:mod:`.rois`) and stimulus features (:mod:`.features`)
interfaces that feed them are re-exported here. Arrays travel between nodes as ``.npy`` files
with a TSV naming their rows (``stim_id``); decoders as safetensors + JSON sidecar. Nothing is
pickled.
"""

from __future__ import annotations

import json

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
from .betas import SingleTrialBetas
from .features import StimulusFeatures, check_varies
from .rois import ExtractRoiColumns
from .threads import (
    limit_threads,
    num_threads_trait,
    threads_file_trait,
    write_threads_file,
)

__all__ = [
    "ExtractRoiColumns",
    "FitDecoder",
    "PredictDecoder",
    "SingleTrialBetas",
    "SplitTrials",
    "StimulusFeatures",
    "check_varies",
]


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
        D.decoding.fit_intercept,
        usedefault=True,
        desc="fit an intercept (centre the targets) as well as weights",
    )
    target_label = traits.Str(mandatory=True, desc="what is decoded (z or c)")
    roi_label = traits.Str(mandatory=True, desc="ROI the voxels come from")
    metadata = traits.Dict(desc="provenance written into the decoder sidecar")
    use_gpu = traits.Bool(False, usedefault=True, desc="schedule on a GPU (MultiProc n_gpu_procs)")
    num_threads = num_threads_trait()
    progress = traits.Bool(
        False, usedefault=True, nohash=True, desc="show progress bars (not part of the hash)"
    )


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

        from ..ridge import SolverOptions, fit_ridge_cv, save_decoder

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
        subject = f"sub-{metadata['subject']} " if metadata.get("subject") else ""
        options = SolverOptions(
            progress=inputs.progress, progress_desc=f"{subject}ridge {inputs.target_label}"
        )
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
                solver_options=options,
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
