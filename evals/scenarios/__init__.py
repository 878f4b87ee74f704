"""Scripted agent evaluations: multi-turn conversations in YAML, run against the real graph.

Why scenarios and not unit tests of nodes: what a user meets is a *conversation* — upload a
spectrum, ask a follow-up, upload a broken file, ask something off-topic. Each scenario here is
one such conversation, played through :class:`speclm.agent.assistant.Assistant` (the same object
the UI and the demo use) in a fresh thread with its own SQLite checkpoint, and every turn's
``TurnResult`` is checked against declarative expectations. The suite ships as package data
(``evals/scenarios/*.yaml``); ``speclm eval agent`` runs it and exits 1 if any check fails, so CI
can use it.

Scenario file (one mapping, a list of them, or ``{scenarios: [...]}``)::

    name: followup_cosmology            # unique, [a-z0-9_-]
    description: why this conversation matters
    model_dependent: false              # true: the checks measure model quality (z accuracy)
    needs: [sdss_server]                # the runner starts the loopback SDSS server (speclm.tools.sdss_sim)
    sdss_objects: {n: 4, seed: 1}       # what that server serves (default n=4, seed=1)
    adapter_mode: toggle                # optional: pin the mode instead of the run's --adapter-mode
    turns:
      - text: "Here is a galaxy spectrum. What is its redshift?"
        spectrum: ppxf:NGC3522          # see FIXTURES below
        sdss_id: "{sdss[0].name}"       # optional; {sdss[i].name|specobjid|z} -> served object i
        expect: {route: spectrum, ...}  # see CHECKS below

Spectrum fixtures (written into a temp directory by the runner):

* ``ppxf:NGC3522`` / ``ppxf:NGC3073`` — real SDSS DR18 spectra shipped in the ppxf wheel; truth z = the file's
  SPECOBJ Z. Scenario is SKIPPED when ppxf is not installed.
* ``synthetic:<z>[:<seed>]`` — an SDSS-layout FITS with Gaussian emission/absorption lines at z
  (``speclm.tools.synthetic``, the demo's spectrum); truth z = z.
* ``simulated:<seed>`` — spectrum 0 of ``finetune.simulate`` with that seed (bagpipes; the adapter's
  training distribution, ~1 min to build on a CPU), exported with ``write_sdss_spec_fits``.
* ``file:<path>`` — any spectrum file (relative to the scenario file); truth = its catalog z.
* ``bad:<kind>`` — a broken file: empty, truncated, image, junk, binary, missing.

Redshift tolerance (``z_within``) is a per-check setting. The shipped choices: the *model's* z is
checked against the catalog with ``tol: 0.05`` (absolute; the bundled 135M adapter's typical
error on SDSS-like spectra is a few 0.01, and a random adapter is far outside it), and the *trusted*
z (the one the thread uses after the line check) within ``0.002`` of the catalog, evaluated only
``when: confident`` — a confident line fit pins z to ~1e-4, so 0.002 leaves room only for an
honest fit, not for a wrong line identification. Scenarios that measure model quality say
``model_dependent: true``; ``--ignore-model-dependent`` keeps their failures out of the exit code
(for smoke runs with the random ``tiny`` model).
"""
from __future__ import annotations

from speclm.evals.scenarios.checks import CHECKS, Check, TurnContext
from speclm.evals.scenarios.cli import register_eval
from speclm.evals.scenarios.fixtures import Fixtures
from speclm.evals.scenarios.runner import (AgentEvalConfig, format_table, load_runtime, run_scenario,
                                           run_suite, write_report)
from speclm.evals.scenarios.schema import (FAIL, PASS, SKIP, SCENARIO_DIR, FixtureUnavailable, Scenario,
                                           ScenarioError, Turn, load_scenarios, parse_fixture, parse_scenario,
                                           select)

__all__ = ["CHECKS", "Check", "TurnContext", "register_eval", "Fixtures", "AgentEvalConfig", "format_table",
           "load_runtime", "run_scenario", "run_suite", "write_report", "FAIL", "PASS", "SKIP", "SCENARIO_DIR",
           "FixtureUnavailable", "Scenario", "ScenarioError", "Turn", "load_scenarios", "parse_fixture",
           "parse_scenario", "select"]
