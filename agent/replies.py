"""The factual part of every reply, written from tool outputs — never by the language model.

Why: a 135M (or 8B) model asked "what is the lookback time at z = 0.315?" guesses (the paper's own
sample answer says "~3.8 Gyr"). Here every number the user reads is formatted from a tool's JSON
(prediction, redshift_check, cosmology, SDSS lookup); the LLM is only asked for the qualitative
remainder (galaxy type, surveys), and sentences in which it states numbers anyway are dropped
(:func:`qualitative_only`).
"""
from __future__ import annotations

import re

SDSS_RANGE_A = (3600.0, 10400.0)  # BOSS spectrograph coverage; SDSS-I/II is 3800-9200 Å


def _method() -> dict:
    """The constants the reply templates quote (thresholds, ranges): declared facts for the claim check."""
    from dataclasses import asdict

    from speclm.tools.measure import CLASSES, MeasureConfig
    from speclm.tools.redshift_check import RedshiftCheckConfig
    from speclm.tools.redshift_search import SearchConfig

    return {"interval_percent": 68, "strong_line_snr": 5, "line_min_snr": MeasureConfig().min_snr,
            "sigma_levels": [3, 5], "sdss_range_A": list(SDSS_RANGE_A), "search": asdict(SearchConfig()),
            "check": asdict(RedshiftCheckConfig()), "measure": asdict(MeasureConfig()),
            "classes_considered": list(CLASSES), "dust_free_balmer_decrement": 2.86,
            "mass_to_light_uncertainty_dex": 0.3, "codec_decimals": 3}


METHOD = _method()


def derived_facts(state: dict) -> dict:
    """Numbers the templates compute from tool outputs (differences, unit changes), declared so the
    claim check can trace them: each is one line of arithmetic on a tool's value."""
    out: dict = {}
    pred, search, check = state.get("prediction") or {}, state.get("search") or {}, state.get("check") or {}
    lookup, spec = state.get("lookup") or {}, (state.get("spectrum") or {}).get("summary") or {}
    z_cat = lookup.get("z") if lookup.get("z") is not None else spec.get("z_catalog")
    if z_cat is not None:
        for name, d in (("model", pred), ("search", search), ("check", check)):
            if d.get("z") is not None:
                out[f"{name}_minus_catalog"] = d["z"] - z_cat
    for name, d in (("search", search), ("check", check)):
        if d.get("z_err") and d.get("z") is not None:
            out[f"{name}_err_kms"] = kms(d["z_err"], d["z"])
    cosmo = state.get("cosmology") or {}
    out["observed_nm"] = [l["observed_A"] / 10 for l in cosmo.get("lines") or []]
    return out


def fmt_gyr(x: float) -> str:
    """'3.78 Gyr' / '0.0551 Gyr' — the lookback-time format every reply uses (tests rely on it)."""
    return f"{x:.3g} Gyr"


def fmt_z(z: float, source: str | None = None) -> str:
    """Line-fit redshifts carry 5 decimals (their error is ~1e-5); model answers the codec's 3."""
    precise = source in ("line fit", "SDSS catalog") or str(source or "").startswith("template fit")
    return f"{z:.5f}" if precise else f"{z:.3f}"


def kms(z_err: float, z: float) -> float:
    """A redshift error as a velocity, km/s."""
    from speclm.tools.cosmology import C_KM_S

    return C_KM_S * z_err / (1.0 + z)


def feature_name(name: str) -> str:
    """Display name of a search feature ("broad Hbeta" -> "broad Hβ", "OIII" -> "[O III] 5008")."""
    from speclm.tools import lines as line_list

    broad = name.startswith("broad ")
    key = name[6:] if broad else name
    try:
        disp = line_list.get(key).display
    except Exception:
        disp = key
    return ("broad " if broad else "") + disp


_TYPE_WORD = {"GALAXY": "galaxy", "QSO": "quasar", "STAR": "star"}


