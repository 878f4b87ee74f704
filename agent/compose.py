"""Answers about the object, composed from the measurement, survey and cosmology tools' outputs.

Why templates and not the model: on the embedded SmolLM2-135M every qualitative paragraph we
measured was invented (galaxy types that do not exist, surveys that are not surveys). The facts
are in the spectrum — class and evidence, line fluxes, Dn4000, magnitudes, SFR — so the sentences
are written here from :func:`speclm.tools.measure.measure_spectrum`, :func:`survey_reach` and the
cosmology tool, and the claim check (:mod:`speclm.agent.grounding`) verifies them before they go
out. A question none of these can answer gets an honest reply and what *can* be measured.

:func:`intents` says which questions a message asks; :func:`compose` answers them in order.
"""
from __future__ import annotations

import re

from speclm.agent.replies import METHOD, fmt_gyr, fmt_z

INTENTS: tuple[tuple[str, re.Pattern], ...] = (
    ("type", re.compile(r"\b(type|kind|sort|class(ify|ification)?)\b(?!\s+of\s+(survey|telescope))|"
                        r"\bwhat\s+(is|kind\s+of\s+object\s+is)\s+(it|this)\b|\bwhat\s+am\s+i\s+looking\s+at\b", re.I)),
    ("star_formation", re.compile(r"star[\s-]*form|forming\s+stars|\bsfr\b|\bpassive\b|quiescent|young\s+stars|"
                                  r"\bdead\b|\bretired\b", re.I)),
    ("summary", re.compile(r"\bsummar(y|ise|ize)\b|\bin\s+(one|two|three|a\s+few)\s+sentences?\b|"
                           r"\bfor\s+a\s+paper\b|\babstract\b|\btl;?\s*dr\b", re.I)),
    ("age", re.compile(r"\bhow\s+old\s+(are|is)\s+(its|the|their|these)\s+stars?\b|\bstellar\s+(ages?|populations?)\b|"
                       r"\bages?\s+of\s+(its|the)\s+stars\b|\b(old|young)\s+or\s+(young|old)\s+stars\b", re.I)),
    ("hypothetical", re.compile(r"\b(if|were)\s+(it|this|the\s+\w+)\s+(were\s+|was\s+)?(at|moved\s+to)\s+"
                                r"(a\s+)?(z|redshift)\s*(=|of)?\s*\d|\bat\s+(z|redshift)\s*=?\s*\d[\d.]*\s+instead\b", re.I)),
    ("quasar", re.compile(r"\bquasars?\b|\bqsos?\b", re.I)),
    ("agn", re.compile(r"\bagn\b|active\s+(galactic\s+)?nucle|black\s+hole|\bseyfert|\bliner\b|"
                       r"broad[\s-]+lines?|\bnucleus\b", re.I)),
    ("mass", re.compile(r"how\s+(massive|luminous|bright|big|heavy)|\bmass(ive)?\b|luminosit|\bmagnitudes?\b|"
                        r"brightness|velocity\s+dispersion|\bsigma\b", re.I)),
    ("lines", re.compile(r"line\s+ratios?|emission[\s-]+lines?|line\s+fluxes|equivalent\s+widths?|\bfluxes\b|"
                         r"\bbpt\b|\bwhan\b|dn\s*4000|4000\s*(å|a)?\s*break|h\s*delta|hδ", re.I)),
    ("surveys", re.compile(r"\bsurveys?\b|\btelescopes?\b|\bobserv(e|ed|able)\b|\bspectrographs?\b|"
                           r"\binstruments?\b|\bdetect(ed|able)?\b", re.I)),
)
_CLASS_PHRASE = {
    "passive": "a passive galaxy (old stars, no star formation)",
    "star-forming": "a star-forming galaxy",
    "composite": "a composite galaxy (star formation plus an AGN)",
    "Seyfert": "a Seyfert galaxy (a galaxy with an AGN)",
    "LINER": "a LINER (low-ionisation nuclear emission)",
    "broad-line AGN": "a broad-line AGN",
    "unclassified": "unclassified",
}


def intents(text: str) -> list[str]:
    return [name for name, rx in INTENTS if rx.search(text or "")]


def _z_phrase(z: float, z_source: str | None) -> str:
    return f"z = {fmt_z(z, z_source)} ({z_source or 'model'})"


def class_answer(m: dict, z: float, z_source: str | None) -> str:
    cls = m["summary_class"]
    ev = "; ".join(m.get("evidence") or [])
    head = f"From its spectrum at {_z_phrase(z, z_source)}, this is {_CLASS_PHRASE.get(cls, cls)}"
    if cls == "unclassified":
        return f"From its spectrum at {_z_phrase(z, z_source)} I cannot classify it: {ev}."
    return head + (f". Evidence: {ev}." if ev else ".")


