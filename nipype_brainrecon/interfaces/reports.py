"""The interface writing a subject's HTML report."""

from __future__ import annotations

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)


class _ParticipantReportInputSpec(BaseInterfaceInputSpec):
    output_dir = Directory(exists=True, mandatory=True, desc="root of the derivatives dataset")
    summary = traits.Dict(mandatory=True, desc="summary from AssembleDerivatives")


class _ParticipantReportOutputSpec(TraitedSpec):
    out_report = File(exists=True, desc="sub-<label>.html")


class ParticipantReport(SimpleInterface):
    """Write the subject's HTML report (fMRIPrep style) at the derivatives root."""

    input_spec = _ParticipantReportInputSpec
    output_spec = _ParticipantReportOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        from ..reports import write_participant_report

        summary = dict(self.inputs.summary)
        out = Path(self.inputs.output_dir)
        subject = summary["subject"]
        report = write_participant_report(
            summary, out / f"sub-{subject}.html", figures_dir=out / f"sub-{subject}" / "figures"
        )
        self._results["out_report"] = str(report)
        return runtime
