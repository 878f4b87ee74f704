"""Synthetic planner data: user requests -> tool-call sequences, for the embedded planner's LoRA.

Each request is drawn from an intent (cosmology at a given or the object's z, line positions, the
object's class, survey reach, the model's redshift, the template search, a line check, an SDSS
lookup by plate/MJD/fiber, specObjID or coordinates, reading a file, several of these in sequence,
or nothing to call), phrased from varied pieces, with a random object in the thread (or none).
Its plan is a list of calls, each with the one-line result the planner would read back (values a
next call needs, e.g. the looked-up z); one training example per planning step, the last answering
``done``. Some first calls fail (an error result), and the plan then ends.

The held-out phrasings that measure the planner (``evals/planner_heldout.yaml``) are written by
hand and never generated here; :func:`assert_not_in` checks that no held-out text is in a set.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from speclm.finetune.plan_text import context_line, format_number, result_summary, step_answer, step_prompt

FORMAT = "speclm-planner-dataset"

# -- surface forms -----------------------------------------------------------------------------
LINE_FORMS = {
    "Halpha": ["Hα", "H-alpha", "Halpha", "H alpha", "Ha", "H-α", "Balmer alpha"],
    "Hbeta": ["Hβ", "H-beta", "Hbeta", "H beta", "Hb", "H-β"],
    "Hgamma": ["Hγ", "H-gamma", "Hgamma"],
    "Hdelta": ["Hδ", "H-delta", "Hdelta"],
    "OIII5008": ["[OIII] 5007", "[O III] 5007", "OIII 5007", "[OIII]λ5007", "[O III]", "OIII"],
    "OII": ["[OII]", "[O II] 3727", "OII 3727", "the [O II] doublet"],
    "NII6585": ["[NII] 6584", "[N II] 6583", "NII 6584", "[NII]"],
    "SII6718": ["[SII] 6717", "[S II] 6716", "SII"],
    "OI6302": ["[OI] 6300", "[O I] 6300"],
    "NeIII3870": ["[NeIII] 3869", "[Ne III]"],
    "MgII": ["Mg II", "MgII", "MgII 2800", "magnesium II"],
    "CIV": ["C IV", "CIV", "CIV 1549"],
    "CIII": ["C III]", "CIII] 1909"],
    "Lyalpha": ["Lyα", "Lyman alpha", "Ly-alpha", "Lya"],
    "CaK": ["Ca K", "calcium K", "Ca II K"],
    "CaH": ["Ca H", "calcium H", "Ca II H"],
    "NaD": ["Na D", "sodium D", "NaD"],
    "Mgb": ["Mg b", "Mgb", "the magnesium b triplet"],
    "Gband": ["G band", "the G-band"],
    "D4000": ["the 4000 Å break", "D4000", "the 4000A break"],
}
OPENERS = ["", "", "", "please ", "can you ", "could you ", "hey, ", "ok, ", "now ", "so ", "quick question: ",
           "I'd like to know ", "tell me ", "I wonder ", "next: "]
CLOSERS = ["", "", "?", "?", ".", " please", " thanks", "? thanks", "!", " for me"]


def _num(rng: random.Random, lo: float, hi: float) -> float:
    d = rng.choice([1, 2, 2, 3, 3, 3, 4])
    return max(round(rng.uniform(lo, hi), d), 10 ** -d)


def _z_value(rng: random.Random) -> float:
    r = rng.random()
    return _num(rng, 0.001, 0.6) if r < 0.6 else _num(rng, 0.6, 3.0) if r < 0.9 else _num(rng, 3.0, 7.0)


def _z_text(rng: random.Random, z: float) -> str:
    s = format_number(z)
    return rng.choice([f"z={s}", f"z = {s}", f"z {s}", f"redshift {s}", f"a redshift of {s}", f"z~{s}",
                       f"z≈{s}", f"redshift z={s}", f"a z of {s}", f"z of {s}"])


def _lines(rng: random.Random, k: int | None = None) -> tuple[list[str], str]:
    names = rng.sample(sorted(LINE_FORMS), k or rng.choice([1, 1, 1, 2, 2, 3]))
    forms = [rng.choice(LINE_FORMS[n]) for n in names]
    if len(forms) == 1:
        txt = forms[0]
    else:
        txt = ", ".join(forms[:-1]) + rng.choice([" and ", " & ", ", "]) + forms[-1]
    return names, txt


@dataclass
class Ident:
    """An SDSS identifier: its text in the request and the arguments the planner should write."""

    text: str
    args: dict


def _ident(rng: random.Random, V: dict) -> Ident:
    plate, mjd, fib = rng.randint(266, 12000), rng.randint(51000, 59999), rng.randint(1, 1000)
    if V["version"] >= 2 and rng.random() < 0.25:
        return _ident_v2(rng, plate, mjd, fib)
    r = rng.random()
    a = {"plate": plate, "mjd": mjd, "fiberid": fib}
    if r < 0.2:
        return Ident(f"{plate:04d}-{mjd:05d}-{fib:04d}", a)
    if r < 0.3:
        return Ident(f"spec-{plate:04d}-{mjd:05d}-{fib:04d}", a)
    if r < 0.5:
        t = rng.choice(["plate {p}, MJD {m}, fiber {f}", "plate {p} mjd {m} fiber {f}", "plate={p} mjd={m} fiberid={f}",
                        "plate {p} / MJD {m} / fiber {f}", "fiber {f} on plate {p} (MJD {m})",
                        "plate-mjd-fiber {p}-{m}-{f}", "p/m/f {p}/{m}/{f}"])
        return Ident(t.format(p=plate, m=mjd, f=fib), a)
    if r < 0.6:
        t = rng.choice(["plate {p} fiber {f}", "fiber {f} of plate {p}", "plate {p}, fiber {f}"])
        return Ident(t.format(p=plate, f=fib), {"plate": plate, "fiberid": fib})
    if r < 0.75:
        sid = rng.randint(10**17, 9 * 10**18)
        t = rng.choice(["specobjid {s}", "specObjID {s}", "spec obj id {s}", "the specObjID {s}", "object {s}"])
        return Ident(t.format(s=sid), {"specobjid": sid})
    if r < 0.92:
        ra, dec = round(rng.uniform(0, 359.99), rng.choice([2, 3, 4, 5])), round(rng.uniform(-20, 80), rng.choice([2, 3, 4]))
        t = rng.choice(["RA {r} Dec {d}", "ra={r}, dec={d}", "RA={r} DEC={d}", "coordinates {r}, {d}",
                        "RA {r}°, Dec {d}°", "(RA, Dec) = ({r}, {d})", "position {r} {d}", "ra {r} dec {d} deg"])
        return Ident(t.format(r=V["fmt"](ra), d=V["fmt"](dec)), {"ra": ra, "dec": dec})
    h, m, s = rng.randint(0, 23), rng.randint(0, 59), round(rng.uniform(0, 59.9), 1)
    sg, dd, dm, ds = rng.choice("+-"), rng.randint(0, 60), rng.randint(0, 59), rng.randint(0, 59)
    t = rng.choice([f"{h:02d}:{m:02d}:{s:04.1f} {sg}{dd:02d}:{dm:02d}:{ds:02d}",
                    f"{h}h{m:02d}m{s:04.1f}s {sg}{dd}d{dm:02d}m{ds:02d}s",
                    f"SDSS J{h:02d}{m:02d}{s:04.1f}{sg}{dd:02d}{dm:02d}{ds:02d}"])
    return Ident(t, {"identifier": t})


def _ident_v2(rng: random.Random, plate: int, mjd: int, fib: int) -> Ident:
    """Generator v2's extra spellings: signed declinations, keyword RA/Dec, specObjID and plate forms
    written as people write them in mail and papers."""
    a = {"plate": plate, "mjd": mjd, "fiberid": fib}
    r = rng.random()
    if r < 0.35:
        ra = round(rng.uniform(0, 359.99), rng.choice([3, 4, 5]))
        dec = round(rng.uniform(-25, 85), rng.choice([3, 4]))
        d = format_number(dec)
        ds = d if dec < 0 else "+" + d
        t = rng.choice(["RA={r}, Dec={d}", "RA = {r}, Dec = {d}", "ra {r}, dec {d}", "{r} {d}", "{r}, {d}",
                        "α={r}, δ={d}", "RA {r} deg, Dec {d} deg", "position (RA, Dec) {r}, {d}",
                        "J2000 {r} {d}", "coords {r} / {d}"])
        return Ident(t.format(r=format_number(ra), d=ds), {"ra": ra, "dec": dec})
    if r < 0.6:
        t = rng.choice(["plate {p}, fibre {f}, MJD {m}", "plate {p} fibre {f} mjd {m}", "MJD {m}, plate {p}, fiber {f}",
                        "fibre {f} on plate {p}, MJD {m}", "plate {p}, mjd {m}, fibre {f}", "{p}/{m}/{f}",
                        "spectrum {p}-{m}-{f}", "spec-{p:04d}-{m:05d}-{f:04d}.fits", "the {p}-{m}-{f} spectrum",
                        "plate {p:04d}, MJD {m}, fiber {f:04d}"])
        return Ident(t.format(p=plate, m=mjd, f=fib), a)
    if r < 0.75:
        t = rng.choice(["fibre {f} from plate {p}", "plate {p}'s fibre {f}", "plate {p} and fiber {f}",
                        "fiber #{f} on plate {p}"])
        return Ident(t.format(p=plate, f=fib), {"plate": plate, "fiberid": fib})
    if r < 0.9:
        sid = rng.randint(10**17, 9 * 10**18)
        t = rng.choice(["specObjID {s}", "specObjID={s}", "spec_obj_id {s}", "SpecObjID {s}", "the SDSS record {s}"])
        return Ident(t.format(s=sid), {"specobjid": sid})
    h, m, s = rng.randint(0, 23), rng.randint(0, 59), round(rng.uniform(0, 59.99), 2)
    sg, dd, dm, ds = rng.choice("+-"), rng.randint(0, 70), rng.randint(0, 59), round(rng.uniform(0, 59.9), 1)
    t = f"SDSS J{h:02d}{m:02d}{s:05.2f}{sg}{dd:02d}{dm:02d}{ds:04.1f}"
    return Ident(t, {"identifier": t})


# -- the object in the thread ------------------------------------------------------------------
@dataclass
class Obj:
    z: float | None
    spectype: str | None
    source: str | None
    has_spectrum: bool

    def line(self) -> str:
        return context_line(self.z, self.source, self.spectype, self.has_spectrum)


def _obj(rng: random.Random, need: bool) -> Obj:
    if not need and rng.random() < 0.35:
        return Obj(None, None, None, False)
    typ = rng.choice(["GALAXY"] * 6 + ["QSO"] * 2 + ["STAR"])
    z = 0.0 if typ == "STAR" else (_num(rng, 0.0005, 0.5) if typ != "QSO" else _num(rng, 0.1, 4))
    src = rng.choice(["model", "search", "sdss", "line check", "template fit"])
    return Obj(z, typ if rng.random() < 0.85 else None, src, rng.random() < 0.9)


def _say(rng, core: str) -> str:
    s = rng.choice(OPENERS) + core + rng.choice(CLOSERS)
    if rng.random() < 0.15:
        s = s.lower()
    return s[0].upper() + s[1:] if rng.random() < 0.5 else s


# -- intents: (rng, obj) -> (text, [(name, args)]) or None when the object does not fit ---------
COSMO_OBJ = ["how far away is it", "how far is it", "what's its distance", "what is the luminosity distance",
             "what is its comoving distance", "how long ago did this light leave it", "what is the lookback time",
             "how old was the universe when this light was emitted", "what's the distance to this galaxy",
             "how distant is this object", "give me the cosmology for it", "what's the angular scale at its redshift",
             "how many Mpc away is it", "what's the recession velocity", "what's the distance modulus"]
COSMO_Z = ["what is the lookback time at {z}", "how far is a galaxy at {z}", "luminosity distance for {z}",
           "age of the universe at {z}", "what's the comoving distance to {z}", "distances and times at {z}",
           "what scale in kpc per arcsec at {z}", "how long ago was light emitted at {z}",
           "cosmology numbers for {z}", "what's D_L at {z}"]
LINE_OBJ = ["where would {l} land", "where does {l} fall in its spectrum", "at what wavelength do we see {l}",
            "where is {l} observed", "what's the observed wavelength of {l}", "where should I look for {l}",
            "which wavelength would {l} be redshifted to", "where do {l} show up"]
LINE_Z = ["where would {l} land at {z}", "observed wavelength of {l} for {z}", "at {z} where is {l}",
          "where does {l} appear for a source at {z}", "what wavelength is {l} at {z}"]
MEASURE = ["what kind of galaxy is it", "is it star-forming", "is it an AGN", "what's its BPT class", "is it passive",
           "how strong is the Hα emission", "what's the velocity dispersion", "what is its star formation rate",
           "how massive is it", "what's the Dn4000", "what are the emission line fluxes", "classify it",
           "is this a LINER or a Seyfert", "what are its magnitudes", "measure its lines",
           "what's the stellar mass", "does it have broad lines", "what is the equivalent width of Hα",
           "is it quiescent or star forming", "what's the SFR", "what type of galaxy is this"]
SURVEY = ["which surveys could observe it", "could DESI observe this", "which fiber spectrographs could get its spectrum",
          "would 4MOST see it", "is it bright enough for SDSS", "which surveys cover it", "could Euclid detect it",
          "which spectroscopic surveys would target it", "what surveys could have measured its redshift",
          "could it be in the GAMA survey", "would LSST image it", "which instruments could take its spectrum"]
PREDICT = ["what does the model say", "what redshift does the LLM predict", "run the fine-tuned model on it",
           "what's the model's z", "ask the LLM for a redshift", "what does the language model think its redshift is",
           "give me the LoRA model's redshift", "what z does the network predict", "predict its redshift with the model",
           "what does speclm's model answer"]
SEARCH = ["find its redshift", "what is its redshift", "measure the redshift", "is it a quasar or a star",
          "fit templates to it", "what type of object is this", "search the whole redshift range",
          "determine the redshift", "run the redshift search", "is it really a galaxy", "get me a redshift for it"]
CHECK = ["check {z}", "is {z} right", "does {z} fit the lines", "test {z} against the lines", "verify {z}",
         "could it be at {z}", "is it maybe at {z} instead", "what about {z}", "does the spectrum support {z}",
         "try {z}"]
LOOKUP = ["look up {i}", "what does SDSS say about {i}", "find the SDSS object {i}", "fetch {i}", "get me {i}",
          "load {i} from SDSS", "pull the spectrum of {i}", "show me {i}", "what is {i}", "SDSS lookup: {i}",
          "search SDSS for {i}", "open {i}"]
THEN_PREDICT = ["{L} and run the model on it", "{L}, then tell me what the LLM thinks its redshift is",
                "{L} and predict its redshift with the model", "{L} and see what redshift the fine-tuned model gives",
                "{L}; what does the model say"]
THEN_MEASURE = ["{L} and tell me what kind of galaxy it is", "{L} and classify it", "{L} - is it star-forming",
                "{L} and measure its lines", "{L}, what's its velocity dispersion"]
THEN_COSMO = ["how far away is {i}", "{L} and tell me how far away it is", "what's the lookback time to {i}",
              "{L} and give me its distance"]
THEN_SEARCH = ["{L} and find its redshift", "{L} and fit templates", "{L} and check whether it's a quasar"]
PREDICT_CHECK = ["run the model and check its answer against the lines", "predict the redshift and verify it",
                 "what does the model say, and do the lines agree", "get the LLM's z and test it on the lines"]
COSMO_MEASURE = ["how far is it, and what kind of galaxy is it", "what's its distance and is it star-forming",
                 "give me the lookback time and the BPT class", "how far away is it and how massive is it"]
READ = ["read {p}", "open {p}", "load the file {p}", "what's in {p}", "read the spectrum at {p}"]
NOTHING = ["hello", "hi there", "thanks", "thank you!", "who are you", "what can you do", "what is a redshift",
           "tell me a joke", "what is dark matter", "how does a spectrograph work", "good morning",
           "what's the capital of France", "explain the Hubble law", "what's a quasar", "ok", "cool",
           "what is the speed of light"]

# -- generator v2: more ways to say each intent, and near misses (a line name in a question that is
# about the line's strength, not its position; a definition question that names a measurement) ----
EXTRA = {
    "COSMO_OBJ": ["what's the light travel time to it", "how far back in time are we seeing it",
                  "what is the angular diameter distance", "how many light years away is it",
                  "what's its distance in Mpc", "give me the distances for it", "what's the age of the universe at its z",
                  "when was the light we receive emitted", "how long has its light been travelling",
                  "what's the lookback time and the comoving distance", "what physical scale does an arcsecond cover there",
                  "what's its luminosity distance in Gpc", "how much time has passed since this light left",
                  "what's its distance and lookback time", "convert its redshift to a distance",
                  "how far is this source from us", "what's D_A for it", "what's the distance to this thing"],
    "COSMO_Z": ["I need D_L for a source at {z}", "how old was the universe at {z}", "what's the light-travel time to {z}",
                "lookback time and distance for {z}", "what comoving distance corresponds to {z}",
                "convert {z} to a distance", "what distance does {z} mean", "kpc per arcsec at {z}",
                "age of the cosmos at {z}", "how many Gyr ago is {z}", "angular diameter distance at {z}",
                "a quasar at {z}: how far is it", "what's the distance modulus at {z}",
                "for an object at {z}, what's the lookback time", "how far away is something at {z}"],
    "LINE_OBJ": [ "where will {l} be", "what's the observed-frame wavelength of {l}",
                 "where has {l} been shifted to", "in Å, where is {l}", "{l}: where does it land",
                 "compute where {l} sits", "which observed wavelengths correspond to {l}",
                 "where in this spectrum do I look for {l}",],
    "LINE_Z": ["where would {l} be observed at {z}", "for {z}, at what wavelength is {l}", "{l} at {z}: observed wavelength?", "at {z}, which wavelength has {l}", "shift {l} to {z}"],
    "MEASURE": [ "is it a LINER", "what's its velocity dispersion sigma", "is it forming stars", "how much star formation is going on",
                "is there an active nucleus", "does it host an AGN", "what's the Balmer decrement", "what are the line ratios", "is it a starburst", "what's its SFR in Msun/yr",
                "measure sigma for me", "what class of object is it", "is it a composite in the BPT",
                "what's the 4000 Å break strength", "is the emission from star formation or an AGN",
                "give me the emission-line fluxes", "what is the stellar velocity dispersion in km/s",
                "how old are its stars", "is it red and dead"],
    "MEASURE_LINE": ["what's the {l} flux", "how strong is {l}", "what's the equivalent width of {l}",
                     "measure {l} for me", "how broad is {l}", "what's the FWHM of {l}", "is {l} in emission",
                     "is {l} in absorption", "what's the {l}/{m} ratio",
                     "give me the {l} and {m} fluxes",
                     "measure {l} and {m}", "how bright is the {l} line", "is there broad {l}"],
    "SURVEY": ["could the DESI bright galaxy survey get a redshift for it", "which current surveys could measure it",
               "what spectroscopic facilities could observe it",
               "is it too faint for SDSS", "would PFS observe it", "could WEAVE get it", "is it a DESI target",
               "which survey could have taken this spectrum", "could a fiber survey reach it",
               "what surveys reach this redshift", "would it be in the BOSS sample"],
    "PREDICT": [
                "have the network guess z", "what z does the neural net give", "the model's estimate please",
                "what's the LLM's answer for the redshift", "run speclm's adapter on it", "what does the LLM read",
                "let the fine-tuned model have a go", "what redshift would the model give", "model z please",
                "what's the machine-learning redshift", "get the adapter's z", "what does the trained model predict",
                "what does the LoRA say"],
    "SEARCH": [ "could it be a star", "fit galaxy, quasar and star templates", "what is this object and at what z", "do a blind redshift search",
               "classify it as galaxy, quasar or star", "is this really a quasar",
               "do a full redshift fit", "what's the best-fit redshift", "scan all redshifts",
               "get a proper redshift with templates", "what kind of object is this and what's its z",
               "is the spectrum a star", "template-fit it from z=0 to 5"],
    "CHECK": [ "does {z} match the spectrum", "compare {z} with the emission lines", "is {z} plausible",
              "how well does {z} fit", "does {z} work", "I think it's at {z} - right?", "SDSS says {z}, check it",
              "see if {z} fits", "check whether the lines agree with {z}", "is it really at {z}", "confirm {z}"],
    "LOOKUP": [ "any SDSS spectrum near {i}", "retrieve {i} from SDSS",
               "find {i} in SDSS", "bring up {i}", "query SDSS for {i}", "what's at {i}", "anything in SDSS at {i}",
               "what does the archive have for {i}", "get the SDSS spectrum for {i}", "what is the object {i}",
               "I'd like the spectrum {i}", "look {i} up in SDSS"],
    "THEN_PREDICT": [ "{L} and ask the LLM for its redshift",
                     "{L}; then what does the adapter say", "{L} and get the model's z"],
    "THEN_MEASURE": [ "{L}; is it an AGN", "{L} and measure its emission lines",
                     "{L} and tell me whether it's forming stars", "{L}, then its stellar mass", "{L}: BPT class?"],
    "THEN_COSMO": [ "{L} and tell me its lookback time",
                   "{L}, then how far away is it", "how long ago did the light of {i} leave"],
    "THEN_SEARCH": [ "{L}, then do a template fit",
                    "{L} and tell me if it's a star"],
    "PREDICT_CHECK": [ "predict z and check it against the lines",
                      "run the LLM, then confirm its z with a line fit", "model redshift first, then a line check"],
    "COSMO_MEASURE": [ "how far away is it and what's its SFR",
                      "lookback time, and is it star-forming", "distance and BPT class please"],
    "READ": [ "open the file {p}", "here is my spectrum: {p}", "use the spectrum in {p}"],
    "NOTHING": [ "how do stars form", "what is a galaxy", "explain redshift to me",
                "what is the cosmic microwave background", "how big is the Milky Way", "what's a Seyfert galaxy",
                "what does BPT stand for", "what is the Balmer series", "what's the difference between a quasar and a galaxy",
                "great, thanks", "bye", "that's all for now", "what's the Hubble constant", "how does redshift relate to distance",
                "what is a LINER", "what's an emission line", "what is dark energy", "who discovered quasars",
                "how are you", "nice work", "what's the weather like", "write me a poem", "what does SDSS stand for",
                "how do I cite you", "what's a LoRA adapter"],
}
def _fmt6(x: float) -> str:
    """v1's number text (6 significant digits), kept so generate(n, seed, 1) reproduces v1's requests."""
    s = f"{x:.6g}"
    return f"{x:.8f}".rstrip("0").rstrip(".") if "e" in s else s


V1 = {"version": 1, "fmt": _fmt6, "COSMO_OBJ": COSMO_OBJ, "COSMO_Z": COSMO_Z, "LINE_OBJ": LINE_OBJ, "LINE_Z": LINE_Z,
      "MEASURE": MEASURE, "SURVEY": SURVEY, "PREDICT": PREDICT, "SEARCH": SEARCH, "CHECK": CHECK, "LOOKUP": LOOKUP,
      "THEN_PREDICT": THEN_PREDICT, "THEN_MEASURE": THEN_MEASURE, "THEN_COSMO": THEN_COSMO, "THEN_SEARCH": THEN_SEARCH,
      "PREDICT_CHECK": PREDICT_CHECK, "COSMO_MEASURE": COSMO_MEASURE, "READ": READ, "NOTHING": NOTHING,
      "MEASURE_LINE": []}
V2 = {k: (v + EXTRA[k] if isinstance(v, list) else v) for k, v in V1.items()} | {"version": 2, "fmt": format_number}
VOCAB = {1: V1, 2: V2}


def _cosmo(rng, o: Obj, V: dict):
    if rng.random() < 0.5 or o.z is None:
        z = _z_value(rng)
        return _say(rng, rng.choice(V["COSMO_Z"]).format(z=_z_text(rng, z))), [("cosmology", {"z": z})]
    return _say(rng, rng.choice(V["COSMO_OBJ"])), [("cosmology", {"z": o.z})]


def _line_pos(rng, o: Obj, V: dict):
    names, txt = _lines(rng)
    return _line_request(rng, o, V, names, txt, distance_prefix=True)


def _line_request(rng, o: Obj, V: dict, names: list[str], txt: str, distance_prefix: bool):
    """Where do these lines land: at a z the request names, or at the thread object's."""
    if rng.random() < 0.45 or o.z is None:
        z = _z_value(rng)
        core = rng.choice(V["LINE_Z"]).format(l=txt, z=_z_text(rng, z))
    else:
        z = o.z
        core = rng.choice(V["LINE_OBJ"]).format(l=txt)
        if distance_prefix and rng.random() < 0.35:
            core = rng.choice(["how far is it, and ", "what's its distance and ", "how far away is it; also "]) + core
    return _say(rng, core), [("cosmology", {"z": z, "lines": names})]


