"""speclm.tools.sdss_lookup: identifiers as people write them, answers from a loopback SkyServer."""
from __future__ import annotations

import json

import pytest
from sdss_server import SimObject, SkyServerSim, sdss_cfg, sdss_objects, sdss_sim  # noqa: F401
from speclm.tools.errors import SDSSError, SDSSIdentifierError, SDSSNotFound, SpeclmError
from speclm.tools.sdss_lookup import LookupResult, parse_sdss_identifier, sdss_lookup


@pytest.mark.parametrize("text, expect", [
    ("0266-51630-0001", dict(kind="plate", plate=266, mjd=51630, fiberid=1)),
    ("spec-0266-51630-0001.fits", dict(kind="plate", plate=266, mjd=51630, fiberid=1)),
    ("plate 266 mjd 51630 fiber 1", dict(kind="plate", plate=266, mjd=51630, fiberid=1)),
    ("Plate=266, fiberID=12", dict(kind="plate", plate=266, mjd=None, fiberid=12)),
    ("299489677444933632", dict(kind="specobjid", specobjid=299489677444933632)),
    ("specObjID: 299489677444933632", dict(kind="specobjid", specobjid=299489677444933632)),
    ("RA 179.5 Dec -0.5", dict(kind="coords", ra=179.5, dec=-0.5)),
    ("ra=10.25, dec=+2", dict(kind="coords", ra=10.25, dec=2.0)),
    ("179.5, -0.5", dict(kind="coords", ra=179.5, dec=-0.5)),
    ("12:00:00 +01:00:00", dict(kind="coords", ra=180.0, dec=1.0)),
    ("12h30m00s -01d30m00s", dict(kind="coords", ra=187.5, dec=-1.5)),
    ("RA 12:00:00 Dec +01:00:00", dict(kind="coords", ra=180.0, dec=1.0)),
    ("SDSS J120000.00+010000.0", dict(kind="coords", ra=180.0, dec=1.0)),
])
def test_parse_identifier(text, expect):
    ident = parse_sdss_identifier(text)
    for k, v in expect.items():
        assert getattr(ident, k) == (pytest.approx(v) if isinstance(v, float) else v), k


@pytest.mark.parametrize("text", ["", "hello galaxy", "266-51630", "plate 266", "Dec 5",
                                  "RA 400 Dec 0", "RA 10 Dec 95", "0266-41630-0001",
                                  "0266-51630-0000", "plate 266 fiber 5000"])
def test_malformed_identifiers_raise_identifier_error(text):
    with pytest.raises(SDSSIdentifierError) as info:
        parse_sdss_identifier(text)
    assert isinstance(info.value, SpeclmError) and "\n" not in str(info.value)


def _check(res: LookupResult, obj: SimObject):
    assert (res.plate, res.mjd, res.fiberid, res.specobjid) == (obj.plate, obj.mjd, obj.fiberid,
                                                              obj.specobjid)
    assert res.z == pytest.approx(obj.z) and res.obj_class == "GALAXY"
    assert res.magnitudes["i"] == pytest.approx(obj.dered_i)
    assert res.spectrum_path is not None and res.spectrum_path.name == f"spec-{obj.name}.fits"
    assert res.spectrum.meta["z"] == pytest.approx(obj.z, abs=1e-6)  # via read_spectrum
    assert f"z = {obj.z:.5f}" in res.summary()
    json.dumps(res.to_dict())


def test_lookup_by_plate_mjd_fiber(sdss_sim, sdss_cfg, sdss_objects):
    boss = next(o for o in sdss_objects if o.run2d.startswith("v"))
    _check(sdss_lookup(boss.plate, boss.mjd, boss.fiberid, cfg=sdss_cfg), boss)
    legacy = sdss_objects[0]
    _check(sdss_lookup(identifier=f"plate {legacy.plate} fiber {legacy.fiberid}", cfg=sdss_cfg),
           legacy)
    _check(sdss_lookup(f"spec-{legacy.name}.fits", cfg=sdss_cfg), legacy)


