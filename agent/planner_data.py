"""Synthetic planner data: user requests -> tool-call sequences, for the embedded planner's LoRA.

Each request is drawn from an intent (a file attached to the message, cosmology at a given or the
object's z, line positions, a what-if at another z, the object's class, lines, age or a summary,
survey reach, the model's redshift, the template search, a line check, an SDSS lookup — alone, with an
analysis, or followed by another call —, reading a file, two questions in one, or nothing to call),
phrased from the registry's vocabulary (:mod:`speclm.agent.planner_phrases`), with a random object in
the thread (or none). Its plan is a list of calls, each with the one-line result the planner reads back
(:func:`speclm.agent.plan_text.result_summary`); one training example per planning step, the last
answering ``done``. Some first calls fail (an error result), and the plan then ends.

One version lives here: :data:`GENERATOR_VERSION`. Earlier versions are reproducible from the commit
recorded in their adapter's card (``dataset.generator_commit``), not kept as code.

The dataset on disk holds each request *and* its rendered (prompt, answer) steps, so the trainer
(:mod:`speclm.finetune`) needs nothing from the agent to train on it.

The held-out phrasings that measure the planner (``evals/planner_heldout*.yaml``) are written by
hand and never generated here; :func:`assert_not_in` checks that no held-out text is in a set.
"""
from __future__ import annotations

import json
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from speclm.agent.plan_text import context_line, format_number, result_summary, step_answer, step_prompt
from speclm.agent.planner_phrases import (CLOSERS, COSMO_FIRST, COSMO_FORMS, LINE_FORMS, OPENERS, PHRASES, PURPOSES,
                                          SURVEY_FORMS)

FORMAT = "speclm-planner-dataset"
GENERATOR_VERSION = 11  # 1-5: planner v1-v6 (their cards); 6: planner v7 (the registry's tools, analyze_spectrum);
# 7: planner v8 — distances and line positions at a named z with nothing loaded, two requests in one message
# joined in any order, more summaries and line-ratio questions (what planner v7 missed on the seventh set);
# 8: planner v9 — yes/no questions about the object's nature are measurements (as the tool card says), more
# two-part requests and cone radii (the kinds of request v8 missed on the eighth set);
# 9: planner v10 — adds the hand-written requests of agent/planner_written/ (three registers, written by helpers
# from the tool card and the labelling conventions only), each as written and once with the thread's z redrawn;
# attached files with a follow-up (cosmology, a z to test, the model's own z); sentence-level joiners;
# 10: planner v11 — 260 more hand-written requests (multi-part and multi-argument requests, research chat), and
# the held-out sets twelfth-fourteenth retired into training after their evaluation (heldout_*.yaml here)
# 11: planner v12 — the held-out sets fifteenth-eighteenth retired into training after their evaluation, and
# follow-ups about "the redshift you just predicted" that use the thread's z (followups.yaml)


def P(tool: str, kind: str) -> list[str]:
    return PHRASES[tool][kind]


# -- small pieces ------------------------------------------------------------------------------------
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


def _join(forms: list[str], rng) -> str:
    return forms[0] if len(forms) == 1 else ", ".join(forms[:-1]) + rng.choice([" and ", " & ", ", ", " plus "]) + forms[-1]


def _line_table() -> dict[str, list[str]]:
    """Every line the line list knows, by its name, display form and aliases, plus LINE_FORMS' spellings."""
    from speclm.tools.lines import LINES

    out = {}
    for ln in LINES:
        forms = [ln.display, ln.name] + [a for a in ln.aliases if len(a) > 2]
        out[ln.name] = list(dict.fromkeys(forms + LINE_FORMS.get(ln.name, [])))
    return out


def _lines(rng: random.Random, k: int | None = None) -> tuple[list[str], str]:
    table = _line_table()
    names = rng.sample(sorted(table), k or rng.choice([1, 1, 1, 2, 2, 3]))
    return names, _join([rng.choice(table[n]) for n in names], rng)


def _say(rng, core: str, purpose: float = 0.15) -> str:
    if rng.random() < purpose:
        core = core + rng.choice(PURPOSES)
    s = rng.choice(OPENERS) + core + rng.choice(CLOSERS)
    if rng.random() < 0.15:
        s = s.lower()
    return (s[0].upper() + s[1:] if rng.random() < 0.5 else s) if s else s


