"""Nipype interfaces over :mod:`nipype_brainrecon.datalad`: get files from, save files into,
a DataLad dataset inside custom workflows."""

from __future__ import annotations

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)


class _DataladGetInputSpec(BaseInterfaceInputSpec):
    dataset = Directory(exists=True, mandatory=True, desc="root of an installed DataLad dataset")
    paths = InputMultiObject(
        traits.Str,
        mandatory=True,
        desc="files to get, relative to the dataset root or absolute (inside it)",
    )
    jobs = traits.Range(low=1, value=4, usedefault=True, desc="parallel transfers")


class _DataladGetOutputSpec(TraitedSpec):
    files = OutputMultiObject(File(exists=True), desc="local paths, in the order given")
    n_files = traits.Int(desc="files whose content was fetched (0 when all were present)")
    n_bytes = traits.Int(desc="bytes of content fetched")


class DataladGet(SimpleInterface):
    """Get the annexed content of files in a DataLad dataset; return their local paths.

    Files already present cost nothing; a file no remote can provide fails the node with a
    message naming it (:class:`~nipype_brainrecon.errors.MissingInputError`).
    """

    input_spec = _DataladGetInputSpec
    output_spec = _DataladGetOutputSpec

    def _run_interface(self, runtime):
        from ..datalad import get_files

        summary = get_files(self.inputs.dataset, list(self.inputs.paths), jobs=self.inputs.jobs)
        self._results.update(
            files=summary["files"], n_files=summary["n_files"], n_bytes=summary["bytes"]
        )
        return runtime


class _DataladSaveInputSpec(BaseInterfaceInputSpec):
    dataset = Directory(exists=True, mandatory=True, desc="root of an installed DataLad dataset")
    in_files = InputMultiObject(
        File(exists=True),
        mandatory=True,
        desc="files to save; those outside the dataset are copied into dest first",
    )
    dest = traits.Str(
        "", usedefault=True, desc="folder inside the dataset (relative) to copy outside files to"
    )
    message = traits.Str(mandatory=True, desc="commit message")


class _DataladSaveOutputSpec(TraitedSpec):
    out_files = OutputMultiObject(File(exists=True), desc="the saved files inside the dataset")
    commit = traits.Str(desc="the commit that holds them")


class DataladSave(SimpleInterface):
    """Save files into a DataLad dataset with a commit message.

    Files already inside the dataset are saved where they are; others are copied into
    ``dest`` (written atomically, names kept) and saved there.
    """

    input_spec = _DataladSaveInputSpec
    output_spec = _DataladSaveOutputSpec

    def _run_interface(self, runtime):
        import os
        from pathlib import Path

        from ..datalad import save_outputs
        from ..errors import OutputError
        from ..io import atomic_write_bytes

        root = Path(self.inputs.dataset).absolute()
        dest = Path(os.path.normpath(root / self.inputs.dest))
        if dest != root and root not in dest.parents:
            raise OutputError(f"dest={self.inputs.dest!r}: leaves the dataset {root}")
        targets = []
        for name in self.inputs.in_files:
            path = Path(os.path.abspath(name))
            if root in path.parents:
                targets.append(path)
                continue
            target = dest / path.name
            atomic_write_bytes(target, path.read_bytes())
            targets.append(target)
        commit = save_outputs(root, targets, self.inputs.message)
        self._results.update(out_files=[str(t) for t in targets], commit=commit)
        return runtime