def _need_obj(o: Obj, spectrum: bool = True) -> bool:
    return o.z is not None and (o.has_spectrum or not spectrum)


def _measure(rng, o: Obj, V: dict):
    if not _need_obj(o):
        return None
    return _say(rng, rng.choice(V["MEASURE"])), [("measure_spectrum", {"z": o.z, "spectype": o.spectype or "GALAXY"})]


def _measure_line(rng, o: Obj, V: dict):
    """v2: a question about a line's strength or width names the line but wants a measurement."""
    if not _need_obj(o):
        return None
    names, _ = _lines(rng, 4)
    forms = [rng.choice(LINE_FORMS[n]) for n in names]
    core = rng.choice(V["MEASURE_LINE"]).format(l=forms[0], m=forms[1], n=forms[2], k=forms[3])
    return _say(rng, core), [("measure_spectrum", {"z": o.z, "spectype": o.spectype or "GALAXY"})]


def _cosmo_two(rng, o: Obj, V: dict):
    """v2: two cosmology quantities in one request are one call."""
    if o.z is not None and rng.random() < 0.6:
        a, b = rng.sample(V["COSMO_OBJ"], 2)
        z = o.z
    else:
        z = _z_value(rng)
        a = rng.choice(V["COSMO_Z"]).format(z=_z_text(rng, z))
        b = rng.choice(["what's the comoving distance", "and the lookback time", "what's the luminosity distance",
                        "how old was the universe then", "what's the scale in kpc/arcsec"])
    return _say(rng, a + rng.choice([", and ", "; also ", " - and ", ", plus "]) + b), [("cosmology", {"z": z})]


