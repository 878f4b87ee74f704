"""Spectrum -> "Redshift: z" with decoding constrained to a well-formed number, plus p(z).

Why constrained: a free-running small model can answer "Redshift: 0.3.1" or drift into prose; by
only ever choosing among digit tokens at digit positions (and '.' in between) a parse failure
cannot happen. Why p(z): the digit-token probabilities already *are* a distribution over answers.
We expand the first two decimals exhaustively (100 leaves at 0.01 resolution, one extra forward
step of 10 branches sharing the prompt's KV cache) and the third decimal on the ``THIRD_DIGIT_LEAVES``
most probable leaves, which gives a median, a mode and a 68% interval at the cost of ~1 prompt
forward pass.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from speclm.finetune.codec import CodecConfig, build_prompt, format_redshift, parse_redshift, DecodeError
from speclm.finetune.preprocess import PreprocessConfig, preprocess
from speclm.tools.errors import ConfigError
from speclm.tools.spectrum import Spectrum


@dataclass
class RedshiftPrediction:
    """One spectrum's answer. ``z`` is the median of p(z); ``z_greedy`` is what greedy decoding writes."""

    z: float
    z_lo: float
    z_hi: float
    z_mean: float
    z_mode: float
    z_greedy: float
    text: str
    pz_grid: list = field(default_factory=list, repr=False)  # 0.01 leaves by their first answer (0.02: answers 0.020-0.029)
    pz: list = field(default_factory=list, repr=False)  # probability per bin
    parse_failed: bool = False
    z_lo95: float | None = None  # 95% and 99% intervals of the same p(z)
    z_hi95: float | None = None
    z_lo99: float | None = None
    z_hi99: float | None = None
    #: the adapter's training domain: galaxies at 0 ≤ z ≤ this (its card's ``domain``; None: the
    #: search's default). Outside it the model's answer is not used.
    domain_z_max: float | None = None

    def modes(self, min_p: float = 0.05, max_n: int = 3) -> list[float]:
        """Centres of the peaks of p(z) (0.01 bins, local maxima holding >= min_p), most probable
        first: the candidates the redshift search must try besides its own."""
        p = np.asarray(self.pz, float)
        if p.size < 3:
            return [self.z_mode]
        pad = np.concatenate([[-1.0], p, [-1.0]])
        peaks = [i for i in range(p.size) if pad[i + 1] >= pad[i] and pad[i + 1] > pad[i + 2] and p[i] >= min_p]
        peaks.sort(key=lambda i: -p[i])
        out = [self.z_mode] + [round(self.pz_grid[i] + 0.0045, 4) for i in peaks]  # the leaf's middle
        uniq: list[float] = []
        for z in out:
            if all(abs(z - u) > 0.015 for u in uniq):
                uniq.append(z)
        return uniq[:max_n]

    def to_dict(self, with_pz: bool = False) -> dict:
        d = asdict(self)
        d["modes"] = self.modes()
        if not with_pz:
            d.pop("pz_grid"), d.pop("pz")
        return d


def spectrum_prompt(spectrum: Spectrum, pre: PreprocessConfig, codec: CodecConfig) -> str:
    return build_prompt(preprocess(spectrum, pre), codec)


def encode_example(tokenizer, prompt: str, answer: str | None = None) -> tuple[list[int], list[int]]:
    """Token ids of prompt (+ answer + EOS) and labels with -100 on every prompt token.

    Prompt and answer are tokenized separately and concatenated, exactly as at inference, so the
    boundary token never differs between training and prediction.
    """
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if answer is None:
        return p, [-100] * len(p)
    a = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return p + a, [-100] * len(p) + a


def digit_token_ids(tokenizer) -> tuple[list[int], int]:
    """Ids of '0'..'9' and '.'; refuses tokenizers where a digit is not a single token."""
    ids = []
    for ch in "0123456789.":
        t = tokenizer(ch, add_special_tokens=False)["input_ids"]
        if len(t) != 1:
            raise ConfigError(f"tokenizer splits {ch!r} into {len(t)} tokens; constrained decoding needs single tokens")
        ids.append(t[0])
    return ids[:10], ids[10]


def _left_pad(seqs: Sequence[list[int]], pad_id: int):
    import torch

    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, L - len(s):] = torch.tensor(s)
        mask[i, L - len(s):] = 1
    return ids, mask


