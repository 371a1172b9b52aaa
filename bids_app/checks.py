"""Checks of the command line, run before any input is read in full and anything written.

The BIDS App refuses, with one message and a BIDS Apps exit code, before any workflow node runs
and before it creates ``OUTPUT_DIR``:

* option values it cannot use (exit 64): ``--random-seed`` outside [0, 2**32 - 1], a ``--device``
  torch does not know or a CUDA device where CUDA is not usable, a ``--use-plugin`` file naming
  no Nipype plugin, a ``--mem`` budget that is not a positive number
  (:func:`check_options`); a ``--model`` hub id or revision missing from the offline cache (exit 66,
  :func:`check_model_revision`, called once the dataset is validated);
* folders it would write into its inputs (exit 73): ``OUTPUT_DIR``, ``-w/--work-dir`` or
  ``--feature-cache`` inside the BIDS dataset or inside an input derivatives dataset, a work
  directory inside ``OUTPUT_DIR`` (its files would land in the derivatives) or one that is a
  file (:func:`check_written_paths`);

both through :func:`check_before_writing`. :func:`validate_bids` runs the BIDS validator
(exit 16) once ``OUTPUT_DIR`` is known to be usable.

The participant's own inputs are checked afterwards, by
:func:`nipype_brainrecon.bids.collect_participant` and
:func:`nipype_brainrecon.bids_app.preflight.check_participant`. An error that none of these
foresaw is saved, with its traceback, by :func:`save_crash_file`; the user sees one line.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nipype_brainrecon import __version__
from nipype_brainrecon.errors import (
    InvalidDatasetError,
    MissingInputError,
    OutputError,
    UsageError,
)

LOGGER = logging.getLogger(__name__)

__all__ = [
    "MAX_SEED",
    "check_before_writing",
    "check_device",
    "check_model_revision",
    "cpu_model_warning",
    "check_options",
    "check_plugin_name",
    "check_written_paths",
    "input_datasets",
    "nipype_plugins",
    "one_line",
    "plugin_settings",
    "save_crash_file",
    "validate_bids",
]

#: The largest seed numpy's and torch's generators both take.
MAX_SEED = 2**32 - 1


# ---------------------------------------------------------------------------------------------
# Option values (exit 64)
# ---------------------------------------------------------------------------------------------
def check_device(device: str | None) -> None:
    """Refuse a ``--device`` torch does not know, or a CUDA device CUDA cannot serve here.

    >>> check_device("cpu"), check_device(None)
    (None, None)
    >>> check_device("gpu0")
    Traceback (most recent call last):
    ...
    nipype_brainrecon.errors.UsageError: --device gpu0: not a torch device; use cpu, cuda or cuda:<index>
    """
    if device is None or device == "cpu":
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise UsageError(
            f"--device {device}: not a torch device; use cpu, cuda or cuda:<index>"
        ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: CUDA is not usable here; use --device cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise UsageError(
                f"--device {device}: this machine has {count} CUDA device(s) "
                f"(cuda:0 to cuda:{count - 1}); choose one of them"
            )
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UsageError(f"--device {device}: MPS is not usable here; use --device cpu")


def nipype_plugins() -> list[str]:
    """Names Nipype's ``Workflow.run(plugin=...)`` accepts (its ``<Name>Plugin`` classes)."""
    from nipype.pipeline import plugins

    return sorted(
        n[: -len("Plugin")] for n in dir(plugins) if n.endswith("Plugin") and n != "Plugin"
    )


def check_plugin_name(plugin: Any, source: str | os.PathLike) -> str:
    """The plugin name of a ``--use-plugin`` file, refused when Nipype has no such plugin."""
    known = nipype_plugins()
    if not isinstance(plugin, str) or plugin not in known:
        raise UsageError(
            f"{source}: plugin {plugin!r} is not a Nipype plugin; set 'plugin' to one of "
            f"{', '.join(known)}"
        )
    return plugin


