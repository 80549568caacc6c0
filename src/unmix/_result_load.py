"""Reading a result file (:func:`load_result`), which trusts nothing in it.

It checks the format version, every dataset (2-D finite factors ``A`` (pixels, k) and
``S`` (k, channels), history vectors of one length, preprocessing state of the right
shapes), the JSON metadata's keys and types, and it recreates links, preprocessing steps
and terms only from allow-lists of built-in classes (plus the term classes the caller
passes), with each argument's type checked. A file that stores or links data elsewhere
(HDF5 external links, external storage, virtual datasets) is refused. Every problem is a
``ValueError`` naming the file and what is wrong.  Writing is :meth:`unmix.Result.save`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import model as _model
from ._bands import read_bands, read_compared_bands
from ._result_path import result_file
from .io import check_dataset, check_h5_file
from .model import Constraint, Filter, Identity, Logistic, Penalty, Term
from .preprocessing import Center, NormalizePixels, PoissonScaling
from .result import FORMAT_VERSION, Result

__all__ = ["load_result"]

_logger = logging.getLogger("unmix.result")


#: the links, steps and terms a result file may name (nothing else is instantiated)
_LINKS = {cls.__name__: cls for cls in (Identity, Logistic)}
_STEPS = {cls.__name__: cls for cls in (Center, NormalizePixels, PoissonScaling)}
_TERMS = {  # every term class unmix.model exports (GraphSmoothness rebuilt with graph=None)
    name: cls
    for name, cls in vars(_model).items()
    if name in _model.__all__
    and isinstance(cls, type)
    and issubclass(cls, Term)
    and cls not in (Term, Constraint, Penalty, Filter)
}
#: each step's state: dataset name -> shape ("n": pixels of A, "m": channels of S)
_STATE = {
    "Center": {"mean": ("m",)},
    "NormalizePixels": {"scale": ("n", 1), "pixel_weights": ("n",)},
    "PoissonScaling": {"h": (1, "m"), "g": ("n", 1)},
}
#: metadata keys -> the JSON types they may have (None: may be missing or null)
_META = {
    "objective": (float, int),
    "n_iter": (int,),
    "converged": (bool,),
    "stop_reason": (str,),
    "timings": (dict,),
    "spec": (dict,),
    "restarts": (list,),
    "spatial_shape": (list, None),
    "signal_shape": (list, None),
    "context": (dict, None),
    "link": (dict, None),
}
_PLACEHOLDER = "<array shape"


class _Bad(ValueError):
    """A schema violation; :func:`load_result` prefixes the file name."""


def _type_ok(value: Any, types: tuple) -> bool:
    if value is None:
        return None in types
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, tuple(t for t in types if t is not None))


def _read(
    f: Any, name: str, path: str, ndim: int | None = None, kinds: str = "biuf", finite: bool = True
) -> Any:
    """A dataset of numbers, checked (written, within the budget, finite, its shape)."""
    ds = f.get(name)
    if ds is None or not hasattr(ds, "dtype") or not hasattr(ds, "shape"):
        raise _Bad(f"the dataset {name!r} is missing")
    if ds.dtype.kind not in kinds or (ndim is not None and ds.ndim != ndim):
        raise _Bad(
            f"{name!r} is a {ds.ndim}-D array of {ds.dtype}; expected {ndim}-D numbers ({kinds})"
        )
    check_dataset(ds, path, fix="the result file is damaged; write it again")
    value = ds[()]
    if finite and not np.all(np.isfinite(value)):
        raise _Bad(f"{name!r} holds NaN or infinite values")
    return value


def _meta(f: Any) -> dict:
    version = f.attrs.get("format_version")
    if not isinstance(version, (int, np.integer)) or isinstance(version, (bool, np.bool_)):
        raise _Bad(f"format_version {version!r} is not an integer")
    if int(version) > FORMAT_VERSION:
        raise _Bad(
            f"format_version {int(version)} is newer than this unmix reads (up to "
            f"{FORMAT_VERSION}): a newer unmix wrote it; upgrade unmix"
        )
    if int(version) < 1:
        raise _Bad(f"format_version {int(version)} is not a valid version")
    text = f.attrs.get("meta")
    if not isinstance(text, (str, bytes)):
        raise _Bad("the 'meta' attribute (JSON) is missing")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _Bad(f"the 'meta' attribute is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise _Bad("the 'meta' attribute is not a JSON object")
    for key, types in _META.items():
        if key not in meta and None not in types:
            raise _Bad(f"meta lacks {key!r}")
        if key in meta and not _type_ok(meta[key], types):
            raise _Bad(f"meta[{key!r}] is {_short(meta[key])}; expected {_names(types)}")
    if meta["n_iter"] < 0 or not all(_type_ok(v, (float, int)) for v in meta["timings"].values()):
        raise _Bad("meta holds a negative n_iter or non-numeric timings")
    return meta


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _names(types: tuple) -> str:
    return " or ".join("null" if t is None else t.__name__ for t in types)


def _shape(value: Any, key: str, sizes: tuple[int, ...]) -> tuple[int, ...] | None:
    """A stored spatial/signal shape: positive integers whose product is one of ``sizes``."""
    if not value:
        return None
    if not all(_type_ok(v, (int,)) and v > 0 for v in value):
        raise _Bad(f"meta[{key!r}] = {value!r} is not a list of positive integers")
    if math.prod(value) not in sizes:
        raise _Bad(f"meta[{key!r}] = {value} does not match the factors' sizes {sizes}")
    return tuple(value)


def _factors(f: Any, path: str, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    A = _read(f, "A", path, ndim=2, kinds="f")
    S = _read(f, "S", path, ndim=2, kinds="f")
    k = S.shape[0]
    if k < 1 or A.shape[1] != k:
        raise _Bad(f"A is {A.shape} and S is {S.shape}: A must be (pixels, k), S (k, channels)")
    spec = meta["spec"]
    for key, size in (("k", k), ("n_channels", S.shape[1])):
        if key in spec and spec[key] != size:
            raise _Bad(f"spec[{key!r}] = {spec[key]!r} but the factors give {size}")
    return A, S


def _history(f: Any, path: str) -> dict[str, np.ndarray]:
    group = f.get("history")
    if group is None or not hasattr(group, "keys"):
        raise _Bad("the group 'history' is missing")
    out = {key: _read(group, key, path, ndim=1, finite=False) for key in group}
    if len({v.shape for v in out.values()}) > 1:
        raise _Bad(f"history vectors differ in length: { {k: len(v) for k, v in out.items()} }")
    return out


def _args(cls: type, given: dict, where: str) -> dict | None:
    """``given`` checked against ``cls``'s dataclass fields (None: arrays not stored)."""
    fields = (
        {x.name: x for x in dataclasses.fields(cls) if x.init}
        if dataclasses.is_dataclass(cls)
        else {}
    )
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise _Bad(f"{where} gives {cls.__name__} the unknown argument {unknown[0]!r}")
    for key, value in given.items():
        if isinstance(value, str) and value.startswith(_PLACEHOLDER):
            return None
        ann = fields[key].type
        ann = ann if isinstance(ann, str) else getattr(ann, "__name__", "Any")
        alternatives = ann.replace(" ", "").split("|")
        if not _value_ok(value, alternatives):
            wanted = " or ".join(_WANTED.get(alt, "numbers (an array)") for alt in alternatives)
            raise _Bad(f"{where}: {cls.__name__}({key}={_short(value)}) is not {wanted}")
    return given


