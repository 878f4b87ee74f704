"""The spectrum <-> text codec (paper §3.1, after LLMTime's serializer).

Why it is configurable: what is cheap for one tokenizer is wasteful for another. SmolLM2's
tokenizer already splits every digit into its own token, so the paper's '|' between digits only
doubles the sequence there; Llama-3's tokenizer groups up to three digits, where '|' forces one
token per digit. Presets pick per tokenizer; the paper's exact settings stay available
(`CodecConfig.paper()`).

Format of a series: every value is written as an integer ``round(x * base**precision)`` in the
given base, digits joined by ``digit_sep``; with ``width == 0`` leading zeros are dropped (the
paper), with ``width > 0`` values are zero-padded to a fixed width (then ``value_sep`` may be empty
and the text still parses). Every value is followed by ``value_sep``; a negative value is
prefixed with ``minus_sign`` (the space after the paper's comma is what reads as a positive sign).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from speclm.tools.config import Config, setting
from speclm.tools.errors import ConfigError, SpeclmError

DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


class DecodeError(SpeclmError):
    """Text that does not parse back into values under the given codec."""


@dataclass(frozen=True)
class CodecConfig(Config):
    """How a vector of numbers becomes the text a language model reads, and how z is answered."""

    base: int = setting(10, "Number base of the digits (2..36).")
    precision: int = setting(0, "Digits kept after the radix point; values are stored as round(x*base**precision).")
    width: int = setting(2, "Fixed number of digits per value (zero-padded); 0 = variable length without leading zeros (paper).")
    signed: bool = setting(False, "Allow negative values (written with minus_sign); if False negatives are an error.")
    minus_sign: str = setting("-", "Prefix of negative values when signed.")
    digit_sep: str = setting("", "Text between the digits of one value (paper: '|').")
    value_sep: str = setting(" ", "Text after every value (paper: ', ').")
    prompt_prefix: str = setting(
        "Galaxy spectrum is rescaled and encoded to an input series:",
        "Text before the series (paper's wording).",
    )
    answer_prefix: str = setting("Redshift: ", "Text that starts the answer; the model continues with the number.")
    z_decimals: int = setting(3, "Decimals of the redshift in the answer (0.001 resolution by default).")
    z_int_digits: int = setting(1, "Digits before the point in the answer (1 -> z < 10).")

    def __post_init__(self):
        if not 2 <= self.base <= 36:
            raise ConfigError(f"base must be in [2, 36], got {self.base}")
        if not 0 <= self.precision <= 6:
            raise ConfigError(f"precision must be in [0, 6], got {self.precision}")
        if not 0 <= self.width <= 12:
            raise ConfigError(f"width must be in [0, 12], got {self.width}")
        if self.width == 0 and self.value_sep == "":
            raise ConfigError("variable-width values (width=0) need a non-empty value_sep to be parseable")
        for name in ("digit_sep", "value_sep", "minus_sign"):
            s = getattr(self, name)
            if any(c in DIGITS[: self.base] for c in s.lower()):
                raise ConfigError(f"{name}={s!r} contains a digit of base {self.base}; the text would not parse")
        if self.signed and not self.minus_sign:
            raise ConfigError("signed codecs need a non-empty minus_sign")
        if self.digit_sep and self.digit_sep == self.value_sep:
            raise ConfigError("digit_sep and value_sep must differ")
        if not 1 <= self.z_decimals <= 6 or not 1 <= self.z_int_digits <= 2:
            raise ConfigError("z_decimals must be in [1, 6] and z_int_digits in [1, 2]")

    @classmethod
    def paper(cls) -> "CodecConfig":
        """The paper's serializer: base 10, precision 2, '|' between digits, ', ' between values."""
        return cls(base=10, precision=2, width=0, signed=True, minus_sign="-", digit_sep="|", value_sep=", ")



    @property
    def max_value(self) -> float:
        """Largest encodable magnitude (fixed width only); inf for variable width."""
        if self.width == 0:
            return math.inf
        return (self.base**self.width - 1) / self.base**self.precision