#: leaves (0.01 bins) whose third decimal is read from the model; the rest of p(z) is spread evenly
#: over a leaf. Why 3 and not 1: a galaxy whose z sits near a leaf edge (z = 0.0298 vs 0.0302) splits
#: its mass over two leaves, and spreading the second one evenly over 0.01 made its 68% interval up
#: to ~0.007 wide for an answer good to 0.001 (issue 10). The two extra leaves cost B*2 rows of one
#: token on the cached prompt.
THIRD_DIGIT_LEAVES = 3


def _check_snr_table(tab: dict, key: str = "T", bounds: tuple[float, float] = (0.05, 20.0)) -> dict:
    """A calibration table {"snr": [...], key: [...]} (pz_temperature_snr: T; pz_outlier_snr: w), checked."""
    name = "pz_temperature_snr" if key == "T" else "pz_outlier_snr"
    try:
        snr, T = [float(x) for x in tab["snr"]], [float(x) for x in tab[key]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be {{'snr': [...], '{key}': [...]}}: {exc}") from None
    if not snr or len(snr) != len(T) or any(b <= a for a, b in zip(snr, snr[1:])) or snr[0] <= 0:
        raise ConfigError(f"{name}: need as many {key} as S/N nodes, S/N positive and increasing")
    if not all(bounds[0] <= t <= bounds[1] for t in T):
        raise ConfigError(f"{name}: every {key} must be in [{bounds[0]}, {bounds[1]}], got {T}")
    return {"snr": snr, key: T}


def check_floor(local: float, sigma: float) -> tuple[float, float]:
    """The p(z) floor's local share (0-1) and its Gaussian sigma in z (0-0.2], checked."""
    if not (0.0 <= local <= 1.0) or not (0.0 < sigma <= 0.2):
        raise ConfigError(f"p(z) floor: local share {local} must be in [0, 1] and sigma {sigma} in (0, 0.2]")
    return float(local), float(sigma)


def calibration_kwargs(card: dict) -> dict:
    """The p(z) calibration an adapter card stores (``calibration``), as :class:`RedshiftPredictor` arguments."""
    cal = card.get("calibration") or {}
    return {"temperature": float(cal.get("pz_temperature", 1.0)), "snr_temperature": cal.get("pz_temperature_snr"),
            "outlier": float(cal.get("pz_outlier", 0.0)), "snr_outlier": cal.get("pz_outlier_snr"),
            "floor_local": float(cal.get("pz_floor_local", 0.0)), "floor_sigma": float(cal.get("pz_floor_sigma", 0.01))}


def _digit_probs(raw: dict, T: np.ndarray):
    """(p1, p2, p3, leaves): the digits' probabilities at one temperature per spectrum (``T``, shape (B,)).
    raw["leaf"] (B, K) / raw["l3"] (B, K, 10): the K expanded leaves, most probable first (a (B,) / (B, 10)
    pair from one expanded leaf is read as K = 1); p3 comes back as (B, K, 10)."""
    def sm(x):
        x = x / T.reshape((-1,) + (1,) * (x.ndim - 1))
        x = x - x.max(-1, keepdims=True)
        e = np.exp(x)
        return e / e.sum(-1, keepdims=True)

    p1, p2, p3 = sm(raw["l1"]), sm(raw["l2"]), sm(raw["l3"])
    leaves = np.asarray(raw["leaf"]).reshape(p1.shape[0], -1)
    return p1, p2, p3.reshape(p1.shape[0], leaves.shape[1], 10), leaves


class RedshiftPredictor:
    """Batched constrained prediction on a ModelRuntime (adapter on)."""

    #: galaxies at z ≤ this are the model's training domain (the adapter card's ``domain.z_max``; None: unknown)
    domain_z_max: float | None = None
    outlier: float = 0.0
    snr_outlier: dict | None = None
    floor_local: float = 0.0
    floor_sigma: float = 0.01
    #: None, or the caches of a predictor whose weights cannot change (the catalog's own: no training, no
    #: adapter switch): the prompt head's KV cache, kept between batches, and the output layer's digit rows
    prefix_cache: dict | None = None
    _head_ids: list[int] | None = None
    #: readings per spectrum at sub-bin shifts, and how their intervals are combined (the card's ``decoding``;
    #: 1 = one reading; see :mod:`speclm.finetune.shift_ensemble`)
    shifts: int = 1
    shift_intervals: str = "nearest"
    shift_mode: str = "centred"

    def __init__(self, runtime, preprocess_cfg: PreprocessConfig, codec_cfg: CodecConfig,
                 temperature: float = 1.0, snr_temperature: dict | None = None,
                 outlier: float = 0.0, snr_outlier: dict | None = None,
                 floor_local: float = 0.0, floor_sigma: float = 0.01):
        if codec_cfg.z_int_digits != 1 or codec_cfg.z_decimals < 2:
            raise ConfigError("constrained p(z) decoding supports answers of the form d.dd[d...]")
        if not (0.05 <= temperature <= 20):
            raise ConfigError(f"p(z) temperature {temperature} must be in [0.05, 20]")
        #: digit logits are divided by this before the softmax (fitted by `speclm eval calibrate` on
        #: simulated validation spectra, stored in the adapter card; 1 = the raw model)
        self.temperature = float(temperature)
        #: optional T as a function of the spectrum's r-band S/N ({"snr": [...], "T": [...]}: nodes,
        #: interpolated in log S/N, held flat beyond the ends), fitted the same way per S/N bin. Why:
        #: the text the model reads hides the noise level, so its p(z) is as wide for a bright galaxy
        #: as for a faint one; the calibration supplies what the encoding drops.
        self.snr_temperature = _check_snr_table(snr_temperature) if snr_temperature else None
        if not (0.0 <= outlier < 1.0):
            raise ConfigError(f"p(z) outlier weight {outlier} must be in [0, 1)")
        #: the share of p(z) spread evenly over the model's domain (0 <= z <= domain_z_max): the chance that the
        #: answer is a catastrophe the digits do not show. A temperature only widens the peaks the model
        #: proposes; a faint spectrum read at the wrong peak needs mass where the model put none. Fitted
        #: by `speclm eval calibrate --outlier` per S/N bin (the smallest weight whose 99% interval holds
        #: 99% of a simulated split), stored in the card; 0 = none.
        self.outlier = float(outlier)
        self.snr_outlier = _check_snr_table(snr_outlier, "w", (0.0, 0.99)) if snr_outlier else None
        #: the share of the outlier mass that is *local*: the model's own p(z) broadened by a Gaussian of
        #: ``floor_sigma`` in z, the rest spread evenly over the domain. Why: a uniform floor puts w * z / z_max of
        #: the mass below z, so it never reaches just below a low answer — the near misses at low z (truth 0.026,
        #: answer 0.033, 99% interval from 0.027) need mass beside the answer, not far from it.
        self.floor_local, self.floor_sigma = check_floor(floor_local, floor_sigma)
        self.rt = runtime
        self.pre = preprocess_cfg
        self.codec = codec_cfg
        self.digits, self.dot = digit_token_ids(runtime.tokenizer)
        card = getattr(runtime, "active_card", None) or {}
        dom = card.get("domain") if isinstance(card, dict) else None
        if isinstance(dom, dict) and dom.get("z_max"):
            self.domain_z_max = float(dom["z_max"])
        dec = card.get("decoding") if isinstance(card, dict) else None
        if isinstance(dec, dict) and dec.get("shifts"):
            from speclm.finetune.shift_ensemble import check_shifts

            self.shifts = check_shifts(dec["shifts"], preprocess_cfg)
            self.shift_intervals = str(dec.get("intervals", "nearest"))
            if self.shift_intervals not in ("mixture", "nearest"):
                raise ConfigError(f"the card's decoding.intervals {self.shift_intervals!r}: use 'mixture' or 'nearest'")
            from speclm.finetune.shift_ensemble import SHIFT_MODES

            self.shift_mode = str(dec.get("mode", "centred"))
            if self.shift_mode not in SHIFT_MODES:
                raise ConfigError(f"the card's decoding.mode {self.shift_mode!r}: use one of {', '.join(SHIFT_MODES)}")

    @classmethod
    def from_runtime(cls, runtime) -> "RedshiftPredictor":
        """Use the preprocessing and codec saved with the active adapter (training == inference)."""
        card = runtime.active_card
        if not card:
            raise ConfigError("the active adapter has no training_card.json; cannot know its codec")
        return cls(runtime, PreprocessConfig.from_dict(card["preprocess"]), CodecConfig.from_dict(card["codec"]),
                   **calibration_kwargs(card))

    def temperature_for(self, snr: float | None) -> float:
        """The p(z) temperature for a spectrum of r-band S/N ``snr`` (None: unknown -> the global T)."""
        tab = self.snr_temperature
        if tab is None or snr is None or not math.isfinite(snr) or snr <= 0:
            return self.temperature
        return float(np.interp(math.log(snr), np.log(tab["snr"]), tab["T"]))

    def outlier_for(self, snr: float | None) -> float:
        """The p(z) outlier weight for a spectrum of r-band S/N ``snr`` (None: unknown -> the global one)."""
        tab = self.snr_outlier
        if tab is None or snr is None or not math.isfinite(snr) or snr <= 0:
            return self.outlier
        return float(np.interp(math.log(snr), np.log(tab["snr"]), tab["w"]))

    def predict_spectra(self, spectra: Sequence[Spectrum], batch_size: int = 8, progress: bool = False):
        """Predictions for spectra: the one entry point that honours the card's ``decoding`` (several readings
        of each spectrum at sub-bin shifts need its pixels, not its vector). ``batch_size``: spectra per pass."""
        from speclm.tools.spectrum import r_band_snr

        if self.shifts > 1:
            from speclm.finetune.shift_ensemble import predict_shifted

            return predict_shifted(self, list(spectra), self.shifts, batch_size=batch_size * self.shifts,
                                   progress=progress, intervals=self.shift_intervals, mode=self.shift_mode)
        prompts = [spectrum_prompt(s, self.pre, self.codec) for s in spectra]
        return self.predict_prompts(prompts, batch_size=batch_size, progress=progress,
                                    snr=[r_band_snr(s) for s in spectra])

    def predict_values(self, vectors, batch_size: int = 8, progress: bool = False, snr=None):
        """``snr``: the spectra's r-band S/N (:func:`speclm.tools.spectrum.r_band_snr`), for the
        S/N-dependent calibration; None uses the global temperature."""
        prompts = [build_prompt(v, self.codec) for v in vectors]
        return self.predict_prompts(prompts, batch_size=batch_size, progress=progress, snr=snr)

    def single_reading_only(self, what: str) -> None:
        """Refuse a vector or prompt input when the card asks for several readings per spectrum."""
        if self.shifts > 1:
            raise ConfigError(f"{what}: this adapter reads each spectrum {self.shifts} times at sub-bin shifts (its "
                              "card's decoding); that needs the spectra (predict_spectra), not vectors or prompts")

    def predict_prompts(self, prompts: Sequence[str], batch_size: int = 8, progress: bool = False, snr=None):
        from tqdm.auto import tqdm

        self.single_reading_only("predict_prompts")
        if snr is not None and len(snr) != len(prompts):
            raise ConfigError(f"{len(snr)} S/N values for {len(prompts)} prompts")
        out: list[RedshiftPrediction] = []
        it = range(0, len(prompts), batch_size)
        for i in tqdm(it, desc="predict", unit="batch", disable=not progress):
            out.extend(self.summarise_at_snr(self.raw_logits(prompts[i : i + batch_size]),
                                             None if snr is None else snr[i : i + batch_size]))
        return out

    def summarise_at_snr(self, raw: dict, snr=None) -> list[RedshiftPrediction]:
        """:meth:`summarise_raw` with each spectrum's calibrated temperature and outlier weight, from its
        r-band S/N (``snr``: one per spectrum of the batch; None: the global calibration)."""
        snr = [None] * raw["l1"].shape[0] if snr is None else list(snr)
        return self.summarise_raw(raw, [self.temperature_for(x) for x in snr], [self.outlier_for(x) for x in snr])

    def _forward(self, ids, mask, pos, cache):
        """The ten digits' logits (B, 10) after the last token, and the cache. For a fixed-weight
        predictor with the LoRA merged (the catalog's), only the digits' rows of the output layer are
        computed: the same numbers, bit for bit, without a 49,152-token vocabulary per row of the tree."""
        m = self.rt.model
        head = self._digit_head()
        if head is None:
            out = m(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True, logits_to_keep=1)
            return out.logits[:, -1, self.digits].float(), getattr(out, "cache", None) or out.past_key_values
        body, w = head
        out = body(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
        h = out.last_hidden_state[:, -1, :]
        return (h @ w.T).float(), getattr(out, "cache", None) or out.past_key_values

    def _digit_head(self):
        """(decoder body, the output layer's digit rows) where that is exact, else None."""
        if self.prefix_cache is None:  # only the catalog's fixed-weight predictor
            return None
        key = ("digit_head", self.rt.active)
        if key not in self.prefix_cache:
            m = self.rt.model
            base = m.get_base_model() if hasattr(m, "get_base_model") else m
            lm = base.get_output_embeddings()
            layers = [x for x in m.modules() if hasattr(x, "merged_adapters")]  # peft's LoRA layers
            merged = all(bool(x.merged_adapters) for x in layers)
            ok = (merged and type(lm).__name__ == "Linear" and getattr(lm, "bias", None) is None
                  and hasattr(base, "model"))
            self.prefix_cache[key] = (base.model, lm.weight[self.digits].contiguous()) if ok else None
        return self.prefix_cache[key]

    def summarise_raw(self, raw: dict, temperature, outlier=0.0) -> list[RedshiftPrediction]:
        """Predictions from the digit logits of :meth:`raw_logits` at a given p(z) temperature and
        outlier weight (each one value, or one per spectrum of the batch)."""
        B = raw["l1"].shape[0]
        Tb = np.broadcast_to(np.asarray(temperature, dtype=float), (B,)).copy()
        Wb = np.broadcast_to(np.asarray(outlier, dtype=float), (B,)).copy()

        def at(T: np.ndarray, W: np.ndarray) -> list[RedshiftPrediction]:
            p1, p2, p3, leaves = _digit_probs(raw, T)
            out = []
            for b in range(p1.shape[0]):
                joint = (p1[b][:, None] * p2[b]).reshape(100)
                g1 = int(p1[b].argmax())
                g2 = int(p2[b, g1].argmax())
                out.append(self._summarise(int(raw["d0"][b]), joint, [int(x) for x in leaves[b]], p3[b], g1, g2,
                                           float(W[b])))
            return out

        raw1 = at(np.ones(B), np.zeros(B))
        for r in raw1:
            r.domain_z_max = self.domain_z_max
        if np.all(Tb == 1.0) and np.all(Wb == 0.0):
            return raw1
        # the temperature calibrates the interval (and p(z) itself); the point estimates stay those of
        # the raw p(z): sharpening pulls the median toward the mode, the noisier estimate
        # (simulated test: MAE 0.0052 at T = 1, 0.0066 with the median at T = 0.405)
        cal = at(Tb, Wb)
        for r1, rc in zip(raw1, cal):
            rc.z, rc.z_mean, rc.z_mode, rc.z_greedy, rc.text = r1.z, r1.z_mean, r1.z_mode, r1.z_greedy, r1.text
            rc.z_lo, rc.z_hi = min(rc.z_lo, rc.z), max(rc.z_hi, rc.z)
            rc.domain_z_max = r1.domain_z_max
        return cal

    def raw_logits(self, prompts: Sequence[str]) -> dict:
        """Digit logits of one batch: integer digit d0, first decimal l1 (B,10), second decimal given
        the first l2 (B,10,10), third decimal l3 (B,K,10) on the K = THIRD_DIGIT_LEAVES most probable
        leaves ``leaf`` (B,K) (chosen at T=1, most probable first)."""
        import torch

        rt, tok = self.rt, self.rt.tokenizer
        dev = rt.device
        seqs = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        head = self._shared_head(seqs)
        H = len(head)
        ids, mask = _left_pad([s[H:] for s in seqs], tok.pad_token_id)
        B = ids.shape[0]
        mask = torch.cat([torch.ones(B, H, dtype=mask.dtype), mask], 1)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, H:]
        D = torch.tensor(self.digits)
        with rt.adapter_enabled(True), torch.inference_mode():
            ids, mask, pos = ids.to(dev), mask.to(dev), pos.to(dev)
            logits, cache = self._forward(ids, mask, pos, self._head_cache(head, B) if H else None)
            last = pos[:, -1:]
            # integer digit: constrained argmax among digits
            p0 = torch.softmax(logits, -1)  # argmax only: the temperature does not change it
            d0 = p0.argmax(-1)
            step = torch.stack([D.to(dev)[d0], torch.full_like(d0, self.dot)], 1)
            mask = torch.cat([mask, torch.ones_like(step)], 1)
            logits, cache = self._forward(step, mask, last + torch.arange(1, 3, device=dev), cache)
            last = last + 2
            l1 = logits
            p1 = torch.softmax(l1, -1)  # (B,10) first decimal
            # expand 10 branches per spectrum for the second decimal
            cache.batch_repeat_interleave(10)
            mask10 = mask.repeat_interleave(10, 0)
            d1 = torch.arange(10, device=dev).repeat(B)
            mask10 = torch.cat([mask10, torch.ones(B * 10, 1, dtype=mask.dtype, device=dev)], 1)
            last10 = last.repeat_interleave(10, 0) + 1
            logits, cache = self._forward(D.to(dev)[d1][:, None], mask10, last10, cache)
            l2 = logits.view(B, 10, 10)
            p2 = torch.softmax(l2, -1)  # p(d2 | d1)
            joint = (p1[:, :, None] * p2).reshape(B, 100)
            # third decimal on the K most probable leaves (rows of the 10-branch cache, repeats allowed)
            K = THIRD_DIGIT_LEAVES
            leaf = joint.topk(K, -1).indices  # (B, K), most probable first
            rows = (torch.arange(B, device=dev)[:, None] * 10 + leaf // 10).reshape(-1)
            cache.reorder_cache(rows)
            mask3 = torch.cat([mask10[rows], torch.ones(B * K, 1, dtype=mask.dtype, device=dev)], 1)
            logits, _ = self._forward(D.to(dev)[leaf.reshape(-1) % 10][:, None], mask3, last10[rows] + 1, cache)
            l3 = logits.view(B, K, 10)
        return {k: t.float().cpu().numpy() for k, t in (("d0", d0), ("l1", l1), ("l2", l2), ("l3", l3), ("leaf", leaf))}

    def _shared_head(self, seqs: Sequence[list[int]]) -> list[int]:
        """The token ids of the prompt's fixed head when every prompt of the batch starts with them
        (tokenizers may merge across the boundary: then nothing is shared and the prompts are read whole).
        Only under eager attention, where reading the head from a cache gives bit-identical logits (measured
        on 96 spectra); PyTorch's CPU flash-attention kernel blocks the keys differently with a cache, which
        moved 11% of the z by one unit of the last digit."""
        if getattr(getattr(self.rt.model, "config", None), "_attn_implementation", None) != "eager":
            return []
        if self._head_ids is None:
            tok = self.rt.tokenizer
            self._head_ids = tok(self.codec.prompt_prefix, add_special_tokens=False)["input_ids"]
        h = self._head_ids
        if len(seqs) < 2 or not h or any(s[: len(h)] != h or len(s) <= len(h) for s in seqs):
            return []
        return h

    def _head_cache(self, head: list[int], B: int):
        """The KV cache of the fixed head, repeated for B prompts (computed with the adapter on)."""
        import copy

        import torch

        key = (tuple(head), self.rt.active)
        c = None if self.prefix_cache is None else self.prefix_cache.get(key)
        if c is None:
            ids = torch.tensor([head], device=self.rt.device)
            out = self.rt.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True, logits_to_keep=1)
            c = getattr(out, "cache", None) or out.past_key_values
            if self.prefix_cache is not None:
                self.prefix_cache[key] = c
        c = copy.deepcopy(c)
        c.batch_repeat_interleave(B)
        return c

    def fine_pz(self, raw: dict, temperature, outlier=0.0) -> list[tuple[int, np.ndarray]]:
        """Each spectrum's p(z) on the 0.001 grid: (d0, density over z = d0 + i/1000, i < 1000), at the given
        temperature and outlier weight (one value, or one per spectrum) — what :meth:`summarise_raw`'s quantiles
        are read from, for combining several readings of one spectrum (:mod:`speclm.finetune.shift_ensemble`)."""
        B = raw["l1"].shape[0]
        Tb = np.broadcast_to(np.asarray(temperature, dtype=float), (B,))
        Wb = np.broadcast_to(np.asarray(outlier, dtype=float), (B,))
        p1, p2, p3, leaves = _digit_probs(raw, Tb)
        out = []
        for b in range(B):
            joint = (p1[b][:, None] * p2[b]).reshape(100)
            d0 = int(raw["d0"][b])
            out.append((d0, self._fine(d0, joint, [int(v) for v in leaves[b]], p3[b], float(Wb[b]))[0]))
        return out

    def _fine(self, d0, joint, leaves, p3, outlier: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(fine, joint): the 0.001-resolution density of one reading and its 0.01-leaf sums (see :meth:`_summarise`)."""
        joint = joint / joint.sum()
        # 0.001-resolution density: uniform inside each 0.01 leaf except the expanded ones (p(d3)).
        # The codec *rounds* labels (f"{z:.3f}"), so the answer "0.021" stands for 0.0205 <= z < 0.0215:
        # each digit's mass is centred on the digit, not on [0.021, 0.022) (that put every quantile
        # 0.0005 high; issue 10).
        fine = np.repeat(joint / 10.0, 10)
        for lf, p in zip(leaves, p3):
            fine[lf * 10 : lf * 10 + 10] = joint[lf] * p / p.sum()
        if outlier > 0 and d0 == 0:
            n_dom = int(round(1000 * min(self.domain_z_max or 0.5, 0.999))) + 1
            flat = np.zeros(1000)
            flat[:n_dom] = 1.0 / n_dom
            if self.floor_local > 0:  # that share of the floor beside the model's own peaks
                k = self.floor_sigma * 1000.0
                x = np.arange(-int(np.ceil(4 * k)), int(np.ceil(4 * k)) + 1)
                kern = np.exp(-0.5 * (x / k) ** 2)
                near = np.convolve(fine, kern / kern.sum(), mode="same")  # truncated at z = 0 and 0.999
                flat = (1.0 - self.floor_local) * flat + self.floor_local * near / near.sum()
            fine = (1.0 - outlier) * fine + outlier * flat
            joint = fine.reshape(100, 10).sum(1)
        return fine, joint

    def _summarise(self, d0, joint, leaves, p3, g1, g2, outlier: float = 0.0) -> RedshiftPrediction:
        """``leaves``: the expanded leaves, most probable first; ``p3`` (len(leaves), 10): p(d3) on each;
        ``outlier``: the share of p(z) spread evenly over 0 <= z <= the domain's z_max (answers 0.xxx only)."""
        nd = self.codec.z_decimals
        fine, joint = self._fine(d0, joint, leaves, p3, outlier)
        centers = d0 + np.arange(1000) / 1000.0
        cdf = np.cumsum(fine)
        edges = d0 + (np.arange(1001) - 0.5) / 1000.0

        def q(p):
            return max(0.0, float(np.interp(p, np.concatenate([[0.0], cdf]), edges)))

        leaf = leaves[0]
        z_mode = d0 + leaf / 100.0 + int(np.argmax(p3[0])) / 1000.0
        gl = g1 * 10 + g2
        g3 = int(np.argmax(p3[leaves.index(gl)])) if gl in leaves else 5
        z_greedy = d0 + g1 / 10.0 + g2 / 100.0 + g3 / 1000.0
        z_med = q(0.5)
        # the interval's ends keep one more decimal than the answer: rounding them to the answer's
        # 0.001 would add up to 0.0005 of quantisation to a 68% interval only ~0.003 wide
        return RedshiftPrediction(
            z=round(z_med, nd), z_lo=round(q(0.16), nd + 1), z_hi=round(q(0.84), nd + 1),
            z_mean=round(max(0.0, float((fine * centers).sum())), nd), z_mode=round(z_mode, nd),
            z_greedy=round(z_greedy, nd), text=self.codec.answer_prefix + format_redshift(z_greedy, self.codec),
            pz_grid=[round(d0 + i / 100.0, 2) for i in range(100)], pz=[float(x) for x in joint],
            z_lo95=round(q(0.025), nd + 1), z_hi95=round(q(0.975), nd + 1),
            z_lo99=round(q(0.005), nd + 1), z_hi99=round(q(0.995), nd + 1),
        )

    def generate_unconstrained(self, prompts: Sequence[str], max_new_tokens: int = 8) -> list[float | None]:
        """Plain greedy generation, parsed afterwards; None marks a parse failure (for the evals)."""
        import torch

        tok = self.rt.tokenizer
        out: list[float | None] = []
        for i in range(0, len(prompts), 8):
            seqs = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts[i : i + 8]]
            ids, mask = _left_pad(seqs, tok.pad_token_id)
            with self.rt.adapter_enabled(True), torch.inference_mode():
                gen = self.rt.model.generate(input_ids=ids.to(self.rt.device), attention_mask=mask.to(self.rt.device),
                                             max_new_tokens=max_new_tokens, do_sample=False,
                                             pad_token_id=tok.pad_token_id)
            for row in gen[:, ids.shape[1]:]:
                try:
                    out.append(parse_redshift(tok.decode(row, skip_special_tokens=True), self.codec))
                except DecodeError:
                    out.append(None)
        return out
