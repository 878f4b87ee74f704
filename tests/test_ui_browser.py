"""End-to-end: the real chat app in headless Chromium (Debian's /usr/bin/chromium via playwright).

The app runs in-process on a free port with the real Assistant on the tiny random base model and
an untrained adapter (fast; the numbers are noise but every path is the real one). The test plays
a user: upload a FITS -> a redshift and a plot appear; ask a follow-up -> the answer quotes the
cosmology tool's lookback time; upload an empty file -> an error message in the chat; upload a
good file -> it still works. Screenshots go to tmp_path (and to $SPECLM_SCREENSHOT_DIR if set).

Never runs `playwright install`: there is no download here; Chromium comes from apt
(`apt-get install -y chromium`).
"""
from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
FOLLOW_UP = ("What type of galaxy is expected at the redshift you just predicted? "
             "Which surveys could observe it?")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _emission_fits(path: Path, z: float = 0.1) -> Path:
    """An SDSS-layout spec file with a continuum and strong Hα, [O III], Hβ, [O II] at z."""
    from speclm.tools import lines
    from speclm.tools.spectrum import write_sdss_spec_fits

    loglam = np.arange(3.5798, 3.9640, 1e-4)
    wave = 10 ** loglam
    flux = 5.0 + 0.5 * np.sin(wave / 700.0)
    for name, amp in (("Halpha", 40), ("OIII5008", 25), ("Hbeta", 12), ("OII", 20), ("NII6585", 12)):
        flux += amp * np.exp(-0.5 * ((wave - lines.observed(name, z)) / 2.5) ** 2)
    rng = np.random.default_rng(1)
    flux += rng.normal(0, 0.3, wave.size)
    return write_sdss_spec_fits(path, loglam, flux, np.full(wave.size, 1 / 0.09), z)


class Shots:
    def __init__(self, tmp: Path):
        self.dir = tmp / "screens"
        self.dir.mkdir()
        self.extra = os.environ.get("SPECLM_SCREENSHOT_DIR")

    def __call__(self, page, name: str) -> None:
        out = self.dir / f"{name}.png"
        page.screenshot(path=str(out), full_page=True)
        if self.extra:
            shutil.copy(out, Path(self.extra) / f"speclm_ui_{name}.png")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    pytest.importorskip("playwright")
    from speclm.finetune.presets import get_preset
    from speclm.finetune.train import init_adapter
    from speclm.ui.app import ChatConfig, launch, make_assistant
    from speclm.ui.examples import sdss_examples

    tmp = tmp_path_factory.mktemp("ui_e2e")
    adapter = init_adapter(get_preset("tiny"), tmp / "adapter")
    from speclm.agent.config import AgentConfig

    cfg = ChatConfig(agent=AgentConfig(base="tiny", adapter=str(adapter), checkpoint_db=str(tmp / "chat.sqlite")),
                     port=_free_port(), max_upload_mb=5, n_simulated_examples=0)
    srv = launch(cfg, assistant=make_assistant(cfg), examples=sdss_examples(), block=False)
    yield srv
    srv.demo.close()


def _wait_turns(service, n: int, timeout: float = 240.0) -> None:
    t0 = time.time()
    while service.turns_done < n:
        if time.time() - t0 > timeout:
            raise AssertionError(f"only {service.turns_done} of {n} turns finished in {timeout:.0f} s")
        time.sleep(0.2)