def _survey(rng, o: Obj, V: dict):
    if o.z is None:
        return None
    return _say(rng, rng.choice(V["SURVEY"])), [("survey_reach", {"z": o.z, "spectype": o.spectype or "GALAXY"})]


def _predict(rng, o: Obj, V: dict):
    return (_say(rng, rng.choice(V["PREDICT"])), [("predict_redshift", {})]) if o.has_spectrum else None


def _search(rng, o: Obj, V: dict):
    return (_say(rng, rng.choice(V["SEARCH"])), [("find_redshift", {})]) if o.has_spectrum else None


def _check(rng, o: Obj, V: dict):
    if not o.has_spectrum:
        return None
    z = _num(rng, 0.001, 0.8)
    return _say(rng, rng.choice(V["CHECK"]).format(z=_z_text(rng, z))), [("redshift_check", {"z0": z})]


def _lookup(rng, o: Obj, V: dict):
    i = _ident(rng, V)
    return _say(rng, rng.choice(V["LOOKUP"]).format(i=i.text)), [("sdss_lookup", i.args)]


def _lookup_then(rng, o: Obj, V: dict):
    i = _ident(rng, V)
    lk = rng.choice(V["LOOKUP"]).format(i=i.text)
    kind = rng.choice(["predict", "measure", "cosmo", "search"])
    z, typ = _num(rng, 0.001, 0.5), rng.choice(["GALAXY"] * 4 + ["QSO"])
    first = ("sdss_lookup", i.args, {"z": z, "obj_class": typ})
    if kind == "predict":
        return _say(rng, rng.choice(V["THEN_PREDICT"]).format(L=lk)), [first, ("predict_redshift", {})]
    if kind == "measure":
        return _say(rng, rng.choice(V["THEN_MEASURE"]).format(L=lk)), [first, ("measure_spectrum", {"z": z, "spectype": typ})]
    if kind == "cosmo":
        return _say(rng, rng.choice(V["THEN_COSMO"]).format(L=lk, i=i.text)), [first, ("cosmology", {"z": z})]
    return _say(rng, rng.choice(V["THEN_SEARCH"]).format(L=lk)), [first, ("find_redshift", {})]


