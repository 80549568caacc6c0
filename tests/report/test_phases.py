"""Overview image, component summaries, label maps, phases and map correlations."""

from __future__ import annotations

import numpy as np
import pytest

import unmix
from unmix._notebook import abundance_units, component_lines, component_stats
from unmix.report import write_report
from unmix.report._phases import (
    label_map,
    map_correlations,
    overview_image,
    phase_maps,
)
from unmix.spectral_image import Axis, SpectralImage


def _result(A, S, **kw):
    k = S.shape[0]
    return unmix.Result(
        A=A,
        S=S,
        objective=1.0,
        history={"objective": np.ones(3), "fit": np.ones(3)},
        n_iter=2,
        converged=True,
        stop_reason="tol",
        timings={"total": 0.1},
        spec={"k": k, "loss": "frobenius", "solver": "hals", **kw.pop("spec", {})},
        **kw,
    )


@pytest.fixture(scope="module")
def peaks():
    """Two Gaussian peaks at 20 and 60 eV on a calibrated axis; maps in two halves."""
    e = np.linspace(0.0, 99.0, 100)
    S = np.stack([np.exp(-0.5 * ((e - c) / 3.0) ** 2) for c in (20.0, 60.0)])
    A = np.zeros((12, 10, 2))
    A[:, :4, 0] = 3.0
    A[:, 4:, 1] = 1.0
    A[:, 4:, 0] = 0.05
    image = SpectralImage(
        (A.reshape(120, 2) @ S).reshape(12, 10, 100),
        [Axis("y", 12, 2.0, 0.0, "nm"), Axis("x", 10, 2.0, 0.0, "nm")],
        [Axis("Energy", 100, 1.0, 0.0, "eV")],
    )
    return _result(A.reshape(120, 2), S, spatial_shape=(12, 10)), image


def test_label_map_is_the_argmax_of_the_maps():
    A = np.random.default_rng(1).random((50, 4))
    A[7] = 0.0
    labels = label_map(A)
    np.testing.assert_array_equal(np.delete(labels, 7), np.delete(A.argmax(axis=1), 7))
    assert labels[7] == -1


def test_phase_maps_sum_the_maps_of_each_group():
    A = np.random.default_rng(2).random((30, 4))
    P = phase_maps(A, [1, 0, 1, 2])
    np.testing.assert_allclose(P, np.stack([A[:, 1], A[:, 0] + A[:, 2], A[:, 3]], axis=1))
    with pytest.raises(ValueError, match="groups must give a group >= 0 for each of the 4"):
        phase_maps(A, [0, 1])


def test_map_correlations():
    rng = np.random.default_rng(3)
    o = rng.random(40)
    A = np.stack([2 * o + 1, -o, np.ones(40)], axis=1)
    r = map_correlations(A, o)
    np.testing.assert_allclose(r[:2], [1.0, -1.0])
    assert np.isnan(r[2])


def test_overview_is_the_carried_image_else_the_sum_image(peaks):
    res, image = peaks
    X = image.unfold()
    values, name, carried = overview_image(image, X, res)
    np.testing.assert_allclose(values, X.sum(axis=1))
    assert (name, carried) == ("sum image", False)
    haadf = np.arange(120.0).reshape(12, 10)
    with_haadf = SpectralImage(image.data, image.spatial_axes, image.signal_axes, {"haadf": haadf})
    values, name, carried = overview_image(with_haadf, X, res)
    np.testing.assert_allclose(values, haadf.ravel())
    assert (name, carried) == ("haadf", True)
    assert overview_image(None, None, res) is None


def test_component_summaries_on_the_calibrated_axis(peaks):
    res, image = peaks
    stats = component_stats(res, image)
    assert [s["peaks"][0] for s in stats] == [20.0, 60.0]
    shares = [s["share"] for s in stats]
    assert sum(shares) == pytest.approx(1.0)
    total = np.array([40 * 3.0 + 60 * 0.05, 60 * 1.0])  # maps x the endmembers' sums
    np.testing.assert_allclose(shares, total / total.sum(), rtol=1e-6)
    assert stats[0]["dominant"] == pytest.approx(0.4) and stats[1]["dominant"] == pytest.approx(
        0.6
    )
    assert stats[0]["present"] == pytest.approx(0.4)  # 0.05 x 7.5 is < 10 % elsewhere
    lines = component_lines(res, image, ["Cu", "Zn"])
    assert lines[0].startswith("Cu: peak at 20 eV") and "dominant in 40 %" in lines[0]


