"""The chat's spectrum plot: markers from the one line list at the predicted z, matched lines highlighted."""
from __future__ import annotations

import numpy as np
import pytest

from speclm.tools import lines as line_list
from speclm.ui.plot import figure_from_result, marker_positions, spectrum_figure, visible_lines


def _spec(z=0.1):
    from speclm.tools.synthetic import synthetic_spectrum

    s = synthetic_spectrum(z, lines={"Halpha": 3.0}, continuum=(1.0, 0.0), noise=0.0, ivar=100.0,
                           loglam=np.log10(np.geomspace(3800.0, 9200.0, 3000)), meta={"id": "toy", "format": "npz"})
    s.ivar[100:140] = 0.0  # a masked stretch
    return s


def test_markers_are_line_list_positions():
    z = 0.1
    pos = marker_positions(z, (3800.0, 9200.0))
    assert pos["Halpha"] == pytest.approx(6564.61 * 1.1)
    assert pos["OII"] == pytest.approx(line_list.observed("OII", z))
    # one marker per feature: the [O II] doublet's components are folded into the blend
    assert "OII3727" not in pos and "OII3729" not in pos
    # out-of-range lines are not drawn: at z = 0.5 Hα is at 9847 Å, beyond 9200
    assert "Halpha" not in marker_positions(0.5, (3800.0, 9200.0))


def test_figure_draws_matched_lines_solid_and_labels_them():
    spec = _spec()
    check = {"z": 0.1, "confident": True,
             "lines": [{"name": "Halpha", "observed_A": 7221.07, "snr": 25.0, "kind": "emission"}]}
    fig, z = figure_from_result(spec, {"z": 0.098, "z_lo": 0.09, "z_hi": 0.11}, check)
    assert z == 0.1  # a confident line check wins over the model's z
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert any(t.startswith("Hα") and "25σ" in t for t in texts)
    n_in_range = len(visible_lines(0.1, spec.wavelength[0], spec.wavelength[-1]))
    assert len(ax.lines) == 1 + n_in_range  # the spectrum plus one vertical marker per line
    assert "line-fit z = 0.1000" in ax.get_title() and "68%" not in ax.get_title()
    fig, z = figure_from_result(spec, {"z": 0.098, "z_lo": 0.09, "z_hi": 0.11}, None)
    assert z == 0.098 and "z = 0.0980 (68%: 0.0900–0.1100)" in fig.axes[0].get_title()


def test_figure_without_redshift_has_no_markers_and_masks_bad_pixels():
    spec = _spec()
    fig = spectrum_figure(spec)
    ax = fig.axes[0]
    assert len(ax.lines) == 1 and not ax.texts
    y = ax.lines[0].get_ydata()
    assert np.isnan(y[110:130]).all()  # masked pixels are gaps, not zeros
    assert "no redshift" in ax.get_title()


def test_figure_renders_real_sdss_file(ngc3522_fits, tmp_path):
    from speclm.tools.spectrum import read_spectrum

    spec = read_spectrum(ngc3522_fits)
    fig, _ = figure_from_result(spec, {"z": spec.z_catalog, "z_lo": 0.0, "z_hi": 0.01}, None)
    out = tmp_path / "p.png"
    fig.savefig(out)
    assert out.stat().st_size > 10_000


def test_redshift_beyond_the_range_says_so():
    # at z = 2.5 the optical lines are gone but the quasar lines of the list (C IV, C III], ...) land
    from speclm.ui.plot import visible_lines

    assert {l.name for l, _ in visible_lines(2.5, 3800, 9200)} >= {"CIV1549", "CIII1909", "Lyalpha"}
    assert all(l.agn for l, _ in visible_lines(2.5, 3800, 9200))
    fig = spectrum_figure(_spec(), z=12.0)
    ax = fig.axes[0]
    assert len(ax.lines) == 1
    assert any("no line of the list falls in" in t.get_text() for t in ax.texts)


def test_plot_marks_the_stated_redshift(ngc3522_fits):
    """The plot's markers sit at the z the assistant states (e.g. a quasar's template fit), not the
    model's answer."""
    from speclm.tools.spectrum import read_spectrum

    spec = read_spectrum(ngc3522_fits)
    pred = {"z": 0.3, "z_lo": 0.25, "z_hi": 0.35}
    fig, z = figure_from_result(spec, pred, None, {"z": 0.00402, "z_source": "template fit (galaxy)",
                                                   "spectype": "GALAXY"})
    assert z == 0.00402 and "stated z = 0.0040" in fig.axes[0].get_title()
    _, z_model = figure_from_result(spec, pred, None, {"z": 0.3, "z_source": "model"})
    assert z_model == 0.3