def _predict_check(rng, o: Obj, V: dict):
    if not o.has_spectrum:
        return None
    z = _num(rng, 0.001, 0.5)
    return _say(rng, rng.choice(V["PREDICT_CHECK"])), [("predict_redshift", {}, {"z": z}), ("redshift_check", {"z0": z})]


def _cosmo_measure(rng, o: Obj, V: dict):
    if not _need_obj(o):
        return None
    return _say(rng, rng.choice(V["COSMO_MEASURE"])), [("cosmology", {"z": o.z}),
                                                  ("measure_spectrum", {"z": o.z, "spectype": o.spectype or "GALAXY"})]


def _read(rng, o: Obj, V: dict):
    p = rng.choice(["/data/", "~/spectra/", "./", "/home/ana/sdss/", "C:/obs/", "../fits/"]) + rng.choice(
        ["spec-0266-51630-0461.fits", "ngc3522.fits", "target_12.csv", "galaxy.txt", "obj7.npz", "s.fits"])
    return _say(rng, rng.choice(V["READ"]).format(p=p)), [("read_spectrum", {"path": p})]


def _nothing(rng, o: Obj, V: dict):
    if rng.random() < 0.25 and o.z is None:  # asks about an object that is not there: nothing to call
        return _say(rng, rng.choice(V["COSMO_OBJ"] + V["MEASURE"][:6])), []
    return _say(rng, rng.choice(V["NOTHING"])), []