@dataclass
class Ident:
    """An SDSS identifier: its text in the request and the arguments the planner should write."""

    text: str
    args: dict


def _coords(rng) -> Ident:
    ra, dec = round(rng.uniform(0, 359.99), rng.choice([2, 3, 4, 5])), round(rng.uniform(-89, 89), rng.choice([2, 3, 4]))
    d = format_number(dec)
    ds = d if dec < 0 else rng.choice(["+", ""]) + d
    t = rng.choice(["RA {r} Dec {d}", "ra={r}, dec={d}", "RA={r} DEC={d}", "coordinates {r}, {d}", "RA {r}°, Dec {d}°",
                    "(RA, Dec) = ({r}, {d})", "position {r} {d}", "ra {r} dec {d} deg", "{r} {d}", "{r}, {d}",
                    "α={r}, δ={d}", "J2000 {r} {d}", "coords {r} / {d}", "ra {r} / dec {d}"])
    return Ident(t.format(r=format_number(ra), d=ds), {"ra": ra, "dec": dec})


def _ident(rng: random.Random) -> Ident:
    plate, mjd, fib = rng.randint(266, 12000), rng.randint(51000, 59999), rng.randint(1, 1000)
    a = {"plate": plate, "mjd": mjd, "fiberid": fib}
    r = rng.random()
    if r < 0.25:
        return _coords(rng)
    if r < 0.55:
        t = rng.choice(["{p:04d}-{m:05d}-{f:04d}", "spec-{p:04d}-{m:05d}-{f:04d}", "plate {p}, MJD {m}, fiber {f}",
                        "plate {p} mjd {m} fiber {f}", "plate={p} mjd={m} fiberid={f}", "plate {p} / MJD {m} / fiber {f}",
                        "fiber {f} on plate {p} (MJD {m})", "plate-mjd-fiber {p}-{m}-{f}", "p/m/f {p}/{m}/{f}",
                        "plate {p}, fibre {f}, MJD {m}", "MJD {m}, plate {p}, fiber {f}", "{p}/{m}/{f}",
                        "spectrum {p}-{m}-{f}", "spec-{p:04d}-{m:05d}-{f:04d}.fits", "the {p}-{m}-{f} spectrum",
                        "plate {p:04d}, MJD {m}, fiber {f:04d}"])
        return Ident(t.format(p=plate, m=mjd, f=fib), a)
    if r < 0.68:
        t = rng.choice(["plate {p} fiber {f}", "fiber {f} of plate {p}", "plate {p}, fiber {f}", "fibre {f} from plate {p}",
                        "plate {p}'s fibre {f}", "fiber #{f} on plate {p}"])
        return Ident(t.format(p=plate, f=fib), {"plate": plate, "fiberid": fib})
    if r < 0.84:
        sid = rng.randint(10**17, 9 * 10**18)
        t = rng.choice(["specobjid {s}", "specObjID {s}", "spec obj id {s}", "the specObjID {s}", "object {s}",
                        "specObjID={s}", "spec_obj_id {s}", "SpecObjID {s}", "the SDSS record {s}"])
        return Ident(t.format(s=sid), {"specobjid": sid})
    h, m, s = rng.randint(0, 23), rng.randint(0, 59), round(rng.uniform(0, 59.9), 1)
    sg, dd, dm, ds = rng.choice("+-"), rng.randint(0, 70), rng.randint(0, 59), rng.randint(0, 59)
    t = rng.choice([f"{h:02d}:{m:02d}:{s:04.1f} {sg}{dd:02d}:{dm:02d}:{ds:02d}",
                    f"{h}h{m:02d}m{s:04.1f}s {sg}{dd}d{dm:02d}m{ds:02d}s",
                    f"SDSS J{h:02d}{m:02d}{s:04.1f}{sg}{dd:02d}{dm:02d}{ds:02d}"])
    return Ident(t, {"identifier": t})


# -- the object in the thread ------------------------------------------------------------------------
@dataclass
class Obj:
    z: float | None
    spectype: str | None
    source: str | None
    has_spectrum: bool
    attached: bool = False

    def line(self) -> str:
        return context_line(self.z, self.source, self.spectype, self.has_spectrum, self.attached)

    @property
    def typ(self) -> str:
        return self.spectype or "GALAXY"


