"""load_result checks its file: schema, shapes, allow-listed classes, no outside data.

Generated cases: a valid result file tampered with one way each (format version, JSON
metadata, factor shapes and values, history, preprocessing, the link, the terms of the
problem spec, external data, unallocated datasets, truncation and garbage). Each must be a
ValueError naming the file and the problem, or, where the change is legitimate, a correct
result.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass

import h5py
import numpy as np
import pytest

import unmix
from unmix.model import Penalty, PenaltyModel

N, M, K = 30, 12, 3


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = rng.random((N, K)) @ rng.random((K, M))
    res = unmix.factorize(
        X,
        K,
        constraints=[unmix.SumToOne(), unmix.FixedEndmembers(X[:1] / 2, rows=[2])],
        regularizers=[unmix.L2(1e-3), unmix.GaussianMapFilter(1.0)],
        preprocessing=[unmix.NormalizePixels(weights=True)],
        spatial_shape=(5, 6),
        max_iter=5,
        random_state=0,
    )
    path = tmp_path_factory.mktemp("result") / "pristine.h5"
    res.save(path)
    return path


@pytest.fixture
def copy(pristine, tmp_path):
    dst = tmp_path / "fit.h5"
    shutil.copy(pristine, dst)
    return dst


# ----------------------------------------------------------------- tampering tools
def meta(fn):
    """Edit the JSON metadata with ``fn(meta)``."""

    def edit(f):
        m = json.loads(f.attrs["meta"])
        fn(m)
        f.attrs["meta"] = json.dumps(m)

    return edit


def spec(group, i, **changes):
    """Change the ``i``-th term description of ``spec[group]`` (None deletes a key)."""

    def fn(m):
        desc = m["spec"][group][i]
        desc.update(changes)
        for key in [k for k, v in changes.items() if v is None]:
            del desc[key]

    return meta(fn)


def replace(name, value, **kw):
    def edit(f):
        del f[name]
        if value is not None:
            f.create_dataset(name, data=value, **kw)

    return edit


def attr(name, value, where="/"):
    def edit(f):
        if value is None:
            del f[where].attrs[name]
        else:
            f[where].attrs[name] = value

    return edit


NAN_S = np.full((K, M), np.nan)
BAD = [
    # format and metadata
    (
        "version_2",
        attr("format_version", 2),
        r"format_version 2 is newer than this unmix reads.*upgrade unmix",
    ),
    ("version_str", attr("format_version", "1"), r"format_version '1' is not an integer"),
    ("version_missing", attr("format_version", None), r"format_version None is not an integer"),
    ("meta_missing", attr("meta", None), r"the 'meta' attribute \(JSON\) is missing"),
    ("meta_not_json", attr("meta", "{oops"), r"'meta' attribute is not valid JSON"),
    ("meta_list", attr("meta", "[1, 2]"), r"'meta' attribute is not a JSON object"),
    ("meta_deep", attr("meta", "[" * 100000 + "]" * 100000), r"not valid JSON|not a JSON"),
    ("no_n_iter", meta(lambda m: m.pop("n_iter")), r"meta lacks 'n_iter'"),
    ("no_spec", meta(lambda m: m.pop("spec")), r"meta lacks 'spec'"),
    ("n_iter_str", meta(lambda m: m.update(n_iter="5")), r"meta\['n_iter'\] is '5'; expected int"),
    ("n_iter_neg", meta(lambda m: m.update(n_iter=-1)), r"negative n_iter"),
    ("converged_int", meta(lambda m: m.update(converged=1)), r"'converged'\] is 1; expected bool"),
    ("objective_str", meta(lambda m: m.update(objective="x")), r"'objective'\] is 'x'"),
    ("timings_str", meta(lambda m: m.update(timings={"total": "x"})), r"non-numeric timings"),
    ("spec_list", meta(lambda m: m.update(spec=[])), r"'spec'\] is \[\]; expected dict"),
    ("context_str", meta(lambda m: m.update(context="x")), r"'context'\] is 'x'"),
    ("stop_none", meta(lambda m: m.update(stop_reason=None)), r"'stop_reason'\] is None"),
    (
        "spatial_mismatch",
        meta(lambda m: m.update(spatial_shape=[7, 7])),
        r"\[7, 7\] does not match",
    ),
    ("spatial_negative", meta(lambda m: m.update(spatial_shape=[-5, -6])), r"positive integers"),
    ("spatial_float", meta(lambda m: m.update(spatial_shape=[5.0, 6])), r"positive integers"),
    ("signal_mismatch", meta(lambda m: m.update(signal_shape=[5])), r"'signal_shape'\] = \[5\]"),
    ("spec_k", meta(lambda m: m["spec"].update(k=4)), r"spec\['k'\] = 4 but the factors give 3"),
    ("spec_channels", meta(lambda m: m["spec"].update(n_channels=1)), r"'n_channels'\] = 1"),
    # factors
    ("A_missing", replace("A", None), r"the dataset 'A' is missing"),
    ("S_missing", replace("S", None), r"the dataset 'S' is missing"),
    ("A_k", replace("A", np.ones((N, K + 1))), r"A must be \(pixels, k\), S \(k, channels\)"),
    ("S_rows", replace("S", np.ones((K - 1, M))), r"A must be \(pixels, k\)"),
    ("A_3d", replace("A", np.ones((N, K, 1))), r"'A' is a 3-D array"),
    ("S_1d", replace("S", np.ones(M)), r"'S' is a 1-D array"),
    ("A_int", replace("A", np.ones((N, K), dtype=int)), r"'A' is a 2-D array of int64"),
    ("S_str", replace("S", np.array([["a"] * M] * K, dtype="S1")), r"'S' is a 2-D array of \|S1"),
    ("S_nan", replace("S", NAN_S), r"'S' holds NaN or infinite values"),
    ("A_inf", replace("A", np.full((N, K), np.inf)), r"'A' holds NaN or infinite values"),
    ("A_group", lambda f: (f.__delitem__("A"), f.create_group("A")), r"'A' is missing"),
    (
        "A_unallocated",
        lambda f: (f.__delitem__("A"), f.create_dataset("A", shape=(10**6, 10**6), dtype="f8")),
        r"dataset '/A'.*was never written",
    ),
    (
        "A_external",
        lambda f: (
            f.__delitem__("S"),
            f.create_dataset("S", shape=(K, M), dtype="u1", external=[("/etc/passwd", 0, K * M)]),
        ),
        r"stores its values in /etc/passwd outside.*unmix result files never do",
    ),
    (
        "S_link",
        lambda f: (f.__delitem__("S"), f.__setitem__("S", h5py.ExternalLink("/x.h5", "S"))),
        r"'S' is an external link to /x\.h5",
    ),
    # history
    ("no_history", replace("history", None), r"the group 'history' is missing"),
    ("history_len", replace("history/fit", np.ones(3)), r"history vectors differ in length"),
    ("history_2d", replace("history/fit", np.ones((6, 2))), r"'fit' is a 2-D array"),
    ("history_str", replace("history/fit", np.array([b"x"] * 6)), r"'fit' is a 1-D array of \|S1"),
    # preprocessing
    (
        "step_os",
        attr("type", "os.system", "preprocessing/00"),
        r"names the preprocessing step type 'os.system'",
    ),
    ("step_import", attr("type", "__import__", "preprocessing/00"), r"step type '__import__'"),
    ("step_no_params", attr("params", None, "preprocessing/00"), r"no readable 'params'"),
    ("step_params_json", attr("params", "{", "preprocessing/00"), r"no readable 'params'"),
    (
        "step_params_list",
        attr("params", "[]", "preprocessing/00"),
        r"'params' is not a JSON object",
    ),
    (
        "step_norm",
        attr("params", '{"norm": "l3"}', "preprocessing/00"),
        r"refuses its arguments.*l3",
    ),
    (
        "step_evil_arg",
        attr("params", '{"__class__": 1}', "preprocessing/00"),
        r"unknown argument '__class__'",
    ),
    (
        "step_weights_str",
        attr("params", '{"weights": "yes"}', "preprocessing/00"),
        r"weights='yes'\) is not true or false",
    ),
    (
        "step_state_name",
        lambda f: f["preprocessing/00"].create_dataset("evil", data=[1.0]),
        r"unknown state 'evil'",
    ),
    (
        "step_state_shape",
        replace("preprocessing/00/scale", np.ones((N + 1, 1))),
        r"has shape \(31, 1\); expected \(30, 1\)",
    ),
    (
        "step_state_nan",
        replace("preprocessing/00/scale", np.full((N, 1), np.nan)),
        r"'scale' holds NaN",
    ),
    # link
    (
        "link_os",
        meta(lambda m: m.update(link={"type": "os.system"})),
        r"names the link type 'os.system'",
    ),
    (
        "link_no_type",
        meta(lambda m: m.update(link={"shift": 1})),
        r"meta\['link'\] is not a description",
    ),
    (
        "link_str_arg",
        meta(lambda m: m.update(link={"type": "Logistic", "shift": "rm -rf"})),
        r"shift='rm -rf'\) is not a finite number",
    ),
    (
        "link_nan_arg",
        meta(lambda m: m.update(link={"type": "Logistic", "scale": float("nan")})),
        r"scale=nan\) is not a finite number",
    ),
    (
        "link_evil_arg",
        meta(lambda m: m.update(link={"type": "Identity", "__init__": 1})),
        r"unknown argument '__init__'",
    ),
    # terms
    (
        "term_os",
        spec("penalties", 0, type="os.system"),
        r"names the term type 'os.system', not one unmix knows",
    ),
    ("term_eval", spec("penalties", 0, type="eval"), r"term type 'eval'"),
    (
        "term_user",
        spec("penalties", 0, type="MyPenalty"),
        r"pass load_result\(path, terms=\[MyPenalty\]\)",
    ),
    ("term_base", spec("penalties", 0, type="Penalty"), r"term type 'Penalty'"),
    (
        "term_no_type",
        spec("penalties", 0, type=None),
        r"spec\['penalties'\]\[0\] is not a description",
    ),
    ("term_type_int", spec("penalties", 0, type=3), r"is not a description with a 'type'"),
    ("term_lam_str", spec("penalties", 0, lam="1e-3"), r"L2\(lam='1e-3'\) is not a finite number"),
    (
        "term_lam_neg",
        spec("penalties", 0, lam=-1.0),
        r"L2 refuses its arguments \(L2: lam must be finite",
    ),
    ("term_lam_inf", spec("penalties", 0, lam=float("inf")), r"lam=inf\) is not a finite number"),
    ("term_lam_bool", spec("penalties", 0, lam=True), r"lam=True\) is not a finite number"),
    ("term_target", spec("penalties", 0, target="Z"), r"L2 refuses its arguments.*'Z'"),
    (
        "term_evil_arg",
        spec("penalties", 0, __class__="os"),
        r"gives L2 the unknown argument '__class__'",
    ),
    (
        "term_sigma_list",
        spec("filters", 0, sigma=[1, 2]),
        r"sigma=\[1, 2\]\) is not a finite number",
    ),
    (
        "term_any_str",
        spec("constraints", 1, spectra="os.system"),
        r"spectra='os.system'\) is not numbers \(an array\)",
    ),
    (
        "term_any_dict",
        spec("constraints", 1, rows={"a": 1}),
        r"rows=\{'a': 1\}\) is not numbers \(an array\)",
    ),
    (
        "term_any_nan",
        spec("constraints", 1, spectra=[[float("nan")] * M]),
        r"is not numbers \(an array\)",
    ),
    (
        "terms_not_list",
        meta(lambda m: m["spec"].update(penalties="L1")),
        r"spec\['penalties'\] is not a list",
    ),
    (
        "term_not_dict",
        meta(lambda m: m["spec"].update(filters=["GaussianMapFilter"])),
        r"spec\['filters'\]\[0\] is not a description",
    ),
    # the file itself
    ("format_other", attr("format", "something-else"), r"is not an unmix result file"),
]


@pytest.mark.parametrize(("name", "tamper", "says"), BAD, ids=[b[0] for b in BAD])
def test_tampered_result_file(copy, name, tamper, says):
    with h5py.File(copy, "r+") as f:
        tamper(f)
    with pytest.raises(ValueError, match=rf"{re.escape(str(copy))}.*{says}"):
        unmix.load_result(copy)


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99])
def test_truncated_result_file(copy, fraction):
    raw = copy.read_bytes()
    copy.write_bytes(raw[: int(len(raw) * fraction)])
    with pytest.raises(ValueError, match=rf"{re.escape(str(copy))} is not a readable HDF5"):
        unmix.load_result(copy)


@pytest.mark.parametrize("content", [b"\x00" * 4096, bytes(range(256)) * 16, b"{}"])
def test_garbage_result_file(copy, content):
    copy.write_bytes(content)
    with pytest.raises(ValueError, match=rf"{re.escape(str(copy))} is not a readable HDF5"):
        unmix.load_result(copy)


# ------------------------------------------------------------- what still loads
@dataclass(frozen=True)
class MyPenalty(Penalty):
    """A user's penalty (for the allow-list of ``terms=``)."""

    power: int = 2

    def value(self, M):
        return 0.0

    def model(self, M):
        return PenaltyModel()


