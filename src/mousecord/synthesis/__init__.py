"""On-the-fly, domain-randomised training samples: axial slabs with exact GM/WM labels (numpy, scipy)."""

from mousecord.synthesis.config import SynthesisConfig
from mousecord.synthesis.generate import SynthSample, render_sample, sample_parameters, synthesize

__all__ = ["SynthSample", "SynthesisConfig", "render_sample", "sample_parameters", "synthesize"]