INTENTS: dict[str, tuple[float, Callable]] = {
    "cosmology": (1.0, _cosmo), "line_position": (1.2, _line_pos), "measure": (1.0, _measure),
    "survey": (0.7, _survey), "predict": (0.7, _predict), "search": (0.7, _search), "check": (0.8, _check),
    "lookup": (1.0, _lookup), "lookup_then": (1.4, _lookup_then), "predict_check": (0.5, _predict_check),
    "cosmo_measure": (0.5, _cosmo_measure), "read": (0.4, _read), "nothing": (0.6, _nothing),
}


INTENTS_V2: dict[str, tuple[float, Callable]] = INTENTS | {
    "measure_line": (0.6, _measure_line), "cosmo_two": (0.4, _cosmo_two), "nothing": (0.8, _nothing)}
# -- generator v3: the tools' whole argument space, read from the schemas and the line list --------
# (every line the line list knows, by its name, display form and aliases; a named cosmology; a cone
# radius; surveys by name from tools/data/surveys.yaml)
COSMO_FORMS = {"WMAP9": ["WMAP9", "WMAP-9", "the WMAP 9-year cosmology", "WMAP9 parameters"],
               "Planck15": ["Planck15", "Planck 2015", "the Planck 2015 cosmology", "Planck15 parameters"],
               "Planck18": ["Planck18", "Planck 2018", "the Planck 2018 cosmology"]}
SURVEY_FORMS = ["SDSS", "BOSS", "eBOSS", "DESI", "the DESI BGS", "DESI's LRG sample", "DESI ELGs", "4MOST", "WEAVE",
                "Subaru PFS", "PFS", "Euclid", "Euclid NISP", "GAMA", "2dFGRS", "6dFGS", "LSST", "Rubin", "DES", "HSC"]


def _line_forms_all() -> dict[str, list[str]]:
    from speclm.tools.lines import LINES

    out = {}
    for ln in LINES:
        forms = [ln.display, ln.name] + [a for a in ln.aliases if len(a) > 2]
        out[ln.name] = list(dict.fromkeys(forms))
    return out


def _lines_all(rng: random.Random, k: int) -> tuple[list[str], str]:
    table = _line_forms_all()
    names = rng.sample(sorted(table), k)
    forms = [rng.choice(table[n]) for n in names]
    txt = forms[0] if k == 1 else ", ".join(forms[:-1]) + rng.choice([" and ", " & ", ", ", " plus "]) + forms[-1]
    return names, txt


def _line_pos_all(rng, o: Obj, V: dict):
    names, txt = _lines_all(rng, rng.choice([1, 1, 2, 2, 3, 4]))
    return _line_request(rng, o, V, names, txt, distance_prefix=False)


def _cosmo_model(rng, o: Obj, V: dict):
    cosmo = rng.choice(sorted(COSMO_FORMS))
    form = rng.choice(COSMO_FORMS[cosmo])
    tail = rng.choice([" using {c}", " with {c}", " in {c}", ", assuming {c}", " ({c})", " but with {c} instead of Planck18",
                       " for {c}"]).format(c=form)
    args: dict = {}
    if o.z is None or rng.random() < 0.5:
        z = _z_value(rng)
        core = rng.choice(V["COSMO_Z"]).format(z=_z_text(rng, z)) + tail
    else:
        z = o.z
        core = rng.choice(V["COSMO_OBJ"]) + tail
    args["z"] = z
    if rng.random() < 0.25:
        names, txt = _lines_all(rng, rng.choice([1, 2]))
        core += rng.choice(["; and where is {l}", ", plus the observed wavelength of {l}", " and where {l} lands"]).format(l=txt)
        args["lines"] = names
    args["cosmology"] = cosmo
    return _say(rng, core), [("cosmology", args)]


