"""Interfaces of the reconstruction stage: diffusion img2img from decoded features, evaluation."""

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
from ._specs import default_first
from .threads import (
    limit_threads,
    num_threads_trait,
    threads_file_trait,
    write_threads_file,
)


class _ReconstructInputSpec(BaseInterfaceInputSpec):
    z_file = File(exists=True, mandatory=True, desc="decoded latents z of the test stimuli (.npy)")
    c_file = File(exists=True, mandatory=True, desc="decoded caption embeddings c (.npy)")
    stimuli_file = File(exists=True, mandatory=True, desc="TSV: stim_id of each row of z and c")
    stim_ids = InputMultiObject(
        traits.Str, desc="reconstruct only these stimuli (for MapNode splits); default all"
    )
    model = traits.Str(mandatory=True, desc="diffusers model folder or hub id")
    mode = traits.Enum(
        *default_first(D.reconstruction.mode, "z+c", "z", "c"),
        usedefault=True,
        desc="z+c (paper), z only or c only",
    )
    n_samples = traits.Int(
        D.reconstruction.n_samples, usedefault=True, desc="samples per test image (paper: 5)"
    )
    strength = traits.Float(
        D.reconstruction.strength, usedefault=True, desc="img2img noise strength (paper: 0.8)"
    )
    num_inference_steps = traits.Int(
        D.reconstruction.num_inference_steps, usedefault=True, desc="DDIM steps (paper: 50)"
    )
    guidance_scale = traits.Float(
        D.reconstruction.guidance_scale, usedefault=True, desc="classifier-free guidance (paper: 5)"
    )
    seed = traits.Int(D.seed, usedefault=True, desc="random seed (paper: 42)")
    batch_size = traits.Int(
        D.reconstruction.batch_size, usedefault=True, desc="images × samples per network call"
    )
    output_size = traits.Int(desc="resize outputs to this size (px); default the model's own")
    device = traits.Str(desc="torch device (default: CUDA if available, else CPU)")
    use_gpu = traits.Bool(False, usedefault=True, desc="schedule on a GPU (MultiProc n_gpu_procs)")
    progress = traits.Bool(
        False, usedefault=True, nohash=True, desc="show a progress bar (not part of the hash)"
    )
    num_threads = num_threads_trait()


class _ReconstructOutputSpec(TraitedSpec):
    images_file = File(exists=True, desc="uint8 array (n_images, n_samples, H, W, 3) (.npy)")
    stimuli_file = File(exists=True, desc="TSV: stim_id of each image row")
    settings = traits.Dict(desc="every reconstruction setting, for provenance")
    threads_file = threads_file_trait()


class Reconstruct(SimpleInterface):
    """Reconstruct images from decoded z and c with the paper's img2img recipe.

    See :func:`nipype_brainrecon.diffusion.reconstruct`. Any subset of stimuli can be given
    (``stim_ids``): seeds depend on the stimulus and sample only, so a split run equals a
    whole one.
    """

    input_spec = _ReconstructInputSpec
    output_spec = _ReconstructOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        import numpy as np
        import pandas as pd

        from ..derivatives import write_json
        from ..diffusion import reconstruct
        from ..diffusion.models import load_pipeline
        from ..errors import DataError

        inputs = self.inputs
        table = pd.read_csv(inputs.stimuli_file, sep="\t", dtype={"stim_id": str})
        all_ids = table["stim_id"].tolist()
        wanted = (
            list(inputs.stim_ids) if isdefined(inputs.stim_ids) and inputs.stim_ids else all_ids
        )
        unknown = sorted(set(wanted) - set(all_ids))
        if unknown:
            raise DataError(f"{inputs.stimuli_file}: no decoded features for {unknown[:5]}")
        rows = [all_ids.index(s) for s in wanted]
        z = np.load(inputs.z_file, mmap_mode="r", allow_pickle=False)
        c = np.load(inputs.c_file, mmap_mode="r", allow_pickle=False)
        for name, arr in (("z", z), ("c", c)):
            if len(arr) != len(all_ids):
                raise DataError(
                    f"{getattr(inputs, name + '_file')}: {len(arr)} rows but {len(all_ids)} "
                    f"stimuli in {inputs.stimuli_file}"
                )
        settings = {
            "mode": inputs.mode,
            "n_samples": inputs.n_samples,
            "strength": inputs.strength,
            "num_inference_steps": inputs.num_inference_steps,
            "guidance_scale": inputs.guidance_scale,
            "seed": inputs.seed,
        }
        with limit_threads(inputs.num_threads) as threads:
            pipe = load_pipeline(
                inputs.model, device=inputs.device if isdefined(inputs.device) else None
            )
            images = reconstruct(
                pipe,
                np.asarray(z[rows]),
                np.asarray(c[rows]),
                stim_ids=wanted,
                batch_size=inputs.batch_size,
                output_size=inputs.output_size if isdefined(inputs.output_size) else None,
                progress=inputs.progress,
                **settings,
            )
        out = Path(runtime.cwd)
        np.save(out / "images.npy", images)
        # What made the images, beside them (images.json), for the sidecars of the outputs.
        write_json(out / "images.json", model_record(pipe.brainrecon_model_id, pipe.device))
        pd.DataFrame({"stim_id": wanted}).to_csv(out / "stimuli.tsv", sep="\t", index=False)
        settings["model"] = str(inputs.model)
        self._results.update(
            images_file=str(out / "images.npy"),
            stimuli_file=str(out / "stimuli.tsv"),
            settings=settings,
            threads_file=write_threads_file(threads, out),
        )
        return runtime


