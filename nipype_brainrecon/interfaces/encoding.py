"""Interfaces of the encoding analysis: U-Net features, encoding models, maps, derivatives.

Thin wrappers over :mod:`nipype_brainrecon.encoding`. Arrays travel as ``.npy`` files with a TSV
naming their rows (``stim_id``), as in the decoding stage.
"""

from __future__ import annotations

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
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


class _EncodingFeaturesInputSpec(BaseInterfaceInputSpec):
    z_file = File(exists=True, mandatory=True, desc="VAE latents z of every stimulus (.npy)")
    c_file = File(exists=True, mandatory=True, desc="caption embeddings c of every stimulus")
    stimuli_file = File(exists=True, mandatory=True, desc="TSV naming the feature rows (stim_id)")
    model = traits.Str(mandatory=True, desc="diffusers model folder or hub id")
    blocks = traits.List(
        traits.Str, list(D.encoding.blocks), usedefault=True, desc="U-Net blocks to hook"
    )
    steps = traits.List(
        traits.Str,
        list(D.encoding.steps),
        usedefault=True,
        desc="denoising steps captured (early, middle, late)",
    )
    conditions = traits.List(
        traits.Enum("c", "none"), ["c", "none"], usedefault=True, desc="conditioning of the runs"
    )
    strength = traits.Float(
        D.reconstruction.strength, usedefault=True, desc="noise level of the init latent"
    )
    num_inference_steps = traits.Int(
        D.reconstruction.num_inference_steps, usedefault=True, desc="DDIM schedule length"
    )
    guidance_scale = traits.Float(
        D.reconstruction.guidance_scale, usedefault=True, desc="classifier-free guidance scale"
    )
    seed = traits.Int(D.seed, usedefault=True, desc="seed of the noise")
    pool = traits.Int(
        D.encoding.pool, usedefault=True, desc="largest side of pooled activation maps"
    )
    batch_size = traits.Int(
        D.reconstruction.batch_size, usedefault=True, desc="stimuli per U-Net call"
    )
    cache_dir = Directory(desc="feature cache shared across subjects and reruns")
    device = traits.Str(desc="torch device (default: CUDA if available, else CPU)")
    use_gpu = traits.Bool(False, usedefault=True, desc="schedule on a GPU (MultiProc n_gpu_procs)")
    num_threads = num_threads_trait()


class _EncodingFeaturesOutputSpec(TraitedSpec):
    features_files = traits.List(File(exists=True), desc="one .npy per feature space")
    feature_names = traits.List(traits.Str, desc="name of each feature space (z, c, z_c, unet_*)")
    unet_info = traits.Dict(desc="block types, timesteps and activation shapes")
    threads_file = threads_file_trait()


class EncodingFeatures(SimpleInterface):
    """Feature spaces of the encoding models: z, c, z_c and U-Net activations (cached).

    See :func:`nipype_brainrecon.encoding.extract_unet_features`.
    """

    input_spec = _EncodingFeaturesInputSpec
    output_spec = _EncodingFeaturesOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        import numpy as np
        import pandas as pd

        from ..diffusion.models import load_pipeline, model_identity
        from ..encoding import extract_unet_features
        from ..features import empty_prompt_embedding

        inputs = self.inputs
        device = inputs.device if isdefined(inputs.device) else None
        cache = inputs.cache_dir if isdefined(inputs.cache_dir) else None
        model = inputs.model
        model_id = model_identity(model) if Path(model).is_dir() else model
        ids = pd.read_csv(inputs.stimuli_file, sep="\t", dtype={"stim_id": str})["stim_id"]
        z = np.load(inputs.z_file)
        c = np.load(inputs.c_file)
        conditions = list(inputs.conditions) if inputs.blocks else ["c"]
        if "c" not in conditions:
            conditions.append("c")  # z_c is the latent of the c-conditioned run
        with limit_threads(inputs.num_threads) as threads:
            pipe = load_pipeline(model, device=device)
            uncond = empty_prompt_embedding(pipe.tokenizer, pipe.text_encoder, model_id=model_id)
            result = extract_unet_features(
                pipe.unet,
                pipe.scheduler,
                z,
                c,
                uncond,
                ids.tolist(),
                blocks=list(inputs.blocks),
                steps=list(inputs.steps),
                conditions=conditions,
                strength=inputs.strength,
                num_inference_steps=inputs.num_inference_steps,
                guidance_scale=inputs.guidance_scale,
                seed=inputs.seed,
                pool=inputs.pool,
                batch_size=inputs.batch_size,
                cache_dir=cache,
                model_id=model_id,
            )
        out = Path(runtime.cwd)
        files, names = [str(inputs.z_file), str(inputs.c_file)], ["z", "c"]
        arrays = {"z_c": result.z_c}
        arrays.update(
            {k: v for k, v in result.features.items() if k.rsplit("_", 1)[-1] in inputs.conditions}
        )
        for name, array in arrays.items():
            path = out / f"{name}.npy"
            np.save(path, array)
            files.append(str(path))
            names.append(name)
        self._results.update(
            features_files=files,
            feature_names=names,
            unet_info=result.info,
            threads_file=write_threads_file(threads, out),
        )
        return runtime


