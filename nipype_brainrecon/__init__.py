"""nipype-brainrecon: reconstructing seen images from fMRI with latent diffusion models.

The method of Takagi & Nishimoto (CVPR 2023) as Nipype interfaces, workflows and a BIDS App.
"""

from ._version import __version__

__all__ = ["__version__"]
