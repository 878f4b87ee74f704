"""The rules planner's table: what a message asks, by deterministic rules.

:class:`speclm.agent.planner.RulesPlanner` turns a :class:`Decision` into tool calls (the route
column below names the kind of turn; the planner's docstring says which calls each makes). It plans
every turn when ``AgentConfig.planner="rules"``, and any turn whose model-planned proposal failed
validation. A request that points at an object we do not have ("what about this one?") gets a
clarifying question; a message no rule claims is free chat (no tool).

Rule table (first match wins; see :func:`decide`):

=====================================================  ==========  ===========================
condition                                              route       note
=====================================================  ==========  ===========================
a spectrum file is attached                            spectrum    predict -> check -> cosmology
``sdss_id`` given, or an SDSS identifier in the text   lookup      then the spectrum pipeline
the thread has a z and the message asks about the
  object's type, star formation, AGN, mass, lines or
  surveys (agent.compose.intents)                      chat        grounded: composed from the
                                                                   measurement tools
lookup words (look up, fetch, plate, fiber, specobjid)
  but the identifier does not parse                    lookup      replies with the parse error
refers to a new object ("this one", "what about",
  "here is") without an attachment                     clarify
asks to predict/measure a redshift, no attachment      spectrum    if the thread has a spectrum,
                                                                   else clarify
cosmology words (lookback, how far, distance, velocity,
  age, where does <line> land, ...)                    cosmology   z from the text ("z=0.3") or
                                                                   the thread; none -> clarify
check words (check, verify, refine, trust, lines)      check       needs the thread's spectrum
greeting / thanks (short small talk)                   chat
follow-up about the current object (galaxy type,
  survey, "you just predicted", "this galaxy", "it")   chat        grounded in the stored z
refers to "this/that galaxy/spectrum/redshift/it" and
  the thread has nothing                               clarify
the thread has no object                               chat        general question
anything else                                          chat        free chat, no tool
=====================================================  ==========  ===========================
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from speclm.tools import lines as line_list
from speclm.tools.errors import SDSSIdentifierError
from speclm.tools.sdss_lookup import parse_sdss_identifier

_I = re.I
LOOKUP_WORDS = re.compile(r"\b(look\s*(it\s*)?up|lookup|fetch|download|plate|fib(er|re)(\s*id)?|"
                          r"spec\s*obj\s*id|specobjid)\b", _I)
NEW_OBJECT = re.compile(r"\b(this|that|these|those)\s+(one|ones|file|files)\b|\bwhat about\b|"
                        r"\bhere\s+(it\s+)?is\b|\bhere'?s\b|\battached\b|\bi('ve| have)\s+(uploaded|attached)\b",
                        _I)
PREDICT_WORDS = re.compile(r"\b(predict|estimate|measure|infer|determine)\w*\b.*\bredshift\b|"
                           r"\bwhat('s| is)\s+(the|its|this)\s+(galaxy'?s?\s+)?redshift\b", _I)
COSMO_WORDS = re.compile(
    r"\blook\s*-?\s*back\b|\bhow\s+(far|distant|old|fast|long\s+ago)\b|\bdistances?\b|"
    r"\bdistance\s+modulus\b|\bvelocit(y|ies)\b|\brecess?(ion|ing|e|es)\b|\bage\s+of\b|"
    r"\bage\b.*\buniverse\b|\bkpc\b|\barcsec\b|\bmpc\b|\bgyr\b|\bobserved\s+wavelength\b|"
    r"\bwhere\s+(does|do|would|will|is|are)\b.*\b(land|fall|appear|lie|end\s+up|be|sit|observed)\b|"
    r"\bshifted\s+to\b|\blight\s+(left|travel)", _I)
CHECK_WORDS = re.compile(r"\b(check|verify|validate|refine|confirm|double[- ]check|trust|"
                         r"line\s*fit|emission\s+lines?|absorption\s+lines?|which\s+lines)\b", _I)
FOLLOWUP_WORDS = re.compile(
    r"\b(type|kind|sort|class)\s+of\s+galax|\bsurveys?\b|\btelescopes?\b|\bobserve[ds]?\b|"
    r"\byou\s+(just\s+)?(predicted|found|measured|said|gave)\b|\bthis\s+(galaxy|object|spectrum|redshift)\b|"
    r"\bthat\s+(galaxy|object|spectrum|redshift)\b|\bthe\s+(galaxy|object|redshift)\b|\bits?\b|\bthey\b", _I)
REFERS_CURRENT = re.compile(r"\b(this|that|the)\s+(galaxy|object|spectrum|redshift|source)\b|"
                            r"\byou\s+(just\s+)?(predicted|found|measured)\b|\bits\b", _I)
SMALLTALK = re.compile(r"^\s*(hi|hello|hey|thanks?|thank\s+you|good\s+(morning|afternoon|evening)|bye|"
                       r"ok(ay)?|cool|great|nice)\b[\s\w]{0,12}[!.?]*\s*$", _I)
Z_IN_TEXT = re.compile(r"(?:\bz\s*(?:=|≈|~|of|is)\s*|\bredshift\s*(?:of|=|is|at)?\s*)"
                       r"(\d+(?:\.\d+)?|\.\d+)(?![\d.])", _I)


@dataclass(frozen=True)
class Decision:
    """What the rule table makes of a message (the rules planner turns it into tool calls)."""

    route: str
    reason: str
    z_text: float | None = None  # a redshift written in the message ("lookback time at z=0.3")
    grounded: bool = False  # a chat answer that must start from the stored z and its cosmology


def z_from_text(text: str) -> float | None:
    m = Z_IN_TEXT.search(text or "")
    return float(m[1]) if m else None


def sdss_identifier_in(text: str) -> str | None:
    """The SDSS identifier the parser reads in the text, written canonically (plate-mjd-fiber, a
    specObjID, "RA … Dec …"), else None."""
    if not text or not text.strip():
        return None
    try:
        ident = parse_sdss_identifier(text)
    except SDSSIdentifierError:
        return None
    if ident.kind == "plate":
        return f"{ident.plate:04d}-{ident.mjd}-{ident.fiberid:04d}" if ident.mjd else \
            f"plate {ident.plate} fiber {ident.fiberid}"
    if ident.kind == "specobjid":
        return str(ident.specobjid)
    return f"RA {ident.ra} Dec {ident.dec}"


def _alias_patterns() -> list[tuple[re.Pattern, str]]:
    """Regexes for line names people write ("Hα", "H-alpha", "[O III] 5007", "Na D"), longest first."""
    pats = []
    for line in line_list.LINES:
        for alias in {line.name, line.display, *line.aliases}:
            key = line_list.normalize_name(alias)
            if len(key) < 3 or key in ("the", "and"):
                continue
            low = alias.lower()
            for g, latin in _GREEK.items():
                low = low.replace(g, latin)
            chunks = re.findall(r"[a-z]+|[0-9]+", low)
            body = r"[\s\-\[\]]*".join(re.escape(c) for c in chunks)
            pats.append((len(key), re.compile(rf"(?<![a-z0-9]){body}(?![a-z0-9])"), line.name))
    pats.sort(key=lambda t: -t[0])
    return [(p, n) for _, p, n in pats]


_GREEK = {"α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "å": "a"}
_LINE_PATTERNS = _alias_patterns()


def lines_in_text(text: str) -> list[str]:
    """Canonical names of the spectral lines mentioned in a message, in the order first seen."""
    s = (text or "").lower()
    for g, latin in _GREEK.items():
        s = s.replace(g, latin)
    found: list[tuple[int, str]] = []
    taken: list[tuple[int, int]] = []
    for pat, name in _LINE_PATTERNS:
        for m in pat.finditer(s):
            if any(a < m.end() and m.start() < b for a, b in taken):
                continue
            taken.append((m.start(), m.end()))
            found.append((m.start(), name))
    out: list[str] = []
    for _, name in sorted(found):
        if name not in out:
            out.append(name)
    return out


def _asks_about_object(text: str) -> bool:
    from speclm.agent.compose import intents

    return bool(intents(text))


def _strong_intent(text: str) -> bool:
    from speclm.agent.compose import STRONG_INTENTS, intents

    return any(i in STRONG_INTENTS for i in intents(text))


def decide(text: str, *, upload_path: str | None = None, sdss_id: str | None = None,
           has_spectrum: bool = False, has_z: bool = False) -> Decision:
    """Apply the rule table (module docstring). Pure: no model, no I/O."""
    t = (text or "").strip()
    if upload_path:
        return Decision("spectrum", "a spectrum file is attached")
    if sdss_id:
        return Decision("lookup", "an SDSS identifier was given")
    if sdss_identifier_in(t):
        return Decision("lookup", "the message contains an SDSS identifier")
    if has_z and not PREDICT_WORDS.search(t) and (_strong_intent(t) or (not COSMO_WORDS.search(t)
                                                                       and _asks_about_object(t))):
        return Decision("chat", "question about the object's properties (answered from the measurements)",
                        grounded=True)
    if LOOKUP_WORDS.search(t):
        return Decision("lookup", "the message asks for an SDSS lookup")
    if NEW_OBJECT.search(t):
        return Decision("clarify", "the message points at an object that was not attached")
    if PREDICT_WORDS.search(t):
        if has_spectrum:
            return Decision("spectrum", "asks for a redshift of the thread's spectrum")
        return Decision("clarify", "asks for a redshift but no spectrum was given")
    z_text = z_from_text(t)
    if COSMO_WORDS.search(t) or (lines_in_text(t) and re.search(r"\bwhere\b|\bwavelength", t, _I)):
        if z_text is not None:
            return Decision("cosmology", "cosmology question with a redshift in the text", z_text=z_text)
        if has_z:
            return Decision("cosmology", "cosmology question about the current redshift")
        return Decision("clarify", "cosmology question but no redshift is known yet")
    if CHECK_WORDS.search(t):
        if has_spectrum and has_z:
            return Decision("check", "asks to check the redshift against the spectrum's lines",
                            z_text=z_text)
        return Decision("clarify", "asks for a line check but there is no spectrum yet")
    if SMALLTALK.match(t):
        return Decision("chat", "small talk")
    if has_z and FOLLOWUP_WORDS.search(t):
        return Decision("chat", "follow-up about the current object (grounded in the stored z)",
                        grounded=True)
    if not has_z and not has_spectrum:
        if REFERS_CURRENT.search(t):
            return Decision("clarify", "refers to an object but none is known in this thread")
        return Decision("chat", "general question, no object in this thread")
    return Decision("chat", "no rule matched: free chat, no tool")