def _obj(rng: random.Random, need: bool) -> Obj:
    if not need and rng.random() < 0.35:
        return Obj(None, None, None, False)
    typ = rng.choice(["GALAXY"] * 6 + ["QSO"] * 2 + ["STAR"])
    z = 0.0 if typ == "STAR" else (_num(rng, 0.0005, 0.7) if typ != "QSO" else _num(rng, 0.1, 4))
    src = rng.choice(["model", "search", "sdss", "line check", "template fit", "search"])
    return Obj(z, typ if rng.random() < 0.85 else None, src, rng.random() < 0.9)


def _has(o: Obj) -> bool:
    return o.z is not None and o.has_spectrum


# -- intents: (rng, obj) -> (text, [(name, args[, output])]) or None when the object does not fit ----------
def _attached(rng, o: Obj):
    """A message that brings a file: analyse it first, whatever it asks; a survey question then needs the reach."""
    o.attached = True
    if rng.random() < 0.55:
        text = rng.choice(P("analyze_spectrum", "attached"))
        text = _say(rng, text, 0.05) if text and rng.random() < 0.5 else text
    else:
        text = _say(rng, rng.choice(P("measure_spectrum", "ask") + P("cosmology", "object") + P("find_redshift", "ask")))
    calls = [("analyze_spectrum", {}, {"z": _num(rng, 0.001, 0.6), "spectype": "GALAXY"})]
    if rng.random() < 0.12:
        z, typ = _num(rng, 0.001, 0.6), rng.choice(["GALAXY", "GALAXY", "QSO"])
        text = _say(rng, rng.choice(["here's a new one: ", "new spectrum - ", "", "attached: "])
                    + rng.choice(P("survey_reach", "ask")))
        calls = [("analyze_spectrum", {}, {"z": z, "spectype": typ}), ("survey_reach", {"z": z, "spectype": typ})]
    elif rng.random() < 0.25:  # a follow-up the analysis does not answer: it reads the analysis' z
        z, typ = _num(rng, 0.001, 0.6), rng.choice(["GALAXY", "GALAXY", "QSO"])
        kind = rng.choice(["cosmology", "cosmology", "check", "predict"])
        lead = rng.choice(["here's a new one: ", "new spectrum - ", "", "attached: ", "just uploaded a file. ",
                           "new file — once you have its redshift, ", "analyse this and then ", "fresh spectrum; "])
        if kind == "cosmology":
            text, second = lead + rng.choice(P("cosmology", "object")), ("cosmology", {"z": z})
        elif kind == "check":
            z0 = _num(rng, 0.01, 0.6)
            text = lead + rng.choice(P("redshift_check", "ask")).format(z=_z_text(rng, z0))
            second = ("redshift_check", {"z0": z0})
        else:
            text, second = lead + rng.choice(P("predict_redshift", "ask")), ("predict_redshift", {})
        calls = [("analyze_spectrum", {}, {"z": z, "spectype": typ}), second]
        text = _say(rng, text, 0.0)
    return text, calls


def _analyze_sdss(rng, o: Obj):
    i = _ident(rng)
    t = rng.choice(P("analyze_spectrum", "sdss"))
    lk = rng.choice(P("sdss_lookup", "ask")).format(i=i.text)
    return _say(rng, t.format(L=lk, i=i.text)), [("analyze_spectrum", {"sdss_id": i.text})]