def model_record(model_id: str, device) -> dict:
    """``Model`` (its identity: ``ID@<commit>`` for a hub model, ``name@sha256:...`` for a
    folder), ``Device``, ``TorchVersion`` and ``CUDAVersion`` of a model's outputs (written as
    ``images.json`` beside ``images.npy``; read by the reconstruction's derivatives writer)."""
    from ..diffusion.models import device_record

    return {"Model": str(model_id), **device_record(device)}


def merge_model_records(paths) -> dict:
    """The ``images.json`` records of several image arrays as one: each field's value, or the
    list of its distinct values when the parts differ (chunks run on two GPU models)."""
    import json
    from pathlib import Path

    records = [json.loads(Path(p).read_text()) for p in paths if Path(p).is_file()]
    merged: dict = {}
    for key in dict.fromkeys(k for r in records for k in r):
        values = list(dict.fromkeys(json.dumps(r.get(key)) for r in records))
        decoded = [json.loads(v) for v in values]
        merged[key] = decoded[0] if len(decoded) == 1 else decoded
    return merged


class _EvaluateInputSpec(BaseInterfaceInputSpec):
    images_file = File(exists=True, mandatory=True, desc="reconstructions (n, S, H, W, 3) (.npy)")
    stimuli_file = File(exists=True, mandatory=True, desc="TSV: stim_id of each image row")
    stim_files = traits.Dict(
        traits.Str, traits.Str, mandatory=True, desc="stim_id → path of the seen image"
    )
    baseline_images_files = traits.Dict(
        traits.Str, File(exists=True), desc="baseline name → reconstructions-like array (.npy)"
    )
    mean_image_ids = InputMultiObject(
        traits.Str, desc="training stim_ids whose mean image is the trivial baseline"
    )
    extractors = InputMultiObject(
        traits.Str, value=list(D.evaluation.extractors), usedefault=True, desc="feature extractors"
    )
    size = traits.Int(
        D.evaluation.eval_size, usedefault=True, desc="image size of PixCorr and SSIM (px)"
    )


class _EvaluateOutputSpec(TraitedSpec):
    metrics_file = File(exists=True, desc="metrics table with chance and baselines (TSV)")
    per_image_file = File(
        exists=True, desc="per test image (stim_id): each metric, mean over samples (TSV)"
    )
    metrics = traits.Dict(desc="metric → value, with chance and baselines")


