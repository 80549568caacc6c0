"""TOML configuration that maps 1:1 onto the Python parameters.

A config file has up to four tables::

    [input]                       # unmix.load(file, dataset=..., signal=...)
    file = "map.hspy"
    spatial_shape = [11, 13]      # optional re-gridding (e.g. XRD line scans)

    [preprocess]                  # image operations, in order (unmix.preprocessing)
    steps = [{op = "crop", signal = [900, 1100]}]

    [factorize]                   # keyword arguments of unmix.factorize
    k = 3
    loss = "kl"
    constraints = [{type = "NonNegative"}, {type = "SumToOne"}]
    regularizers = [{type = "L1", lam = 0.001}, {type = "GaussianMapFilter", sigma = 1.5}]
    preprocessing = [{type = "PoissonScaling"}]

    [output]
    dir = "out"
    force = false

Every key is checked: unknown tables, keys, term types or term fields raise a
``ValueError`` that lists the valid ones, and every ``[factorize]`` value is checked
against the parameter table of :func:`unmix.factorize` (:data:`unmix.engine.PARAMETERS`).
The same schema serves the CLI, which maps its flags onto it (one source of truth).
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from typing import Any

from .. import model, preprocessing
from ..engine import PARAMETERS, check_factorize_params

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["TABLES", "build_term", "factorize_options", "load_config", "validate_config"]

TABLES = {
    "input": {
        "file",
        "dataset",
        "signal",
        "spatial_shape",
        "allow_external",
        "mz_bins",
        "signal_ndim",
        "channel_pattern",
    },
    "preprocess": {"steps"},
    # the factorize keywords a config may set: the parameter table's ``toml`` rows
    "factorize": {name for name, row in PARAMETERS.items() if row.toml},
    "output": {"dir", "force", "report"},
}
_TERM_LISTS = {"constraints", "regularizers", "preprocessing"}
#: the value types of the [input], [preprocess] and [output] keys (booleans are booleans:
#: ``force = "no"`` is refused, not read as true)
_TYPES: dict[str, dict[str, tuple[tuple[type, ...], str]]] = {
    "input": {
        "file": ((str,), "a path (text)"),
        "dataset": ((str,), "an HDF5 dataset path (text)"),
        "signal": ((str, int), "a signal name (text) or index (integer)"),
        "spatial_shape": ((list,), "a list of positive integers, e.g. [11, 13]"),
        "allow_external": ((bool,), "true or false"),
        "mz_bins": ((int,), "a positive integer (imzML m/z bins)"),
        "signal_ndim": ((int,), "1 (spectra) or 2 (patterns)"),
        "channel_pattern": ((str,), "a file-name pattern (text), e.g. 'q_{value}nm.tif'"),
    },
    "preprocess": {"steps": ((list,), 'a list of tables, e.g. [{op = "crop"}]')},
    "output": {
        "dir": ((str,), "a folder path (text)"),
        "force": ((bool,), "true or false"),
        "report": ((bool,), "true or false"),
    },
}


def _term_classes() -> dict[str, type]:
    """The built-in terms and preprocessing steps a config may name, by class name."""
    out: dict[str, type] = {}
    abstract = (model.Term, model.Constraint, model.Penalty, model.Filter)
    for name in model.__all__:
        obj = getattr(model, name)
        if inspect.isclass(obj) and issubclass(obj, model.Term) and obj not in abstract:
            out[name] = obj
    for name in preprocessing.__all__:
        obj = getattr(preprocessing, name)
        if (
            inspect.isclass(obj)
            and issubclass(obj, preprocessing.Step)
            and obj is not preprocessing.Step
        ):
            out[name] = obj
    return out


def build_term(spec: dict[str, Any], *, where: str = "term") -> Any:
    """A constraint / regularizer / preprocessing step from ``{"type": ..., **fields}``."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"{where}: each entry needs a 'type' key, e.g. {{type = \"L1\"}}.")
    classes = _term_classes()
    kind = spec["type"]
    if kind not in classes:
        raise ValueError(f"{where}: unknown type {kind!r}; valid types: {sorted(classes)}.")
    cls = classes[kind]
    fields = {f.name for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")}
    args = {k: v for k, v in spec.items() if k != "type"}
    unknown = set(args) - fields
    if unknown:
        raise ValueError(
            f"{where}: {kind} has no field(s) {sorted(unknown)}; valid fields: {sorted(fields)}."
        )
    try:
        return cls(**args)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {kind}({args}) is invalid: {err}") from err


def validate_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Check tables and keys; return the config (unchanged) or raise ``ValueError``."""
    unknown = set(cfg) - set(TABLES)
    if unknown:
        raise ValueError(f"config: unknown table(s) {sorted(unknown)}; valid: {sorted(TABLES)}.")
    for table, keys in TABLES.items():
        section = cfg.get(table, {})
        if not isinstance(section, dict):
            raise ValueError(f"config: [{table}] must be a table.")
        bad = set(section) - keys
        if bad:
            raise ValueError(
                f"config: [{table}] has unknown key(s) {sorted(bad)}; valid: {sorted(keys)}."
            )
    _check_types(cfg)
    check_factorize_params(cfg.get("factorize", {}), where="config [factorize]")
    for name in _TERM_LISTS & set(cfg.get("factorize", {})):
        entries = cfg["factorize"][name]
        if not isinstance(entries, list):
            raise ValueError(f"config: [factorize] {name} must be a list of tables.")
        for i, entry in enumerate(entries):
            build_term(entry, where=f"[factorize] {name}[{i}]")
    return cfg


def _check_types(cfg: dict[str, Any]) -> None:
    """The [input], [preprocess] and [output] values have their types (see ``_TYPES``)."""
    for table, keys in _TYPES.items():
        for key, value in cfg.get(table, {}).items():
            kinds, text = keys[key]
            ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
            if ok and key == "spatial_shape":
                ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
            if ok and key == "steps":
                ok = all(isinstance(v, dict) for v in value)
            if not ok:
                raise ValueError(f"config: [{table}] {key} = {value!r}: must be {text}.")


def load_config(path: str) -> dict[str, Any]:
    """Read and validate a TOML config file."""
    try:
        with open(path, "rb") as f:
            cfg = tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML ({err}).") from err
    return validate_config(cfg)


def factorize_options(section: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for :func:`unmix.factorize` from a ``[factorize]`` table."""
    out = dict(section)
    for name in _TERM_LISTS & set(out):
        out[name] = [
            build_term(e, where=f"[factorize] {name}[{i}]") for i, e in enumerate(out[name])
        ]
    return out