def _cosmology(rng, o: Obj):
    """Distances and times: at a named z or the object's; sometimes a named cosmology, a line asked in
    the same breath, or two quantities in one request (one call)."""
    if o.z is None or rng.random() < 0.5:
        z = _z_value(rng)
        core = rng.choice(P("cosmology", "at_z")).format(z=_z_text(rng, z))
    else:
        z = o.z
        core = rng.choice(P("cosmology", "object"))
        if rng.random() < 0.2:
            core += rng.choice([", and ", "; also ", " - and ", ", plus "]) + rng.choice(P("cosmology", "object"))
    args: dict = {"z": z}
    r = rng.random()
    if r < 0.25:
        c = rng.choice(sorted(COSMO_FORMS))
        form = rng.choice(COSMO_FORMS[c])
        if rng.random() < 0.5:
            core = rng.choice(COSMO_FIRST).format(c=form) + core
        else:
            core += rng.choice([" using {c}", " with {c}", " in {c}", ", assuming {c}", " ({c})", " for {c}"]).format(c=form)
        args["cosmology"] = c
    elif r < 0.4:
        names, txt = _lines(rng, rng.choice([1, 1, 2]))
        core = rng.choice(["which wavelength does {l} get redshifted to, and ", "where does {l} land, and ",
                           "{l} position plus "]).format(l=txt) + core
        args["lines"] = names
    return _say(rng, core), [("cosmology", args)]


def _line_position(rng, o: Obj):
    names, txt = _lines(rng)
    if o.z is None or rng.random() < 0.45:
        z = _z_value(rng)
        core = rng.choice(P("cosmology", "lines_at_z")).format(l=txt, z=_z_text(rng, z))
    else:
        z, core = o.z, rng.choice(P("cosmology", "lines_object")).format(l=txt)
    return _say(rng, core), [("cosmology", {"z": z, "lines": names})]


def _hypothetical(rng, o: Obj):
    """A what-if at another redshift: the cosmology tool at the named z (the object's own is known)."""
    if o.z is None:
        return None
    z = _num(rng, 0.05, 4.0)
    return _say(rng, rng.choice(P("cosmology", "hypothetical")).format(z=_z_text(rng, z))), [("cosmology", {"z": z})]


def _measure(rng, o: Obj):
    if not _has(o):
        return None
    if rng.random() < 0.25:
        names, _ = _lines(rng, 2)
        table = _line_table()
        core = rng.choice(P("measure_spectrum", "line")).format(l=rng.choice(table[names[0]]), m=rng.choice(table[names[1]]))
    else:
        core = rng.choice(P("measure_spectrum", "ask"))
    return _say(rng, core), [("measure_spectrum", {"z": o.z, "spectype": o.typ})]


def _survey(rng, o: Obj):
    if o.z is None:
        return None
    if rng.random() < 0.4:
        a, b = rng.sample(SURVEY_FORMS, 2)
        core = rng.choice(["could {a} observe it", "is it within reach of {a}", "would {a} have targeted it",
                           "could {a} or {b} get its spectrum", "which of {a} or {b} could measure its redshift",
                           "is this object bright enough for {a}", "can {a} reach an object like this",
                           "is it in {a}'s redshift range"]).format(a=a, b=b)
    else:
        core = rng.choice(P("survey_reach", "ask"))
    return _say(rng, core), [("survey_reach", {"z": o.z, "spectype": o.typ})]


def _predict(rng, o: Obj):
    return (_say(rng, rng.choice(P("predict_redshift", "ask"))), [("predict_redshift", {})]) if o.has_spectrum else None


def _search(rng, o: Obj):
    return (_say(rng, rng.choice(P("find_redshift", "ask"))), [("find_redshift", {})]) if o.has_spectrum else None


def _check(rng, o: Obj):
    if not o.has_spectrum:
        return None
    if o.z is not None and o.source == "model" and rng.random() < 0.4:
        return _say(rng, rng.choice(P("redshift_check", "model"))), [("redshift_check", {"z0": o.z})]
    if rng.random() < 0.2:
        z = _num(rng, 0.001, 0.5)
        text = rng.choice(P("redshift_check", "after_predict") + P("redshift_check", "model"))
        return _say(rng, text), [("predict_redshift", {}, {"z": z}), ("redshift_check", {"z0": z})]
    z = _num(rng, 0.001, 0.8)
    return _say(rng, rng.choice(P("redshift_check", "ask")).format(z=_z_text(rng, z))), [("redshift_check", {"z0": z})]


