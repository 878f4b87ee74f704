"""Upload checks of the chat: every bad file becomes one chat message and the session goes on.

These run the real ChatService with no model: a file that fails validation never reaches the
assistant, so ``assistant=None`` proves that (any call on it would raise and show up as a
different message).
"""
from __future__ import annotations

import numpy as np
import pytest

from speclm.tools.errors import EmptyFileError, FileTooLargeError, UnsupportedFormatError
from speclm.ui.app import ChatConfig, ChatService, redshift_html


@pytest.fixture
def service():
    return ChatService(None, max_upload_bytes=2 * 1024 * 1024)


def _turn(service, path, session=None, history=None):
    return list(service.respond(history or [], "", upload=str(path), session=session))


@pytest.mark.parametrize("kind", ["empty", "truncated_fits", "fits_no_coadd", "nan_flux", "zero_ivar",
                                  "non_monotonic", "out_of_range", "too_few_pixels", "junk_csv",
                                  "image_fits", "too_large", "binary_unknown"])
def test_bad_upload_is_one_error_message(service, bad_inputs, kind):
    path = bad_inputs(kind)
    updates = _turn(service, path)
    assert len(updates) == 1
    hist = updates[0].history
    assert [m["role"] for m in hist] == ["user", "assistant"]
    assert hist[0]["content"].startswith(f"File: {path.name}")
    msg = hist[1]["content"]
    assert msg.startswith("⚠ I could not use that file: ") and path.name in msg
    assert str(path.parent) not in msg  # the temp directory of an upload is noise for a user
    assert updates[0].session["spectrum_path"] is None


def test_size_limit_is_checked_before_reading(service, tmp_path):
    big = tmp_path / "big.fits"
    with open(big, "wb") as fh:
        fh.write(b"SIMPLE  =                    T".ljust(80))
        fh.truncate(3 * 1024 * 1024)
    with pytest.raises(FileTooLargeError, match="over the upload limit of 2 MiB"):
        service.validate_upload(big)


def test_extension_and_empty_file_errors(service, tmp_path):
    p = tmp_path / "spec.exe"
    p.write_bytes(b"MZ" + bytes(200))
    with pytest.raises(UnsupportedFormatError, match="unsupported file type"):
        service.validate_upload(p)
    e = tmp_path / "empty.fits"
    e.touch()
    with pytest.raises(EmptyFileError):
        service.validate_upload(e)


def test_good_formats_pass_validation(service, tmp_path, ngc3522_fits):
    wave = np.geomspace(3800, 9200, 500)
    flux = np.ones_like(wave)
    np.savetxt(tmp_path / "s.csv", np.c_[wave, flux, 0.1 * flux], delimiter=",")
    np.save(tmp_path / "s.npy", np.vstack([wave, flux]))
    np.savez(tmp_path / "s.npz", wavelength=wave, flux=flux, ivar=flux)
    np.savetxt(tmp_path / "s.txt", np.c_[wave, flux])
    for name in ("s.csv", "s.npy", "s.npz", "s.txt"):
        assert service.validate_upload(tmp_path / name).n_pixels == 500
    assert service.validate_upload(ngc3522_fits).z_catalog is not None


def test_session_goes_on_after_an_error(service, bad_inputs):
    session = service.new_session()
    first = _turn(service, bad_inputs("empty"), session=session)[-1]
    second = _turn(service, bad_inputs("junk_csv"), session=first.session, history=first.history)[-1]
    assert len(second.history) == 4 and second.session["thread_id"] == session["thread_id"]


def test_sessions_get_distinct_threads():
    ids = {ChatService.new_session()["thread_id"] for _ in range(50)}
    assert len(ids) == 50


def test_redshift_panel_shows_z_and_interval():
    pred = {"z": 0.12345, "z_lo": 0.1201, "z_hi": 0.1262}
    html = redshift_html(pred, {"z": 0.12351, "confident": True, "lines": [{}, {}, {}]}, adapter_on=True)
    assert "z = 0.1235" in html and "68% interval: 0.1201 – 0.1262" in html and "(model)" in html
    assert "refined z = 0.12351 from 3 lines" in html and "adapter on" in html
    # a line fit that moved z: the big number is the z in use, the model's own z stays visible
    moved = redshift_html(pred, {"z": 0.2, "confident": True, "lines": [{}]}, z=0.2, z_source="line fit")
    assert "z = 0.2000 <span" in moved and "(line fit)" in moved and "model z = 0.1235, 68% interval" in moved
    assert "No redshift yet" in redshift_html(None)
    assert "&lt;b&gt;" in redshift_html({"z": 0.1}, {"confident": False, "reason": "<b>"})


def test_chat_config_validation():
    from speclm.tools.errors import ConfigError

    assert ChatConfig(max_upload_mb=1.5).max_upload_bytes == int(1.5 * 2**20)
    assert ChatConfig(agent={"adapter": "none"}).agent.adapter is None  # the assistant's one config
    assert ChatConfig().agent.planner == "model"  # the chat plans with the embedded model by default
    for bad in ({"port": 70000}, {"agent": {"adapter_mode": "sometimes"}}, {"max_upload_mb": 0}, {"concurrency": 0},
                {"agent": 3}):
        with pytest.raises(ConfigError):
            ChatConfig(**bad)


def test_cli_registers_chat():
    from speclm.cli import build_parser

    args = build_parser().parse_args(["chat", "--port", "7999", "--max-upload-mb", "5", "--share", "no",
                                      "--base", "tiny", "--adapter-mode", "always"])
    assert (args.port, args.max_upload_mb, args.share, args.base, args.adapter_mode) == (7999, 5.0, False,
                                                                                        "tiny", "always")
    assert args.func.__name__ == "_chat"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["chat", "--share", "maybe"])