def _lookup_radius(rng, o: Obj, V: dict):
    ra, dec = round(rng.uniform(0, 359.99), rng.choice([2, 3, 4])), round(rng.uniform(-25, 85), rng.choice([2, 3, 4]))
    r = rng.choice([1, 2, 5, 5, 10, 10, 15, 20, 30, 60, 120])
    pos = rng.choice(["RA {a}, Dec {d}", "ra={a} dec={d}", "{a} {d}", "({a}, {d})", "RA {a} deg Dec {d} deg"]).format(
        a=format_number(ra), d=format_number(dec))
    core = rng.choice(["search SDSS within {r} arcsec of {p}", "anything in SDSS within {r}\" of {p}",
                       "look up {p} with a {r} arcsec radius", "SDSS spectra in a {r}-arcsec cone around {p}",
                       "find the SDSS object near {p}, radius {r} arcsec", "cone search {p}, {r} arcsec"]).format(r=r, p=pos)
    return _say(rng, core), [("sdss_lookup", {"ra": ra, "dec": dec, "radius_arcsec": float(r)})]


def _survey_named(rng, o: Obj, V: dict):
    if o.z is None:
        return None
    a, b = rng.sample(SURVEY_FORMS, 2)
    core = rng.choice(["could {a} observe it", "is it within reach of {a}", "would {a} have targeted it",
                       "could {a} or {b} get its spectrum", "which of {a} or {b} could measure its redshift",
                       "is this object bright enough for {a}", "would {a} pick it up, given its redshift",
                       "can {a} reach an object like this", "is it in {a}'s redshift range"]).format(a=a, b=b)
    return _say(rng, core), [("survey_reach", {"z": o.z, "spectype": o.spectype or "GALAXY"})]


INTENTS_V3: dict[str, tuple[float, Callable]] = INTENTS_V2 | {
    "line_position_all": (0.8, _line_pos_all), "cosmo_model": (0.5, _cosmo_model),
    "lookup_radius": (0.35, _lookup_radius), "survey_named": (0.5, _survey_named)}
VOCAB[3] = V2 | {"version": 3}
INTENTS_BY_VERSION = {1: INTENTS, 2: INTENTS_V2, 3: INTENTS_V3}

# -- generator v4: the request wrapped in what people add around it (a purpose, a referee, a thank-you
# that names a result), angular scales, spectral indices, blind scans, lines named before the object
# type ("C IV for a QSO at ..."), cosmology named up front, negative declinations, lookups whose
# answer is the lookup itself, and questions about an object that is not loaded -------------------
EXTRA4 = {
    "COSMO_OBJ": ["how many kpc does one arcsecond cover there", "what's the physical scale per arcsec at its z",
                  "I need the angular diameter distance", "what's the kpc/arcsec scale for it",
                  "how old was the cosmos when it emitted this", "what's its light-travel distance",
                  "what look-back time does its redshift imply", "how far, in Gpc", "what's the comoving distance out to it"],
    "COSMO_Z": ["how many kpc does one arcsecond span at {z}", "1 arcsec in kpc at {z}?", "physical scale at {z}",
                "{z}: lookback time?", "{z} - how far is that", "what's the cosmic age at {z}",
                "light travel time to {z} in Gyr", "D_A and D_L at {z}", "how far back in time is {z}",
                "the age of the universe for {z}", "comoving distance to {z}"],
    "LINE_Z": ["{l} positions for a quasar at {z}", "{l} for a QSO at {z}: where?", "{l} for a galaxy at {z}",
               "for a QSO sitting at {z}, where are {l}", "observed {l} for a source at {z} in Å",
               "where do {l} fall if the object is at {z}", "{l} observed-frame, {z}"],
    "LINE_OBJ": ["which observed wavelengths should I check for {l} here", "where are {l} in this quasar",
                 "{l} positions?", "observed {l}, please", "in this spectrum, where would I see {l}"],
    "MEASURE": ["Dn4000 and HδA please", "what are its Lick indices", "is it post-starburst",
                "how strong is the 4000 Å break", "any sign of a post-starburst population",
                "what's the Hδ absorption strength", "where does it sit on the BPT diagram",
                "WHAN class?", "is it a retired galaxy", "what's the [N II]/Hα ratio", "what's the D4000n",
                "is there an AGN in it", "how fast are its stars moving", "what's its stellar population age"],
    "SEARCH": ["the header has no redshift, find one", "blind scan it for me", "I have no idea of its z, work it out",
               "no redshift known: search for one", "run a blind redshift search", "what's this thing? no z yet",
               "is this a star or a quasar", "scan it with galaxy, QSO and star templates"],
    "CHECK": ["check {z} for this quasar against its emission features", "check {z} against its lines",
              "is {z} consistent with the emission features", "the catalogue says {z}; does it hold up",
              "would {z} line up with the features", "test {z}", "my guess is {z}, check it against the lines"],
    "LOOKUP": ["{i} in SDSS: what is it and what's its catalog z", "what's the catalog redshift of {i}",
               "{i} - anything spectroscopic in SDSS there", "sdss spectrum at {i}", "is there an SDSS spectrum at {i}",
               "{i}: class and z from SDSS", "SDSS at {i}", "what did SDSS measure for {i}"],
    "NOTHING": ["cheers, that was exactly what I needed", "perfect, that BPT placement is what my referee asked for",
                "thanks, the distance helps a lot", "great, the Hα numbers look right", "ok thanks, the line check was useful",
                "nice, that survey list is handy", "thanks for the redshift", "brilliant, I'll put that in the paper",
                "how do quasars get so bright", "what's the difference between Planck15 and Planck18",
                "why is the sky dark at night", "what is the 4000 Å break", "what does a broad Hα line mean",
                "what's a post-starburst galaxy", "can you explain the BPT diagram", "what is velocity dispersion"],
}
PURPOSES = [" so I can put a scale bar on the image", " for the paper", ", my referee wants it", " for a proposal",
            " (for a talk tomorrow)", " - writing it up now", ", need it for a plot", " for my thesis chapter",
            " for the table in section 3", " to compare with the literature"]
COSMO_FIRST = ["{c} please — ", "{c}: ", "with {c}, ", "assuming {c}: ", "{c} cosmology - "]


def _v4_say(rng, core: str) -> str:
    """A v4 request: sometimes with a purpose clause whose words must not change the plan."""
    if rng.random() < 0.25:
        core = core + rng.choice(PURPOSES)
    return _say(rng, core)


