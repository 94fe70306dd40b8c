"""What each compensation method costs: storage per drift level and in total (T2), extra MACs (T3).

Counts come from each method's :meth:`~rramlib.methods.compensation.Method.storage` and
:meth:`~rramlib.methods.compensation.Method.extra_macs`, taken from the *fitted* method where one is given
(:func:`cost_tables`' ``fitted``: the fits of the comparison, read from the cache), since what some methods
keep depends on training (DoRA calibration picks its layers on the trained network). A network without fits
(an extra network the profile does not train) has its methods only *set up* on the untrained network with a
few synthetic inputs of the right shape (:func:`synthetic_splits`); its DoRA row is left out then.

Like with like: every VeRA+ row names its sharing mode (per-layer or cross-layer vectors), LoRA is counted
with peft's layout and with VeRA+'s 1×1 branch at VeRA+'s rank, and every ratio says whether structure and
sharing match (:func:`storage_ratios`). VeRA+'s shared projections A and B are counted under both readings of
:data:`~rramlib.methods.overhead.PROJECTION_READINGS`: in SRAM, or regenerated at every inference.
BN calibration is read two ways (:func:`bn_readings`): one BN set per drift level (the measured ``bn`` method,
and the four-value bound :func:`bn_storage_bound` as a note) and recalibration in the field from ``N`` stored
images (:func:`field_bn_curve`, with its accuracy measured by
:func:`rramlib.methods.compensation.field_bn.field_bn_accuracy`).

The language models (BERT-base and BERT-large, :func:`text_storage_table`) are counted from their architectures
alone: each is built on PyTorch's meta device (shapes, no weights) and every method is set up on a chip that holds
shapes only, then counted by the same :func:`method_costs` as T2/T3. Their BN row is the LayerNorm re-fit
(``ln_refit``, our analogue: a BERT has no BatchNorm).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from torch.utils.data import TensorDataset

from rramlib.methods.adapters.base import layer_dims
from rramlib.device.analog import rram_layers
from rramlib.device.drift import DEFAULT_PRESET, make_drift_model
from rramlib.nn.data import DatasetSplits
from rramlib.core.errors import RramlibError, check_choice, check_int
from rramlib.nn.models import build_model, count_parameters
from rramlib.methods.overhead import (OUR_READING, PIXEL_BITS, PRECISION_BITS, PROJECTION_READINGS, base_macs,
                                      vera_plus_extra_macs, vera_plus_rank_for_macs)
from rramlib.methods.compensation import FitContext, check_method, make_method
from rramlib.methods.schedule import log_windows

__all__ = ["INPUT_SHAPES", "MODEL_DATA", "ROW_KEYS", "PAPER_EXTRA_MACS", "READING_LABELS",
           "our_reading_label", "synthetic_splits", "method_variants", "cost_tables", "storage_ratios", "bn_channels",
           "widest_layer", "bn_storage_bound", "image_bytes", "bn_readings", "field_bn_curve", "field_bn_match",
           "macs_vs_rank", "method_costs", "BERT_SIZES", "TEXT_SEQ_LEN", "TEXT_NUM_LABELS", "TEXT_METHODS",
           "LORA_VERA_RANK", "TEXT_CLAIMS", "bert_on_meta", "text_variants", "text_storage_table"]

#: data set -> (channels, image size, classes) of the inputs a network is built for
INPUT_SHAPES = {"digits": (1, 8, 10), "cifar10": (3, 32, 10), "cifar100": (3, 32, 100), "imagefolder": (3, 224, 1000)}
#: the data set each network is built for
MODEL_DATA = {"digits_cnn": "digits", "digits_mlp": "digits", "resnet20": "cifar10", "resnet32": "cifar10",
              "resnet56": "cifar10", "resnet50": "imagefolder"}
#: Short labels of :data:`~rramlib.methods.overhead.PROJECTION_READINGS`, for axes and captions that show a total.
READING_LABELS = {"sram": "A and B in SRAM", "regenerated": "A and B regenerated per inference"}
#: row labels of the variants (:func:`method_variants`)
VERA_LAYER, VERA_CROSS = "vera_plus (per-layer)", "vera_plus (cross-layer)"
LORA_1X1, LORA_PEFT = "lora (1×1 branch, VeRA+ rank)", "lora (peft layout, VeRA+ rank)"
BN_AFFINE = "bn (+ γ/β fine-tuned)"
#: row label -> short name used in glue keys
ROW_KEYS = {VERA_CROSS: "vera_cross", VERA_LAYER: "vera_layer", "bn": "bn", BN_AFFINE: "bn_affine", "lora": "lora",
            LORA_1X1: "lora_1x1", LORA_PEFT: "lora_peft"}
#: VeRA+'s extra compute as the study's digest states it (ResNet-20; unverified, see the claims page)
PAPER_EXTRA_MACS = 0.019


def our_reading_label() -> str:
    """How a storage axis or caption names the reading its VeRA+ totals use, short enough for an axis label:
    ``"VeRA+: A and B in SRAM (our reading)"`` (:data:`~rramlib.methods.overhead.OUR_READING`)."""
    return f"VeRA+: {READING_LABELS[OUR_READING]} (our reading)"


def synthetic_splits(dataset: str, n: int = 16) -> DatasetSplits:
    """``n`` random images of ``dataset``'s shape (seed 0): enough to set methods up, never to train them."""
    channels, size, classes = INPUT_SHAPES[check_choice("dataset", dataset, INPUT_SHAPES)]
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n, channels, size, size, generator=gen), torch.arange(n) % classes)
    return DatasetSplits(train=data, val=data, test=data, calib=data, num_classes=classes, in_channels=channels,
                         image_size=size, name=f"synthetic {dataset}")


