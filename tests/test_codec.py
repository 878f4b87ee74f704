"""The spectrum<->text codec: the paper's exact format, exact round trips, validation."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from speclm.finetune.codec import (CodecConfig, DecodeError, build_prompt, decode_values, encode_values,
                                   format_redshift, parse_redshift, token_report)
from speclm.tools.errors import ConfigError


def test_paper_example_exact():
    # Paper §3.1: [4.56, 7.54, 11.2] -> "4|5|6, 7|5|4, 1|1|2|0, "
    assert encode_values([4.56, 7.54, 11.2], CodecConfig.paper()) == "4|5|6, 7|5|4, 1|1|2|0, "


def test_paper_negative_and_zero():
    cfg = CodecConfig.paper()
    assert encode_values([-0.5, 0.0], cfg) == "-5|0, 0, "
    np.testing.assert_allclose(decode_values("-5|0, 0, ", cfg), [-0.5, 0.0])


def test_prompt_has_paper_prefixes():
    text = build_prompt([1.0, 2.0], CodecConfig.paper())
    assert text.startswith("Galaxy spectrum is rescaled and encoded to an input series: ")
    assert text.endswith("\nRedshift: ")


def test_fixed_width_without_separator_parses():
    cfg = CodecConfig(width=2, value_sep="", digit_sep="")
    s = encode_values([3, 45, 99, 0], cfg)
    assert s == "03459900"
    np.testing.assert_array_equal(decode_values(s, cfg), [3, 45, 99, 0])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-999, 999, allow_nan=False), min_size=1, max_size=40),
       st.sampled_from([2, 8, 10, 16, 36]), st.integers(0, 3), st.sampled_from(["|", "", " "]))
def test_round_trip_variable_width(values, base, prec, dsep):
    cfg = CodecConfig(base=base, precision=prec, width=0, signed=True, digit_sep=dsep, value_sep=", ")
    dec = decode_values(encode_values(values, cfg), cfg)
    want = [round(abs(v) * base**prec) * (1 if v >= 0 else -1) / base**prec for v in values]
    np.testing.assert_allclose(dec, want, rtol=0, atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 999), min_size=1, max_size=40), st.sampled_from(["", " ", ","]),
       st.sampled_from(["", "|"]))
def test_round_trip_fixed_width(values, vsep, dsep):
    cfg = CodecConfig(width=3, precision=0, value_sep=vsep, digit_sep=dsep)
    np.testing.assert_array_equal(decode_values(encode_values(values, cfg), cfg), values)


def test_validation_errors():
    with pytest.raises(ConfigError):
        CodecConfig(width=0, value_sep="")
    with pytest.raises(ConfigError):
        CodecConfig(value_sep="5")
    with pytest.raises(ConfigError):
        encode_values([-1.0], CodecConfig())  # unsigned
    with pytest.raises(ConfigError):
        encode_values([100.0], CodecConfig(width=2))
    with pytest.raises(DecodeError):
        decode_values("1|2, x|y, ", CodecConfig.paper())


def test_redshift_format_and_parse():
    cfg = CodecConfig()
    assert format_redshift(0.31549, cfg) == "0.315"
    assert format_redshift(-0.2, cfg) == "0.000"
    assert parse_redshift(" 0.315\n", cfg) == pytest.approx(0.315)
    with pytest.raises(DecodeError):
        parse_redshift("banana", cfg)


class _CharTok:
    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": list(range(len(text)))}


def test_token_report_counts():
    r = token_report(["abc", "abcde"], _CharTok())
    assert r["mean"] == 4 and r["min"] == 3 and r["max"] == 5