def _int_to_digits(n: int, base: int) -> str:
    if n == 0:
        return "0"
    out = []
    while n:
        n, r = divmod(n, base)
        out.append(DIGITS[r])
    return "".join(reversed(out))


def encode_value(x: float, cfg: CodecConfig) -> str:
    if not math.isfinite(x):
        raise ConfigError(f"cannot encode non-finite value {x}")
    n = int(round(abs(x) * cfg.base**cfg.precision))
    neg = x < 0 and n != 0
    if neg and not cfg.signed:
        raise ConfigError(f"negative value {x} but codec is unsigned (clip values in preprocessing)")
    digits = _int_to_digits(n, cfg.base)
    if cfg.width:
        if len(digits) > cfg.width:
            raise ConfigError(f"value {x} needs {len(digits)} digits, codec width is {cfg.width}")
        digits = digits.rjust(cfg.width, "0")
    body = cfg.digit_sep.join(digits)
    return (cfg.minus_sign if neg else "") + body


def encode_values(values: Iterable[float], cfg: CodecConfig) -> str:
    """Serialize a vector: every value followed by ``value_sep`` (the paper's trailing ', ')."""
    return "".join(encode_value(float(v), cfg) + cfg.value_sep for v in values)


def decode_values(text: str, cfg: CodecConfig) -> np.ndarray:
    """Inverse of :func:`encode_values` (exact at the codec's precision)."""
    scale = cfg.base**cfg.precision
    chunks: list[str]
    if cfg.value_sep:
        if not text.endswith(cfg.value_sep):
            raise DecodeError("series does not end with the value separator")
        chunks = text[: -len(cfg.value_sep)].split(cfg.value_sep) if text else []
    else:
        step = cfg.width * (1 + len(cfg.digit_sep)) - len(cfg.digit_sep)
        chunks, i = [], 0
        while i < len(text):
            neg = cfg.signed and text.startswith(cfg.minus_sign, i)
            j = i + (len(cfg.minus_sign) if neg else 0)
            chunks.append(text[i : j + step])
            i = j + step
    out = []
    for c in chunks:
        neg = cfg.signed and c.startswith(cfg.minus_sign)
        body = c[len(cfg.minus_sign) :] if neg else c
        digits = body.replace(cfg.digit_sep, "") if cfg.digit_sep else body
        try:
            n = int(digits, cfg.base)
        except ValueError:
            raise DecodeError(f"not a base-{cfg.base} number: {c!r}") from None
        out.append((-n if neg else n) / scale)
    return np.asarray(out, dtype=np.float64)


def build_prompt(values: Sequence[float], cfg: CodecConfig) -> str:
    """The exact text the model reads for one spectrum, ending with the answer prefix."""
    return f"{cfg.prompt_prefix} {encode_values(values, cfg)}\n{cfg.answer_prefix}"


def format_redshift(z: float, cfg: CodecConfig) -> str:
    """The answer text after the prefix, e.g. '0.315' (fixed decimals so decoding can be constrained)."""
    hi = 10**cfg.z_int_digits - 10.0**-cfg.z_decimals
    z = min(max(float(z), 0.0), hi)
    return f"{z:.{cfg.z_decimals}f}"


def parse_redshift(text: str, cfg: CodecConfig) -> float:
    """Parse the model's answer (after the prefix); raises DecodeError on anything malformed."""
    s = text.strip().split()[0] if text.strip() else ""
    try:
        z = float(s)
    except ValueError:
        raise DecodeError(f"answer is not a number: {text!r}") from None
    if not math.isfinite(z) or z < 0:
        raise DecodeError(f"answer is not a valid redshift: {text!r}")
    return z


def token_report(texts: Sequence[str], tokenizer) -> dict:
    """Tokens per encoded spectrum under a tokenizer: what training and inference pay per example."""
    n = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    arr = np.asarray(n)
    return {"n": int(arr.size), "mean": float(arr.mean()), "min": int(arr.min()), "max": int(arr.max()),
            "chars_mean": float(np.mean([len(t) for t in texts]))}
