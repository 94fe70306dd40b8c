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
"""
from __future__ import annotations

import pandas as pd
import torch
from torch import nn
from torch.utils.data import TensorDataset

from rramlib.methods.adapters.base import layer_dims
from rramlib.device.analog import rram_layers
from rramlib.nn.data import DatasetSplits
from rramlib.core.errors import check_choice, check_int
from rramlib.nn.models import build_model, count_parameters
from rramlib.methods.overhead import (OUR_READING, PIXEL_BITS, PRECISION_BITS, PROJECTION_READINGS, base_macs,
                                      vera_plus_extra_macs, vera_plus_rank_for_macs)
from rramlib.methods.compensation import FitContext
from rramlib.methods.schedule import log_windows

__all__ = ["INPUT_SHAPES", "MODEL_DATA", "ROW_KEYS", "PAPER_EXTRA_MACS", "READING_LABELS",
           "our_reading_label", "synthetic_splits", "method_variants", "cost_tables", "storage_ratios", "bn_channels",
           "widest_layer", "bn_storage_bound", "image_bytes", "bn_readings", "field_bn_curve", "field_bn_match",
           "macs_vs_rank"]

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
            st = method.storage()
            row = {"model": model_name, "method": label, "state": FITTED if label in methods else SET_UP,
                   "K": st.levels, "values_per_level": st.values_per_level,
                   "pct_of_model_per_level": 100 * st.values_per_level / n_params, "shared_values": st.shared_values,
                   "seed_bytes": st.seed_bytes, "projection_values": st.projection_values,
                   "generator_state_bytes": st.generator_state_bytes}
            row.update({f"bytes_per_level_{p}": st.bytes_per_level(p) for p in PRECISION_BITS})
            row.update({f"total_bytes_{p}": st.total_bytes(p, None) for p in PRECISION_BITS})  # seed only
            row.update({f"total_bytes_{r}_{p}": st.total_bytes(p, r) for r in PROJECTION_READINGS
                        for p in PRECISION_BITS})
            row["online"] = st.online
            row["calibration_values"] = st.calibration_values
            row[f"input_values ({PIXEL_BITS}-bit)"] = st.input_values
            row["shared / regenerable"] = method.shared_note
            rows.append(row)
            extra, regen = method.extra_macs(example), st.regeneration_ops()
            note = f"+ {method.adapters_.weight_norm_macs():,} MACs once per calibration (norms)" if m == "dora" else ""
            macs_rows.append({"model": model_name, "method": label, "state": row["state"], "extra_macs": extra,
                              "base_macs": n_macs, "extra_pct": 100 * extra / n_macs,
                              "regeneration_draws": regen["draws"], "regeneration_macs": regen["macs"],
                              "extra_pct_regenerated": 100 * (extra + regen["macs"]) / n_macs, "note": note})
    return pd.DataFrame(rows), pd.DataFrame(macs_rows), networks


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