def search_sentence(search: dict, pred: dict | None) -> str:
    """The stated redshift of the spectrum path, from find_redshift's output (every number from it)."""
    kind = _TYPE_WORD.get(search["spectype"], search["spectype"])
    if search.get("z_source") == "model":
        return (f"The template fit could not run, so the only redshift is the model's z = {search['z']:.3f}, "
                f"not confirmed by the spectrum's lines; " + " ".join(search.get("warnings") or []))
    err = ""
    if search.get("z_err"):
        err = f" ± {search['z_err']:.5f} (±{kms(search['z_err'], search['z']):,.0f} km/s: the fit's χ² curvature and a systematic floor)"
    feats = search.get("features") or []
    names = ", ".join(feature_name(f["feature"]) for f in feats[:6])
    head = (f"Redshift search (galaxy, quasar and star templates over 0 ≤ z ≤ 1.5 for galaxies and up to "
            f"z = 7 for quasars, the model's p(z) peaks among the candidates): ")
    alts = search.get("alternatives") or []
    rival = next((a for a in alts if abs(a["z"] - search["z"]) > 0.005 * (1 + search["z"])), None)
    if search.get("confident"):
        out = head + f"a {kind} at z = {search['z']:.5f}{err}, confident"
        if rival is not None and search.get("delta_chi2") is not None:
            out += (f" — it beats the next-best solution (z = {rival['z']:.4f}, {_TYPE_WORD.get(rival['spectype'])}) "
                    f"by Δχ²/ν = {search['delta_chi2']:,.0f}")
        out += f"; {len(feats)} features support it ({names})."
    else:
        out = head + f"the best fit is a {kind} at z = {search['z']:.5f}{err}, but it is NOT confident."
        if alts:
            out += " Alternatives: " + ", ".join(
                f"z = {a['z']:.4f} ({_TYPE_WORD.get(a['spectype'])}, Δχ²/ν = {a['delta_chi2']:,.0f})" for a in alts[:3]) + "."
    warn = " ".join(search.get("warnings") or [])
    return out + (" " + warn if warn else "")


def _mpc(x: float) -> str:
    return f"{x:,.1f} Mpc" if x < 100 else f"{x:,.0f} Mpc"


def prediction_sentence(pred: dict) -> str:
    head = f"Model prediction (LoRA adapter on): {pred.get('text') or 'Redshift: ' + format(pred['z'], '.3f')}"
    if pred.get("interval", True):
        head += (f" — median of p(z) z = {pred['z']:.3f}, 68% interval [{pred['z_lo']:.4f}, "
                 f"{pred['z_hi']:.4f}], mode {pred['z_mode']:.3f}.")
    else:
        head += " (this endpoint returns no p(z), so no interval)."
    if pred.get("untrained"):
        head += " Note: the loaded adapter is UNTRAINED (a test adapter), so this number is noise."
    return head


def _strong_lines(check: dict) -> list[dict]:
    lines = check.get("lines") or []
    strong = [l for l in lines if (l.get("snr") or 0) >= 5]
    return strong or lines


def check_sentence(check: dict, pred: dict | None) -> str:
    model_z = pred["z"] if pred else check["z_input"]
    lines = _strong_lines(check)
    names = ", ".join(l["display"] for l in lines[:6])
    snr = "S/N>5" if lines and all((l.get("snr") or 0) >= 5 for l in lines) else "S/N>3"
    if check.get("confident"):
        err = f" ± {check['z_err']:.5f}" if check.get("z_err") else ""
        given = "the model's value" if pred and abs(pred["z"] - check["z_input"]) < 1e-9 else "the z you gave"
        pin = (f"the lines pin z to ±{kms(check['z_err'], check['z']):,.0f} km/s (the fit's error)"
               if check.get("z_err") else "the lines pin z far better than the model's digits")
        return (f"The line fit ({names} at {snr}) refines z to {check['z']:.5f}{err} "
                f"({check['shift_km_s']:+,.0f} km/s from {given}, z = {check['z_input']:.5f}). I trust it over the "
                f"model's {model_z:.3f} because {check['reason']}: {pin}; the "
                f"model's digits are an estimate read from a coarse text version of the spectrum.")
    out = (f"The line check could not confirm a better redshift ({check['reason']}), so I keep the "
           f"model's z = {model_z:.3f}")
    if check.get("lines") and check.get("z_best_fit") is not None:
        out += f"; the best (unconvincing) line fit would be z = {check['z_best_fit']:.5f} ({names})"
    return out + "."


def catalog_sentence(z_cat: float | None, pred: dict | None, check: dict | None, label: str,
                     search: dict | None = None) -> str:
    if z_cat is None:
        return ""
    parts = [f"{label} z = {z_cat:.5f}"]
    if pred:
        parts.append(f"the model is off by {pred['z'] - z_cat:+.3f}")
    if search and search.get("z_source") != "model":
        parts.append(f"the template fit by {search['z'] - z_cat:+.5f}")
    elif check and check.get("confident"):
        parts.append(f"the line fit by {check['z'] - z_cat:+.5f}")
    return "For comparison, " + "; ".join(parts) + "."


