"""The one line list: rest-frame VACUUM wavelengths of the optical features speclm talks about.

Why one list: redshift_check fits these lines, the cosmology tool answers "where does Hα land",
the UI marks them on the plot; if each kept its own numbers they would disagree by the
air/vacuum offset (~1.8 Å at Hα) and the agent would quote one number while plotting another.

Why vacuum: SDSS (and DESI) spectra are on a vacuum wavelength scale, and so is ``Spectrum``
(readers convert air files). Familiar "air" names such as [O III] 5007 or Hα 6563 are accepted as
aliases, but the numbers stored here are vacuum: [O III] 5008.24, Hα 6564.61 (SDSS line table).

Each :class:`Line` carries a ``kind`` (emission / absorption / break), a rough ``strength`` class
(how often the feature is prominent in galaxy spectra: strong / medium / weak), and ``sigma_A``,
the intrinsic rest-frame Gaussian width of the feature beyond the galaxy's velocity dispersion —
zero for a single atomic line, a few Å for blends (Mg b, Na D, G band) that a redshift template
must treat as one broad dip.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from speclm.tools.errors import UnknownLineError

#: kinds a line-list entry can have
KINDS = ("emission", "absorption", "break")
#: strength classes, most to least often prominent
STRENGTHS = ("strong", "medium", "weak")


@dataclass(frozen=True)
class Line:
    """One spectral feature of the line list.

    name: canonical ASCII key (e.g. "Halpha", "OIII5008"); display: what a human reads ("Hα").
    rest_A: rest-frame vacuum wavelength in Å (blend: a representative centre).
    kind: "emission", "absorption" or "break"; also_absorption: True for Balmer lines, which are
      emission in star-forming galaxies and absorption in post-starburst / A-star light.
    strength: "strong" / "medium" / "weak" (typical prominence in galaxy spectra).
    sigma_A: intrinsic rest-frame Gaussian sigma (Å) of a blended feature; 0 for a single line.
    blend_of: for a blended entry, the names of its resolved components in this list.
    agn: True for lines seen mainly in quasars / AGN (broad rest-UV lines, [Ne V]); the galaxy
      line check (redshift_check) leaves them out, the template search (redshift_search) uses them.
    aliases: extra friendly names accepted by :func:`get` (normalised when matched).
    """

    name: str
    display: str
    rest_A: float
    kind: str
    strength: str
    sigma_A: float = 0.0
    also_absorption: bool = False
    blend_of: tuple[str, ...] = ()
    agn: bool = False
    aliases: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"line {self.name}: kind {self.kind!r} not in {KINDS}")
        if self.strength not in STRENGTHS:
            raise ValueError(f"line {self.name}: strength {self.strength!r} not in {STRENGTHS}")
        if not 900.0 < self.rest_A < 30000.0:
            raise ValueError(f"line {self.name}: rest wavelength {self.rest_A} Å out of range")

    def observed(self, z: float) -> float:
        """Observed-frame vacuum wavelength (Å) at redshift z: λ_obs = λ_rest (1 + z)."""
        return self.rest_A * (1.0 + float(z))

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("aliases")
        d["blend_of"] = list(self.blend_of)
        return d


@dataclass(frozen=True)
class BreakDefinition:
    """A spectral break measured as a flux-density ratio between two rest-frame windows.

    Dn4000 (Balogh et al. 1999): <F_ν> in 4000–4100 Å divided by <F_ν> in 3850–3950 Å.
    Old, metal-rich populations give Dn4000 ≳ 1.6; young star-forming ones ≈ 1.0–1.3.
    The windows are narrow so the index is insensitive to reddening.
    """

    name: str
    blue_A: tuple[float, float]
    red_A: tuple[float, float]


DN4000 = BreakDefinition(name="Dn4000", blue_A=(3850.0, 3950.0), red_A=(4000.0, 4100.0))


@dataclass(frozen=True)
class IndexDefinition:
    """A Lick-style absorption index: EW over ``index_A`` against the straight line through the
    mean fluxes of the two side bands. Bands as published, in **air** Å (convert before use)."""

    name: str
    blue_A: tuple[float, float]
    index_A: tuple[float, float]
    red_A: tuple[float, float]


#: Hδ_A (Worthey & Ottaviani 1997): strong in galaxies that formed stars 0.1-1 Gyr ago
HDELTA_A = IndexDefinition(name="HdeltaA", blue_A=(4041.600, 4079.750), index_A=(4083.500, 4122.250),
                           red_A=(4128.500, 4161.000))


# Vacuum wavelengths: SDSS spZline table for nebular lines; absorption features from the SDSS
# absorption-line list (Ca II H&K, G band, Mg b and Na D blends, vacuum centres).
LINES: tuple[Line, ...] = (
    # --- Balmer series (emission, or absorption in A-star light) -------------------------
    Line("Halpha", "Hα", 6564.61, "emission", "strong", also_absorption=True,
         aliases=("Ha", "H-alpha", "H alpha", "Balmer alpha", "Halpha6563", "Halpha6565")),
    Line("Hbeta", "Hβ", 4862.68, "emission", "medium", also_absorption=True,
         aliases=("Hb", "H-beta", "H beta", "Hbeta4861", "Hbeta4863")),
    Line("Hgamma", "Hγ", 4341.68, "emission", "weak", also_absorption=True,
         aliases=("H-gamma", "H gamma", "Hgamma4340", "Hgamma4342")),
    Line("Hdelta", "Hδ", 4102.89, "emission", "weak", also_absorption=True,
         aliases=("Hd", "H-delta", "H delta", "Hdelta4101", "Hdelta4103")),
    # --- forbidden lines -----------------------------------------------------------------
    Line("OII3727", "[O II] 3727", 3727.09, "emission", "strong", aliases=("OII3726", "[O II] 3726")),
    Line("OII3729", "[O II] 3729", 3729.88, "emission", "strong", aliases=("OII3730",)),
    Line("OII", "[O II] 3728 (blend)", 3728.48, "emission", "strong", sigma_A=1.4,
         blend_of=("OII3727", "OII3729"), aliases=("[O II]", "O II", "O2", "OII3728", "OII doublet")),
    Line("OIII4960", "[O III] 4960", 4960.30, "emission", "medium", aliases=("OIII4959",)),
    Line("OIII5008", "[O III] 5008", 5008.24, "emission", "strong",
         aliases=("OIII", "[O III]", "O III", "O3", "OIII5007")),
    Line("NII6550", "[N II] 6550", 6549.86, "emission", "weak", aliases=("NII6548", "NII6549")),
    Line("NII6585", "[N II] 6585", 6585.27, "emission", "medium",
         aliases=("NII", "[N II]", "N II", "N2", "NII6583", "NII6584")),
    Line("SII6718", "[S II] 6718", 6718.29, "emission", "medium",
         aliases=("SII", "[S II]", "S II", "S2", "SII6716", "SII6717")),
    Line("SII6733", "[S II] 6733", 6732.67, "emission", "medium", aliases=("SII6731", "SII6732")),
    Line("OI6302", "[O I] 6302", 6302.05, "emission", "weak",
         aliases=("OI", "[O I]", "O I", "OI6300", "OI6301")),
    Line("NeIII3870", "[Ne III] 3870", 3869.86, "emission", "weak", agn=True,
         aliases=("NeIII", "[Ne III]", "Ne III", "NeIII3869")),
    Line("NeV3427", "[Ne V] 3427", 3426.85, "emission", "weak", agn=True,
         aliases=("NeV", "[Ne V]", "Ne V", "NeV3426")),
    # --- quasar broad lines (vacuum; Vanden Berk et al. 2001 composite) --------------------
    Line("Lyalpha", "Lyα", 1215.67, "emission", "strong", agn=True,
         aliases=("Lya", "Ly-alpha", "Lyman alpha", "Lyalpha1216")),
    Line("NV1240", "N V 1240", 1240.14, "emission", "medium", agn=True, aliases=("NV", "N V")),
    Line("SiIV1400", "Si IV + O IV] 1400", 1399.8, "emission", "medium", sigma_A=3.0, agn=True,
         aliases=("SiIV", "Si IV", "SiIV1397")),
    Line("CIV1549", "C IV 1549", 1549.06, "emission", "strong", agn=True, aliases=("CIV", "C IV")),
    Line("HeII1640", "He II 1640", 1640.42, "emission", "weak", agn=True, aliases=("HeII", "He II")),
    Line("CIII1909", "C III] 1909", 1908.73, "emission", "strong", agn=True,
         aliases=("CIII", "C III]", "CIII]", "C III")),
    Line("MgII2800", "Mg II 2800", 2799.12, "emission", "strong", agn=True,
         aliases=("MgII", "Mg II", "MgII2798", "MgII2799")),
    # --- stellar absorption ----------------------------------------------------------------
    Line("CaK", "Ca II K", 3934.78, "absorption", "strong", sigma_A=3.0,
         aliases=("Ca K", "CaIIK", "Ca II K", "K", "Calcium K", "CaK3934", "CaK3933")),
    Line("CaH", "Ca II H", 3969.59, "absorption", "strong", sigma_A=3.0,
         aliases=("Ca H", "CaIIH", "Ca II H", "Calcium H", "CaH3969", "CaH3968")),
    Line("Gband", "G band", 4305.6, "absorption", "medium", sigma_A=5.0,
         aliases=("G band", "G-band", "G", "CH band", "CH", "Gband4304")),
    Line("Mgb", "Mg b", 5176.7, "absorption", "strong", sigma_A=6.0,
         aliases=("Mg b", "Mg-b", "Mg", "Mg I b", "MgIb", "Magnesium b", "Mgb5175", "Mgb5177")),
    Line("NaD", "Na D", 5895.6, "absorption", "medium", sigma_A=3.0,
         aliases=("Na D", "Na-D", "Na", "Na I D", "NaID", "Sodium D", "NaD5893", "NaD5896")),
    # --- break -------------------------------------------------------------------------------
    Line("D4000", "4000 Å break", 4000.0, "break", "strong",
         aliases=("Dn4000", "D4000n", "4000A break", "4000 break", "4000 Å break", "Balmer break")),
)


_GREEK = {"α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "ε": "epsilon", "å": "a"}


def normalize_name(name: str) -> str:
    """Collapse a friendly line name to a lookup key: "[O III] 5007" -> "oiii5007", "Hα" -> "halpha"."""
    s = str(name).strip().lower()
    for greek, latin in _GREEK.items():
        s = s.replace(greek, latin)
    return re.sub(r"[^a-z0-9]", "", s)


def _build_index() -> dict[str, Line]:
    index: dict[str, Line] = {}
    for line in LINES:
        for key in {normalize_name(line.name), normalize_name(line.display), *map(normalize_name, line.aliases)}:
            if key in index and index[key] is not line:
                raise ValueError(f"line alias {key!r} claimed by {index[key].name} and {line.name}")
            index[key] = line
    return index


_INDEX = _build_index()


def get(name: str | Line) -> Line:
    """Look a line up by any friendly name ("Halpha", "Hα", "H-alpha", "OIII", "[O III] 5007", ...).

    A family name without a wavelength ("OIII", "NII", "SII", "OI") means its strongest member;
    "OII" means the blended doublet. Raises :class:`UnknownLineError` listing the known names.
    """
    if isinstance(name, Line):
        return name
    line = _INDEX.get(normalize_name(name))
    if line is None:
        known = ", ".join(l.name for l in LINES)
        raise UnknownLineError(f"unknown spectral line {name!r}; known lines: {known}")
    return line


def observed(name: str | Line, z: float) -> float:
    """Observed-frame vacuum wavelength (Å) of a named line at redshift z."""
    return get(name).observed(z)


def by_kind(kind: str, *, include_blends: bool = False, include_agn: bool = False) -> list[Line]:
    """All lines of one kind; blended entries whose components are listed are left out by default
    so a fit does not count the same photons twice, and AGN/quasar lines unless asked for."""
    if kind not in KINDS:
        raise UnknownLineError(f"unknown line kind {kind!r}; expected one of {KINDS}")
    return [l for l in LINES if l.kind == kind and (include_blends or not l.blend_of)
            and (include_agn or not l.agn)]


def names() -> list[str]:
    """Canonical names, in list order."""
    return [l.name for l in LINES]
