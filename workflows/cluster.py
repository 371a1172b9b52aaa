"""Cluster scheduling: per-node batch arguments from each node's resource annotations.

Nipype's SLURM and SLURMGraph plugins submit every node with the plugin-wide ``sbatch_args`` plus
the node's own ``node.plugin_args["sbatch_args"]``; they do not translate a node's ``n_procs``,
``mem_gb`` or ``use_gpu`` into a request. :func:`set_node_sbatch_args` does: each node asks Slurm
for ``--cpus-per-task=<n_procs> --mem=<mem_gb>`` and GPU nodes (``use_gpu``: reconstruction,
feature extraction and the torch ridge on CUDA) get ``gpu_args`` as well, e.g. ``--gres=gpu:1``.
"""

from __future__ import annotations

import math

from nipype.pipeline import engine as pe

#: Plugins whose per-node arguments are ``sbatch_args``.
SLURM_PLUGINS = ("SLURM", "SLURMGraph")


def node_sbatch_args(node: pe.Node, *, gpu_args: str | None = None, resources: bool = True) -> str:
    """The sbatch arguments a node's annotations ask for.

    Parameters
    ----------
    node : nipype.pipeline.engine.Node
        A node (or MapNode: its jobs inherit the node's arguments).
    gpu_args : str, optional
        Added for nodes with ``use_gpu`` set, e.g. ``"--partition=gpu --gres=gpu:1"``.
    resources : bool
        Request ``--cpus-per-task`` and ``--mem`` from ``n_procs`` and ``mem_gb``.

    Examples
    --------
    >>> from nipype.interfaces.utility import IdentityInterface
    >>> node = pe.Node(IdentityInterface(fields=["a"]), name="n", mem_gb=2.5, n_procs=2)
    >>> node_sbatch_args(node)
    ' --cpus-per-task=2 --mem=2560M'
    """
    args = ""
    if resources:
        mem_mb = max(1, math.ceil(float(node.mem_gb) * 1024))
        args += f" --cpus-per-task={max(1, int(node.n_procs))} --mem={mem_mb}M"
    if gpu_args and node.is_gpu_node():
        args += " " + gpu_args.strip()
    return args


def set_node_sbatch_args(
    workflow: pe.Workflow,
    plugin: str,
    *,
    gpu_args: str | None = None,
    resources: bool = True,
) -> int:
    """Give every node of ``workflow`` (nested ones too) sbatch arguments from its annotations.

    Does nothing unless ``plugin`` is SLURM or SLURMGraph. A node whose ``plugin_args`` already
    hold ``sbatch_args`` (set by hand) is left as it is. The arguments start with a space because
    SLURMGraph joins plugin-wide and node arguments without one.

    Returns
    -------
    int
        The number of nodes given arguments.

    Examples
    --------
    >>> from nipype.interfaces.utility import IdentityInterface
    >>> wf = pe.Workflow(name="wf")
    >>> wf.add_nodes([pe.Node(IdentityInterface(fields=["a"]), name="n", mem_gb=1)])
    >>> set_node_sbatch_args(wf, "SLURM"), wf.get_node("n").plugin_args
    (1, {'sbatch_args': ' --cpus-per-task=1 --mem=1024M'})
    >>> set_node_sbatch_args(wf, "MultiProc")
    0
    """
    if plugin not in SLURM_PLUGINS or not (resources or gpu_args):
        return 0
    count = 0
    for node in workflow._get_all_nodes():
        if "sbatch_args" in (node.plugin_args or {}):
            continue
        args = node_sbatch_args(node, gpu_args=gpu_args, resources=resources)
        if args:
            node.plugin_args = {**(node.plugin_args or {}), "sbatch_args": args}
            count += 1
    return count