def plugin_settings(args: Any) -> dict[str, Any]:
    """Nipype's ``plugin`` and ``plugin_args`` (and brainrecon's per-node ``node_args``).

    From the ``--use-plugin`` YAML file when given (keys ``plugin``, ``plugin_args``; brainrecon's
    own ``node_resources`` and ``gpu_sbatch_args``, see docs/cluster.md), else ``Linear`` on one
    process or ``MultiProc`` with ``--nprocs`` / ``--mem``. Reads ``args.use_plugin``,
    ``args.nprocs`` and ``args.mem``.
    """
    if args.use_plugin:
        import yaml

        if not Path(args.use_plugin).is_file():
            raise MissingInputError(f"{args.use_plugin}: plugin file not found")
        try:
            content = yaml.safe_load(Path(args.use_plugin).read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise UsageError(f"{args.use_plugin}: not valid YAML ({one_line(exc)})") from exc
        if not isinstance(content, dict) or "plugin" not in content:
            raise UsageError(f"{args.use_plugin}: needs a 'plugin' key (e.g. MultiProc, SLURM)")
        plugin = check_plugin_name(content["plugin"], args.use_plugin)
        plugin_args = content.get("plugin_args", {}) or {}
        if not isinstance(plugin_args, dict):
            raise UsageError(
                f"{args.use_plugin}: 'plugin_args' must be a mapping (e.g. "
                "plugin_args: {sbatch_args: --time=2:00:00})"
            )
        node_args = {"resources": bool(content.get("node_resources", True))}
        if content.get("gpu_sbatch_args"):
            node_args["gpu_args"] = str(content["gpu_sbatch_args"])
        return {"plugin": plugin, "plugin_args": plugin_args, "node_args": node_args}
    plugin_args: dict[str, Any] = {"raise_insufficient": False}
    if args.nprocs:
        plugin_args["n_procs"] = args.nprocs
    if args.mem:
        plugin_args["memory_gb"] = args.mem
    if (args.nprocs or os.cpu_count() or 1) == 1:
        return {"plugin": "Linear", "plugin_args": {}}
    return {"plugin": "MultiProc", "plugin_args": plugin_args}


def check_options(args: Any) -> None:
    """Refuse option values the run cannot use (:class:`UsageError`, exit 64), reading nothing
    but the ``--use-plugin`` file and writing nothing."""
    seed = getattr(args, "random_seed", None)
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise UsageError(
            f"--random-seed {seed}: out of range; give a seed from 0 to {MAX_SEED} (2**32 - 1)"
        )
    mem = getattr(args, "mem", None)
    if mem is not None and not (math.isfinite(mem) and mem > 0):
        raise UsageError(f"--mem {mem:g}: not a positive memory budget; give GB, e.g. --mem 16")
    check_device(getattr(args, "device", None))
    if getattr(args, "use_plugin", None):
        plugin_settings(args)


def check_model_revision(model: str | None) -> None:
    """Refuse a hub model (``ID`` or ``ID@REVISION``) that is not in the local Hugging Face
    cache while the hub is offline (``HF_HUB_OFFLINE``; :class:`MissingInputError`, exit 66,
    naming the ``huggingface-cli download`` that fetches it), before anything is written or
    run. The demo model, folders and an online hub are left to
    :func:`nipype_brainrecon.diffusion.models.resolve_model`."""
    if not model or model == "demo" or Path(model).expanduser().exists():
        return
    from nipype_brainrecon.diffusion.models import resolve_model

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        resolve_model(model, offline=True)


#: U-Net parameters from which a model counts as full-size (SD v1: 860 M; the demo model: 3 M).
FULL_SIZE_UNET_PARAMETERS = 100_000_000


def cpu_model_warning(
    sizes: Mapping[str, Any], settings: Mapping[str, Any], *, threads: int = 1
) -> str | None:
    """The warning line for a full-size model (a U-Net of at least
    :data:`FULL_SIZE_UNET_PARAMETERS`) that will run on the CPU, with the reconstruction
    stage's estimated time (:func:`nipype_brainrecon.bids_app.estimate.estimate_participant`:
    test images × (samples + the shuffled baseline) × denoising steps × U-Net size, at the
    measured rate of ``benchmarks/results/reconstruction.json``); ``None`` otherwise.

    ``sizes`` is :func:`~nipype_brainrecon.bids_app.preflight.check_participant`'s result,
    ``settings`` the run's (``model``, ``device``: ``None`` is the automatic choice, CUDA when
    usable; ``n_samples``, ``num_inference_steps``, ``strength``).
    """
    from nipype_brainrecon.bids_app.estimate import (
        estimate_participant,
        format_seconds,
        unet_parameters,
    )

    model = str(settings.get("model") or "")
    device = settings.get("device")
    if not model:
        return None
    if device is None:
        from nipype_brainrecon.diffusion.models import default_device

        device = default_device()
    if not str(device).startswith("cpu"):
        return None
    parameters = unet_parameters(model)
    if parameters < FULL_SIZE_UNET_PARAMETERS:
        return None
    stages = estimate_participant(sizes, {**settings, "device": "cpu"}, threads=threads)
    seconds = next(s.seconds for s in stages if s.stage == "reconstruction")
    return (
        f"a full-size model ({parameters / 1e6:.0f} M U-Net parameters) will run on the CPU: "
        f"reconstruction estimated at {format_seconds(seconds)} "
        f"({int(sizes.get('n_test', 0))} test images, {settings.get('n_samples', 1)} samples); "
        "use --device cuda on a GPU machine, or fewer --samples / --steps"
    )


# ---------------------------------------------------------------------------------------------
# Written paths (exit 73)
# ---------------------------------------------------------------------------------------------
def _full(path: str | os.PathLike) -> Path:
    return Path(os.fspath(path)).expanduser().absolute().resolve()


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def input_datasets(
    bids_dir: str | os.PathLike | None,
    derivatives: Iterable[tuple[str, str | os.PathLike]] | None = None,
    betas: str | os.PathLike | None = None,
) -> list[Path]:
    """The input derivatives datasets, as absolute paths: ``--derivatives`` (``None``:
    ``BIDS_DIR/derivatives/fmriprep``, unless ``bids_dir`` is ``None``) and ``--betas``.

    >>> [p.name for p in input_datasets("/data/bids", betas="/data/nsd-betas")]
    ['fmriprep', 'nsd-betas']
    >>> [p.name for p in input_datasets(None, [("fmriprep", "/data/fp")])]
    ['fp']
    """
    if derivatives is None:
        paths = [] if bids_dir is None else [Path(bids_dir, "derivatives", "fmriprep")]
    else:
        paths = [p for _, p in derivatives]
    if betas is not None:
        paths.append(betas)
    return [_full(p) for p in paths]


def check_written_paths(
    bids_dir: str | os.PathLike | None,
    output_dir: str | os.PathLike,
    *,
    work_dir: str | os.PathLike | None = None,
    feature_cache: str | os.PathLike | None = None,
    inputs: Iterable[str | os.PathLike] = (),
    work_option: str = "-w/--work-dir",
) -> None:
    """Refuse folders the run would write into its inputs (:class:`OutputError`, exit 73).

    ``OUTPUT_DIR`` may be a new folder under ``BIDS_DIR/derivatives/`` (the BIDS convention) but
    not the dataset itself, another place inside it, nor inside an input derivatives dataset
    (``inputs``, from :func:`input_datasets`). ``-w/--work-dir`` and ``--feature-cache`` may not
    be anywhere inside the BIDS dataset or an input, nor be a file; the work directory may not be
    inside ``OUTPUT_DIR``. ``bids_dir`` is ``None`` for a clone URL (nothing local to protect).
    ``work_option`` names the work folder in messages (the default one is not an option given).
    Nothing is created.
    """
    out = _full(output_dir)
    bids = _full(bids_dir) if bids_dir is not None else None
    inputs = [_full(p) for p in inputs]
    if bids is not None and _inside(out, bids) and (bids / "derivatives") not in out.parents:
        raise OutputError(
            f"{output_dir}: output inside the input dataset; write it elsewhere or under "
            f"{bids_dir}/derivatives/"
        )
    for source in inputs:
        if _inside(out, source):
            raise OutputError(
                f"{output_dir}: output inside the input derivatives dataset {source}; write it "
                f"to a new folder, e.g. {source.parent / 'brainrecon'}"
            )
    folders = [(work_option, work_dir), ("--feature-cache", feature_cache)]
    for option, given in folders:
        if given is None:
            continue
        path = _full(given)
        if path.exists() and not path.is_dir():
            raise OutputError(f"{given}: {option} is a file, not a folder; give a folder")
        for root, what in [(bids, "the input dataset"), *((s, "an input dataset") for s in inputs)]:
            if root is not None and _inside(path, root):
                raise OutputError(
                    f"{given}: {option} inside {what} {root}; choose a folder outside the inputs"
                )
    if work_dir is not None and _inside(_full(work_dir), out):
        raise OutputError(
            f"{work_dir}: {work_option} inside OUTPUT_DIR {output_dir}, so work files would "
            "land in the derivatives; choose a folder outside it"
        )


def check_before_writing(args: Any) -> None:
    """The command line's option values (exit 64) and written folders (exit 73), checked before
    DataLad clones anything into OUTPUT_DIR and before OUTPUT_DIR is created."""
    from nipype_brainrecon.datalad.repo import is_url

    check_options(args)
    bids = None if is_url(str(args.bids_dir)) else Path(args.bids_dir)
    derivatives = None
    if args.derivatives:
        derivatives = [(n, p) for n, p in args.derivatives if not is_url(p)]
    inputs = input_datasets(bids, derivatives, args.betas)
    check_written_paths(
        bids,
        args.output_dir,
        work_dir=args.work_dir,
        feature_cache=args.feature_cache,
        inputs=inputs,
        work_option=getattr(args, "work_option", "-w/--work-dir"),
    )


def validate_bids(bids_dir: Path) -> None:
    """Run bids-validator-deno on the input; raise InvalidDatasetError on errors."""
    exe = shutil.which("bids-validator-deno") or str(
        Path(sys.executable).parent / "bids-validator-deno"
    )
    if not Path(exe).exists():
        LOGGER.warning("bids-validator-deno not found: input not validated")
        return
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        proc = subprocess.run(
            [exe, str(bids_dir), "--format", "json", "-o", str(report)],
            capture_output=True,
            text=True,
        )
        if proc.returncode == 0:
            return
        issues = []
        try:
            data = json.loads(report.read_text())
            for issue in data.get("issues", {}).get("issues", []):
                if issue.get("severity") == "error":
                    issues.append(f"{issue.get('code')}: {issue.get('location', '')}")
        except (OSError, ValueError):
            pass
        detail = "; ".join(sorted(set(issues))[:3]) or proc.stdout.strip()[-300:]
        raise InvalidDatasetError(
            f"{bids_dir}: the BIDS validator found errors ({detail}); fix them or pass "
            "--skip-bids-validation"
        )


# ---------------------------------------------------------------------------------------------
# The last guard: an unexpected error
# ---------------------------------------------------------------------------------------------
def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (whitespace collapsed), at most ``limit`` characters.

    >>> one_line(ValueError("a\\n  b"))
    'a b'
    """
    text = " ".join(str(exc).split()) or "(no message)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def save_crash_file(
    exc: BaseException, logs_dir: str | os.PathLike | None, command: str | None = None
) -> Path | None:
    """Write ``exc``'s traceback to ``logs_dir`` (when it is a folder) or a temporary file.

    Returns the file, or ``None`` when neither could be written.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    lines = [
        f"brainrecon {__version__}, Python {sys.version.split()[0]}, {time.ctime()}\n",
        f"command: {command}\n\n" if command else "\n",
        *traceback.format_exception(type(exc), exc, exc.__traceback__),
    ]
    folders = [Path(logs_dir)] if logs_dir is not None and Path(logs_dir).is_dir() else []
    folders.append(Path(tempfile.gettempdir()))
    for folder in folders:
        try:
            fd, name = tempfile.mkstemp(
                prefix=f"crash-{stamp}-brainrecon-", suffix=".txt", dir=folder
            )
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.writelines(lines)
            return Path(name)
        except OSError:
            continue
    return None
