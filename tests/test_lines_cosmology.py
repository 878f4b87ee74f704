"""The one line list and the cosmology tool: numbers checked against astropy and by hand."""
from __future__ import annotations

import json
import math

import pytest
from astropy import units as u
from astropy.cosmology import WMAP9, FlatLambdaCDM, Planck15, Planck18

from speclm.tools import lines as L
from speclm.tools.cosmology import (
    CosmologyConfig,
    line_positions,
    relativistic_velocity_km_s,
    resolve_cosmology,
    summarize,
)
from speclm.tools.errors import (
    ConfigError,
    RedshiftRangeError,
    SpeclmError,
    UnknownCosmologyError,
    UnknownLineError,
)

# ---------------------------------------------------------------- line list


@pytest.mark.parametrize("alias", ["Halpha", "Hα", "H-alpha", "H alpha", "ha", "HALPHA"])
def test_halpha_aliases(alias):
    assert L.get(alias).rest_A == pytest.approx(6564.61)


@pytest.mark.parametrize("alias,name,rest", [
    ("OIII", "OIII5008", 5008.24), ("[O III]", "OIII5008", 5008.24), ("[O III] 5007", "OIII5008", 5008.24),
    ("[O III] 4959", "OIII4960", 4960.30), ("[O II]", "OII", 3728.48), ("[N II] 6583", "NII6585", 6585.27),
    ("[S II] 6731", "SII6733", 6732.67), ("Ca II K", "CaK", 3934.78), ("Ca H", "CaH", 3969.59),
    ("G band", "Gband", 4305.6), ("Mg b", "Mgb", 5176.7), ("Na D", "NaD", 5895.6), ("Hβ", "Hbeta", 4862.68),
    ("Hγ", "Hgamma", 4341.68), ("Hδ", "Hdelta", 4102.89), ("[O I]", "OI6302", 6302.05), ("Dn4000", "D4000", 4000.0),
])
def test_friendly_names(alias, name, rest):
    line = L.get(alias)
    assert (line.name, line.rest_A) == (name, rest)


def test_vacuum_not_air():
    # air Hα is 6562.8; the list must carry the SDSS vacuum value, ~1.8 Å redder
    assert L.get("Halpha").rest_A - 6562.80 == pytest.approx(1.81, abs=0.02)


def test_entries_well_formed():
    assert len(set(L.names())) == len(L.LINES)
    for line in L.LINES:
        assert line.kind in L.KINDS and line.strength in L.STRENGTHS
        for comp in line.blend_of:
            assert L.get(comp).kind == line.kind
    oii = L.get("OII")
    assert oii.rest_A == pytest.approx(sum(L.get(c).rest_A for c in oii.blend_of) / 2, abs=0.1)
    assert L.DN4000.blue_A == (3850.0, 3950.0) and L.DN4000.red_A == (4000.0, 4100.0)
    assert all(not l.blend_of for l in L.by_kind("emission"))


def test_observed_and_unknown():
    assert L.observed("Hα", 0.315) == pytest.approx(8632.46, abs=0.01)
    with pytest.raises(UnknownLineError, match="Hzeta"):
        L.get("Hzeta")
    assert issubclass(UnknownLineError, SpeclmError)


# ---------------------------------------------------------------- cosmology


def test_summary_matches_astropy_planck18():
    z = 0.315
    s = summarize(z)
    assert s.cosmology == "Planck18"
    assert s.lookback_gyr == pytest.approx(Planck18.lookback_time(z).to_value(u.Gyr), rel=1e-9)
    assert 3.6 <= s.lookback_gyr <= 3.8
    assert s.age_at_z_gyr == pytest.approx(Planck18.age(z).to_value(u.Gyr), rel=1e-9)
    assert s.comoving_distance_mpc == pytest.approx(Planck18.comoving_distance(z).to_value(u.Mpc), rel=1e-9)
    assert s.luminosity_distance_mpc == pytest.approx(Planck18.luminosity_distance(z).to_value(u.Mpc), rel=1e-9)
    assert s.angular_diameter_distance_mpc == pytest.approx(
        Planck18.angular_diameter_distance(z).to_value(u.Mpc), rel=1e-9)
    assert s.distance_modulus_mag == pytest.approx(Planck18.distmod(z).to_value(u.mag), rel=1e-9)
    assert s.kpc_per_arcsec == pytest.approx(
        Planck18.kpc_proper_per_arcmin(z).to_value(u.kpc / u.arcmin) / 60, rel=1e-9)
    # hand identities: D_L = (1+z)^2 D_A, D_C = (1+z) D_A (flat), mu = 5 log10(D_L/10 pc)
    assert s.luminosity_distance_mpc == pytest.approx((1 + z) ** 2 * s.angular_diameter_distance_mpc, rel=1e-9)
    assert s.comoving_distance_mpc == pytest.approx((1 + z) * s.angular_diameter_distance_mpc, rel=1e-9)
    assert s.distance_modulus_mag == pytest.approx(5 * math.log10(s.luminosity_distance_mpc * 1e5), rel=1e-9)
    assert s.age_now_gyr == pytest.approx(s.age_at_z_gyr + s.lookback_gyr, rel=1e-9)