def star_formation_answer(m: dict) -> str:
    cls = m["summary_class"]
    sfr = m.get("sfr")
    if cls == "star-forming":
        out = "Yes, it is forming stars (class star-forming)."
        if sfr:
            out += (f" Hα star-formation rate {sfr['sfr_msun_yr']:g} M☉/yr inside the fibre ({sfr['calibration']}"
                    + (f"; Balmer decrement {sfr['balmer_decrement']:g}, A(Hα) = {sfr['a_halpha_mag']:g} mag"
                       if sfr.get("balmer_decrement") is not None else "; no Hβ, so no dust correction")
                    + "), a lower limit for the whole galaxy.")
        return out
    if cls == "passive":
        d4 = m.get("dn4000")
        return ("No: the spectrum is passive — no star formation shows in its lines"
                + (f", and Dn4000 = {d4:.2f} says its light comes from old stars" if d4 is not None else "") + ".")
    if cls == "composite":
        return ("Partly: the lines are composite — star formation plus an AGN — so Hα does not give a clean "
                "star-formation rate.")
    if cls in ("Seyfert", "LINER", "broad-line AGN"):
        return (f"The emission lines are powered by an AGN (class {cls}), not by young stars, so they give no "
                "star-formation rate.")
    return "The spectrum does not say: the lines needed to tell star formation from an AGN are not measured."


def agn_answer(m: dict) -> str:
    cls = m["summary_class"]
    broad = [k for k, b in (m.get("broad") or {}).items() if b.get("detected")]
    if cls in AGN_CLASSES:
        out = f"Yes: the class is {cls}"
        if broad:
            out += (" — broad " + " and ".join("Hα" if k == "Halpha" else "Hβ" for k in broad) + " lines (FWHM "
                    + ", ".join(f"{m['broad'][k]['fwhm_kms']:,} km/s" for k in broad) + ")")
        bpt = m.get("bpt")
        if bpt:
            out += (f"; BPT log([N II]/Hα) = {bpt['log_nii_ha']:.2f}, log([O III]/Hβ) = {bpt['log_oiii_hb']:.2f}")
        return out + "."
    if cls in ("star-forming", "passive"):
        return f"No sign of an AGN: the class is {cls} and no broad Balmer line is detected."
    return "The spectrum does not say whether there is an AGN: the lines needed are not measured."


#: measurement classes that mean an AGN powers (some of) the lines
AGN_CLASSES = ("Seyfert", "LINER", "broad-line AGN", "composite")


def quasar_answer(spectype: str | None, m: dict | None) -> str | None:
    """Is it a quasar? Decided by the redshift search's spectral type (its quasar templates against the
    galaxy and star ones), never by the line class: a Seyfert 2 has an AGN but is not a quasar."""
    if spectype == "QSO":
        out = "Yes: the redshift search types it as a quasar (QSO): its quasar templates fit best"
        broad = [k for k, b in ((m or {}).get("broad") or {}).items() if b.get("detected")]
        if broad:
            out += (", with broad " + " and ".join("Hα" if k == "Halpha" else "Hβ" for k in broad) + " lines")
        return out + "."
    if spectype in ("GALAXY", "STAR"):
        kind = "a galaxy" if spectype == "GALAXY" else "a star"
        out = f"No: the redshift search types it as {kind} ({spectype}), not a quasar"
        cls = (m or {}).get("summary_class")
        if spectype == "GALAXY" and cls in AGN_CLASSES:
            out += f"; its emission lines do show an AGN (class {cls}), but not a quasar's spectrum"
        return out + "."
    return None


#: intents that decide a turn even when it also uses cosmology words ("how old are its stars?")
STRONG_INTENTS = ("summary", "age", "hypothetical")
_Z_NAMED = re.compile(r"\b(?:z|redshift)\s*(?:=|of)?\s*(\d+(?:\.\d+)?)", re.I)


def hypothetical_z(text: str) -> float | None:
    """The redshift a what-if question names ("if it were at z = 1"), or None."""
    if not any(n == "hypothetical" for n in intents(text)):
        return None
    m = _Z_NAMED.search(text or "")
    return float(m.group(1)) if m else None