_WANTED = {
    "float": "a finite number",
    "int": "an integer",
    "bool": "true or false",
    "str": "a string",
    "None": "null",
}


def _value_ok(value: Any, alternatives: list[str]) -> bool:
    simple = {
        "float": (float, int),
        "int": (int,),
        "bool": (bool,),
        "str": (str,),
        "None": (None,),
    }
    for alt in alternatives:
        if alt in simple:
            if _type_ok(value, simple[alt]) and (alt != "float" or math.isfinite(value)):
                return True
        elif _array_like(value):
            return True
    return False


def _array_like(value: Any, depth: int = 0) -> bool:
    """None, a number (not NaN), a bool, or (nested) lists of them: what arrays become."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, (int, float)):
        return not math.isnan(value)
    return isinstance(value, list) and depth < 8 and all(_array_like(v, depth + 1) for v in value)


def _build(registry: dict, desc: Any, where: str, what: str) -> Any:
    """An instance of the allow-listed class ``desc["type"]`` names (None: not rebuilt)."""
    if not isinstance(desc, dict) or not isinstance(desc.get("type"), str):
        raise _Bad(f"{where} is not a description with a 'type'")
    args = dict(desc)
    name = args.pop("type")
    if name not in registry:
        hint = (
            f"; pass load_result(path, terms=[{name}]) if it is your class"
            if what == "term"
            else ""
        )
        raise _Bad(f"{where} names the {what} type {name!r}, not one unmix knows{hint}")
    cls = registry[name]
    checked = _args(cls, args, where)
    if checked is None:
        _logger.warning("%s: %s is not rebuilt: its array arguments are not stored", where, name)
        return None
    try:
        return cls(**checked)
    except (TypeError, ValueError) as exc:
        raise _Bad(f"{where}: {name} refuses its arguments ({exc})") from None


def _registry(user: Sequence[type]) -> dict[str, type]:
    """The built-in term classes and the caller's (checked: Term subclasses)."""
    registry = dict(_TERMS)
    for cls in user:
        if not (isinstance(cls, type) and issubclass(cls, Term)):
            raise TypeError(f"terms= takes Term subclasses; got {cls!r}")
        registry[cls.__name__] = cls
    return registry