def test_pristine_file_loads_and_rebuilds_the_terms(pristine):
    res = unmix.load_result(pristine)
    assert res.A.shape == (N, K) and res.S.shape == (K, M)
    assert res.spatial_shape == (5, 6)
    names = [type(t).__name__ for t in res.terms]
    assert names == ["SumToOne", "FixedEndmembers", "L2", "GaussianMapFilter"]
    assert res.terms[0] == unmix.SumToOne()
    assert res.terms[2] == unmix.L2(1e-3)
    assert res.terms[3] == unmix.GaussianMapFilter(1.0)
    np.testing.assert_allclose(res.terms[1].rows, [2])
    np.testing.assert_allclose(res.terms[1].spectra, res.S[2:3])


def test_user_term_class_passed_by_the_caller(copy):
    with h5py.File(copy, "r+") as f:
        spec("penalties", 0, type="MyPenalty", power=3, lam=0.5)(f)
    with pytest.raises(ValueError, match=r"term type 'MyPenalty'"):
        unmix.load_result(copy)
    res = unmix.load_result(copy, terms=[MyPenalty])
    assert MyPenalty(0.5, power=3) in res.terms
    with pytest.raises(TypeError, match=r"terms= takes Term subclasses"):
        unmix.load_result(copy, terms=[dict])