def method_variants(base) -> list:
    """``(row label, method, SweepConfig)`` for each method of sweep config ``base``, with the variants that make
    the storage comparison like with like (the rows of T2 and T3):

    * VeRA+ twice, per-layer and cross-layer vectors (:data:`VERA_LAYER`, :data:`VERA_CROSS`);
    * LoRA as the profile sets it (``"lora"``), and at VeRA+'s rank with VeRA+'s 1×1 branch and with peft's
      layout (:data:`LORA_1X1`, :data:`LORA_PEFT`; only with VeRA+ in ``base``);
    * BN recalibration as the profile sets it, and with fine-tuned γ/β (:data:`BN_AFFINE`).
    """
    import dataclasses

    def variant(m, **params):
        return dataclasses.replace(base, methods=(m,), method_params={**base.method_params,
                                                                      m: {**base.method_params.get(m, {}), **params}})

    vera_rank = base.method("vera_plus").params["rank"] if "vera_plus" in base.methods else None
    rows = []
    for m in base.methods:
        if m == "vera_plus":
            rows += [(VERA_LAYER, m, variant(m, sharing="layer")), (VERA_CROSS, m, variant(m, sharing="cross"))]
            continue
        rows.append((m, m, base))
        if m == "lora" and vera_rank is not None:
            rows += [(LORA_1X1, m, variant(m, rank=vera_rank, conv_branch="1x1")),
                     (LORA_PEFT, m, variant(m, rank=vera_rank, conv_branch="peft"))]
        if m == "bn":
            rows.append((BN_AFFINE, m, variant(m, finetune_steps=max(1, base.method(m).params["finetune_steps"]))))
    return rows


#: what the T2/T3 column ``state`` says of a row's counts
FITTED, SET_UP = "fitted (the comparison's fit)", "set up, untrained (count does not depend on training)"


