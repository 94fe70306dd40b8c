"""What each compensation method costs: storage per drift level and in total (T2), extra MACs (T3).

Storage and MACs do not depend on training, so every method is only *set up* (``method.setup(ctx)``:
chip programmed, per-level parameter sets created, nothing trained) on an untrained network with a few
synthetic inputs of the right shape (:func:`synthetic_splits`). The counts themselves come from each
method's :meth:`~rramlib.compensation.Method.storage` and :meth:`~rramlib.compensation.Method.extra_macs`.
"""
from __future__ import annotations

import pandas as pd
import torch
from torch.utils.data import TensorDataset

from .data import DatasetSplits
from .errors import check_choice
from .models import count_parameters
from .overhead import PRECISION_BITS, base_macs

__all__ = ["INPUT_SHAPES", "MODEL_DATA", "SHARED", "ROW_KEYS", "synthetic_splits", "method_variants", "cost_tables",
           "storage_ratios"]

#: data set -> (channels, image size, classes) of the inputs a network is built for
INPUT_SHAPES = {"digits": (1, 8, 10), "cifar10": (3, 32, 10), "cifar100": (3, 32, 100), "imagefolder": (3, 224, 1000)}
#: the data set each network is built for
MODEL_DATA = {"digits_cnn": "digits", "digits_mlp": "digits", "resnet20": "cifar10", "resnet32": "cifar10",
              "resnet56": "cifar10", "resnet50": "imagefolder"}
#: what a method keeps once for all levels, or regenerates
SHARED = {
    "none": "—", "scale": "r0 per layer, kept once from programming", "bn": "BN γ/β unchanged (shared)",
    "lora": "nothing: A and B per layer and level", "dora": "one set for the calibrated chip (retrained in the field)",
    "vera_plus": "A, B regenerated from an 8-byte seed", "noise_aware": "nothing digital (other RRAM weights)",
    "retrain": "nothing: whole weights per level (= rewriting RRAM)",
}
#: row label -> short name used in glue keys
ROW_KEYS = {"vera_plus": "vera", "vera_plus (cross-layer)": "vera_cross", "vera_plus (per-layer)": "vera_layer",
            "bn": "bn", "bn (+ γ/β fine-tuned)": "bn_affine", "lora": "lora"}


def synthetic_splits(dataset: str, n: int = 16) -> DatasetSplits:
    """``n`` random images of ``dataset``'s shape (seed 0): enough to set methods up, never to train them."""
    channels, size, classes = INPUT_SHAPES[check_choice("dataset", dataset, INPUT_SHAPES)]
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n, channels, size, size, generator=gen), torch.arange(n) % classes)
    return DatasetSplits(train=data, val=data, test=data, calib=data, num_classes=classes, in_channels=channels,
                         image_size=size, name=f"synthetic {dataset}")


def method_variants(base) -> list:
    """``(row label, method, SweepConfig)`` for each method of sweep config ``base``, plus VeRA+ with the other
    sharing mode and BN with fine-tuned γ/β (the rows of T2 and T3)."""
    import dataclasses

    rows = []
    for m in base.methods:
        rows.append((m, m, base))
        if m == "vera_plus":
            other = "cross" if base.method(m).params["sharing"] == "layer" else "layer"
            rows.append((f"vera_plus ({'cross-layer' if other == 'cross' else 'per-layer'})", m, dataclasses.replace(
                base, methods=(m,), method_params={**base.method_params, m: {"sharing": other}})))
        if m == "bn":
            steps = max(1, base.method(m).params["finetune_steps"])
            rows.append(("bn (+ γ/β fine-tuned)", m, dataclasses.replace(
                base, methods=(m,), method_params={**base.method_params, m: {"finetune_steps": steps}})))
    return rows


def cost_tables(variants: dict) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """T2 (storage) and T3 (extra MACs) for ``{model name: method_variants(...)}`` on untrained networks.

    Returns ``(t2, t3, networks)`` with ``networks[model] = {"params": ..., "base_macs": ...}``.
    """
    from .compensation import FitContext
    from .models import build_model
    from .schedule import log_windows

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
        networks[model_name] = {"params": n_params, "base_macs": n_macs}
        for label, m, cfg in model_rows:
            method = cfg.method(m)
            method.setup(ctx)
            st = method.storage()
            row = {"model": model_name, "method": label, "K": st.levels, "values_per_level": st.values_per_level,
                   "pct_of_model_per_level": 100 * st.values_per_level / n_params, "shared_values": st.shared_values,
                   "seed_bytes": st.seed_bytes}
            row.update({f"bytes_per_level_{p}": st.bytes_per_level(p) for p in PRECISION_BITS})
            row.update({f"total_bytes_{p}": st.total_bytes(p) for p in PRECISION_BITS})
            row["shared / regenerable"] = SHARED.get(m, "")
            rows.append(row)
            extra = method.extra_macs(example)
            note = f"+ {method.adapters_.weight_norm_macs():,} MACs once per calibration (norms)" if m == "dora" else ""
            macs_rows.append({"model": model_name, "method": label, "extra_macs": extra, "base_macs": n_macs,
                              "extra_pct": 100 * extra / n_macs, "note": note})
    return pd.DataFrame(rows), pd.DataFrame(macs_rows), networks


def storage_ratios(t2: pd.DataFrame) -> pd.DataFrame:
    """Other method's bytes ÷ VeRA+'s bytes (fp32), per level and over all K levels, per network."""
    rows = []
    for model_name in dict.fromkeys(t2["model"]):
        sub = t2[t2["model"] == model_name].set_index("method")
        for vera in [v for v in ("vera_plus", "vera_plus (cross-layer)", "vera_plus (per-layer)") if v in sub.index]:
            for other in [o for o in ("bn", "bn (+ γ/β fine-tuned)", "lora") if o in sub.index]:
                rows.append({"model": model_name, "VeRA+ variant": vera, "other": other,
                             "ratio per level": sub.loc[other, "bytes_per_level_fp32"]
                             / sub.loc[vera, "bytes_per_level_fp32"],
                             "ratio total (K levels)": sub.loc[other, "total_bytes_fp32"] / sub.loc[vera, "total_bytes_fp32"]})
    return pd.DataFrame(rows)