def test_lookup_by_specobjid(sdss_sim, sdss_cfg, sdss_objects):
    obj = sdss_objects[4]
    _check(sdss_lookup(specobjid=obj.specobjid, cfg=sdss_cfg), obj)
    _check(sdss_lookup(identifier=str(obj.specobjid), cfg=sdss_cfg), obj)


def test_lookup_by_coordinates_picks_the_nearest(sdss_sim, sdss_cfg, sdss_objects):
    obj = sdss_objects[7]
    ra, dec = obj.ra + 1.5 / 3600, obj.dec  # 1.5 arcsec east (times cos dec)
    res = sdss_lookup(ra=ra, dec=dec, radius_arcsec=3.0, cfg=sdss_cfg)
    _check(res, obj)
    assert res.separation_arcsec == pytest.approx(1.5 * abs(__import__("math").cos(
        __import__("math").radians(obj.dec))), rel=1e-3)
    with pytest.raises(SDSSNotFound):
        sdss_lookup(ra=ra, dec=dec, radius_arcsec=0.5, cfg=sdss_cfg)
    res = sdss_lookup(identifier=f"RA {obj.ra} Dec {obj.dec}", cfg=sdss_cfg, fetch=False)
    assert res.name == obj.name and res.spectrum_path is None
    with pytest.raises(SDSSError, match="not fetched"):
        _ = res.spectrum


def test_lookup_nearest_of_two_close_objects(tmp_path):
    a = SimObject(plate=500, mjd=51900, fiberid=10, z=0.1, ra=120.0, dec=10.0)
    b = SimObject(plate=500, mjd=51900, fiberid=11, z=0.2, ra=120.0 + 2.0 / 3600, dec=10.0)
    with SkyServerSim([a, b]) as sim:
        res = sdss_lookup(ra=120.0 + 1.5 / 3600, dec=10.0, radius_arcsec=5, fetch=False,
                          skyserver_url=sim.skyserver_url, sas_url=sim.sas_url,
                          cache_dir=tmp_path)
    assert res.fiberid == 11 and res.n_matches == 2


def test_not_found(sdss_sim, sdss_cfg):
    with pytest.raises(SDSSNotFound, match="plate 4321 mjd 55555 fiber 7"):
        sdss_lookup(4321, 55555, 7, cfg=sdss_cfg)
    with pytest.raises(SDSSNotFound):
        sdss_lookup(specobjid=12345678901234567, cfg=sdss_cfg)
    with pytest.raises(SDSSNotFound):
        sdss_lookup(identifier="RA 10 Dec 80", cfg=sdss_cfg)


def test_bad_arguments(sdss_cfg):
    with pytest.raises(SDSSIdentifierError):
        sdss_lookup(plate=266, cfg=sdss_cfg)
    with pytest.raises(SDSSIdentifierError):
        sdss_lookup(ra=10.0, cfg=sdss_cfg)
    with pytest.raises(SDSSIdentifierError):
        sdss_lookup(cfg=sdss_cfg)
    with pytest.raises(SDSSIdentifierError):
        sdss_lookup(ra=10, dec=0, radius_arcsec=-1, cfg=sdss_cfg)


def test_lookup_is_cached_locally(sdss_objects, tmp_path):
    obj = sdss_objects[2]
    with SkyServerSim(sdss_objects) as sim:
        kw = dict(skyserver_url=sim.skyserver_url, sas_url=sim.sas_url, cache_dir=tmp_path,
                  timeout=0.5, retries=0)
        first = sdss_lookup(identifier=obj.name, **kw)
    # server gone: the same lookup answers from the cache, an uncached one is a network error
    again = sdss_lookup(identifier=obj.name, **kw)
    assert again.to_dict() == first.to_dict()
    assert again.spectrum.meta["z"] == pytest.approx(obj.z, abs=1e-6)
    with pytest.raises(SDSSError) as info:
        sdss_lookup(identifier=sdss_objects[3].name, **kw)
    assert not isinstance(info.value, SDSSNotFound)