def _ident_v4(rng: random.Random, V: dict) -> Ident:
    """v4: coordinates with negative declinations as often as positive ones, and bare pairs."""
    if rng.random() < 0.6:
        return _ident(rng, V)
    ra = round(rng.uniform(0, 359.99), rng.choice([3, 4, 5]))
    dec = round(rng.uniform(-89, 89), rng.choice([3, 4]))
    d = format_number(dec)
    ds = d if dec < 0 else rng.choice(["+", ""]) + d
    t = rng.choice(["ra={r} dec={d}", "{r} {d}", "RA {r}, Dec {d}", "({r}, {d})", "{r}, {d}", "ra {r} / dec {d}",
                    "RA={r}° Dec={d}°", "α {r} δ {d}"])
    return Ident(t.format(r=format_number(ra), d=ds), {"ra": ra, "dec": dec})


def _lookup_v4(rng, o: Obj, V: dict):
    i = _ident_v4(rng, V)
    return _v4_say(rng, rng.choice(V["LOOKUP"]).format(i=i.text)), [("sdss_lookup", i.args)]


def _cosmo_v4(rng, o: Obj, V: dict):
    """Cosmology with the model named first, a purpose clause, or a line asked in the same breath."""
    text, calls = _cosmo(rng, o, V)
    args = dict(calls[0][1])
    if rng.random() < 0.4:
        cosmo = rng.choice(sorted(COSMO_FORMS))
        text = rng.choice(COSMO_FIRST).format(c=rng.choice(COSMO_FORMS[cosmo])) + text[0].lower() + text[1:]
        args["cosmology"] = cosmo
    elif rng.random() < 0.4:
        names, txt = _lines_all(rng, rng.choice([1, 1, 2]))
        text = rng.choice(["which wavelength does {l} get redshifted to, and ", "where does {l} land, and ",
                           "{l} position plus "]).format(l=txt) + text[0].lower() + text[1:]
        args["lines"] = names
    if rng.random() < 0.25:
        text = text + rng.choice(PURPOSES)
    return text, [("cosmology", args)]


def _measure_v4(rng, o: Obj, V: dict):
    if not _need_obj(o):
        return None
    return _v4_say(rng, rng.choice(V["MEASURE"])), [("measure_spectrum", {"z": o.z, "spectype": o.spectype or "GALAXY"})]


def _line_v4(rng, o: Obj, V: dict):
    names, txt = _lines_all(rng, rng.choice([1, 2, 2, 3]))
    text, calls = _line_request(rng, o, V, names, txt, distance_prefix=False)
    return (text + rng.choice(PURPOSES) if rng.random() < 0.2 else text), calls


def _nothing_v4(rng, o: Obj, V: dict):
    """No call: chat and thanks (which name results), or a question about an object that is not loaded."""
    if o.z is None and not o.has_spectrum and rng.random() < 0.35:
        names, _ = _lines(rng, 2)
        form = rng.choice(LINE_FORMS[names[0]])
        q = rng.choice(V["MEASURE"] + V["SURVEY"] + V["PREDICT"][:4] + [m.format(l=form, m=form) for m in V["MEASURE_LINE"]])
        return _say(rng, q), []
    return _say(rng, rng.choice(V["NOTHING"])), []


VOCAB[4] = {k: (v + EXTRA4.get(k, []) if isinstance(v, list) else v) for k, v in VOCAB[3].items()} | {"version": 4}
INTENTS_V4: dict[str, tuple[float, Callable]] = INTENTS_V3 | {
    "lookup_v4": (0.6, _lookup_v4), "cosmology_v4": (0.8, _cosmo_v4), "measure_v4": (0.6, _measure_v4),
    "line_position_v4": (0.6, _line_v4), "nothing": (1.0, _nothing_v4)}
INTENTS_BY_VERSION = {1: INTENTS, 2: INTENTS_V2, 3: INTENTS_V3, 4: INTENTS_V4}


# -- generator v5: two-step plans whose second half is easy to drop (then survey reach, then a line,
# cosmology then surveys), checking the model's own z, distrust of the model as a reason for the
# blind search, "could it be a star of some kind", terse distance abbreviations, long numbers and
# paths copied digit by digit -------------------------------------------------------------------
EXTRA5 = {
    "SEARCH": ["forget the model's z and run the template search", "could it be a foreground star instead",
               "could this be an M dwarf", "maybe it's a white dwarf? fit templates", "ignore the LLM and scan all redshifts",
               "is it possibly a star rather than a galaxy", "could it be a cool star", "skip the model, fit templates"],
    "COSMO_Z": ["D_L and D_A for {z} pls", "D_L for {z}?", "D_A at {z}", "dist mod at {z}", "t_lookback for {z}",
                "{z}: D_L, D_A?", "Mpc to {z}?"],
    "COSMO_OBJ": ["D_L and D_A pls", "D_L?", "dist mod?", "t_lookback?", "D_C for it"],
}
THEN_SURVEY = ["{L}: could DESI observe it", "{L}, then which surveys could reach it", "{L} - would 4MOST get it",
               "{L} and tell me which surveys cover it", "{L}; is it bright enough for SDSS"]
THEN_LINES = ["{L} and tell me where {l} lands", "{L}, then the observed wavelength of {l}", "{L}; where is {l}"]
COSMO_SURVEY = ["lookback time plus which surveys could reach it", "how far is it, and could DESI observe it",
                "distance and survey reach please", "how far away is it, and which surveys cover that redshift"]
CHECK_MODEL = ["check the model's redshift against the emission lines", "is the model's z right? test it on the lines",
               "verify the LLM's redshift with a line check", "does the model's answer fit the lines"]


def _lookup_then_v5(rng, o: Obj, V: dict):
    i = _ident_v4(rng, V)
    lk = rng.choice(V["LOOKUP"]).format(i=i.text)
    z, typ = _num(rng, 0.001, 2.5), rng.choice(["GALAXY"] * 3 + ["QSO"] * 2)
    first = ("sdss_lookup", i.args, {"z": z, "obj_class": typ})
    if rng.random() < 0.5:
        return _say(rng, rng.choice(THEN_SURVEY).format(L=lk)), [first, ("survey_reach", {"z": z, "spectype": typ})]
    names, txt = _lines_all(rng, rng.choice([1, 1, 2]))
    return _say(rng, rng.choice(THEN_LINES).format(L=lk, l=txt)), [first, ("cosmology", {"z": z, "lines": names})]


def _cosmo_survey(rng, o: Obj, V: dict):
    if o.z is None:
        return None
    return _say(rng, rng.choice(COSMO_SURVEY)), [("cosmology", {"z": o.z}),
                                               ("survey_reach", {"z": o.z, "spectype": o.spectype or "GALAXY"})]


def _check_model(rng, o: Obj, V: dict):
    """"Check the model's z": the thread's z when it came from the model, else predict first."""
    if not o.has_spectrum:
        return None
    if o.z is not None and o.source == "model":
        return _say(rng, rng.choice(CHECK_MODEL)), [("redshift_check", {"z0": o.z})]
    z = _num(rng, 0.001, 0.5)
    return _say(rng, rng.choice(CHECK_MODEL)), [("predict_redshift", {}, {"z": z}), ("redshift_check", {"z0": z})]