def _lookup(rng, o: Obj):
    r = rng.random()
    if r < 0.25:
        ra, dec = round(rng.uniform(0, 359.99), rng.choice([2, 3, 4])), round(rng.uniform(-25, 85), rng.choice([2, 3, 4]))
        rad = rng.choice([1, 2, 5, 5, 10, 10, 15, 20, 30, 60, 120])
        pos = rng.choice(["RA {a}, Dec {d}", "ra={a} dec={d}", "{a} {d}", "({a}, {d})"]).format(
            a=format_number(ra), d=format_number(dec))
        core = rng.choice(["search SDSS within {r} arcsec of {p}", "anything in SDSS within {r}\" of {p}",
                           "look up {p} with a {r} arcsec radius", "SDSS spectra in a {r}-arcsec cone around {p}",
                           "find the SDSS object near {p}, radius {r} arcsec", "cone search {p}, {r} arcsec"]).format(r=rad, p=pos)
        return _say(rng, core), [("sdss_lookup", {"ra": ra, "dec": dec, "radius_arcsec": float(rad)})]
    i = _ident(rng)
    return _say(rng, rng.choice(P("sdss_lookup", "ask")).format(i=i.text)), [("sdss_lookup", i.args)]


def _lookup_then(rng, o: Obj):
    """A lookup, then a second call on what it found (its z and class are read back)."""
    i = _ident(rng)
    lk = rng.choice(P("sdss_lookup", "ask")).format(i=i.text)
    z, typ = _num(rng, 0.001, 0.6), rng.choice(["GALAXY"] * 4 + ["QSO"])
    first = ("sdss_lookup", i.args, {"z": z, "obj_class": typ})
    kind = rng.choice(["predict", "measure", "cosmo", "search", "survey", "lines"])
    if kind == "predict":
        return _say(rng, rng.choice(P("predict_redshift", "after_lookup")).format(L=lk)), [first, ("predict_redshift", {})]
    if kind == "measure":
        return (_say(rng, rng.choice(P("measure_spectrum", "after_lookup")).format(L=lk)),
                [first, ("measure_spectrum", {"z": z, "spectype": typ})])
    if kind == "cosmo":
        return _say(rng, rng.choice(P("cosmology", "after_lookup")).format(L=lk, i=i.text)), [first, ("cosmology", {"z": z})]
    if kind == "search":
        return _say(rng, rng.choice(P("find_redshift", "after_lookup")).format(L=lk)), [first, ("find_redshift", {})]
    if kind == "survey":
        return (_say(rng, rng.choice(P("survey_reach", "after_lookup")).format(L=lk)),
                [first, ("survey_reach", {"z": z, "spectype": typ})])
    names, txt = _lines(rng, rng.choice([1, 1, 2]))
    return (_say(rng, rng.choice(P("cosmology", "lines_after_lookup")).format(L=lk, l=txt)),
            [first, ("cosmology", {"z": z, "lines": names})])


def _two_questions(rng, o: Obj):
    """Distance and class, or distance and surveys, in one message: two calls in the order asked."""
    if not _has(o):
        return None
    if rng.random() < 0.55:
        return (_say(rng, rng.choice(P("measure_spectrum", "after_cosmology"))),
                [("cosmology", {"z": o.z}), ("measure_spectrum", {"z": o.z, "spectype": o.typ})])
    return (_say(rng, rng.choice(P("survey_reach", "after_cosmology"))),
            [("cosmology", {"z": o.z}), ("survey_reach", {"z": o.z, "spectype": o.typ})])


SINGLE_FOR_PAIRS = ("cosmology", "line_position", "hypothetical", "measure", "survey", "predict", "search", "check")
JOINERS = [" and then ", ", then ", "; also ", " - and ", ". Also, ", ", and ", " and ", "; then ", ". After that, ",
           " plus ", ", oh and ", ". Separately, ", ". And separately, ", ". In addition, ", ". Oh and ", ". Second, ",
           ". Afterwards, ", ". Plus, "]


def _pair(rng, o: Obj):
    """Two requests in one message, each a call, in the order written (the second is easy to drop)."""
    if not _has(o):
        return None
    a, b = rng.sample(SINGLE_FOR_PAIRS, 2)
    ga, gb = INTENTS[a][1](rng, o), INTENTS[b][1](rng, o)
    if not ga or not gb or ga[1][0][0] == gb[1][0][0] or len(ga[1]) + len(gb[1]) > 3:
        return None
    ta, tb = ga[0].rstrip("?.! "), gb[0]
    text = ta + rng.choice(JOINERS) + (tb[0].lower() + tb[1:] if tb else tb)
    return text, list(ga[1]) + list(gb[1])