class _FitEncodingModelsInputSpec(BaseInterfaceInputSpec):
    train_data_file = File(exists=True, mandatory=True, desc="training trials × voxels (.npy)")
    train_stimuli_file = File(exists=True, mandatory=True, desc="stim_id of each training row")
    test_data_file = File(exists=True, mandatory=True, desc="test stimuli × voxels (.npy)")
    test_stimuli_file = File(exists=True, mandatory=True, desc="stim_id of each test row")
    features_files = InputMultiObject(
        File(exists=True), mandatory=True, desc="one .npy per feature space"
    )
    feature_names = traits.List(traits.Str, mandatory=True, desc="name of each feature space")
    features_stimuli_file = File(exists=True, mandatory=True, desc="stim_id of each feature row")
    joint = traits.List(
        traits.Str,
        ["z+c"],
        usedefault=True,
        desc="pairs fitted jointly ('a+b') for unique variance",
    )
    balance = traits.Bool(True, usedefault=True, desc="balance the blocks of joint models")
    banded = traits.Bool(
        False, usedefault=True, desc="joint models with one alpha per feature space (banded ridge)"
    )
    n_bootstrap = traits.Int(
        0, usedefault=True, desc="bootstrap resamples for unique-variance 95 % CIs (0: none)"
    )
    bootstrap = traits.Enum(
        "test",
        "refit",
        usedefault=True,
        desc="'test': resample test stimuli (fast); 'refit': also training stimuli, refitting "
        "the models (covers the fit's variability and bias)",
    )
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
    backend = traits.Enum(
        *default_first(D.decoding.backend, "auto", "numpy", "torch"),
        usedefault=True,
        desc="solver backend",
    )
    seed = traits.Int(0, usedefault=True, desc="seed of the chance-level permutations")
    use_gpu = traits.Bool(False, usedefault=True, desc="schedule on a GPU (MultiProc n_gpu_procs)")
    num_threads = num_threads_trait()


class _FitEncodingModelsOutputSpec(TraitedSpec):
    maps_file = File(exists=True, desc="maps × voxels (.npy)")
    map_names = traits.List(traits.Str, desc="'<feature space>:<statistic>' of each map row")
    spaces = traits.Dict(desc="per feature space: feature count, fit time, chosen alphas")
    n_train = traits.Int(desc="training trials")
    n_test = traits.Int(desc="test stimuli")
    threads_file = threads_file_trait()


class FitEncodingModels(SimpleInterface):
    """Fit a voxel-wise ridge encoding model per feature space; score it on the test stimuli.

    See :func:`nipype_brainrecon.encoding.run_encoding`.
    """

    input_spec = _FitEncodingModelsInputSpec
    output_spec = _FitEncodingModelsOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        import numpy as np
        import pandas as pd

        from ..encoding import run_encoding
        from ..errors import DataError

        inputs = self.inputs
        if len(inputs.features_files) != len(inputs.feature_names):
            raise DataError(
                f"{len(inputs.features_files)} feature files for {len(inputs.feature_names)} names"
            )

        def ids(path):
            return pd.read_csv(path, sep="\t", dtype={"stim_id": str})["stim_id"].tolist()

        # Memory-mapped: only the rows of each fit are read (U-Net features can be large).
        features = {
            name: np.load(path, mmap_mode="r")
            for name, path in zip(inputs.feature_names, inputs.features_files, strict=True)
        }
        alphas = inputs.alphas if isinstance(inputs.alphas, str) else np.asarray(inputs.alphas)
        with limit_threads(inputs.num_threads) as threads:
            results = run_encoding(
                features,
                ids(inputs.features_stimuli_file),
                np.load(inputs.train_data_file),
                ids(inputs.train_stimuli_file),
                np.load(inputs.test_data_file),
                ids(inputs.test_stimuli_file),
                joint=[pair.split("+") for pair in inputs.joint],
                balance=inputs.balance,
                banded=inputs.banded,
                n_bootstrap=inputs.n_bootstrap,
                bootstrap=inputs.bootstrap,
                alphas=alphas,
                n_folds=inputs.n_folds,
                backend=inputs.backend,
                seed=inputs.seed,
            )
        out = Path(runtime.cwd) / "maps.npy"
        np.save(out, np.stack(list(results.maps.values())).astype(np.float32))
        self._results.update(
            maps_file=str(out),
            map_names=results.names(),
            spaces=results.spaces,
            n_train=results.n_train,
            n_test=results.n_test,
            threads_file=write_threads_file(threads, runtime.cwd),
        )
        return runtime