def _lookup_long(rng, o: Obj, V: dict):
    """Plate/MJD/fiber with slashes and five-digit MJDs copied digit by digit; paths with ./ and ../."""
    if rng.random() < 0.5:
        plate, mjd, fib = rng.randint(266, 12000), rng.randint(51000, 59999), rng.randint(1, 1000)
        t = rng.choice(["{p}/{m}/{f} in SDSS?", "{p}/{m}/{f}", "SDSS {p}/{m}/{f}", "what's {p}/{m}/{f}",
                        "{p}-{m}-{f}?"]).format(p=plate, m=mjd, f=fib)
        return _say(rng, t), [("sdss_lookup", {"plate": plate, "mjd": mjd, "fiberid": fib})]
    p = rng.choice(["./", "../", "./reduced/", "../data/", "~/obs/", "/scratch/"]) + rng.choice(
        ["obj42_coadd.txt", "n5548_blue.fits", "target-07.csv", "coadd_final.fits", "spec_b12.txt"])
    t = rng.choice(["here's my reduced spectrum, {p} - read it in", "read {p}", "load {p} please", "my file: {p}"]).format(p=p)
    return _say(rng, t), [("read_spectrum", {"path": p})]


VOCAB[5] = {k: (v + EXTRA5.get(k, []) if isinstance(v, list) else v) for k, v in VOCAB[4].items()} | {"version": 5}
INTENTS_V5: dict[str, tuple[float, Callable]] = INTENTS_V4 | {
    "lookup_then_v5": (0.8, _lookup_then_v5), "cosmo_survey": (0.4, _cosmo_survey), "check_model": (0.4, _check_model),
    "lookup_long": (0.4, _lookup_long)}
INTENTS_BY_VERSION[5] = INTENTS_V5
GENERATOR_VERSION = 5  # what `speclm data planner` writes; 1 = planner v1/v2's data, 2 = v3's, 3 = v4's, 4 = v5's, 5 = v6's


def _result_for(name: str, rng: random.Random, given: dict | None) -> str:
    if given is not None:
        return result_summary(name, given)
    if name == "sdss_lookup":
        return result_summary(name, {"z": _num(rng, 0.001, 0.5), "obj_class": rng.choice(["GALAXY", "QSO"])})
    if name in ("predict_redshift", "find_redshift"):
        return result_summary(name, {"z": _num(rng, 0.001, 0.5), "spectype": "GALAXY"})
    return result_summary(name, {})


ERRORS = ["ValidationError: z must be >= 0", "SDSSError: no SDSS spectrum matches plate 9999 fiber 12",
          "SpectrumReadError: file not found", "SDSSError: SDSS did not answer (timeout)",
          "UnknownLineError: unknown spectral line 'Hx'"]


def generate(n: int, seed: int = 0, version: int = 1) -> list[dict]:
    """``n`` requests: {text, context, intent, plan: [{name, args, result}]} (plans may be empty).
    ``version`` picks the phrase vocabulary (1: the original, reproduced exactly; 2: more phrasings and
    near misses; 3: the schemas' whole argument space; 4: what people wrap around a request; 5: both
    halves of two-step requests); the same (n, seed, version) always gives the same requests."""
    if version not in VOCAB:
        raise ValueError(f"planner generator version {version} is unknown (have {sorted(VOCAB)})")
    V, intents = VOCAB[version], INTENTS_BY_VERSION[version]
    rng = random.Random(seed)
    names, weights = zip(*((k, w) for k, (w, _) in intents.items()))
    out = []
    while len(out) < n:
        intent = rng.choices(names, weights)[0]
        obj = _obj(rng, need=intent not in ("lookup", "lookup_then", "nothing", "read", "lookup_radius"))
        got = intents[intent][1](rng, obj, V)
        if got is None:
            continue
        text, calls = got
        plan = []
        for c in calls:
            name, args = c[0], c[1]
            result = _result_for(name, rng, c[2] if len(c) > 2 else None)
            plan.append({"name": name, "args": args, "result": result})
        if plan and rng.random() < 0.06:  # the first call fails: the plan ends there
            plan = [dict(plan[0], result=result_summary(plan[0]["name"], error=rng.choice(ERRORS)))]
        out.append({"text": text, "context": obj.line(), "intent": intent, "plan": plan})
    return out


def step_examples(request: dict) -> list[tuple[str, str]]:
    """(prompt, answer) for every planning step of one request, the last one ``done``."""
    done, pairs = [], []
    for c in request["plan"]:
        pairs.append((step_prompt(request["context"], request["text"], done), step_answer(c["name"], c["args"])))
        done.append((c["name"], c["args"], c["result"]))
    pairs.append((step_prompt(request["context"], request["text"], done), step_answer(None)))
    return pairs


def _norm(t: str) -> str:
    return " ".join(str(t).lower().split()).strip(" ?.!")


def assert_not_in(held_out_texts, requests) -> None:
    """Honest evaluation: no held-out phrasing may be a training request (case/space/punctuation-blind)."""
    seen = {_norm(r["text"]) for r in requests}
    clash = [t for t in held_out_texts if _norm(t) in seen]
    if clash:
        raise ValueError(f"{len(clash)} held-out phrasings are in the training requests, e.g. {clash[:3]}")


def write_dataset(out: str | Path, n: int, seed: int = 0, val_frac: float = 0.05, held_out=None,
                  version: int = GENERATOR_VERSION) -> dict:
    """Write ``out/{train,val}.jsonl`` (requests) and ``meta.json``; returns the meta."""
    reqs = generate(n, seed, version)
    if held_out is not None:
        assert_not_in(held_out, reqs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n_val = max(1, int(round(val_frac * n)))
    splits = {"val": reqs[:n_val], "train": reqs[n_val:]}
    for k, rs in splits.items():
        with open(out / f"{k}.jsonl", "w") as f:
            for i, r in enumerate(rs):
                f.write(json.dumps({"id": f"{k}-{seed}-{i}", **r}, ensure_ascii=False) + "\n")
    meta = {"format": FORMAT, "format_version": 1, "n": n, "seed": seed, "generator_version": version, "simulated": True,
            "source": "synthetic planner requests (speclm.finetune.planner_data)",
            "counts": {k: len(v) for k, v in splits.items()},
            "steps": {k: sum(len(r["plan"]) + 1 for r in v) for k, v in splits.items()}}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def is_planner_dataset(path: str | Path) -> bool:
    p = Path(path) / "meta.json"
    try:
        return json.loads(p.read_text()).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def read_split(path: str | Path, split: str) -> list[dict]:
    with open(Path(path) / f"{split}.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]