def _read(rng, o: Obj):
    p = rng.choice(["/data/", "~/spectra/", "./", "/home/ana/sdss/", "C:/obs/", "../fits/", "../", "./reduced/",
                    "../data/", "~/obs/", "/scratch/"]) + rng.choice(
        ["spec-0266-51630-0461.fits", "ngc3522.fits", "target_12.csv", "galaxy.txt", "obj7.npz", "s.fits",
         "obj42_coadd.txt", "n5548_blue.fits", "target-07.csv", "coadd_final.fits", "spec_b12.txt"])
    return _say(rng, rng.choice(P("read_spectrum", "ask")).format(p=p), 0.0), [("read_spectrum", {"path": p})]


def _nothing(rng, o: Obj):
    """No call: chat, thanks and general questions, or a question about an object that is not loaded."""
    if o.z is None and not o.has_spectrum and rng.random() < 0.3:
        q = rng.choice(P("measure_spectrum", "ask") + P("survey_reach", "ask") + P("predict_redshift", "ask")[:4]
                       + P("cosmology", "object"))
        return _say(rng, q), []
    return _say(rng, rng.choice(P("none", "ask")), 0.0), []


INTENTS: dict[str, tuple[float, Callable]] = {
    "attached": (1.3, _attached), "analyze_sdss": (0.7, _analyze_sdss),
    "cosmology": (2.2, _cosmology), "line_position": (2.2, _line_position), "hypothetical": (0.5, _hypothetical),
    "measure": (2.4, _measure), "survey": (1.2, _survey), "predict": (0.7, _predict), "search": (0.7, _search),
    "check": (1.5, _check), "lookup": (2.0, _lookup), "lookup_then": (2.0, _lookup_then),
    "two_questions": (0.9, _two_questions), "read": (0.5, _read), "nothing": (1.2, _nothing),
    "pair": (2.6, _pair),
}
NO_OBJECT_NEEDED = ("lookup", "lookup_then", "nothing", "read", "analyze_sdss", "attached", "cosmology", "line_position")


def _result_for(name: str, rng: random.Random, given: dict | None) -> str:
    if given is not None:
        return result_summary(name, given)
    if name == "sdss_lookup":
        return result_summary(name, {"z": _num(rng, 0.001, 0.5), "obj_class": rng.choice(["GALAXY", "QSO"])})
    if name in ("predict_redshift", "find_redshift", "analyze_spectrum"):
        return result_summary(name, {"z": _num(rng, 0.001, 0.5), "spectype": "GALAXY"})
    return result_summary(name, {})


ERRORS = ["ValidationError: z must be >= 0", "SDSSError: no SDSS spectrum matches plate 9999 fiber 12",
          "SpectrumReadError: file not found", "SDSSError: SDSS did not answer (timeout)",
          "UnknownLineError: unknown spectral line 'Hx'"]


WRITTEN = Path(__file__).parent / "planner_written"


def written_items(folder: str | Path = WRITTEN) -> list[dict]:
    """The hand-written training requests ({text, context, plan} as in the held-out YAMLs), in file order:
    those written as training data and the held-out sets retired into training after their evaluation
    (``heldout_*.yaml``)."""
    import yaml

    out = []
    for f in sorted(Path(folder).glob("*.yaml")):
        for i, it in enumerate(yaml.safe_load(f.read_text()) or []):
            if "text" not in it or "plan" not in it:
                raise ValueError(f"{f.name}: item {i} needs text and plan")
            out.append(dict(it, source=f"{f.stem}:{i}"))
    return out


def _z_like(rng: random.Random, spectype: str | None) -> float:
    return _num(rng, 0.1, 4) if spectype == "QSO" else _num(rng, 0.0005, 0.8)


