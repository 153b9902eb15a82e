"""Synthetic ex vivo T1w mouse spinal cord volumes with exact GM/WM labels (numpy, scipy, nibabel only).

>>> from mousecord.phantom import PhantomConfig, generate_phantom
>>> phantom = generate_phantom(PhantomConfig(), rng=np.random.default_rng(0))  # doctest: +SKIP
"""

from mousecord.phantom.config import CONTRASTS, Phantom, PhantomConfig
from mousecord.phantom.dataset import phantom_dataset
from mousecord.phantom.generate import generate_phantom
from mousecord.phantom.output import render_phantom_png, write_phantom

__all__ = [
    "CONTRASTS",
    "Phantom",
    "PhantomConfig",
    "generate_phantom",
    "phantom_dataset",
    "render_phantom_png",
    "write_phantom",
]
