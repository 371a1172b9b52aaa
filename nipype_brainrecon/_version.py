"""The one version string of nipype-brainrecon (setup.cfg, ``--version`` and images read it)."""

__version__ = "0.1.0.dev0"