def _as_given(rng: random.Random, item: dict, redraw: bool) -> tuple[dict, list[dict]]:
    """The item's context and calls — with ``redraw``, its thread's z (and an attached file's analysed z)
    redrawn where the text does not write that number, so the planner learns to copy the z it is given
    rather than the one it saw."""
    ctx = dict(item.get("context") or {})
    swap = {}
    z = ctx.get("z")
    if redraw and isinstance(z, (int, float)) and z > 0 and format_number(z) not in item["text"]:
        swap[float(z)] = ctx["z"] = _z_like(rng, ctx.get("spectype") or "GALAXY")
    calls = []
    for c in item["plan"]:
        out = dict(c["output"]) if c.get("output") else None
        c = {"name": c["name"], "args": dict(c.get("args") or {}), "output": out}
        if redraw and out and isinstance(out.get("z"), (int, float)) and format_number(out["z"]) not in item["text"]:
            swap[float(out["z"])] = out["z"] = _z_like(rng, out.get("spectype"))
        for k in ("z", "z0"):
            v = c["args"].get(k)
            if isinstance(v, (int, float)) and float(v) in swap and format_number(v) not in item["text"]:
                c["args"][k] = swap[float(v)]
        calls.append(c)
    return ctx, calls


def _written_requests(rng: random.Random, copies: int = 2) -> list[dict]:
    """Every hand-written request as written, and ``copies - 1`` times with its z redrawn."""
    out = []
    for it in written_items():
        for k in range(copies):
            ctx, calls = _as_given(rng, it, redraw=k > 0)
            line = context_line(ctx.get("z"), ctx.get("z_source"), ctx.get("spectype"), bool(ctx.get("has_spectrum")),
                                bool(ctx.get("attached")))
            plan = [{"name": c["name"], "args": c["args"], "result": _result_for(c["name"], rng, c["output"])}
                    for c in calls]
            out.append({"text": it["text"], "context": line, "intent": "written", "plan": plan})
    return out


def generate(n: int, seed: int = 0) -> list[dict]:
    """``n`` generated requests: {text, context, intent, plan: [{name, args, result}]} (plans may be
    empty), then the hand-written ones (:func:`written_items`, twice each); the same (n, seed) always
    gives the same requests."""
    rng = random.Random(seed)
    names, weights = zip(*((k, w) for k, (w, _) in INTENTS.items()))
    out = []
    while len(out) < n:
        intent = rng.choices(names, weights)[0]
        obj = _obj(rng, need=intent not in NO_OBJECT_NEEDED)
        got = INTENTS[intent][1](rng, obj)
        if got is None:
            continue
        text, calls = got
        plan = [{"name": c[0], "args": c[1], "result": _result_for(c[0], rng, c[2] if len(c) > 2 else None)}
                for c in calls]
        if plan and rng.random() < 0.06:  # the first call fails: the plan ends there
            plan = [dict(plan[0], result=result_summary(plan[0]["name"], error=rng.choice(ERRORS)))]
        out.append({"text": text, "context": obj.line(), "intent": intent, "plan": plan})
    return out + _written_requests(rng)


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
    clash = [t for t in held_out_texts if _norm(t) in seen and _norm(t)]
    if clash:
        raise ValueError(f"{len(clash)} held-out phrasings are in the training requests, e.g. {clash[:3]}")


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_dataset(out: str | Path, n: int, seed: int = 0, val_frac: float = 0.05, held_out=None) -> dict:
    """Write ``out/{train,val}.jsonl`` (requests with their rendered ``steps``) and ``meta.json``."""
    reqs = generate(n, seed)
    if held_out is not None:
        assert_not_in(held_out, reqs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n_val = max(1, int(round(val_frac * n)))
    splits = {"val": reqs[:n_val], "train": reqs[n_val:]}
    for k, rs in splits.items():
        with open(out / f"{k}.jsonl", "w") as f:
            for i, r in enumerate(rs):
                f.write(json.dumps({"id": f"{k}-{seed}-{i}", **r, "steps": step_examples(r)}, ensure_ascii=False) + "\n")
    meta = {"format": FORMAT, "format_version": 2, "n": n, "seed": seed, "generator_version": GENERATOR_VERSION,
            "generator_commit": _commit(), "simulated": True,
            "source": "synthetic planner requests (speclm.agent.planner_data)",
            "counts": {k: len(v) for k, v in splits.items()},
            "steps": {k: sum(len(r["plan"]) + 1 for r in v) for k, v in splits.items()}}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def read_split(path: str | Path, split: str) -> list[dict]:
    with open(Path(path) / f"{split}.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]
