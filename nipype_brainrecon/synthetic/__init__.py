"""The project's synthetic-data facility: simulated BIDS datasets, generated stimuli and the
training of the shipped demo model. Public (``brainrecon-simulate``), but never imported by
production scoring code.

Sub-packages
------------
stimuli
    Licence-free scenes of coloured shapes with captions; stimuli folders (``captions.tsv``).
simulate
    Simulated BIDS datasets with fMRIPrep-like derivatives and known ground truth, and the
    ``brainrecon-simulate`` command.
training
    Training the small demo latent diffusion model shipped in ``nipype_brainrecon/data``.
"""

from .simulate import load_ground_truth, simulate_dataset
from .stimuli import (
    Scene,
    SceneObject,
    StimulusSet,
    caption_semantics,
    generate_scenes,
    read_stimuli,
    render_scene,
    scene_captions,
    scene_semantics,
    write_stimuli,
)
from .training import DemoTrainingConfig, TrainingReport, train_demo_model, write_model_card

__all__ = [
    "DemoTrainingConfig",
    "Scene",
    "SceneObject",
    "StimulusSet",
    "TrainingReport",
    "caption_semantics",
    "generate_scenes",
    "load_ground_truth",
    "read_stimuli",
    "render_scene",
    "scene_captions",
    "scene_semantics",
    "simulate_dataset",
    "train_demo_model",
    "write_model_card",
    "write_stimuli",
]
