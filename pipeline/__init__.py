"""Differentiable Semantic Rendering (Dwivedi et al., ICCV 2021) as a reproducible pipeline.

All logic lives in this package; the Snakemake rules under ``workflow/`` are thin wrappers.
Importing it has no side effects (no downloads, no environment changes).
"""

__version__ = "0.1.0"