def test_abundance_units_follow_the_constraints(peaks):
    res, _ = peaks
    assert "summed over channels" in abundance_units(res)
    res2 = _result(res.A, res.S, spec={"constraints": [{"type": "SumToOne", "total": 1.0}]})
    assert abundance_units(res2).startswith("fraction of the pixel")
    res3 = _result(res.A, res.S, spec={"constraints": [{"type": "UnitNorm", "target": "S"}]})
    assert "unit-norm" in abundance_units(res3)
    assert abundance_units(_result(res.A, res.S, spec={"solver": "svd"})).startswith("score")


def test_run_report_has_overview_components_labels_and_correlations(peaks, tmp_path):
    res, image = peaks
    haadf = res.A[:, 0].reshape(12, 10) + 0.1
    image = SpectralImage(image.data, image.spatial_axes, image.signal_axes, {"haadf": haadf})
    page = write_report(tmp_path, res, image=image, viewer=False).read_text()
    assert page.index("<h3>Overview</h3>") < page.index("<h3>Components</h3>")
    assert "Map values" in page and "summed over channels" in page
    assert "peak at 20 eV" in page and "Label map" in page
    assert "Correlation of each map with the haadf" in page
    assert "<td>1.000</td>" in page  # the haadf is component 0's map (plus a constant)
    assert (tmp_path / "overview.png").exists()
    assert "<h3>Phases</h3>" not in page  # spectra: no phases


@pytest.fixture(scope="module")
def patterns():
    """Two lattices, one of them at two orientations, in four quadrants of a 12 x 12 scan."""
    from unmix.synthetic import make_diffraction_patterns

    d = make_diffraction_patterns(rotations=((0.0, 30.0), (0.0,)), size=20)
    S = d.patterns.reshape(3, -1)
    A = np.zeros((12, 12, 3))
    A[:6, :, 0] = 1.0
    A[6:, :6, 1] = 1.0
    A[6:, 6:, 2] = 1.0
    return _result(A.reshape(144, 3), S, spatial_shape=(12, 12), signal_shape=(20, 20))


def test_phases_group_rotated_patterns_and_show_in_the_cli_report(patterns, tmp_path):
    from unmix.cli._common import write_html_report
    from unmix.hierarchy import component_phases

    phases = component_phases(patterns)
    labels = phases["labels"]
    assert labels[0] == labels[1] != labels[2]  # the same lattice at 0 and 30 degrees
    X = np.asarray(patterns.A) @ np.asarray(patterns.S)
    page = open(write_html_report(str(tmp_path), {"nmf": patterns}, X, None, "t")).read()
    assert "<h3>Phases</h3>" in page and "2 phases" in page
    assert "phase maps" in page.lower() and "Dendrogram of the components" in page
    assert patterns.context["phases"]["labels"] == labels


def test_overview_shows_the_mean_spectrum_of_data_and_model(peaks, tmp_path):
    from unmix.report._model import mean_spectra

    res, image = peaks
    X = image.unfold()
    data, model = mean_spectra(res, X)
    np.testing.assert_allclose(data, X.mean(axis=0))
    np.testing.assert_allclose(model, np.asarray(res.reconstruct()).mean(axis=0))
    page = write_report(tmp_path, res, X=X, image=image, viewer=False).read_text()
    assert "Overview: sum image of the scan; mean spectrum over all pixels" in page


def test_overview_of_patterns_shows_the_mean_pattern(patterns, tmp_path):
    X = np.asarray(patterns.A) @ np.asarray(patterns.S)
    page = write_report(tmp_path, patterns, X=X, viewer=False).read_text()
    assert "mean pattern over all pixels" in page
    assert (tmp_path / "overview.png").exists()
