"""What a redshift means: distances, times, velocities and where lines land (astropy-backed).

Why a tool: the fine-tuned model only says "Redshift: z"; the agent must not let the LLM do the
integrals in its head (the paper's sample answer guesses "lookback ~3.8 Gyr"). Every number the
agent quotes comes from :func:`summarize`, so it is reproducible and names its cosmology.

Cosmologies: astropy's Planck18 (default), Planck15, WMAP9, or a flat ΛCDM with your H0 / Om0.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field, fields

from speclm.tools.config import Config
from speclm.tools import lines as line_list
from speclm.tools.errors import ConfigError, RedshiftRangeError, UnknownCosmologyError

#: speed of light, km/s (exact)
C_KM_S = 299_792.458
#: largest redshift the tool answers for (beyond it galaxies are not what the model was trained on)
Z_MAX = 20.0
NAMED = ("Planck18", "Planck15", "WMAP9")
FLAT_NAMES = ("flat", "flatlcdm", "flatlambdacdm")


@dataclass
class CosmologyConfig(Config):
    """Which cosmology to use. ``name`` picks an astropy realisation, or "flat" for flat ΛCDM."""

    name: str = field(default="Planck18", metadata={
        "help": "Planck18 (default), Planck15, WMAP9, or 'flat' for flat ΛCDM with H0 / Om0"})
    H0: float | None = field(default=None, metadata={
        "help": "Hubble constant in km/s/Mpc, only with name='flat' (default 70)"})
    Om0: float | None = field(default=None, metadata={
        "help": "matter density today in units of critical, only with name='flat' (default 0.3)"})

    def __post_init__(self) -> None:
        key = str(self.name).strip().lower().replace("-", "").replace("_", "").replace(" ", "")
        canonical = {n.lower(): n for n in NAMED}
        if key in canonical:
            if self.H0 is not None or self.Om0 is not None:
                raise ConfigError(f"H0/Om0 can only be set with name='flat', not with {self.name!r}")
            self.name = canonical[key]
            return
        if key not in FLAT_NAMES:
            raise UnknownCosmologyError(
                f"unknown cosmology {self.name!r}; use one of {', '.join(NAMED)} or 'flat' (with H0, Om0)")
        self.name = "flat"
        self.H0 = 70.0 if self.H0 is None else float(self.H0)
        self.Om0 = 0.3 if self.Om0 is None else float(self.Om0)
        if not (20.0 <= self.H0 <= 150.0):
            raise ConfigError(f"H0={self.H0} km/s/Mpc is outside the plausible range 20-150")
        if not (0.0 < self.Om0 <= 1.0):
            raise ConfigError(f"Om0={self.Om0} must be in (0, 1]")

    def build(self):
        """The astropy Cosmology object."""
        if self.name == "flat":
            from astropy.cosmology import FlatLambdaCDM

            return FlatLambdaCDM(H0=self.H0, Om0=self.Om0, name=f"FlatLambdaCDM(H0={self.H0:g}, Om0={self.Om0:g})")
        import astropy.cosmology as ac

        return getattr(ac, self.name)


def resolve_cosmology(cosmology=None, *, H0: float | None = None, Om0: float | None = None):
    """Accept a name, a :class:`CosmologyConfig` or an astropy Cosmology; return the astropy object."""
    if cosmology is None:
        cosmology = "flat" if (H0 is not None or Om0 is not None) else "Planck18"
    if isinstance(cosmology, CosmologyConfig):
        return cosmology.build()
    if isinstance(cosmology, str):
        return CosmologyConfig(cosmology, H0=H0, Om0=Om0).build()
    from astropy.cosmology import Cosmology

    if isinstance(cosmology, Cosmology):
        return cosmology
    raise UnknownCosmologyError(f"cannot use {cosmology!r} as a cosmology")


def check_z(z, *, allow_zero: bool = True) -> float:
    """Validate a redshift for distance questions: finite, 0 <= z <= Z_MAX."""
    try:
        zf = float(z)
    except (TypeError, ValueError):
        raise RedshiftRangeError(f"redshift must be a number, got {z!r}") from None
    if not math.isfinite(zf):
        raise RedshiftRangeError(f"redshift must be finite, got {z!r}")
    if zf < 0 or (zf == 0 and not allow_zero):
        raise RedshiftRangeError(f"redshift z={zf:g} is negative: a blueshift has no cosmological distance")
    if zf > Z_MAX:
        raise RedshiftRangeError(f"redshift z={zf:g} is above {Z_MAX:g}, beyond what this tool answers for")
    return zf


def relativistic_velocity_km_s(z: float) -> float:
    """Line-of-sight velocity from the special-relativistic Doppler formula,
    v = c((1+z)^2 - 1)/((1+z)^2 + 1). What "it recedes at v" means for a spectroscopist."""
    s = (1.0 + z) ** 2
    return C_KM_S * (s - 1.0) / (s + 1.0)


@dataclass(frozen=True)
class LinePosition:
    """Where one line of the line list lands at redshift z (vacuum Å)."""

    name: str
    display: str
    kind: str
    rest_A: float
    observed_A: float

    def to_dict(self) -> dict:
        return asdict(self)


def line_positions(z: float, names=None, *, wave_range: tuple[float, float] | None = None) -> list[LinePosition]:
    """Observed vacuum wavelengths of the named lines (all lines if ``names`` is None).

    wave_range: keep only lines whose observed wavelength falls in [lo, hi] Å (e.g. a plot's axis).
    Raises UnknownLineError for a name not in the line list.
    """
    zf = check_z(z)
    if names is None:
        chosen = list(line_list.LINES)
    else:
        chosen = [line_list.get(n) for n in ([names] if isinstance(names, str) else names)]
    out = [LinePosition(l.name, l.display, l.kind, l.rest_A, l.observed(zf)) for l in chosen]
    if wave_range is not None:
        lo, hi = wave_range
        out = [p for p in out if lo <= p.observed_A <= hi]
    return out


@dataclass
class CosmologySummary:
    """Everything the agent may quote about a redshift, units in the field names."""

    z: float
    cosmology: str
    H0_km_s_mpc: float
    Om0: float
    lookback_gyr: float
    age_at_z_gyr: float
    age_now_gyr: float
    comoving_distance_mpc: float
    luminosity_distance_mpc: float
    angular_diameter_distance_mpc: float
    recession_velocity_km_s: float
    hubble_flow_velocity_km_s: float
    cz_km_s: float
    kpc_per_arcsec: float
    distance_modulus_mag: float | None
    lines: list[LinePosition] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "lines"}
        d["lines"] = [p.to_dict() for p in self.lines]
        return d

    def describe(self) -> str:
        """One plain-text paragraph for the agent to quote or paraphrase."""
        parts = [
            f"At redshift z = {self.z:.4g} ({self.cosmology}, H0 = {self.H0_km_s_mpc:.2f} km/s/Mpc, "
            f"Om0 = {self.Om0:.3f}), the light left the galaxy {self.lookback_gyr:.2f} Gyr ago, when the "
            f"universe was {self.age_at_z_gyr:.2f} Gyr old (it is {self.age_now_gyr:.2f} Gyr old now).",
            f"Comoving distance {self.comoving_distance_mpc:,.1f} Mpc, luminosity distance "
            f"{self.luminosity_distance_mpc:,.1f} Mpc, angular-diameter distance "
            f"{self.angular_diameter_distance_mpc:,.1f} Mpc"
            + (f", distance modulus {self.distance_modulus_mag:.2f} mag"
               if self.distance_modulus_mag is not None else "")
            + f"; 1 arcsec spans {self.kpc_per_arcsec:.3f} kpc.",
            f"Its line-of-sight velocity from the relativistic Doppler formula is "
            f"{self.recession_velocity_km_s:,.0f} km/s (the Hubble-flow recession velocity H0 x comoving "
            f"distance is {self.hubble_flow_velocity_km_s:,.0f} km/s; cz = {self.cz_km_s:,.0f} km/s).",
        ]
        shown = [p for p in self.lines if p.kind != "break"][:6]
        if shown:
            parts.append("Observed (vacuum) positions: " + "; ".join(
                f"{p.display} {p.rest_A:.2f} Å -> {p.observed_A:.1f} Å" for p in shown) + ".")
        return " ".join(parts)


DEFAULT_SUMMARY_LINES = ("Halpha", "Hbeta", "OIII5008", "OII", "NII6585", "CaK", "CaH", "Mgb", "NaD", "D4000")


def summarize(z: float, cosmology=None, *, H0: float | None = None, Om0: float | None = None,
              lines=DEFAULT_SUMMARY_LINES) -> CosmologySummary:
    """The typed answer to "what does redshift z mean?" (lines=None lists the whole line list)."""
    import astropy.units as u

    zf = check_z(z)
    cosmo = resolve_cosmology(cosmology, H0=H0, Om0=Om0)
    d_c = cosmo.comoving_distance(zf).to_value(u.Mpc)
    d_l = cosmo.luminosity_distance(zf).to_value(u.Mpc)
    d_a = cosmo.angular_diameter_distance(zf).to_value(u.Mpc)
    if zf > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            distmod = float(cosmo.distmod(zf).to_value(u.mag))
        kpc_arcsec = float(cosmo.kpc_proper_per_arcmin(zf).to_value(u.kpc / u.arcsec))
    else:  # z = 0: the observer's position; modulus is -inf, an arcsec spans nothing
        distmod, kpc_arcsec = None, 0.0
    h0 = cosmo.H0.to_value(u.km / u.s / u.Mpc)
    return CosmologySummary(
        z=zf,
        cosmology=str(cosmo.name),
        H0_km_s_mpc=float(h0),
        Om0=float(cosmo.Om0),
        lookback_gyr=float(cosmo.lookback_time(zf).to_value(u.Gyr)),
        age_at_z_gyr=float(cosmo.age(zf).to_value(u.Gyr)),
        age_now_gyr=float(cosmo.age(0).to_value(u.Gyr)),
        comoving_distance_mpc=float(d_c),
        luminosity_distance_mpc=float(d_l),
        angular_diameter_distance_mpc=float(d_a),
        recession_velocity_km_s=relativistic_velocity_km_s(zf),
        hubble_flow_velocity_km_s=float(h0 * d_c),
        cz_km_s=C_KM_S * zf,
        kpc_per_arcsec=kpc_arcsec,
        distance_modulus_mag=distmod,
        lines=line_positions(zf, lines),
    )
