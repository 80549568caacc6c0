"""Hierarchical unmixing: trees of endmembers with maps at every level.

- :func:`hierarchical_nmf` (HierNMF2, Kuang & Park 2013): recursive rank-2 NMF splits,
  a score to choose the next split, stopping rules, optional per-node rank by
  stability, full maps of every level refitted with the engine's constraints.
- :func:`deep_nmf`: multilayer NMF (maps of maps, or endmembers of endmembers) with
  Neural-NMF-style joint fine-tuning of all layers.
- :func:`cluster_components`: dendrograms of endmembers by spectral angle, or of 2-D
  diffraction patterns by a rotation-invariant (polar, angular cross-correlation)
  distance.
"""

from __future__ import annotations

from ._cluster import (
    Dendrogram,
    cluster_components,
    polar_transform,
    rotation_distances,
    spectral_angle_distances,
)
from ._deep import DeepResult, deep_nmf
from ._evaluate import clade_recovery, match_leaves, planted_groups, triplet_agreement
from ._figures import plot_dendrogram, plot_levels, plot_tree
from ._maps import MapProducts, layer_maps, maps_from_products, nested_maps, refit_level
from ._model import Level, Node, Tree, attach_tree, load_tree
from ._phases import attach_phases, component_phases
from ._rank2 import group_rank1, nnls2, rank2_nmf, spa_start
from ._report import tree_figures, tree_section, write_tree_report
from ._tree import hierarchical_nmf

__all__ = [
    "DeepResult",
    "Dendrogram",
    "Level",
    "MapProducts",
    "Node",
    "Tree",
    "attach_phases",
    "attach_tree",
    "clade_recovery",
    "cluster_components",
    "component_phases",
    "deep_nmf",
    "group_rank1",
    "hierarchical_nmf",
    "layer_maps",
    "load_tree",
    "maps_from_products",
    "match_leaves",
    "nested_maps",
    "nnls2",
    "planted_groups",
    "plot_dendrogram",
    "plot_levels",
    "plot_tree",
    "polar_transform",
    "rank2_nmf",
    "refit_level",
    "rotation_distances",
    "spa_start",
    "spectral_angle_distances",
    "tree_figures",
    "tree_section",
    "triplet_agreement",
    "write_tree_report",
]