def cosmology_sentence(cosmo: dict, *, lines: int = 2) -> str:
    z = cosmo["z"]
    s = (f"At z = {z:.5g} ({cosmo['cosmology']}): lookback time {fmt_gyr(cosmo['lookback_gyr'])} "
         f"(the universe was {cosmo['age_at_z_gyr']:.2f} Gyr old then), luminosity distance "
         f"{_mpc(cosmo['luminosity_distance_mpc'])}, comoving distance {_mpc(cosmo['comoving_distance_mpc'])}, "
         f"recession velocity {cosmo['recession_velocity_km_s']:,.0f} km/s (relativistic Doppler)")
    shown = [l for l in cosmo.get("lines", []) if l["kind"] != "break"][:lines]
    if shown:
        s += "; " + ", ".join(f"{l['display']} {l['rest_A']:.1f} Å is observed at {l['observed_A']:.1f} Å"
                              for l in shown)
    return s + "."


def headline(z: float | None, z_source: str | None, search: dict | None) -> str:
    """The upload reply's first line: the redshift the assistant states, its type and whether it is sure."""
    if z is None:
        return "**No redshift yet.**"
    if search and search.get("z_source") != "model":
        kind = _TYPE_WORD.get(search["spectype"], search["spectype"])
        verdict = "confident" if search.get("confident") else "NOT confident (see the search below)"
        return f"**z = {fmt_z(z, z_source)}: a {kind}** ({z_source}), {verdict}."
    return f"**z = {fmt_z(z, z_source)}** ({z_source})."


def spectrum_reply(*, spectrum: dict | None, pred: dict | None, check: dict | None, cosmo: dict | None,
                   z: float | None, z_source: str | None, lookup: dict | None = None,
                   search: dict | None = None) -> str:
    """Step 1 of the paper's dialogue, with the tools' numbers: a headline (the stated z, type, verdict),
    then one Markdown bullet per tool — spectrum, model, search or line check, catalog, cosmology."""
    out = [headline(z, z_source, search)]
    if lookup:
        out.append(f"- SDSS: {lookup['describe']}.")
    if spectrum:
        s = spectrum["summary"]
        snr = f", median S/N {s['median_snr']:.1f}" if s.get("median_snr") else ""
        survey = f" ({s['survey_name']})" if s.get("survey_name") else ""
        line = (f"- Spectrum {spectrum['name']}{survey}: {s['n_good']} good pixels, "
                f"{s['wave_min']:.0f}–{s['wave_max']:.0f} Å{snr}.")
        n = s.get("n_targets") or 1
        if n > 1:
            line += (f" The file holds {n} targets; this is target {int(s.get('target_index') or 0) + 1} of {n} "
                     "(ask for another as FILE[TARGETID] or FILE[#index]).")
        if str(s.get("noise", "")).startswith("estimated"):
            line += (" The file has no uncertainties: its noise was estimated from the flux (DER_SNR), so the "
                     "S/N and the fit statistics rest on that estimate.")
        out.append(line)
    if pred:
        out.append("- " + prediction_sentence(pred))
    if search:
        out.append("- " + search_sentence(search, pred))
    elif check:
        out.append("- " + check_sentence(check, pred))
    z_cat = lookup["z"] if lookup else (spectrum or {}).get("summary", {}).get("z_catalog")
    cat = catalog_sentence(z_cat, pred, check, "SDSS's catalog has" if lookup else "the file's catalog redshift is",
                           search=search)
    if cat:
        out.append("- " + cat)
    if z is not None:
        out.append(f"- Redshift I use from here on: z = {fmt_z(z, z_source)} ({z_source}).")
    if cosmo:
        out.append("- " + cosmology_sentence(cosmo))
    return "\n".join(p for p in out if p)


def grounded_facts(*, z: float, z_source: str, pred: dict | None, cosmo: dict, spectype: str | None = None) -> str:
    """What a follow-up answer starts with: the stored z and what it means (tool numbers)."""
    kind = _TYPE_WORD.get(spectype or "", "object") if spectype else "galaxy"
    base = f"The redshift I have for this {kind} is z = {fmt_z(z, z_source)} ({z_source}"
    if pred and z_source != "model":
        base += f"; the model predicted {pred['z']:.3f}"
    base += "). "
    return base + cosmology_sentence(cosmo, lines=1)


_ASPECTS = (
    ("lookback", re.compile(r"look\s*-?\s*back|how\s+long\s+ago|how\s+old|\bage\b|light\s+(left|travel)", re.I)),
    ("distance", re.compile(r"how\s+(far|distant)|distance|\bmpc\b|modulus", re.I)),
    ("velocity", re.compile(r"velocit|reced|recess|how\s+fast|speed", re.I)),
    ("scale", re.compile(r"kpc|arcsec|angular|size", re.I)),
)