def hypothetical_answer(h: dict, spectrum: dict | None) -> str:
    """A what-if from the cosmology tool at the named z, beside the object's own (``h``: the node's record)."""
    now, at = h["now"], h["at"]
    out = [f"If it were at z = {at['z']:g} instead of its z = {now['z']:.5g} ({h['z_source']}) — a what-if, from the "
           f"cosmology tool ({at['cosmology']}):",
           f"- its light would have left it {fmt_gyr(at['lookback_gyr'])} ago (now {fmt_gyr(now['lookback_gyr'])}), "
           f"from a luminosity distance of {at['luminosity_distance_mpc']:,.0f} Mpc (now "
           f"{now['luminosity_distance_mpc']:,.0f} Mpc);",
           f"- it would look fainter by {h['dimming_mag']:.2f} mag (the distance alone, before k-corrections and "
           "evolution);"]
    s = (spectrum or {}).get("summary") or {}
    lo, hi = s.get("wave_min"), s.get("wave_max")
    for l in [x for x in at.get("lines", []) if x.get("kind") != "break"][:6]:
        where = ""
        if lo is not None and hi is not None:
            where = (" — inside this spectrum's range" if lo <= l["observed_A"] <= hi else
                     f" — beyond this spectrum's red end ({hi:.0f} Å)" if l["observed_A"] > hi else
                     f" — below this spectrum's blue end ({lo:.0f} Å)")
        out.append(f"- {l['display']} {l['rest_A']:.1f} Å would be observed at {l['observed_A']:,.1f} Å{where};")
    out[-1] = out[-1].rstrip(";") + "."
    return "\n".join(out)


def age_answer(m: dict) -> str | None:
    """How old its stars are, from the absorption indices the measurements give (Dn4000, HδA)."""
    d4, hd = m.get("dn4000"), m.get("hdelta_a")
    if d4 is None and hd is None:
        return None
    out = "Its stars, from the spectrum's age indicators:"
    if d4 is not None:
        out += (f" Dn4000 = {d4:.2f} — " + ("mostly old stars, over about a gigayear" if d4 > 1.5 else
                                             "young or mixed stars") + " (split at 1.5)")
    if hd is not None:
        out += (";" if d4 is not None else "") + (f" HδA = {hd:.2f} Å (Balmer absorption of A stars: the higher, "
                                                   "the more star formation in the last gigayear or so)")
    return out + ". These are luminosity-weighted indicators, not an age measurement."


def summary_answer(m: dict | None, z: float | None, z_source: str | None, spectype: str | None,
                   cosmo: dict | None) -> str | None:
    """Two sentences for a paper, every fact from the tools: what it is and where, then the evidence."""
    if z is None:
        return None
    kind = {"GALAXY": "a galaxy", "QSO": "a quasar", "STAR": "a star"}.get(spectype or "", "an object")
    if m and spectype in (None, "GALAXY"):
        kind = _CLASS_PHRASE.get(m["summary_class"], kind)
    first = f"The object is {kind} at {_z_phrase(z, z_source)}"
    if cosmo:
        first += f", seen {fmt_gyr(cosmo['lookback_gyr'])} back in time ({cosmo['cosmology']})"
    ev = "; ".join((m or {}).get("evidence") or [])
    second = f"Evidence: {ev}." if ev else ""
    return (first + ". " + second).strip()


def lines_answer(m: dict) -> str:
    rows = []
    for k, l in (m.get("lines") or {}).items():
        if l.get("detected"):
            ew = f", EW {l['ew_A']:.1f} Å" if l.get("ew_A") is not None else ""
            rows.append(f"{l['display']} {l['flux']:.1f} ± {l['flux_err']:.1f} (S/N {l['snr']:.1f}{ew})")
    out = ("Emission lines at S/N ≥ " + f"{METHOD['line_min_snr']:g} (flux in the file's units × Å; EW rest-frame, "
           "positive for emission): " + ("; ".join(rows) if rows else "none") + ".")
    if m.get("bpt"):
        out += f" BPT: log([N II]/Hα) = {m['bpt']['log_nii_ha']:.2f}, log([O III]/Hβ) = {m['bpt']['log_oiii_hb']:.2f}."
    if m.get("whan"):
        w = m["whan"]
        out += f" WHAN: EW(Hα) = {w['ew_halpha_A']:.1f} Å, EW([N II]) = {w['ew_nii_A']:.1f} Å ({w['class']})."
    if m.get("dn4000") is not None:
        out += f" Dn4000 = {m['dn4000']:.2f}."
    if m.get("hdelta_a") is not None:
        out += f" HδA = {m['hdelta_a']:.2f} Å."
    return out