def test_term_with_arrays_not_stored_is_left_out(copy, caplog):
    with h5py.File(copy, "r+") as f:
        spec("constraints", 1, mask="<array shape (1, 12)>")(f)
    res = unmix.load_result(copy)
    assert "FixedEndmembers" not in [type(t).__name__ for t in res.terms]
    assert "FixedEndmembers is not rebuilt" in caplog.text


def test_legitimate_link_is_recreated(copy):
    with h5py.File(copy, "r+") as f:
        meta(lambda m: m.update(link={"type": "Logistic", "shift": 1.5, "scale": 2}))(f)
    assert unmix.load_result(copy).link == unmix.Logistic(shift=1.5, scale=2.0)


def test_history_may_hold_non_finite_values(copy):
    with h5py.File(copy, "r+") as f:
        data = f["history/objective"][()]
        data[-1] = np.inf
        replace("history/objective", data)(f)
    assert np.isinf(unmix.load_result(copy).history["objective"][-1])


def test_older_file_without_preprocessing_group(copy):
    with h5py.File(copy, "r+") as f:
        del f["preprocessing"]
        f["mean"] = np.ones(M)
    res = unmix.load_result(copy)
    np.testing.assert_array_equal(res.mean, np.ones(M))
    with h5py.File(copy, "r+") as f:
        replace("mean", np.ones(M + 1))(f)
    with pytest.raises(ValueError, match=r"/mean has shape \(13,\); expected \(12,\)"):
        unmix.load_result(copy)
