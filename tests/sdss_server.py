"""pytest fixtures around the loopback SDSS server, which lives in the package
(:mod:`speclm.tools.sdss_sim`, shared with the agent scenarios)."""
from __future__ import annotations

from speclm.tools.sdss_sim import Fault, SimObject, SkyServerSim, make_objects, spec_fits_bytes  # noqa: F401

# ------------------------------------------------------------------------------- pytest fixtures
# Imported by tests/test_sdss*.py (``from sdss_server import ...``); function-scoped so every
# test gets fresh fault counters, hit counts and an empty cache.

import pytest


@pytest.fixture
def sdss_objects() -> list[SimObject]:
    """24 galaxies passing the paper's cuts (a third BOSS-like) + 4 decoys failing one cut."""
    return make_objects(24, seed=1, n_decoys=4)

@pytest.fixture
def sdss_sim(sdss_objects):
    """A running loopback SkyServer/SAS serving sdss_objects."""
    with SkyServerSim(sdss_objects, stall_s=1.5) as sim:
        yield sim

@pytest.fixture
def sdss_cfg(sdss_sim, tmp_path):
    """SDSSConfig aimed at sdss_sim, with a private cache and fast retries."""
    from speclm.tools.sdss import SDSSConfig

    return SDSSConfig(skyserver_url=sdss_sim.skyserver_url, sas_url=sdss_sim.sas_url,
                      cache_dir=str(tmp_path / "sdss-cache"), timeout=0.75, retries=3,
                      backoff=0.01, concurrency=4)