def cost_tables(variants: dict, fitted: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """T2 (storage) and T3 (extra MACs) for ``{model name: method_variants(...)}``.

    ``fitted``: ``{model name: (ctx, {row label: fitted method})}`` (``ctx`` the
    :class:`~rramlib.methods.compensation.FitContext` the methods were fitted with); a row with a fitted method
    is counted from it, any other row from the method set up on ``ctx``'s network (for a model without fits:
    an untrained network and synthetic inputs; DoRA is then left out, its layers depend on training). Storage
    totals are given without the projections (``total_bytes_<p>``, the seed alone) and under each
    :data:`~rramlib.methods.overhead.PROJECTION_READINGS` (``total_bytes_<reading>_<p>``).

    Returns ``(t2, t3, networks)`` with ``networks[model] = {"params": ..., "base_macs": ...}``.
    """
    fitted = fitted or {}
    rows, macs_rows, networks = [], [], {}
    for model_name, model_rows in variants.items():
        if model_name in fitted:
            ctx, methods = fitted[model_name]
        else:
            config = model_rows[0][2]
            profile = config.resolved_profile()
            dataset = profile.dataset if model_name == profile.model else MODEL_DATA[model_name]
            splits = synthetic_splits(dataset)
            net = build_model(model_name, num_classes=splits.num_classes, in_channels=splits.in_channels,
                              seed=0).eval()
            ctx = FitContext(model=net, splits=splits, drift=config.drift_model(),
                             schedule=log_windows(profile.levels), train_chips=profile.train_chips)
            methods = {}
        net, example = ctx.model, ctx.example()
        n_params, n_macs = count_parameters(net), base_macs(net, example)
        networks[model_name] = {"params": n_params, "base_macs": n_macs, "bn_channels": bn_channels(net),
                                "widest_layer": widest_layer(net), "input_values": example[0].numel(),
                                "fitted": model_name in fitted}
        for label, m, cfg in model_rows:
            method = methods.get(label)
            if method is None:
                if m == "dora" and model_name not in fitted:
                    continue
                method = cfg.method(m)
                method.setup(ctx)
            row, macs_row = method_costs(method, example, n_params, n_macs)
            state = {"model": model_name, "method": label, "state": FITTED if label in methods else SET_UP}
            rows.append({**state, **row})
            macs_rows.append({**state, **macs_row})
    return pd.DataFrame(rows), pd.DataFrame(macs_rows), networks


def method_costs(method, example: torch.Tensor, n_params: int, n_macs: int) -> tuple[dict, dict]:
    """One method's row of T2 (storage, from :meth:`~rramlib.methods.compensation.Method.storage`) and of T3
    (extra MACs of one inference of ``example[:1]``, :meth:`~rramlib.methods.compensation.Method.extra_macs`), for
    a method set up or fitted on a network of ``n_params`` parameters and ``n_macs`` MACs per inference: the one
    place both the image tables (:func:`cost_tables`) and the language-model table (:func:`text_storage_table`)
    count a method."""
    st = method.storage()
    row = {"K": st.levels, "values_per_level": st.values_per_level,
           "pct_of_model_per_level": 100 * st.values_per_level / n_params, "shared_values": st.shared_values,
           "seed_bytes": st.seed_bytes, "projection_values": st.projection_values,
           "generator_state_bytes": st.generator_state_bytes}
    row.update({f"bytes_per_level_{p}": st.bytes_per_level(p) for p in PRECISION_BITS})
    row.update({f"total_bytes_{p}": st.total_bytes(p, None) for p in PRECISION_BITS})  # seed only
    row.update({f"total_bytes_{r}_{p}": st.total_bytes(p, r) for r in PROJECTION_READINGS for p in PRECISION_BITS})
    row["online"] = st.online
    row["calibration_values"] = st.calibration_values
    row[f"input_values ({PIXEL_BITS}-bit)"] = st.input_values
    row["shared / regenerable"] = method.shared_note
    extra, regen = method.extra_macs(example), st.regeneration_ops()
    note = (f"+ {method.adapters_.weight_norm_macs():,} MACs once per calibration (norms)" if method.name == "dora"
            else "")
    macs_row = {"extra_macs": extra, "base_macs": n_macs, "extra_pct": 100 * extra / n_macs,
                "regeneration_draws": regen["draws"], "regeneration_macs": regen["macs"],
                "extra_pct_regenerated": 100 * (extra + regen["macs"]) / n_macs, "note": note}
    return row, macs_row


def storage_ratios(t2: pd.DataFrame) -> pd.DataFrame:
    """Other method's bytes ÷ VeRA+'s bytes (fp32), per level and over all K levels, per network, VeRA+ variant
    and projection reading (``projections``: :data:`~rramlib.methods.overhead.PROJECTION_READINGS`; the other
    methods keep no projections, so only VeRA+'s total changes), saying whether the two match in branch
    structure (1×1 vs peft's kernel) and in sharing (LoRA keeps its matrices per layer, so only per-layer VeRA+
    matches it; rramlib has no cross-layer LoRA). The ratio per level is the same under both readings (A and B
    are shared by all levels)."""
    rows = []
    for model_name in dict.fromkeys(t2["model"]):
        sub = t2[t2["model"] == model_name].set_index("method")
        for vera in [v for v in (VERA_CROSS, VERA_LAYER) if v in sub.index]:
            for reading in PROJECTION_READINGS:
                total = f"total_bytes_{reading}_fp32"
                for other in [o for o in ("bn", BN_AFFINE, "lora", LORA_1X1, LORA_PEFT) if o in sub.index]:
                    is_lora = other.startswith("lora")
                    rows.append({"model": model_name, "VeRA+ variant": vera, "projections": reading, "other": other,
                                 "matched structure": ("yes" if other == LORA_1X1 else "no") if is_lora else "—",
                                 "matched sharing": ("yes" if vera == VERA_LAYER else "no") if is_lora else "—",
                                 "ratio per level": sub.loc[other, "bytes_per_level_fp32"]
                                 / sub.loc[vera, "bytes_per_level_fp32"],
                                 "ratio total (K levels)": sub.loc[other, total] / sub.loc[vera, total]})
    return pd.DataFrame(rows)


def bn_channels(model: nn.Module) -> int:
    """ΣC_BN: the channels of every BatchNorm layer of ``model``."""
    return sum(m.num_features for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


def widest_layer(model: nn.Module) -> int:
    """C_max: the most output channels (features) of an RRAM layer, the length of cross-layer VeRA+'s λ_b."""
    return max(layer_dims(m)[1] for _, m in rram_layers(model))


def bn_storage_bound(n_bn_channels: int, c_max: int, rank: int, values_per_channel: int = 4) -> float:
    """BN calibration's storage ÷ cross-layer VeRA+'s with one BN set per drift level: ``v·ΣC_BN / (C_max + r)``.

    Per level BN keeps ``values_per_channel`` values per BN channel (4: mean, variance, γ, β, a BN variant the
    comparison does not run; 2: the statistics, what the measured ``bn`` method stores) and cross-layer VeRA+
    keeps λ_b (C_max) and λ_d (r), so the number of levels cancels; whatever VeRA+ keeps once (its seed, or A
    and B in SRAM) only lowers the ratio over all levels. Whatever K, storing BN sets per level stays below it.
    """
    for name, value in (("n_bn_channels", n_bn_channels), ("c_max", c_max), ("rank", rank),
                        ("values_per_channel", values_per_channel)):
        check_int(name, value, 1)
    return values_per_channel * n_bn_channels / (c_max + rank)


def image_bytes(n_images: int, values_per_image: int, bits: int = PIXEL_BITS) -> float:
    """Bytes of ``n_images`` stored images of ``values_per_image`` values (C·H·W) at ``bits`` per value
    (default :data:`~rramlib.methods.overhead.PIXEL_BITS`, the one pixel precision of every method)."""
    check_int("n_images", n_images, 0)
    check_int("values_per_image", values_per_image, 1)
    check_int("bits", bits, 1)
    return n_images * values_per_image * bits / 8


def bn_readings(variants: dict, t2: pd.DataFrame, networks: dict) -> pd.DataFrame:
    """Claim C3 per network and projection reading: BN with one set per drift level against cross-layer VeRA+
    over all K levels (fp32). "ours": the ``bn`` method the comparison runs (its two statistics per channel, as
    counted in T2); beside it, as notes, the bound :func:`bn_storage_bound` with four values per channel (a BN
    variant not run) and the counted ratio of BN with fine-tuned γ/β."""
    rows = []
    for model_name, model_rows in variants.items():
        configs = {label: cfg for label, _, cfg in model_rows}
        sub = t2[t2["model"] == model_name].set_index("method")
        if VERA_CROSS not in configs or "bn" not in configs:
            continue
        net = networks[model_name]
        rank = configs[VERA_CROSS].method("vera_plus").params["rank"]
        for reading in PROJECTION_READINGS:
            total = f"total_bytes_{reading}_fp32"
            vera = sub.loc[VERA_CROSS, total]
            rows.append({"model": model_name, "projections": reading, "ΣC_BN": net["bn_channels"],
                         "C_max": net["widest_layer"], "rank r": rank,
                         "bn (run) ÷ VeRA+ (ours)": sub.loc["bn", total] / vera,
                         "bound 2·ΣC_BN/(C_max+r)": bn_storage_bound(net["bn_channels"], net["widest_layer"], rank,
                                                                     values_per_channel=2),
                         "bound 4·ΣC_BN/(C_max+r) (not run)": bn_storage_bound(net["bn_channels"],
                                                                               net["widest_layer"], rank),
                         "bn + γ/β ÷ VeRA+": sub.loc[BN_AFFINE, total] / vera if BN_AFFINE in sub.index
                         else float("nan")})
    return pd.DataFrame(rows)


def field_bn_curve(counts, values_per_image: int, vera_bytes: dict) -> pd.DataFrame:
    """Claim C3b's storage side: for each image count ``N`` of ``counts``, the bytes of ``N`` stored images
    (:func:`image_bytes` at :data:`~rramlib.methods.overhead.PIXEL_BITS`) and their ratio to VeRA+'s total
    under each projection reading (``vera_bytes``: reading -> bytes). BN recalibrated in the field keeps no BN
    set per level (the re-estimated statistics overwrite the network's), so the images are its whole cost."""
    rows = []
    for n in counts:
        images = image_bytes(int(n), values_per_image)
        rows.append({"n_images": int(n), f"image bytes ({PIXEL_BITS}-bit)": images,
                     **{f"ratio to VeRA+ ({reading})": images / b for reading, b in vera_bytes.items()}})
    return pd.DataFrame(rows)


def field_bn_match(curve: pd.DataFrame, target: float) -> int | None:
    """The fewest stored images whose field-BN accuracy (``curve``: columns ``n_images``, ``accuracy`` mean over
    chips) reaches ``target`` (VeRA+'s accuracy); ``None`` when no count of the sweep does."""
    reached = curve[curve["accuracy"] >= target]
    return None if reached.empty else int(reached["n_images"].min())


def macs_vs_rank(models, ranks, fraction: float = PAPER_EXTRA_MACS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """VeRA+'s extra MACs (% of the network's) per rank for each of ``models`` (untrained, counted on one
    input of its data set's shape; the same for both sharing modes), and per model its counts: parameters,
    base MACs, ΣC_BN, C_max and the largest rank within ``fraction`` of the base MACs
    (:func:`~rramlib.methods.overhead.vera_plus_rank_for_macs`). Returns ``(per-rank table, per-model table)``."""
    rows, nets = [], []
    for name in models:
        channels, size, classes = INPUT_SHAPES[MODEL_DATA[check_choice("model", name, MODEL_DATA)]]
        net = build_model(name, num_classes=classes, in_channels=channels, seed=0).eval()
        x = torch.zeros(1, channels, size, size)
        pct = vera_plus_extra_macs(net, x, ranks)
        rows += [{"model": name, "rank": r, "extra_macs_pct": 100 * v} for r, v in pct.items()]
        nets.append({"model": name, "params": count_parameters(net), "base_macs": base_macs(net, x),
                     "bn_channels": bn_channels(net), "widest_layer": widest_layer(net),
                     "rank_within_fraction": vera_plus_rank_for_macs(net, x, fraction)})
    return pd.DataFrame(rows), pd.DataFrame(nets).set_index("model")


# ------------------------------------------------------------------------------ language models (BERT), counted
#: BERT's encoder sizes (Devlin et al., "BERT", NAACL 2019, §3: BERT-base L=12, H=768, A=12; BERT-large L=24,
#: H=1024, A=16; feed-forward size 4H) as :class:`transformers.BertConfig` fields; the others are BertConfig's
#: defaults, those of ``bert-base-uncased`` (a vocabulary of 30,522 word pieces, 512 positions).
BERT_SIZES = {
    "bert-base": {"num_hidden_layers": 12, "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12},
    "bert-large": {"num_hidden_layers": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16},
}
#: Tokens per sequence the language-model MACs are counted at (our choice: the maximum sequence length of BERT's
#: GLUE fine-tuning script, ``run_classifier.py``'s ``max_seq_length``); every token of a sequence counts.
TEXT_SEQ_LEN = 128
#: Classes of the classifier head the counts use (SST-5's five; QQP's two change the last layer only).
TEXT_NUM_LABELS = 5
#: The methods of the language-model table (:func:`text_storage_table`): every registered method that applies to a
#: BERT and whose counts do not depend on training. ``bn`` does not apply (no BatchNorm; ``ln_refit`` is our
#: analogue); DoRA calibration picks its layers on the trained network (its count needs a fit, as in T2).
TEXT_METHODS = ("none", "scale", "ln_refit", "lora", "vera_plus", "noise_aware", "offline_correction", "reprogram")
#: row label of LoRA at VeRA+'s rank: on Linear layers its 1×1 branch and peft's layout are one and the same
LORA_VERA_RANK = "lora (VeRA+ rank)"
#: The claims of :data:`rramlib.study.claims.CLAIMS` the language-model table answers: claim id -> (row, column
#: holding ours, what is compared). C3's BN sets per level become LayerNorm sets per level (``ln_refit``, our
#: analogue: a BERT has no BatchNorm); C4 compares like with like (same structure and per-layer sharing).
TEXT_CLAIMS = {
    "C3": ("ln_refit", "ratio_total_vs_vera_cross",
           "LayerNorm γ/β sets per level (our analogue of BN sets) ÷ cross-layer VeRA+, all levels"),
    "C4": (LORA_VERA_RANK, "ratio_total_vs_vera_layer", "LoRA at VeRA+'s rank ÷ per-layer VeRA+, all levels"),
    "C6": (VERA_CROSS, "extra_macs_pct", "cross-layer VeRA+'s extra MACs, % of the RRAM layers' MACs"),
}


def bert_on_meta(model: str, num_labels: int = TEXT_NUM_LABELS) -> nn.Module:
    """``transformers.BertForSequenceClassification`` of size ``model`` (:data:`BERT_SIZES`) on PyTorch's meta
    device: every shape, no value and no memory (nothing is downloaded or allocated), in eval mode."""
    check_choice("model", model, BERT_SIZES)
    check_int("num_labels", num_labels, 1)
    try:
        from transformers import BertConfig, BertForSequenceClassification
    except ImportError:  # pragma: no cover - depends on the environment
        raise RramlibError("counting BERT needs transformers: pip install 'rramlib[text]'") from None
    config = BertConfig(**BERT_SIZES[model], num_labels=num_labels)
    with torch.device("meta"):
        return BertForSequenceClassification(config).eval()


class _ShapeChip:
    """Stands in for :class:`~rramlib.device.analog.AnalogModel` where only shapes are counted.

    ``model`` is a copy of a network on the meta device; its RRAM layers are those an AnalogModel maps
    (:func:`~rramlib.device.analog.rram_layers`), so a method's :meth:`setup` builds exactly the structure it builds
    on a programmed chip, and its ``storage()`` and ``extra_macs()`` count it. A meta tensor has no values, so the
    chip cannot be programmed or read: any other use raises.
    """

    def __init__(self, model: nn.Module):
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        layers = rram_layers(self.model)
        self.layer_names = [n for n, _ in layers]
        self.layer_modules = [m for _, m in layers]
        self.reference = {n: m.weight.detach() for n, m in layers}
        self.seed, self.time = 0, None

    def __getattr__(self, name: str):
        raise RramlibError(f"a chip counted on the meta device has shapes only: it has no {name!r} "
                           "(it cannot be programmed or read)")


@dataclass
class _ShapeContext(FitContext):
    """A :class:`~rramlib.methods.compensation.FitContext` whose chips are :class:`_ShapeChip` (counting only)."""

    def analog(self, model: nn.Module | None = None, seed: int = 0) -> _ShapeChip:
        return _ShapeChip(model if model is not None else self.model)


def _text_context(net: nn.Module, seq_len: int, num_labels: int, levels: int) -> _ShapeContext:
    tokens = torch.zeros(2, seq_len, dtype=torch.long, device="meta")  # two sequences: a split to read shapes from
    data = TensorDataset(tokens, torch.arange(2, device="meta") % num_labels)
    splits = DatasetSplits(train=data, val=data, test=data, calib=data, num_classes=num_labels, in_channels=1,
                           image_size=seq_len, name="token shapes (meta device)")
    return _ShapeContext(model=net, splits=splits, drift=make_drift_model(DEFAULT_PRESET), schedule=log_windows(levels),
                         device="meta")


def text_variants(methods=TEXT_METHODS, method_params: dict | None = None) -> list[tuple[str, str, dict]]:
    """``(row label, method, hyper-parameters)`` of the language-model table's rows: each of ``methods`` with its
    ``method_params`` (``{method: {name: value}}``, over the defaults), VeRA+ twice (per-layer and cross-layer
    vectors: :data:`VERA_LAYER`, :data:`VERA_CROSS`) and LoRA once more at VeRA+'s rank (:data:`LORA_VERA_RANK`,
    with VeRA+ in ``methods``). Every name and hyper-parameter is checked here."""
    method_params = dict(method_params or {})
    for m in [*methods, *method_params]:
        check_method(m)
    rows = []
    for m in methods:
        params = method_params.get(m, {})
        make_method(m, **params)  # validates the hyper-parameters
        if m == "vera_plus":
            rows += [(VERA_LAYER, m, {**params, "sharing": "layer"}), (VERA_CROSS, m, {**params, "sharing": "cross"})]
        else:
            rows.append((m, m, params))
        if m == "lora" and "vera_plus" in methods:
            rank = make_method("vera_plus", **method_params.get("vera_plus", {})).params["rank"]
            rows.append((LORA_VERA_RANK, m, {**params, "rank": rank}))
    return rows


def text_storage_table(models=tuple(BERT_SIZES), *, levels: int = 4, seq_len: int = TEXT_SEQ_LEN,
                       num_labels: int = TEXT_NUM_LABELS, methods=TEXT_METHODS, method_params: dict | None = None,
                       paper: dict | None = None) -> pd.DataFrame:
    """Storage and extra compute of each method on BERT-base and BERT-large, counted from their architectures.

    Each network of ``models`` (:data:`BERT_SIZES`) is built on the meta device (:func:`bert_on_meta`: no weights
    allocated, no training); every row of :func:`text_variants` ``(methods, method_params)`` is set up on it with
    ``levels`` drift levels and counted by :func:`method_costs`, the accounting of the image tables T2/T3: storage
    by the method's own ``storage()``, extra MACs by its own ``extra_macs()`` on one sequence of ``seq_len`` tokens
    (every token counts; the pooler and the classifier read the first token only), against
    :func:`~rramlib.methods.overhead.base_macs` (the RRAM layers: every Linear; attention's products of two
    activations are not counted). Every Linear is on RRAM; embeddings and LayerNorm are digital. VeRA+ gives two
    rows (per-layer and cross-layer vectors) and LoRA a second one at VeRA+'s rank (:data:`LORA_VERA_RANK`).

    Returns one row per (model, method): ``K``, values per level, ``bytes_per_level_<p>`` and ``total_bytes_<p>``
    for each precision with VeRA+'s A and B read as :data:`~rramlib.methods.overhead.OUR_READING`
    (``projections`` names it; ``total_bytes_<other reading>_fp32`` under the other reading), ``base_macs`` and
    ``extra_macs`` per sequence, ``extra_macs_per_token`` (= per sequence ÷ ``seq_len``), ``extra_macs_pct``; ``ratio_per_level_vs_vera_<cross|layer>`` and
    ``ratio_total_vs_vera_<cross|layer>`` (the row's fp32 bytes ÷ those of cross-layer or per-layer VeRA+ of the
    same model; 0 for a method that stores nothing); and for the rows that answer a claim of the claims table
    (:data:`TEXT_CLAIMS`) ``claim``, ``claim_compares``, ``claim_ours`` and ``claim_paper``: the paper's number as
    ``paper`` (claim id -> the paper's number, e.g. ``{c.id: c.paper for c in rramlib.study.claims.CLAIMS}``;
    this module does not import the claims table, a reader of recorded results) gives it.
    """
    models = [check_choice("model", m, BERT_SIZES) for m in models]
    check_int("levels", levels, 1)
    check_int("seq_len", seq_len, 1)
    variants = text_variants(methods, method_params)
    paper = dict(paper or {})
    rows = []
    for model_name in models:
        net = bert_on_meta(model_name, num_labels)
        ctx = _text_context(net, seq_len, num_labels, levels)
        example = ctx.example()
        n_params, n_macs = count_parameters(net), base_macs(net, example)
        for label, m, params in variants:
            method = make_method(m, **params)
            method.setup(ctx)
            storage, macs = method_costs(method, example, n_params, n_macs)
            row = {"model": model_name, "method": label, "K": storage["K"],
                   "values_per_level": storage["values_per_level"], "shared_values": storage["shared_values"],
                   "projection_values": storage["projection_values"], "projections": OUR_READING}
            row.update({f"bytes_per_level_{p}": storage[f"bytes_per_level_{p}"] for p in PRECISION_BITS})
            row.update({f"total_bytes_{p}": storage[f"total_bytes_{OUR_READING}_{p}"] for p in PRECISION_BITS})
            row.update({f"total_bytes_{r}_fp32": storage[f"total_bytes_{r}_fp32"] for r in PROJECTION_READINGS
                        if r != OUR_READING})
            row.update({"seq_len": seq_len, "base_macs": n_macs, "extra_macs": macs["extra_macs"],
                        "extra_macs_per_token": macs["extra_macs"] / seq_len, "extra_macs_pct": macs["extra_pct"]})
            rows.append(row)
    table = pd.DataFrame(rows)
    for vera, suffix in ((VERA_CROSS, "cross"), (VERA_LAYER, "layer")):
        if vera not in set(table["method"]):
            continue
        ref = table[table["method"] == vera].set_index("model")
        for per in ("per_level", "total"):
            column = "bytes_per_level_fp32" if per == "per_level" else "total_bytes_fp32"
            table[f"ratio_{per}_vs_vera_{suffix}"] = table[column] / table["model"].map(ref[column])
    claims = {row: (cid, column, what) for cid, (row, column, what) in TEXT_CLAIMS.items()}
    table["claim"], table["claim_compares"], table["claim_ours"], table["claim_paper"] = None, None, float("nan"), None
    for i, label in table["method"].items():
        if label in claims and claims[label][1] in table.columns:
            cid, column, what = claims[label]
            table.loc[i, ["claim", "claim_compares", "claim_ours", "claim_paper"]] = [
                cid, what, table.loc[i, column], paper.get(cid)]
    return table
