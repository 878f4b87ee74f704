"""The claim check every reply passes before it leaves the agent: numbers and names must be grounded.

Why: a 135M model asked about a galaxy invents ("a Sgr A-type SGA (Type Ia Supergiantary)",
"our cosmic microwave background (CMB) telescope"); an invented claim is worse than silence. So a
reply is split into sentences and each is checked against the **facts** of the turn — every tool
output in the thread (as JSON: numbers and strings), the line list, the survey table, the
constants the reply templates quote (:data:`speclm.agent.replies.METHOD`) and the user's own words:

* **numbers**: each number in the sentence must equal a fact number at the printed precision
  (|x − f| ≤ half a unit of the last printed digit), or appear verbatim in a fact string; a number
  with a unit (:data:`UNITS`: "3.8 billion years", "420 Mpc") must equal a fact *of that unit* — a
  tool field named ``…_gyr`` / ``…_mpc`` or a "<number> <unit>" in a tool's words — so a coincidence
  with some other measured number (an equivalent width of 3.8 Å) does not ground an age;
* **classes and object types** (:data:`CLASS_TERMS`: Seyfert, LINER, elliptical, supergiant, …) and
  **survey, catalog and instrument names** (:data:`NAME_TERMS` + the survey table): each must
  appear in the facts' text;
* **other proper names**: a capitalised word that is not the first of its sentence must appear in
  the facts (or be an ordinary word of :data:`COMMON_CAPITALISED`).

:func:`check_reply` returns the violations; :func:`keep_grounded` drops the sentences that have any.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

#: object types and classes a reply might assert; one not in the facts is an invented claim
CLASS_TERMS = (
    "broad-line AGN", "AGN", "active galactic nucleus", "Seyfert", "LINER", "composite", "star-forming",
    "star forming", "starburst", "post-starburst", "passive", "quiescent", "retired", "quasar", "QSO", "blazar",
    "radio galaxy", "elliptical", "spiral", "lenticular", "irregular", "dwarf", "barred", "supergiant", "giant",
    "white dwarf", "neutron star", "pulsar", "supernova", "Type Ia", "Type II", "globular cluster",
    "galaxy cluster", "black hole", "nebula", "brown dwarf", "red giant", "main sequence",
)
#: surveys, catalogs, telescopes, missions and places that a reply might name
NAME_TERMS = (
    "SDSS", "Sloan", "BOSS", "eBOSS", "DESI", "GAMA", "2dFGRS", "6dFGS", "4MOST", "PFS", "Euclid", "Rubin", "LSST",
    "DES", "Dark Energy Survey", "HSC", "Subaru", "Hubble", "HST", "JWST", "James Webb", "Spitzer", "Chandra",
    "XMM", "GALEX", "WISE", "2MASS", "Gaia", "Kepler", "TESS", "Planck", "WMAP", "CMB", "cosmic microwave",
    "ALMA", "VLT", "Keck", "Gemini", "LAMOST", "UKIDSS", "VISTA", "Pan-STARRS", "ZTF", "NED", "SIMBAD",
    "Local Group", "Local Supercluster", "Milky Way", "Andromeda", "Virgo", "Coma", "Sgr A", "Big Bang",
    "MaNGA", "CALIFA", "SAMI", "MUSE", "Herschel", "Fermi", "eROSITA", "Arecibo", "FAST", "SKA", "LOFAR",
)
#: capitalised words that are ordinary English (or units) wherever they stand
COMMON_CAPITALISED = {
    "I", "I'm", "I've", "I'd", "The", "This", "That", "It", "Its", "Yes", "No", "Not", "Using", "At", "For",
    "Redshift", "Spectrum", "Model", "Note", "Ask", "Here", "If", "With", "From", "In", "On", "Of", "And", "Or",
    "Å", "Gyr", "Mpc", "kpc", "km", "AB", "Dn4000", "Hα", "Hβ", "Hγ", "Hδ", "HδA", "Hδ_A", "Fe", "Ca", "Mg", "Na",
    "N", "O", "S", "H", "K", "G", "II", "III", "IV", "V", "Lyα", "M", "Msun", "M☉", "BPT", "WHAN", "EW", "FWHM",
    "S/N", "SFR", "LoRA", "Dec", "RA", "Galactic", "Universe", "Balmer", "Lyman", "Doppler", "Hubble-flow",
    "Legendre", "NNLS", "GALAXY", "STAR", "Kroupa", "Chabrier", "Kennicutt", "Evans", "Calzetti", "Kauffmann",
    "Kewley", "Schawinski", "Cid", "Fernandes", "Bell", "Balogh", "Worthey", "Ottaviani", "Cappellari",
    "MILES", "BC03", "bagpipes", "ppxf", "speclite", "Morton", "Ciddor", "Storey", "Zeippen", "Vanden", "Berk",
    "Sun", "Vega", "Planck18", "Planck15", "WMAP9", "FlatLambdaCDM", "Ωm", "H0", "OK", "Alternatives",
    "Uncertain", "Only", "Out", "Nothing", "Which", "None", "Attach", "Give", "Something", "Answer", "D_C", "H0·D_C",
    # words that open the composer's and the reply templates' sentences
    "Possibly", "Could", "Limits", "Evidence", "Emission", "Synthetic", "Rest-frame", "Stellar", "Partly",
    "Lookback", "Spectral", "Alternatives", "Uncertain", "Yes,", "Hβ", "Hα", "Dn4000",
}
_NUM = re.compile(r"(?<![\w.])[−\-+]?\d[\d,]*(?:\.\d+)?(?:[eE][−\-+]?\d+)?(?![\w])|(?<![\w.])[−\-+]?\.\d+")
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])|(?<=[.!?]\))\s+(?=[A-Z(\"'])|\n+")
_CAP = re.compile(r"(?<![\w\-\[])([A-Z][\w\-]*(?:\s+[A-Z][\w\-]*)*)")


#: yes/no topics and the tool field that decides each: (topic, field, values for which "Yes" is true).
#: The first topic a "Yes…"/"No…" sentence names is checked against ``Facts.decides[field]``.
POLARITY = (
    (re.compile(r"\bquasars?\b|\bqsos?\b", re.I), "spectype", {"QSO"}),
    (re.compile(r"\bagn\b|active\s+(galactic\s+)?nucle|\bseyfert|\bliner\b", re.I), "class",
     {"Seyfert", "LINER", "broad-line AGN", "composite"}),
    (re.compile(r"forming\s+stars|star[\s-]*formation|star[\s-]*forming", re.I), "class", {"star-forming", "composite"}),
    (re.compile(r"\bpassive\b|quiescent", re.I), "class", {"passive"}),
)
_YESNO = re.compile(r"^\W*(yes|no)\b", re.I)

#: units a number in a reply may carry: (kind, regex right after the number, factor to the kind's base
#: unit). Base units: Gyr for time, Mpc for distance. Fact fields carry their unit as a key suffix.
UNITS = (
    ("time", re.compile(r"\s*(?:gyrs?|gigayears?|billion\s+(?:light[\s-]+)?years?|byr)\b", re.I), 1.0),
    ("time", re.compile(r"\s*(?:myrs?|megayears?|million\s+(?:light[\s-]+)?years?)\b", re.I), 1e-3),
    ("distance", re.compile(r"\s*(?:mpc|megaparsecs?)\b", re.I), 1.0),
    ("distance", re.compile(r"\s*(?:gpc|gigaparsecs?)\b", re.I), 1e3),
)
#: fact-field suffixes that carry a unit: suffix → (kind, factor to base)
UNIT_KEYS = {"_gyr": ("time", 1.0), "_myr": ("time", 1e-3), "_mpc": ("distance", 1.0)}


def unit_after(text: str, end: int) -> tuple[str, float] | None:
    """The (kind, factor) of the unit right after position ``end`` of ``text``, if any."""
    for kind, rx, factor in UNITS:
        if rx.match(text, end):
            return kind, factor
    return None


@dataclass
class Facts:
    """What a reply may say: numbers and text collected from tool outputs and declared constants;
    ``decides``: the tool fields that decide yes/no questions (spectype: the search's type; class:
    the measurements' class), checked against the polarity of a "Yes…" / "No…" sentence."""

    numbers: list[float] = field(default_factory=list)
    text: str = ""
    decides: dict = field(default_factory=dict)
    #: numbers with a unit, in the kind's base unit: {"time": [Gyr…], "distance": [Mpc…]}
    units: dict = field(default_factory=dict)

    def add(self, obj, unit: tuple[str, float] | None = None) -> "Facts":
        """Collect every number and string in a JSON-like object (dicts, lists, scalars); a number
        under a key with a unit suffix (``lookback_gyr``) is also kept as a number of that unit."""
        if isinstance(obj, dict):
            for k, v in obj.items():
                self.text += f" {k} "
                ku = next((u for suf, u in UNIT_KEYS.items() if str(k).lower().endswith(suf)), None)
                self.add(v, ku or unit)
        elif isinstance(obj, (list, tuple, set)):
            for v in obj:
                self.add(v, unit)
        elif isinstance(obj, bool) or obj is None:
            pass
        elif isinstance(obj, (int, float)):
            if math.isfinite(float(obj)):
                self.numbers.append(float(obj))
                if unit:
                    self.units.setdefault(unit[0], []).append(float(obj) * unit[1])
        elif isinstance(obj, str):
            self.text += " " + obj + " "
            for m in _NUM.finditer(obj):
                v = _parse(m.group(0))
                if v is not None:
                    self.numbers.append(v)
                    u = unit_after(obj, m.end())
                    if u:
                        self.units.setdefault(u[0], []).append(v * u[1])
        return self


def _parse(s: str) -> float | None:
    try:
        return float(s.replace("−", "-").replace(",", "").replace("+", ""))
    except ValueError:
        return None


def _decimals(s: str) -> int:
    s = s.split("e")[0].split("E")[0]
    return len(s.split(".")[1]) if "." in s else 0


def number_grounded(token: str, facts: Facts, unit: tuple[str, float] | None = None) -> bool:
    """Is ``token`` a fact at its printed precision? With ``unit`` (kind, factor), only facts of that
    kind count: "3.8 billion years" needs a 3.8 Gyr fact, not any 3.8."""
    v = _parse(token)
    if v is None:
        return True
    d = _decimals(token)
    tol = 0.5 * 10 ** (-d) + 1e-9 * max(1.0, abs(v))
    if "e" in token.lower():
        tol = abs(v) * 0.05
    av = abs(v)
    if unit is not None:
        kind, factor = unit
        return any(abs(av * factor - abs(f)) <= tol * factor for f in facts.units.get(kind, ()))
    if token.lstrip("−-+") in facts.text:
        return True
    return any(abs(av - abs(f)) <= tol for f in facts.numbers)


def _term_in(term: str, text: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(term.lower())}(?![\w])", text) is not None


def sentences(text: str) -> list[str]:
    return [s for s in _SENT.split(text or "") if s and s.strip()]


def check_sentence(sentence: str, facts: Facts) -> list[dict]:
    """The ungrounded claims of one sentence: [{"kind": number|class|name, "text": ...}]."""
    out = []
    low_facts = facts.text.lower()
    for m in _NUM.finditer(sentence):
        if not number_grounded(m.group(0), facts, unit_after(sentence, m.end())):
            out.append({"kind": "number", "text": m.group(0)})
    low = sentence.lower()
    masked = low
    for term in sorted(CLASS_TERMS, key=len, reverse=True):
        if _term_in(term, masked):
            if not _term_in(term, low_facts):
                out.append({"kind": "class", "text": term})
            masked = re.sub(rf"(?<![\w]){re.escape(term.lower())}(?![\w])", " ", masked)
    named = set()
    for term in sorted(NAME_TERMS, key=len, reverse=True):
        if _term_in(term, masked):
            named.add(term.lower())
            if not _term_in(term, low_facts):
                out.append({"kind": "name", "text": term})
            masked = re.sub(rf"(?<![\w]){re.escape(term.lower())}(?![\w])", " ", masked)
    first = True
    for m in _CAP.finditer(sentence):
        words = m.group(1).split()
        if first and m.start() <= len(sentence) - len(sentence.lstrip()) + 1:
            words = words[1:]
        first = False
        for w in words:
            w = w.strip("-")
            if (not w or w in COMMON_CAPITALISED or w.lower() in named or any(w.lower() in t.lower() for t in named)
                    or w.lower() in low_facts or len(w) == 1):
                continue
            out.append({"kind": "name", "text": w})
    return out + polarity_violations(sentence, facts)


def polarity_violations(sentence: str, facts: Facts) -> list[dict]:
    """A "Yes"/"No" that contradicts the tool field deciding the topic it names (e.g. "Yes" to a quasar
    when the search says GALAXY). Sentences without a yes/no, or topics no tool decided, pass."""
    m = _YESNO.match(sentence)
    if not m:
        return []
    said_yes = m.group(1).lower() == "yes"
    for rx, key, yes_values in POLARITY:
        if rx.search(sentence):
            value = facts.decides.get(key)
            if value is None:
                return []
            if (value in yes_values) != said_yes:
                return [{"kind": "polarity", "text": f"{m.group(1)} contradicts {key} = {value}"}]
            return []
    return []


def check_reply(text: str, facts: Facts) -> list[dict]:
    """Every ungrounded claim of a reply, with the sentence it is in."""
    out = []
    for s in sentences(text):
        for v in check_sentence(s, facts):
            out.append({**v, "sentence": s.strip()})
    return out


_MD_PREFIX = re.compile(r"^(\s*(?:[-*] |\d+\. |#+ )?)")


def keep_grounded(text: str, facts: Facts) -> tuple[str, list[dict]]:
    """The reply without the sentences that make an ungrounded claim, and what was dropped.

    The reply's lines (Markdown bullets, paragraphs) keep their places; a line whose every sentence
    was dropped goes, with its bullet."""
    out_lines, dropped = [], []
    for line in (text or "").split("\n"):
        if not line.strip():
            if out_lines and out_lines[-1] != "":
                out_lines.append("")
            continue
        prefix = _MD_PREFIX.match(line).group(1)
        body = line[len(prefix):]
        kept = []
        for s in sentences(body):
            bad = check_sentence(s.replace("**", ""), facts)
            if bad:
                dropped.append({"sentence": s.strip(), "violations": bad})
            else:
                kept.append(s.strip())
        if kept:
            out_lines.append(prefix + " ".join(kept))
    while out_lines and out_lines[-1] == "":
        out_lines.pop()
    return "\n".join(out_lines), dropped
