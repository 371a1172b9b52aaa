"""Interfaces for regions of interest: build a mask on the BOLD grid, extract its voxels."""

from __future__ import annotations

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


class _RoiMaskInputSpec(BaseInterfaceInputSpec):
    dseg_file = File(exists=True, desc="integer segmentation (dseg) holding the region labels")
    labels_file = File(exists=True, desc="dseg.tsv look-up table with 'index' and 'name' columns")
    roi_names = InputMultiObject(
        traits.Str, desc="region name(s) in the label table, merged into one ROI"
    )
    atlas_file = File(
        exists=True, desc="probabilistic (4D) or deterministic atlas, instead of dseg"
    )
    atlas_index = traits.Int(desc="map (4D) or label (3D) of the region in the atlas")
    atlas_threshold = traits.Float(0.5, usedefault=True, desc="probability threshold for the atlas")
    mask_files = InputMultiObject(File(exists=True), desc="binary masks whose union is the ROI")
    reference_file = File(exists=True, mandatory=True, desc="image whose grid the ROI is put on")
    brain_mask = File(exists=True, desc="brain mask on the reference grid; the ROI is cut to it")
    roi_label = traits.Str("roi", usedefault=True, desc="name used for the output file")


class _RoiMaskOutputSpec(TraitedSpec):
    roi_file = File(exists=True, desc="binary ROI mask on the reference grid")
    n_voxels = traits.Int(desc="number of voxels in the ROI")


class RoiMask(SimpleInterface):
    """Make a binary ROI mask on the BOLD grid from a segmentation, an atlas or binary masks.

    Exactly one source is used: ``dseg_file`` + ``labels_file`` + ``roi_names``, ``atlas_file``
    (+ ``atlas_index``), or ``mask_files``.
    """

    input_spec = _RoiMaskInputSpec
    output_spec = _RoiMaskOutputSpec

    def _run_interface(self, runtime):
        from ..errors import UsageError
        from ..rois import roi_from_atlas, roi_from_dseg, roi_from_masks, roi_voxel_count

        inputs = self.inputs
        brain = inputs.brain_mask if isdefined(inputs.brain_mask) else None
        sources = [
            isdefined(inputs.dseg_file),
            isdefined(inputs.atlas_file),
            isdefined(inputs.mask_files) and bool(inputs.mask_files),
        ]
        if sum(sources) != 1:
            raise UsageError(
                f"ROI {inputs.roi_label!r}: give exactly one of a dseg (+ labels and names), "
                "an atlas, or binary masks"
            )
        if isdefined(inputs.dseg_file):
            if not (isdefined(inputs.labels_file) and isdefined(inputs.roi_names)):
                raise UsageError(f"{inputs.dseg_file}: a dseg needs labels_file and roi_names")
            roi = roi_from_dseg(
                inputs.dseg_file,
                inputs.labels_file,
                list(inputs.roi_names),
                reference=inputs.reference_file,
                brain_mask=brain,
            )
        elif isdefined(inputs.atlas_file):
            roi = roi_from_atlas(
                inputs.atlas_file,
                index=inputs.atlas_index if isdefined(inputs.atlas_index) else None,
                threshold=inputs.atlas_threshold,
                reference=inputs.reference_file,
                brain_mask=brain,
            )
        else:
            roi = roi_from_masks(
                list(inputs.mask_files), reference=inputs.reference_file, brain_mask=brain
            )
        out = os.path.join(runtime.cwd, f"roi-{inputs.roi_label}_mask.nii.gz")
        roi.to_filename(out)
        self._results["roi_file"] = out
        self._results["n_voxels"] = roi_voxel_count(roi)
        return runtime


class _ExtractRoiDataInputSpec(BaseInterfaceInputSpec):
    betas_files = InputMultiObject(
        File(exists=True), mandatory=True, desc="4D single-trial betas, one file per run"
    )
    trials_files = InputMultiObject(
        File(exists=True), mandatory=True, desc="trials table (TSV) of each betas file"
    )
    roi_file = File(exists=True, mandatory=True, desc="binary ROI mask on the betas grid")


class _ExtractRoiDataOutputSpec(TraitedSpec):
    data_file = File(exists=True, desc="trials × voxels matrix (float32 .npy)")
    trials_file = File(exists=True, desc="the trials of all runs, in the rows' order (TSV)")
    n_voxels = traits.Int(desc="number of ROI voxels (columns)")


class ExtractRoiData(SimpleInterface):
    """Gather the ROI voxels of every run's betas into one trials × voxels matrix.

    Runs are read one at a time, so memory holds one run's betas plus the ROI matrix.
    """

    input_spec = _ExtractRoiDataInputSpec
    output_spec = _ExtractRoiDataOutputSpec

    def _run_interface(self, runtime):
        import numpy as np
        import pandas as pd

        from ..errors import DataError
        from ..rois import extract_roi_data

        if len(self.inputs.betas_files) != len(self.inputs.trials_files):
            raise DataError(
                f"{len(self.inputs.betas_files)} betas files but "
                f"{len(self.inputs.trials_files)} trials tables"
            )
        blocks, tables = [], []
        for betas, trials_file in zip(
            self.inputs.betas_files, self.inputs.trials_files, strict=True
        ):
            block = extract_roi_data(betas, self.inputs.roi_file)
            table = pd.read_csv(trials_file, sep="\t", dtype={"stim_id": str})
            if len(table) != len(block):
                raise DataError(
                    f"{trials_file}: {len(table)} trials but {len(block)} volumes in {betas}"
                )
            blocks.append(block)
            tables.append(table)
        data = np.concatenate(blocks, axis=0)
        data_file = os.path.join(runtime.cwd, "roi_data.npy")
        np.save(data_file, data)
        trials_out = os.path.join(runtime.cwd, "trials.tsv")
        pd.concat(tables, ignore_index=True).to_csv(trials_out, sep="\t", index=False)
        self._results.update(data_file=data_file, trials_file=trials_out, n_voxels=data.shape[1])
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