class Evaluate(SimpleInterface):
    """Score reconstructions against the seen images (identification, PixCorr, SSIM, features)."""

    input_spec = _EvaluateInputSpec
    output_spec = _EvaluateOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        import numpy as np
        import pandas as pd

        from ..evaluation import evaluate, load_images

        inputs = self.inputs
        ids = pd.read_csv(inputs.stimuli_file, sep="\t", dtype={"stim_id": str})["stim_id"]
        recon = np.load(inputs.images_file)
        size = recon.shape[2:4]
        originals = load_images([inputs.stim_files[s] for s in ids], size=size)
        baselines = {}
        if isdefined(inputs.mean_image_ids) and inputs.mean_image_ids:
            train = load_images([inputs.stim_files[s] for s in inputs.mean_image_ids], size=size)
            baselines["mean training image"] = train.mean(axis=0).round().astype(np.uint8)
        if isdefined(inputs.baseline_images_files):
            for name, path in inputs.baseline_images_files.items():
                baselines[name] = np.load(path)
        table, per_image = evaluate(
            originals,
            recon,
            extractors=tuple(inputs.extractors),
            size=inputs.size,
            baselines=baselines,
            per_image=True,
        )
        out = Path(runtime.cwd) / "metrics.tsv"
        table.to_csv(out, sep="\t", index=True)
        per_image.insert(0, "stim_id", list(ids))
        per_image_file = Path(runtime.cwd) / "per_image.tsv"
        per_image.to_csv(per_image_file, sep="\t", index=False, na_rep="n/a")
        self._results.update(
            metrics_file=str(out),
            per_image_file=str(per_image_file),
            metrics=_table_to_dict(table),
        )
        return runtime


def _table_to_dict(table) -> dict:
    flat = table.reset_index()
    return {
        str(k): [None if v != v else v for v in vals]
        for k, vals in flat.to_dict(orient="list").items()
    }


class _ConcatenateImagesInputSpec(BaseInterfaceInputSpec):
    images_files = InputMultiObject(File(exists=True), mandatory=True, desc="image arrays (.npy)")
    stimuli_files = InputMultiObject(File(exists=True), mandatory=True, desc="their stim_id TSVs")


class _ConcatenateImagesOutputSpec(TraitedSpec):
    images_file = File(exists=True, desc="all images (.npy), rows in the order given")
    stimuli_file = File(exists=True, desc="TSV: stim_id of each row")


class ConcatenateImages(SimpleInterface):
    """Join the image arrays of a split reconstruction (MapNode) back into one."""

    input_spec = _ConcatenateImagesInputSpec
    output_spec = _ConcatenateImagesOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        import numpy as np
        import pandas as pd

        arrays = [np.load(f) for f in self.inputs.images_files]
        tables = [
            pd.read_csv(f, sep="\t", dtype={"stim_id": str}) for f in self.inputs.stimuli_files
        ]
        out = Path(runtime.cwd)
        np.save(out / "images.npy", np.concatenate(arrays, axis=0))
        sidecars = [Path(f).with_suffix(".json") for f in self.inputs.images_files]
        if any(p.is_file() for p in sidecars):  # the model and device that made the parts
            from ..derivatives import write_json

            write_json(out / "images.json", merge_model_records(sidecars))
        pd.concat(tables, ignore_index=True).to_csv(out / "stimuli.tsv", sep="\t", index=False)
        self._results.update(
            images_file=str(out / "images.npy"), stimuli_file=str(out / "stimuli.tsv")
        )
        return runtime


class _ShuffleRowsInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True, desc="arrays (.npy) to permute")
    seed = traits.Int(0, usedefault=True, desc="seed of the permutation")


class _ShuffleRowsOutputSpec(TraitedSpec):
    out_files = traits.List(File(exists=True), desc="the arrays with rows permuted alike")


class ShuffleRows(SimpleInterface):
    """Permute the rows of arrays alike, with no row left in place (the shuffled baseline)."""

    input_spec = _ShuffleRowsInputSpec
    output_spec = _ShuffleRowsOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        import numpy as np

        from ..evaluation import derangement

        arrays = [np.load(f) for f in self.inputs.in_files]
        order = derangement(len(arrays[0]), seed=self.inputs.seed)
        outs = []
        for i, arr in enumerate(arrays):
            path = Path(runtime.cwd) / f"shuffled_{i}.npy"
            np.save(path, arr[order])
            outs.append(str(path))
        self._results["out_files"] = outs
        return runtime
