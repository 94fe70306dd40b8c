"""What each compensation method costs: storage per drift level and in total (T2), extra MACs (T3).

Storage and MACs do not depend on training, so every method is only *set up* (``method.setup(ctx)``:
chip programmed, per-level parameter sets created, nothing trained) on an untrained network with a few
synthetic inputs of the right shape (:func:`synthetic_splits`). The counts themselves come from each
method's :meth:`~rramlib.methods.compensation.Method.storage` and :meth:`~rramlib.methods.compensation.Method.extra_macs`.

Like with like: every VeRA+ row names its sharing mode (per-layer or cross-layer vectors), LoRA is counted
with peft's layout and with VeRA+'s 1×1 branch at VeRA+'s rank, and every ratio says whether structure and
sharing match (:func:`storage_ratios`). BN calibration is read two ways (:func:`bn_readings`): one BN set per
drift level (bounded by :func:`bn_storage_bound`) and recalibration in the field from stored images.
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
from rramlib.nn.models import count_parameters
from rramlib.methods.overhead import PRECISION_BITS, base_macs, vera_plus_extra_macs, vera_plus_rank_for_macs

__all__ = ["INPUT_SHAPES", "MODEL_DATA", "SHARED", "ROW_KEYS", "PAPER_EXTRA_MACS", "synthetic_splits",
           "method_variants", "cost_tables", "storage_ratios", "bn_channels", "widest_layer", "bn_storage_bound", "image_bytes",
           "bn_readings", "macs_vs_rank"]

#: data set -> (channels, image size, classes) of the inputs a network is built for
INPUT_SHAPES = {"digits": (1, 8, 10), "cifar10": (3, 32, 10), "cifar100": (3, 32, 100), "imagefolder": (3, 224, 1000)}
#: the data set each network is built for
MODEL_DATA = {"digits_cnn": "digits", "digits_mlp": "digits", "resnet20": "cifar10", "resnet32": "cifar10",
              "resnet56": "cifar10", "resnet50": "imagefolder"}
#: what a method keeps once for all levels, or regenerates
SHARED = {
    "none": "—", "scale": "r0 per layer, kept once from programming", "bn": "BN γ/β unchanged (shared)",
    "lora": "nothing: A and B per layer and level",
    "dora": "online, per chip: the chip's DoRA set + calibration inputs and drift-free targets (counted)",
    "vera_plus": "A, B regenerated from an 8-byte seed", "noise_aware": "nothing digital (other RRAM weights)",
    "offline_correction": "nothing: a full-rank correction of every weight per level",
    "reprogram": "the software weights, once (to rewrite the chip)",
}
#: row labels of the variants (:func:`method_variants`)
VERA_LAYER, VERA_CROSS = "vera_plus (per-layer)", "vera_plus (cross-layer)"
LORA_1X1, LORA_PEFT = "lora (1×1 branch, VeRA+ rank)", "lora (peft layout, VeRA+ rank)"
BN_AFFINE = "bn (+ γ/β fine-tuned)"
#: row label -> short name used in glue keys
ROW_KEYS = {VERA_CROSS: "vera_cross", VERA_LAYER: "vera_layer", "bn": "bn", BN_AFFINE: "bn_affine", "lora": "lora",
            LORA_1X1: "lora_1x1", LORA_PEFT: "lora_peft"}
#: VeRA+'s extra compute as the study's digest states it (ResNet-20; unverified, see the claims page)
PAPER_EXTRA_MACS = 0.019


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


def cost_tables(variants: dict) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """T2 (storage) and T3 (extra MACs) for ``{model name: method_variants(...)}`` on untrained networks.

    Returns ``(t2, t3, networks)`` with ``networks[model] = {"params": ..., "base_macs": ...}``.
    """
    from rramlib.methods.compensation import FitContext
    from rramlib.nn.models import build_model
    from rramlib.methods.schedule import log_windows

    rows, macs_rows, networks = [], [], {}
    for model_name, model_rows in variants.items():
        config = model_rows[0][2]
        profile = config.resolved_profile()
        dataset = profile.dataset if model_name == profile.model else MODEL_DATA[model_name]
        splits = synthetic_splits(dataset)
        net = build_model(model_name, num_classes=splits.num_classes, in_channels=splits.in_channels, seed=0).eval()
        ctx = FitContext(model=net, splits=splits, drift=config.drift_model(), schedule=log_windows(profile.levels),
                         train_chips=profile.train_chips)
        example = ctx.example()
        n_params, n_macs = count_parameters(net), base_macs(net, example)
        networks[model_name] = {"params": n_params, "base_macs": n_macs, "bn_channels": bn_channels(net),
                                "widest_layer": widest_layer(net), "input_values": example[0].numel()}
        for label, m, cfg in model_rows:
            method = cfg.method(m)
            method.setup(ctx)
            st = method.storage()
            row = {"model": model_name, "method": label, "K": st.levels, "values_per_level": st.values_per_level,
                   "pct_of_model_per_level": 100 * st.values_per_level / n_params, "shared_values": st.shared_values,
                   "seed_bytes": st.seed_bytes}
            row.update({f"bytes_per_level_{p}": st.bytes_per_level(p) for p in PRECISION_BITS})
            row.update({f"total_bytes_{p}": st.total_bytes(p) for p in PRECISION_BITS})
            row["online"] = st.online
            row["calibration_values"] = st.calibration_values
            row["shared / regenerable"] = SHARED.get(m, "")
            rows.append(row)
            extra = method.extra_macs(example)
            note = f"+ {method.adapters_.weight_norm_macs():,} MACs once per calibration (norms)" if m == "dora" else ""
            macs_rows.append({"model": model_name, "method": label, "extra_macs": extra, "base_macs": n_macs,
                              "extra_pct": 100 * extra / n_macs, "note": note})
    return pd.DataFrame(rows), pd.DataFrame(macs_rows), networks


def storage_ratios(t2: pd.DataFrame) -> pd.DataFrame:
    """Other method's bytes ÷ VeRA+'s bytes (fp32), per level and over all K levels, per network and VeRA+
    variant, saying whether the two match in branch structure (1×1 vs peft's kernel) and in sharing (LoRA
    keeps its matrices per layer, so only per-layer VeRA+ matches it; rramlib has no cross-layer LoRA)."""
    rows = []
    for model_name in dict.fromkeys(t2["model"]):
        sub = t2[t2["model"] == model_name].set_index("method")
        for vera in [v for v in (VERA_CROSS, VERA_LAYER) if v in sub.index]:
            for other in [o for o in ("bn", BN_AFFINE, "lora", LORA_1X1, LORA_PEFT) if o in sub.index]:
                is_lora = other.startswith("lora")
                rows.append({"model": model_name, "VeRA+ variant": vera, "other": other,
                             "matched structure": ("yes" if other == LORA_1X1 else "no") if is_lora else "—",
                             "matched sharing": ("yes" if vera == VERA_LAYER else "no") if is_lora else "—",
                             "ratio per level": sub.loc[other, "bytes_per_level_fp32"]
                             / sub.loc[vera, "bytes_per_level_fp32"],
                             "ratio total (K levels)": sub.loc[other, "total_bytes_fp32"]
                             / sub.loc[vera, "total_bytes_fp32"]})
    return pd.DataFrame(rows)


def bn_channels(model: nn.Module) -> int:
    """ΣC_BN: the channels of every BatchNorm layer of ``model``."""
    return sum(m.num_features for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


def widest_layer(model: nn.Module) -> int:
    """C_max: the most output channels (features) of an RRAM layer, the length of cross-layer VeRA+'s λ_b."""
    return max(layer_dims(m)[1] for _, m in rram_layers(model))


