"""The one config base: help on every field, strict dict round trips, CLI options from fields."""
from __future__ import annotations

import argparse
import dataclasses

import pytest

from speclm.tools.config import Config
from speclm.tools.errors import ConfigError


def _configs():
    from speclm.agent.config import AgentConfig
    from speclm.evals.baseline import KNNConfig
    from speclm.evals.redshift import RedshiftEvalConfig
    from speclm.finetune.codec import CodecConfig
    from speclm.finetune.preprocess import PreprocessConfig
    from speclm.finetune.simulate import SimConfig
    from speclm.tools.measure import MeasureConfig
    from speclm.tools.redshift_check import RedshiftCheckConfig
    from speclm.tools.redshift_search import SearchConfig

    return [AgentConfig, KNNConfig, RedshiftEvalConfig, CodecConfig, PreprocessConfig, SimConfig, MeasureConfig,
            RedshiftCheckConfig, SearchConfig]


@pytest.mark.parametrize("cls", _configs(), ids=lambda c: c.__name__)
def test_every_config_has_help_and_round_trips(cls):
    assert issubclass(cls, Config)
    assert all(h.strip() for h in cls.field_help().values()), [k for k, h in cls.field_help().items() if not h]
    c = cls(**{"RedshiftEvalConfig": {"dataset": "data/sim15k", "out": "runs/x"}}.get(cls.__name__, {}))
    assert cls.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="unknown .* fields: \\['nope'\\]"):
        cls.from_dict({**c.to_dict(), "nope": 1})


def test_cli_options_come_from_fields():
    from speclm.tools.measure import MeasureConfig

    p = argparse.ArgumentParser()
    MeasureConfig.add_arguments(p, ("min_snr", "velocity_dispersion"))
    args = p.parse_args(["--min-snr", "5", "--no-velocity-dispersion"])
    cfg = MeasureConfig.from_args(args)
    assert cfg.min_snr == 5.0 and cfg.velocity_dispersion is False
    helps = {a.dest: a.help for a in p._actions}
    assert helps["min_snr"] == dataclasses.fields(MeasureConfig)[0].metadata["help"]
    with pytest.raises(ConfigError):
        MeasureConfig.from_args(p.parse_args(["--min-snr", "-1"]))


def test_speclm_dtype_pins_the_precision_and_refuses_unknown_values(monkeypatch):
    import torch

    from speclm.finetune.runtime import pick_dtype
    from speclm.tools.errors import ConfigError

    monkeypatch.setenv("SPECLM_DTYPE", "float32")
    assert pick_dtype("auto", "cuda") is torch.float32  # the pin wins over the device's default
    monkeypatch.setenv("SPECLM_DTYPE", "bfloat16")
    assert pick_dtype("auto", "cpu") is torch.bfloat16
    assert pick_dtype("float32", "cpu") is torch.float32  # an explicit dtype is not overridden
    monkeypatch.setenv("SPECLM_DTYPE", "fp16")
    with pytest.raises(ConfigError, match="SPECLM_DTYPE='fp16'"):
        pick_dtype("auto", "cpu")