class _EncodingMapsInputSpec(BaseInterfaceInputSpec):
    maps_file = File(exists=True, mandatory=True, desc="maps × voxels (.npy)")
    map_names = traits.List(traits.Str, mandatory=True, desc="name of each map row")
    mask_file = File(exists=True, mandatory=True, desc="mask of the modelled voxels")
    dseg_file = File(exists=True, mandatory=True, desc="segmentation naming the regions")
    labels_file = File(exists=True, mandatory=True, desc="its label table (index, name)")


class _EncodingMapsOutputSpec(TraitedSpec):
    map_files = traits.List(File(exists=True), desc="NIfTI maps (r, R², chance, unique variance)")
    map_names = traits.List(traits.Str, desc="name of each NIfTI map")
    roi_summary_file = File(exists=True, desc="mean and median of every map per region (TSV)")


class EncodingMaps(SimpleInterface):
    """Write the encoding maps as NIfTI images and summarise them per region."""

    input_spec = _EncodingMapsInputSpec
    output_spec = _EncodingMapsOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        import numpy as np

        from ..encoding import MAP_STATISTICS, bids_desc, maps_to_nifti, roi_summary, voxel_labels
        from ..rois import read_label_table

        inputs = self.inputs
        maps = np.load(inputs.maps_file)
        named = dict(zip(inputs.map_names, maps, strict=True))
        labels = voxel_labels(inputs.mask_file, inputs.dseg_file)
        names = {i: n for n, i in read_label_table(inputs.labels_file).items()}
        out = Path(runtime.cwd)
        table = roi_summary(named, labels, names)
        table.to_csv(out / "roi_summary.tsv", sep="\t", index=False, float_format="%.6g")
        files, written = [], []
        for name, values in named.items():
            feature, _, stat = name.rpartition(":")
            if stat not in MAP_STATISTICS:
                continue
            path = out / f"{bids_desc(feature)}{MAP_STATISTICS[stat][0]}.nii.gz"
            maps_to_nifti(values, inputs.mask_file).to_filename(path)
            files.append(str(path))
            written.append(name)
        self._results.update(
            map_files=files, map_names=written, roi_summary_file=str(out / "roi_summary.tsv")
        )
        return runtime


class _WriteEncodingDerivativesInputSpec(BaseInterfaceInputSpec):
    output_dir = Directory(exists=True, mandatory=True, desc="root of the derivatives dataset")
    subject = traits.Str(mandatory=True, desc="participant label without sub-")
    space = traits.Str("T1w", usedefault=True, desc="space label of the maps")
    task = traits.Str(desc="task label of the runs")
    summary = traits.Dict(mandatory=True, desc="summary from AssembleDerivatives (to extend)")
    map_files = traits.List(File(exists=True), mandatory=True, desc="NIfTI maps")
    map_names = traits.List(traits.Str, mandatory=True, desc="name of each map")
    roi_summary_file = File(exists=True, mandatory=True, desc="ROI table (TSV)")
    spaces = traits.Dict(mandatory=True, desc="per feature space: features, fit time, alphas")
    unet_info = traits.Dict(desc="U-Net feature settings")
    n_train = traits.Int(0, usedefault=True, desc="training trials")
    n_test = traits.Int(0, usedefault=True, desc="test stimuli")
    sources = traits.List(traits.Str, desc="URIs of the input data")
    settings = traits.Dict(desc="settings of the run, for provenance")


class _WriteEncodingDerivativesOutputSpec(TraitedSpec):
    summary = traits.Dict(desc="the summary with an 'encoding' entry, for the report")


class WriteEncodingDerivatives(SimpleInterface):
    """Copy the encoding maps and ROI table into ``sub-<label>/func`` of the derivatives.

    Runs after :class:`~nipype_brainrecon.interfaces.derivatives.AssembleDerivatives` (which replaces the
    subject folder whole).
    """

    input_spec = _WriteEncodingDerivativesInputSpec
    output_spec = _WriteEncodingDerivativesOutputSpec

    def _run_interface(self, runtime):
        from ..encoding import write_encoding_derivatives

        inputs = self.inputs

        def opt(name, default=None):
            value = getattr(inputs, name)
            return value if isdefined(value) else default

        summary = write_encoding_derivatives(
            output_dir=inputs.output_dir,
            subject=inputs.subject,
            map_files=inputs.map_files,
            map_names=inputs.map_names,
            roi_summary_file=inputs.roi_summary_file,
            spaces=inputs.spaces,
            space=inputs.space,
            task=opt("task"),
            sources=opt("sources", []),
            settings=opt("settings", {}),
            unet_info=opt("unet_info", {}),
            n_train=inputs.n_train,
            n_test=inputs.n_test,
            summary=inputs.summary,
        )
        self._results["summary"] = summary
        return runtime