def mass_answer(m: dict) -> str:
    p = m.get("photometry")
    out = []
    if p:
        mags = ", ".join(f"{b} = {p[b]:.2f}" for b in ("g", "r", "i") if p.get(b) is not None)
        if mags:
            out.append(f"Synthetic fibre magnitudes (AB, from the spectrum through the SDSS filter curves): {mags}.")
        absm = ", ".join(f"{k} = {p[k]:.2f}" for k in ("M_g", "M_r") if p.get(k) is not None)
        if absm:
            out.append(f"Rest-frame absolute magnitudes inside the fibre: {absm}.")
        if p.get("log_stellar_mass_fibre") is not None:
            out.append(f"Stellar mass inside the fibre: log M*/M☉ ≈ {p['log_stellar_mass_fibre']:.2f} (from M_r and "
                       f"g−r = {p['rest_g_minus_r']:.2f} with the Bell et al. (2003) mass-to-light ratio; about "
                       "±0.3 dex, and the whole galaxy is more massive).")
        elif p.get("M_r") is not None:
            out.append("No stellar mass: the rest-frame g band is not covered by the spectrum, so there is no colour.")
    else:
        out.append("The file's flux units are not known, so I cannot give magnitudes or a mass.")
    vd = m.get("velocity_dispersion")
    if vd and vd.get("reliable"):
        out.append(f"Stellar velocity dispersion σ = {vd['sigma_kms']:.0f} ± {vd['sigma_err_kms']:.0f} km/s ({vd['method']}).")
    return " ".join(out)


def surveys_answer(reach: dict) -> str:
    rows = reach.get("surveys") or []
    yes = [r for r in rows if r["verdict"] == "yes"]
    maybe = [r for r in rows if r["verdict"] == "maybe"]
    no = [r for r in rows if r["verdict"] == "no"]
    out = []
    if yes:
        out.append("Could observe it:\n" + "\n".join(f"- {r['survey']} ({r['kind']}: {', '.join(r['reasons'][:2])})."
                                                     for r in yes))
    if maybe:
        out.append("Possibly:\n" + "\n".join(
            f"- {r['survey']} ({next((x for x in r['reasons'] if 'not' in x or 'but' in x), r['reasons'][-1])})."
            for r in maybe))
    if no:
        out.append("Not: " + "; ".join(
            f"{r['survey']} ({next((x for x in r['reasons'] if 'outside' in x or 'not' in x or 'fainter' in x), '')})"
            for r in no) + ".")
    out.append("Limits and references: speclm's survey table (tools/data/surveys.yaml).")
    return "\n\n".join(out)  # blank lines: Markdown would fold the next group into the last bullet


def cosmology_answer(c: dict, z_source: str | None) -> str:
    return (f"At {_z_phrase(c['z'], z_source)} the light left it {fmt_gyr(c['lookback_gyr'])} ago, when the "
            f"universe was {c['age_at_z_gyr']:.2f} Gyr old ({c['cosmology']}).")


def honest_reply(m: dict | None, z: float | None, z_source: str | None) -> str:
    out = "The small model cannot answer that reliably, so I will not guess."
    if m:
        out += f" What I can measure: {class_answer(m, z, z_source)}"
    elif z is not None:
        out += f" What I know: the redshift {_z_phrase(z, z_source)}."
    return out + (" Ask about its type, star formation, an AGN, its mass or brightness, its emission lines, "
                  "which surveys could observe it, its lookback time or where a line lands.")


def compose(text: str, *, measure: dict | None, reach: dict | None, cosmo: dict | None, z: float | None,
            z_source: str | None, spectype: str | None = None, hypothetical: dict | None = None,
            spectrum: dict | None = None) -> tuple[str, list[str]]:
    """The answer to ``text`` from the facts, and the intents it answered ([] = honest reply)."""
    asked = intents(text)
    parts: list[str] = []
    done: list[str] = []
    for it in asked:
        if it == "hypothetical":
            if hypothetical:
                parts.append(hypothetical_answer(hypothetical, spectrum))
                done.append(it)
            continue
        if it == "summary":
            q = summary_answer(measure, z, z_source, spectype, cosmo)
            if q:
                parts.append(q)
                done.append(it)
            continue
        if it == "age" and measure:
            q = age_answer(measure)
            if q:
                parts.append(q)
                done.append(it)
            continue
        if it == "quasar":
            q = quasar_answer(spectype, measure)
            if q:
                parts.append(q)
                done.append(it)
            continue
        if it == "surveys":
            if reach:
                parts.append(surveys_answer(reach))
                done.append(it)
            continue
        if not measure:
            continue
        if it == "type":
            parts.append(class_answer(measure, z, z_source))
        elif it == "star_formation":
            parts.append(star_formation_answer(measure))
        elif it == "agn":
            parts.append(agn_answer(measure))
        elif it == "mass":
            parts.append(mass_answer(measure))
        elif it == "lines":
            parts.append(lines_answer(measure))
        done.append(it)
    if not parts:
        return honest_reply(measure, z, z_source), []
    if cosmo and ("type" in done or "surveys" in done) and "summary" not in done:
        parts.append(cosmology_answer(cosmo, z_source))
    return "\n\n".join(parts), done