def test_chat_end_to_end(served, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from speclm.tools.cosmology import summarize

    shots = Shots(tmp_path)
    service = served.service
    good = _emission_fits(tmp_path / "spec-emission.fits")
    empty = tmp_path / "empty.fits"
    empty.touch()
    t_start = time.perf_counter()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.set_default_timeout(240_000)
            expect.set_options(timeout=120_000)  # a loaded CI machine can take seconds per UI event
            page.goto(served.url)
            chat = page.locator("#speclm-chat")
            zpanel = page.locator("#speclm-redshift")
            file_input = page.locator("#speclm-upload input[type=file]")
            expect(zpanel).to_contain_text("No redshift yet")
            # examples are one click away, labelled with their provenance
            expect(page.locator("#speclm-example-0")).to_contain_text("real SDSS DR18")

            # 1. upload a FITS: a redshift with its 68% interval and a plot appear
            file_input.set_input_files(str(good))
            _wait_turns(service, 1)
            first = next(reversed(service.last_results.values()))
            assert first.route == "spectrum" and first.prediction is not None, first
            expect(zpanel).to_contain_text(f"z = {first.z:.4f}")
            expect(zpanel).to_contain_text("68% interval")
            expect(page.locator("#speclm-plot img")).to_be_visible()
            expect(chat).to_contain_text("spec-emission.fits")
            expect(chat).to_contain_text(first.reply.split("\n")[0].replace("**", "")[:60])
            shots(page, "1_upload")

            # 2. follow-up: planned to the measurement and survey tools; the answer also quotes the
            # cosmology tool's lookback time for the stored z (from the upload's analysis)
            box = page.locator("#speclm-msg textarea")
            box.fill(FOLLOW_UP)
            box.press("Enter")
            _wait_turns(service, 2)
            follow = next(reversed(service.last_results.values()))
            assert follow.error is None, follow.error
            assert [c["name"] for c in follow.plan] == ["measure_spectrum", "survey_reach"], follow.plan
            assert follow.cosmology is not None, "the follow-up's answer used no cosmology"
            lookback = follow.cosmology["lookback_gyr"]
            assert lookback == pytest.approx(summarize(follow.z).lookback_gyr, rel=1e-6)
            expect(chat).to_contain_text(f"{lookback:.3g} Gyr")
            expect(chat).to_contain_text("What type of galaxy")
            page.locator("#speclm-trace-accordion").get_by_text("Tool trace").click()
            expect(page.locator("#speclm-trace")).to_contain_text("survey_reach")
            expect(page.locator("#speclm-trace")).to_contain_text("measure_spectrum")
            shots(page, "2_follow_up")

            # 2b. check a redshift against the lines: the fit refines it, the panel and the plot
            #     follow (matched lines are then marked on the plot; see 2b_line_check.png)
            box.fill("Check the redshift z = 0.1 against the spectrum's lines")
            box.press("Enter")
            _wait_turns(service, 3)
            checked = next(reversed(service.last_results.values()))
            assert checked.route == "check" and checked.check is not None
            assert checked.check["confident"] and checked.z == pytest.approx(0.1, abs=3e-4), checked.check
            expect(zpanel).to_contain_text(f"z = {checked.z:.4f} (line fit)")
            expect(zpanel).to_contain_text("line check: confident")
            shots(page, "2b_line_check")

            # 3. a bad upload: an error message in the chat, nothing else breaks
            file_input.set_input_files(str(empty))
            expect(chat).to_contain_text("I could not use that file")
            expect(chat).to_contain_text("empty.fits")
            shots(page, "3_bad_upload")
            assert service.turns_done == 3  # the empty file never reached the assistant

            # 4. the next good upload still works (a real SDSS spectrum via its example button)
            page.locator("#speclm-example-1").click()
            _wait_turns(service, 4)
            last = next(reversed(service.last_results.values()))
            assert last.route == "spectrum" and last.prediction is not None
            expect(zpanel).to_contain_text(f"z = {last.z:.4f}")
            expect(chat).to_contain_text("NGC3073_SDSS_DR18.fits")
            assert len(service.last_results) == 1  # one tab = one agent thread throughout
            messages = chat.locator(".message-row")
            expect(messages).to_have_count(10)
            shots(page, "4_good_again")

            # 5. two sessions at once: a second tab uploads while the first asks a question;
            #    each tab sees only its own conversation and both finish
            other = browser.new_context().new_page()
            other.set_default_timeout(240_000)
            other.goto(served.url)
            expect(other.locator("#speclm-redshift")).to_contain_text("No redshift yet")
            other.locator("#speclm-upload input[type=file]").set_input_files(str(good))
            box.fill("How far away is it?")
            box.press("Enter")
            _wait_turns(service, 6)
            assert len(service.last_results) == 2  # two tabs, two agent threads
            expect(other.locator("#speclm-chat .message-row")).to_have_count(2)
            expect(other.locator("#speclm-redshift")).to_contain_text("68% interval")
            expect(messages).to_have_count(12)
            expect(chat).to_contain_text("How far away is it?")
            expect(other.locator("#speclm-chat")).not_to_contain_text("How far away is it?")
            shots(other, "5_second_session")
        finally:
            browser.close()
    print(f"browser flow took {time.perf_counter() - t_start:.1f} s")


def test_chat_reads_desi_uploads(served, tmp_path, desi_data_dir):
    """A real DESI coadd and a 3-target DESI-format file uploaded in the browser: the reply names the
    survey and the TARGETID, and for the multi-target file says it answered the first of 3."""
    from playwright.sync_api import expect, sync_playwright

    from speclm.tools.spectrum_desi import write_desi_coadd
    from speclm.tools.synthetic import synthetic_spectrum

    shots = Shots(tmp_path)
    service = served.service
    sims = [synthetic_spectrum(z, seed=i) for i, z in enumerate((0.12, 0.25, 0.33))]
    multi = write_desi_coadd(tmp_path / "coadd-three.fits", [(s.wavelength, s.flux, s.ivar) for s in sims],
                             targetids=[5001, 5002, 5003], z=[0.12, 0.25, 0.33], redrock="inside")
    real = desi_data_dir / "coadd-4-80613-thru20210324.fits"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.set_default_timeout(240_000)
            expect.set_options(timeout=120_000)
            page.goto(served.url)
            chat = page.locator("#speclm-chat")
            zpanel = page.locator("#speclm-redshift")
            file_input = page.locator("#speclm-upload input[type=file]")
            n0 = service.turns_done
            file_input.set_input_files(str(real))
            _wait_turns(service, n0 + 1)
            r = next(reversed(service.last_results.values()))
            assert r.route == "spectrum" and r.prediction is not None and r.error is None
            expect(chat).to_contain_text("TARGETID 39633345008634465 (DESI)")
            expect(chat).to_contain_text("3600–9824 Å")
            expect(zpanel).to_contain_text(f"z = {r.z:.4f}")
            expect(page.locator("#speclm-plot img")).to_be_visible()
            shots(page, "6_desi_upload")

            file_input.set_input_files(str(multi))
            _wait_turns(service, n0 + 2)
            r = next(reversed(service.last_results.values()))
            assert r.route == "spectrum" and r.error is None
            expect(chat).to_contain_text("TARGETID 5001 (DESI)")
            expect(chat).to_contain_text("The file holds 3 targets; this is target 1 of 3")
            shots(page, "7_desi_multi_target")
        finally:
            browser.close()
