"""Documented import path of the planted-hierarchy generators (see :mod:`unmix.datasets`)."""

from .datasets._synthetic import Diffraction, Hierarchy, make_diffraction_patterns, make_hierarchy

__all__ = ["Diffraction", "Hierarchy", "make_diffraction_patterns", "make_hierarchy"]