def _terms(spec: dict, registry: dict[str, type]) -> list:
    out = []
    for group in ("constraints", "penalties", "filters"):
        items = spec.get(group, [])
        if not isinstance(items, list):
            raise _Bad(f"spec[{group!r}] is not a list")
        for i, desc in enumerate(items):
            term = _build(registry, desc, f"spec[{group!r}][{i}]", "term")
            out.extend([term] if term is not None else [])
    return out


def _make_link(spec: dict | None) -> Any:
    if not spec:
        return None
    return _build(_LINKS, spec, "meta['link']", "link")


def _load_steps(f: Any, path: str, n: int, m: int) -> list:
    group = f.get("preprocessing")
    if group is None:  # files written before preprocessing was saved
        if "mean" not in f:
            return []
        steps = [Center()]
        steps[0].state["mean"] = _state(f, "mean", path, ("m",), n, m)
        return steps
    steps = []
    for name in sorted(group):
        g = group[name]
        where = f"preprocessing/{name}"
        try:
            params = json.loads(g.attrs["params"])
        except (KeyError, ValueError, TypeError):
            raise _Bad(f"{where} has no readable 'params' (JSON)") from None
        if not isinstance(params, dict):
            raise _Bad(f"{where}: 'params' is not a JSON object")
        desc = {"type": g.attrs.get("type"), **params}
        step = _build(_STEPS, desc, where, "preprocessing step")
        if step is None:
            raise _Bad(f"{where}: the step's arguments are not stored")
        shapes = _STATE[desc["type"]]
        for key in g:
            if key not in shapes:
                raise _Bad(f"{where} holds an unknown state {key!r}; known: {sorted(shapes)}")
            step.state[key] = _state(g, key, path, shapes[key], n, m)
        steps.append(step)
    return steps


def _state(g: Any, key: str, path: str, shape: tuple, n: int, m: int) -> np.ndarray:
    want = tuple(n if d == "n" else m if d == "m" else d for d in shape)
    value = _read(g, key, path, ndim=len(want))
    if value.shape != want:
        raise _Bad(f"{g.name}/{key} has shape {value.shape}; expected {want}")
    return value


def load_result(path: str | os.PathLike, *, terms: Sequence[type] = ()) -> Result:
    """Read a result written by :meth:`Result.save` (NumPy arrays), checking its schema.

    Parameters
    ----------
    path : str or PathLike
        The HDF5 file, or an output folder of the command line (its ``result.h5``, or
        its one ``result*.h5``).
    terms : sequence of Term subclasses
        Your own term classes the fit used: the file names its terms, and only the
        built-in ones and these are recreated (:attr:`Result.terms`).

    Returns
    -------
    Result

    Raises
    ------
    FileNotFoundError
        No file at ``path``, or a folder without one result file.
    ValueError
        Not an unmix result, or a damaged or altered one (the message says what).
    """
    import h5py

    path = result_file(path)
    registry = _registry(terms)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path} is not a readable HDF5 file ({err}).") from err
    try:
        check_h5_file(path, hint="unmix result files never do: the file was altered")
    except BaseException:
        f.close()
        raise
    try:
        with f:
            if f.attrs.get("format") != "unmix-result":
                raise ValueError(f"{path} is not an unmix result file.")
            return _load(f, path, registry)
    except _Bad as err:
        raise ValueError(f"{path}: damaged or altered unmix result file: {err}.") from None
    except (OSError, KeyError, TypeError, AttributeError, RuntimeError) as err:
        raise ValueError(
            f"{path}: damaged unmix result file ({type(err).__name__}: {err})."
        ) from err


def _load(f: Any, path: str, registry: dict[str, type]) -> Result:
    meta = _meta(f)
    A, S = _factors(f, path, meta)
    history = _history(f, path)
    pre = _load_steps(f, path, A.shape[0], S.shape[1])
    n_total = meta["spec"].get("n_pixels")
    result = Result(
        A=A,
        S=S,
        objective=meta["objective"],
        history=history,
        n_iter=meta["n_iter"],
        converged=meta["converged"],
        stop_reason=meta["stop_reason"],
        timings=meta["timings"],
        spec=meta["spec"],
        restarts=meta["restarts"],
        preprocessing=pre,
        spatial_shape=_shape(meta.get("spatial_shape"), "spatial_shape", (A.shape[0], n_total)),
        signal_shape=_shape(meta.get("signal_shape"), "signal_shape", (S.shape[1],)),
        context=meta.get("context") or {},
        link=_make_link(meta.get("link")),
    )
    result._terms = _terms(meta["spec"], registry)
    try:
        shape = (A.shape[0], S.shape[0], S.shape[1])
        result.bands = read_bands(f, path, *shape)
        result.compared_bands = read_compared_bands(f, path, *shape)
    except ValueError as err:
        raise _Bad(str(err).removeprefix(f"{path}: ")) from None
    return result
