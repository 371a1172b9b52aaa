"""U-Net features: block activations captured while the U-Net denoises each stimulus's latent.

Feature spaces ``unet_<block>_<step>_<cond>`` (a block ``down<i>``, ``mid`` or ``up<i>``, at an
early, middle or late denoising step, conditioned on ``c`` or on the empty prompt ``none``) and
``z_c``, the latent after denoising conditioned on ``c`` (:func:`extract_unet_features`). The
noising and denoising are the reconstruction's (:mod:`nipype_brainrecon.diffusion.sampling`);
features are cached per stimulus (:mod:`nipype_brainrecon.features.cache`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from ..batching import batches
from ..config import DEFAULTS
from ..diffusion.sampling import (
    check_steps,
    denoise_step,
    derive_seed,
    fresh_ddim,
    pad_rows,
    seeded_randn,
)
from ..errors import DataError, UsageError
from ..features.cache import cache_key, cache_path, cache_read, cache_write
from ..features.loaders import resolve_model_id

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: The reconstruction defaults (the paper's values).
R = DEFAULTS.reconstruction

#: U-Net blocks hooked by default: the last encoder block, the bottleneck, the first decoder one.
DEFAULT_BLOCKS: tuple[str, ...] = DEFAULTS.encoding.blocks

#: Denoising steps captured by default: first (noisiest), middle, last.
DEFAULT_STEPS: tuple[str, ...] = DEFAULTS.encoding.steps


#: Conditions of the U-Net runs: on the caption embedding ``c`` and on the empty prompt.
CONDITIONS: tuple[str, ...] = ("c", "none")


#: Version of the U-Net feature cache entries.
UNET_CACHE_FORMAT = 1


def unet_block_names(unet: Any) -> list[str]:
    """Names of the hookable blocks of a diffusers ``UNet2DConditionModel``.

    ``down0 .. down<n-1>``, ``mid``, ``up0 .. up<n-1>``; for SD v1 the down blocks are three
    ``CrossAttnDownBlock2D`` and a ``DownBlock2D``, the mid block ``UNetMidBlock2DCrossAttn`` and
    the up blocks an ``UpBlock2D`` and three ``CrossAttnUpBlock2D``.
    """
    names = [f"down{i}" for i in range(len(unet.down_blocks))]
    if getattr(unet, "mid_block", None) is not None:
        names.append("mid")
    names += [f"up{i}" for i in range(len(unet.up_blocks))]
    return names


def _block(unet: Any, name: str) -> Any:
    if name == "mid":
        return unet.mid_block
    if name.startswith("down"):
        return unet.down_blocks[int(name[4:])]
    return unet.up_blocks[int(name[2:])]


def _step_positions(steps: Sequence[str | int], n_steps: int) -> dict[str, int]:
    named = {"early": 0, "middle": n_steps // 2, "late": n_steps - 1}
    out: dict[str, int] = {}
    for step in steps:
        if isinstance(step, str) and step in named:
            out[step] = named[step]
        elif isinstance(step, (int, np.integer)) and not isinstance(step, bool):
            if not 0 <= int(step) < n_steps:
                raise UsageError(f"steps: {step} outside the {n_steps} denoising steps")
            out[f"step{int(step)}"] = int(step)
        else:
            raise UsageError(f"steps: {step!r}; use 'early', 'middle', 'late' or a step index")
    return out


@dataclass
class UnetFeatures:
    """Features captured from the U-Net (see :func:`extract_unet_features`).

    Attributes
    ----------
    features : dict
        ``{"unet_<block>_<step>_<cond>": (n_stimuli, n_features) float32}``.
    z_c : numpy.ndarray or None
        The latent after denoising conditioned on ``c``, shape of ``z`` (None without the ``c``
        condition).
    info : dict
        Settings, timesteps of each step label and the shape of each block's activation.
    """

    features: dict[str, np.ndarray]
    z_c: np.ndarray | None
    info: dict[str, Any]


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.float32).tobytes()).hexdigest()


def extract_unet_features(
    unet: Any,
    scheduler: Any,
    z: ArrayLike,
    c: ArrayLike | None,
    uncond: ArrayLike,
    stim_ids: Sequence[str],
    *,
    blocks: Sequence[str] = DEFAULT_BLOCKS,
    steps: Sequence[str | int] = DEFAULT_STEPS,
    conditions: Sequence[str] = CONDITIONS,
    strength: float = R.strength,
    num_inference_steps: int = R.num_inference_steps,
    guidance_scale: float = R.guidance_scale,
    seed: int = DEFAULTS.seed,
    pool: int = DEFAULTS.encoding.pool,
    batch_size: int = R.batch_size,
    cache_dir: str | os.PathLike | None = None,
    model_id: str | None = None,
    progress: bool = False,
) -> UnetFeatures:
    """Capture U-Net block activations while denoising each stimulus's noised latent.

    Each stimulus's latent ``z`` is noised to ``strength`` of a DDIM schedule (noise seeded by
    ``seed`` and its stimulus id, the same for every condition) and denoised as in the
    reconstruction (eta 0), conditioned on its ``c`` (classifier-free guidance
    ``guidance_scale`` against ``uncond``; only the conditional branch is recorded) or on
    ``uncond`` alone. Forward hooks on the chosen blocks record their output (a down block's
    hidden states) at the chosen steps, average-pooled to at most ``pool`` x ``pool``.

    Parameters
    ----------
    unet : diffusers.UNet2DConditionModel
        On its device and dtype.
    scheduler : diffusers scheduler
        Its config builds a DDIM scheduler.
    z : array-like, ``(n, C, h, w)``
        Scaled VAE latents of the stimuli (any size the U-Net accepts).
    c : array-like, ``(n, tokens, hidden)`` or None
        Caption embeddings; needed for the ``c`` condition.
    uncond : array-like, ``(tokens, hidden)``
        The empty-prompt embedding.
    stim_ids : sequence of str
        One unique id per stimulus (seeds its noise).
    blocks : sequence of str
        Blocks to hook (:func:`unet_block_names`).
    steps : sequence of str or int
        ``"early"`` (first denoising step), ``"middle"``, ``"late"`` (last), or step indices.
    conditions : sequence of {"c", "none"}
        Conditioning of the runs.
    strength, num_inference_steps, guidance_scale
        As in :func:`nipype_brainrecon.diffusion.reconstruct` (paper: 0.8, 50, 5.0).
    seed : int
        Seeds the noise.
    pool : int
        Largest side of the pooled activation maps.
    batch_size : int
        Stimuli per U-Net call; every call is padded to this many rows, so a stimulus's
        features do not depend on its batch (and can be cached one by one).
    cache_dir : path, optional
        Feature cache (as :mod:`nipype_brainrecon.features`); keyed by the stimulus's ``z`` and
        ``c`` values, its id, the model and every setting.
    model_id : str, optional
        Model identity for the cache key (default: from the module).
    progress : bool
        Show a progress bar.

    Returns
    -------
    UnetFeatures
    """
    import torch

    z_arr, c_arr, u_arr, ids, conds, block_list = _check_inputs(
        unet, z, c, uncond, stim_ids, blocks, conditions, pool, batch_size
    )
    n_denoise = check_steps(num_inference_steps, strength)
    positions = _step_positions(steps, n_denoise)
    sched = fresh_ddim(scheduler)
    sched.set_timesteps(int(num_inference_steps))
    param = next(unet.parameters())
    run = _Run(
        unet=unet,
        sched=sched,
        timesteps=sched.timesteps[int(num_inference_steps) - n_denoise :].clone(),
        positions=positions,
        blocks=block_list,
        conds=conds,
        z=z_arr,
        c=c_arr,
        uncond=u_arr,
        device=param.device,
        dtype=param.dtype,
        uncond_t=torch.from_numpy(u_arr).to(device=param.device, dtype=param.dtype),
        ids=ids,
        seed=int(seed),
        guidance_scale=float(guidance_scale),
        batch_size=int(batch_size),
        capture=_Capture(int(pool)),
    )
    names = [f"unet_{b}_{s}_{k}" for k in conds for b in block_list for s in positions]
    outputs = names + (["z_c"] if "c" in conds else [])
    params = {
        "strength": float(strength),
        "num_inference_steps": int(num_inference_steps),
        "guidance_scale": float(guidance_scale),
        "seed": int(seed),
        "pool": int(pool),
    }
    settings = {**params, "batch_size": int(batch_size)}
    keys = _cache_keys(run, cache_dir, model_id, settings, outputs)
    result: dict[str, list[np.ndarray | None]] = {k: [None] * len(ids) for k in outputs}
    todo = _read_cache(result, keys, cache_dir is not None)
    _compute(run, todo, keys, result, progress)

    arrays = {k: np.stack(v).astype(np.float32) for k, v in result.items()}
    info = {
        "blocks": block_list,
        "steps": {label: int(run.timesteps[pos]) for label, pos in positions.items()},
        "conditions": conds,
        **params,
        "activation_shapes": run.capture.shapes,
        "block_types": {b: type(_block(unet, b)).__name__ for b in block_list},
        "n_computed": len(todo),
    }
    z_c = arrays.pop("z_c", None)
    return UnetFeatures(features={k: arrays[k] for k in names}, z_c=z_c, info=info)


def _check_inputs(
    unet: Any,
    z: ArrayLike,
    c: ArrayLike | None,
    uncond: ArrayLike,
    stim_ids: Sequence[str],
    blocks: Sequence[str],
    conditions: Sequence[str],
    pool: int,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, list[str], list[str], list[str]]:
    """The arrays (float32), ids, conditions and blocks of :func:`extract_unet_features`, checked."""
    z_arr = np.asarray(z, dtype=np.float32)
    if z_arr.ndim != 4:
        raise DataError(f"z: shape {z_arr.shape}; give (n_stimuli, channels, h, w) latents")
    n = len(z_arr)
    if n == 0:
        raise DataError("z: no stimulus; give at least one latent")
    ids = [str(s) for s in stim_ids]
    if len(ids) != n or len(set(ids)) != n:
        raise DataError(f"stim_ids: give {n} unique ids, one per latent")
    conds = list(dict.fromkeys(conditions))
    if not conds or any(k not in CONDITIONS for k in conds):
        raise UsageError(f"conditions={list(conditions)}: choose from {CONDITIONS}")
    c_arr = None if c is None else np.asarray(c, dtype=np.float32)
    if "c" in conds and (c_arr is None or len(c_arr) != n):
        raise DataError("c: the 'c' condition needs one caption embedding per latent")
    u_arr = np.asarray(uncond, dtype=np.float32)
    available = unet_block_names(unet)
    block_list = list(dict.fromkeys(blocks))
    unknown = [b for b in block_list if b not in available]
    if unknown:
        raise UsageError(f"blocks: {unknown} not in this U-Net; choose from {available}")
    if int(pool) < 1 or int(batch_size) < 1:
        raise UsageError("pool and batch_size: must be at least 1")
    return z_arr, c_arr, u_arr, ids, conds, block_list


def _cache_keys(
    run: _Run,
    cache_dir: str | os.PathLike | None,
    model_id: str | None,
    settings: dict[str, Any],
    outputs: Sequence[str],
) -> list[dict[str, Path]]:
    """Per stimulus, the cache file of each output (none without ``cache_dir``).

    Keyed by the stimulus's id, ``z`` and ``c`` values (``c`` only with the ``c`` condition),
    the model, ``settings``, the unconditional embedding and the scheduler's config.
    """
    keys: list[dict[str, Path]] = [{} for _ in run.ids]
    if cache_dir is None:
        return keys
    cache = Path(cache_dir)
    fields = {
        "format": UNET_CACHE_FORMAT,
        "model": resolve_model_id(run.unet, model_id, ("unet",), "unet"),
        **settings,
        "uncond": _digest(run.uncond),
        "scheduler": {k: str(v) for k, v in dict(run.sched.config).items()},
    }
    for i, stim_id in enumerate(run.ids):
        base = {**fields, "stim_id": stim_id, "z": _digest(run.z[i])}
        if run.c is not None and "c" in run.conds:
            base["c"] = _digest(run.c[i])
        for k in outputs:
            keys[i][k] = cache_path(cache, "unet", cache_key({**base, "output": k}))
    return keys


def _read_cache(
    result: dict[str, list[np.ndarray | None]], keys: Sequence[dict[str, Path]], cached: bool
) -> list[int]:
    """Fill ``result`` with the stimuli cached whole; the indices of the others, to compute."""
    todo: list[int] = []
    for i, paths in enumerate(keys):
        if cached:
            values = {k: cache_read(p) for k, p in paths.items()}
            if all(v is not None for v in values.values()):
                for k, v in values.items():
                    result[k][i] = v
                continue
        todo.append(i)
    return todo


class _Capture:
    """Forward hooks recording blocks' outputs (conditional rows, pooled) while ``active``."""

    def __init__(self, pool: int) -> None:
        self.pool = pool
        self.shapes: dict[str, list[int]] = {}
        self.captured: dict[str, torch.Tensor] = {}
        self.active = False
        self.rows = 0  # the batch's real rows (the rest is padding)
        self.cfg = False  # the batch stacks the guidance's unconditional rows first

    def hook(self, name: str):
        """A forward hook storing block ``name``'s output under ``name``."""
        import torch

        def record(_module, _inputs, output):
            if not self.active:
                return
            x = output[0] if isinstance(output, tuple) else output
            if self.cfg:
                x = x[x.shape[0] // 2 :]  # conditional half of the guidance batch
            x = x[: self.rows].float()
            self.shapes[name] = list(x.shape[1:])
            side = (min(self.pool, x.shape[-2]), min(self.pool, x.shape[-1]))
            self.captured[name] = torch.nn.functional.adaptive_avg_pool2d(x, side).flatten(1).cpu()

        return record


@dataclass
class _Run:
    """What every batch of one extraction needs (checked settings and inputs)."""

    unet: Any
    sched: Any  # a fresh DDIM scheduler, timesteps set
    timesteps: torch.Tensor  # the denoising steps
    positions: dict[str, int]  # step label -> index in timesteps
    blocks: list[str]
    conds: list[str]
    z: np.ndarray
    c: np.ndarray | None
    uncond: np.ndarray
    device: torch.device  # the U-Net's
    dtype: torch.dtype
    uncond_t: torch.Tensor  # on that device, of that dtype
    ids: list[str]
    seed: int
    guidance_scale: float
    batch_size: int
    capture: _Capture


def _compute(
    run: _Run,
    todo: Sequence[int],
    keys: Sequence[dict[str, Path]],
    result: dict[str, list[np.ndarray | None]],
    progress: bool,
) -> None:
    """Features of the stimuli ``todo``, batch by batch, hooks on; each stimulus then cached."""
    import torch
    from tqdm.auto import tqdm

    hooks = [_block(run.unet, b).register_forward_hook(run.capture.hook(b)) for b in run.blocks]
    try:
        bar = tqdm(total=len(todo) * len(run.conds), desc="U-Net features", disable=not progress)
        with torch.inference_mode(), bar:
            for rows in batches(len(todo), run.batch_size):
                chunk = todo[rows]
                _run_batch(run, chunk, result, bar)
                for i in chunk:
                    for k, path in keys[i].items():
                        cache_write(path, np.asarray(result[k][i], dtype=np.float32))
    finally:
        for hook in hooks:
            hook.remove()


def _run_batch(
    run: _Run, chunk: Sequence[int], result: dict[str, list[np.ndarray | None]], bar: Any
) -> None:
    """Denoise the stimuli ``chunk`` under each condition, storing their features in ``result``."""
    import torch

    rows, size, uncond_t = len(chunk), run.batch_size, run.uncond_t
    init = torch.from_numpy(run.z[chunk])
    noise = torch.stack(
        [
            seeded_randn(tuple(run.z.shape[1:]), derive_seed(run.seed, run.ids[i], "encoding"))
            for i in chunk
        ]
    )
    for cond in run.conds:
        latents = run.sched.add_noise(init, noise, run.timesteps[:1].repeat(rows))
        latents = pad_rows(latents, size).to(device=run.device, dtype=run.dtype)
        cfg = cond == "c" and run.guidance_scale != 1.0
        if cond == "c":
            emb = pad_rows(torch.from_numpy(run.c[chunk]), size)
            emb = emb.to(device=run.device, dtype=run.dtype)
        else:
            emb = uncond_t.expand(size, *uncond_t.shape).contiguous()
        if cfg:
            emb = torch.cat([uncond_t.expand(size, *uncond_t.shape), emb])
        run.capture.rows, run.capture.cfg = rows, cfg
        for k, t in enumerate(run.timesteps):
            labels = [s for s, pos in run.positions.items() if pos == k]
            run.capture.active = bool(labels)
            run.capture.captured.clear()
            latents = denoise_step(
                run.unet,
                run.sched,
                latents,
                t,
                emb,
                guided=cfg,
                guidance_scale=run.guidance_scale,
            )
            for label in labels:
                for b in run.blocks:
                    values = run.capture.captured[b].numpy()
                    for j, i in enumerate(chunk):
                        result[f"unet_{b}_{label}_{cond}"][i] = values[j].copy()
        run.capture.active = False
        if cond == "c":
            final = latents[:rows].float().cpu().numpy()
            for j, i in enumerate(chunk):
                result["z_c"][i] = final[j].copy()
        bar.update(rows)