def cosmology_reply(text: str, cosmo: dict, *, z_source: str, line_names: list[str]) -> str:
    """Answer exactly what was asked (lookback / distance / velocity / scale / line positions)."""
    c = cosmo
    out = [f"Using z = {fmt_z(c['z'], z_source)} ({z_source}) and {c['cosmology']} "
           f"(H0 = {c['H0_km_s_mpc']:.2f} km/s/Mpc, Ωm = {c['Om0']:.3f}):"]
    asked = {name for name, rx in _ASPECTS if rx.search(text or "")}
    if "lookback" in asked:
        out.append(f"the lookback time is {fmt_gyr(c['lookback_gyr'])} — the light left when the universe "
                   f"was {c['age_at_z_gyr']:.2f} Gyr old (it is {c['age_now_gyr']:.2f} Gyr old now).")
    if "distance" in asked:
        dm = f", distance modulus {c['distance_modulus_mag']:.2f} mag" if c.get("distance_modulus_mag") else ""
        out.append(f"luminosity distance {_mpc(c['luminosity_distance_mpc'])}, comoving distance "
                   f"{_mpc(c['comoving_distance_mpc'])}, angular-diameter distance "
                   f"{_mpc(c['angular_diameter_distance_mpc'])}{dm}.")
    if "velocity" in asked:
        out.append(f"it recedes at {c['recession_velocity_km_s']:,.0f} km/s (relativistic Doppler); "
                   f"cz = {c['cz_km_s']:,.0f} km/s and the Hubble-flow velocity H0·D_C is "
                   f"{c['hubble_flow_velocity_km_s']:,.0f} km/s.")
    if "scale" in asked:
        out.append(f"1 arcsec spans {c['kpc_per_arcsec']:.3f} kpc.")
    if line_names:
        wanted = [l for l in c.get("lines", []) if l["name"] in line_names]
        for l in wanted:
            lo, hi = SDSS_RANGE_A
            where = "" if lo <= l["observed_A"] <= hi else " (outside the SDSS/BOSS spectrograph range)"
            out.append(f"{l['display']} (rest {l['rest_A']:.2f} Å, vacuum) lands at {l['observed_A']:.1f} Å"
                       f" = {l['observed_A'] / 10:.1f} nm{where}.")
    if len(out) == 1:
        out.append(cosmology_sentence(c, lines=3))
    elif "lookback" not in asked:
        out.append(f"(Lookback time {fmt_gyr(c['lookback_gyr'])}.)")
    return " ".join(out)


CLARIFY_OBJECT = ("Which object do you mean? I don't have a spectrum for it in this conversation. "
                  "Attach a spectrum file (SDSS spec FITS, a FITS table, CSV/TXT with wavelength and flux) "
                  "or give an SDSS identifier: plate-mjd-fiber (0266-51630-0001), a specObjID, or "
                  "coordinates (RA 179.5 Dec -0.5).")
CLARIFY_Z = ("Which redshift should I use? None is known in this conversation yet: attach a spectrum, "
             "give an SDSS identifier, or write the redshift (e.g. 'lookback time at z = 0.3').")


def error_reply(action: str, message: str) -> str:
    return (f"I couldn't {action}: {message}. Nothing else changed — you can upload another file, "
            f"give an SDSS identifier or ask something else.")


_NUMERIC = re.compile(
    r"\d[\d,]*(\.\d+)?\s*(gyr|myr|billion|million|thousand|mpc|kpc|pc\b|km\s*/\s*s|km\s+s|years?|yr|"
    r"%|nm\b|å|angstrom|light)|\bz\s*[=≈~]\s*\d|\bredshift\s+(of\s+)?\d|\d+\.\d+", re.I)
_SENT = re.compile(r"(?<=[.!?])\s+|\n+")


def qualitative_only(text: str) -> str:
    """Drop sentences that state numbers (times, distances, velocities, redshifts): the model
    is not trusted with arithmetic; the tools already said those numbers."""
    keep = [s for s in _SENT.split(text or "") if s.strip() and not _NUMERIC.search(s)]
    return " ".join(s.strip() for s in keep)


class SentenceFilter:
    """Streaming version of :func:`qualitative_only`: feed pieces, get back the text of complete
    sentences that pass (so token events never show a sentence the final reply drops)."""

    def __init__(self):
        self.buf = ""

    def feed(self, piece: str) -> str:
        self.buf += piece
        parts = _SENT.split(self.buf)
        if len(parts) == 1:
            return ""
        *done, self.buf = parts
        return "".join(s.strip() + " " for s in done if s.strip() and not _NUMERIC.search(s))

    def flush(self) -> str:
        s, self.buf = self.buf, ""
        return s.strip() if s.strip() and not _NUMERIC.search(s) else ""