def test_velocity_hand_computed():
    # relativistic Doppler at z=0.315: (1.315^2-1)/(1.315^2+1) c = 0.26719 c = 80,102 km/s
    assert relativistic_velocity_km_s(0.315) == pytest.approx(80_102, rel=1e-4)
    s = summarize(0.315)
    assert s.recession_velocity_km_s == pytest.approx(80_102, rel=1e-4)
    assert s.cz_km_s == pytest.approx(94_434.6, rel=1e-5)
    # Hubble-flow velocity H0 * D_C, the "recession velocity" in the cosmological sense
    assert s.hubble_flow_velocity_km_s == pytest.approx(67.66 * s.comoving_distance_mpc, rel=1e-4)
    assert relativistic_velocity_km_s(0.001) == pytest.approx(299.79, rel=2e-3)  # v ~ cz at low z
    assert relativistic_velocity_km_s(1e6) < 299_792.458


def test_line_positions_vacuum():
    pos = {p.name: p for p in line_positions(0.315)}
    assert pos["Halpha"].observed_A == pytest.approx(8632.5, abs=0.05)
    assert len(pos) == len(L.LINES)
    only = line_positions(0.315, ["Hα", "[O III]"])
    assert [p.name for p in only] == ["Halpha", "OIII5008"]
    assert [p.name for p in line_positions(0.0, wave_range=(6500, 6600))] == ["Halpha", "NII6550", "NII6585"]
    with pytest.raises(UnknownLineError):
        line_positions(0.1, ["Hfoo"])


@pytest.mark.parametrize("name,ref", [("Planck18", Planck18), ("planck15", Planck15), ("WMAP9", WMAP9)])
def test_named_cosmologies(name, ref):
    s = summarize(1.0, name)
    assert s.lookback_gyr == pytest.approx(ref.lookback_time(1.0).to_value(u.Gyr), rel=1e-9)
    assert s.H0_km_s_mpc == pytest.approx(ref.H0.value)


def test_flat_lcdm():
    ref = FlatLambdaCDM(H0=70, Om0=0.3)
    s = summarize(0.5, "flat", H0=70, Om0=0.3)
    assert s.comoving_distance_mpc == pytest.approx(ref.comoving_distance(0.5).to_value(u.Mpc), rel=1e-9)
    assert summarize(0.5, H0=70, Om0=0.3).cosmology.startswith("FlatLambdaCDM")
    assert resolve_cosmology(ref) is ref


def test_z_zero_and_dict_json():
    s = summarize(0.0)
    assert s.luminosity_distance_mpc == 0 and s.distance_modulus_mag is None and s.kpc_per_arcsec == 0
    d = summarize(0.1).to_dict()
    json.dumps(d, allow_nan=False)
    assert {"lookback_gyr", "luminosity_distance_mpc", "recession_velocity_km_s", "lines"} <= set(d)
    text = summarize(0.315).describe()
    assert "3.67 Gyr" in text and "Planck18" in text and "8632.5" in text and "\n" not in text


@pytest.mark.parametrize("z", [-0.1, 20.5, float("nan"), "abc"])
def test_bad_redshift(z):
    with pytest.raises(RedshiftRangeError):
        summarize(z)


def test_bad_cosmology():
    with pytest.raises(UnknownCosmologyError, match="Planck18"):
        summarize(0.1, "Planck99")
    with pytest.raises(ConfigError):
        CosmologyConfig("Planck18", H0=70)
    with pytest.raises(ConfigError):
        CosmologyConfig("flat", H0=500)
    with pytest.raises(ConfigError):
        CosmologyConfig("flat", Om0=0)
    with pytest.raises(UnknownLineError):
        summarize(0.1, lines=["Hfoo"])