def bn_storage_bound(n_bn_channels: int, c_max: int, rank: int, values_per_channel: int = 4) -> float:
    """BN calibration's storage ÷ cross-layer VeRA+'s with one BN set per drift level: ``v·ΣC_BN / (C_max + r)``.

    Per level BN keeps ``values_per_channel`` values per BN channel (4: mean, variance, γ, β; 2 without γ/β)
    and cross-layer VeRA+ keeps λ_b (C_max) and λ_d (r), so the number of levels cancels; VeRA+'s 8-byte seed
    only lowers the ratio over all levels. Whatever K, storing BN sets per level stays below this ratio.
    """
    for name, value in (("n_bn_channels", n_bn_channels), ("c_max", c_max), ("rank", rank),
                        ("values_per_channel", values_per_channel)):
        check_int(name, value, 1)
    return values_per_channel * n_bn_channels / (c_max + rank)


def image_bytes(n_images: int, values_per_image: int, bits: int = 8) -> float:
    """Bytes of ``n_images`` stored images of ``values_per_image`` values (C·H·W) at ``bits`` per value."""
    check_int("n_images", n_images, 0)
    check_int("values_per_image", values_per_image, 1)
    check_int("bits", bits, 1)
    return n_images * values_per_image * bits / 8


def bn_readings(variants: dict, t2: pd.DataFrame, networks: dict) -> pd.DataFrame:
    """Claim C3 read two ways per network, against cross-layer VeRA+ over all K levels (fp32):

    * **BN sets per level**: the bound :func:`bn_storage_bound` (4 values per BN channel) and the ratio counted
      in T2 for BN with fine-tuned γ/β;
    * **BN recalibration in the field** (what "no data replay" avoids): the images the chip must keep to
      re-estimate the statistics when it is recalibrated (the BN method's ``batches × batch_size`` images,
      8-bit pixels) ÷ VeRA+'s total; the re-estimated statistics overwrite the network's, so they add nothing.
    """
    rows = []
    for model_name, model_rows in variants.items():
        configs = {label: cfg for label, _, cfg in model_rows}
        sub = t2[t2["model"] == model_name].set_index("method")
        if VERA_CROSS not in configs or "bn" not in configs:
            continue
        net, vera = networks[model_name], sub.loc[VERA_CROSS, "total_bytes_fp32"]
        rank = configs[VERA_CROSS].method("vera_plus").params["rank"]
        bn = configs["bn"].method("bn").params
        n_images = bn["batches"] * bn["batch_size"]
        images = image_bytes(n_images, net["input_values"])
        rows.append({"model": model_name, "ΣC_BN": net["bn_channels"], "C_max": net["widest_layer"], "rank r": rank,
                     "bound 4·ΣC_BN/(C_max+r)": bn_storage_bound(net["bn_channels"], net["widest_layer"], rank),
                     "BN sets per level ÷ VeRA+ (counted)": sub.loc[BN_AFFINE, "total_bytes_fp32"] / vera
                     if BN_AFFINE in sub.index else float("nan"),
                     "calibration images": n_images, "image bytes (8-bit)": images,
                     "field BN images ÷ VeRA+": images / vera})
    return pd.DataFrame(rows)


def macs_vs_rank(models, ranks, fraction: float = PAPER_EXTRA_MACS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """VeRA+'s extra MACs (% of the network's) per rank for each of ``models`` (untrained, counted on one
    input of its data set's shape; the same for both sharing modes), and per model its counts: parameters,
    base MACs, ΣC_BN, C_max and the largest rank within ``fraction`` of the base MACs
    (:func:`~rramlib.methods.overhead.vera_plus_rank_for_macs`). Returns ``(per-rank table, per-model table)``."""
    from rramlib.nn.models import build_model

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
