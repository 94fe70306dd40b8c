"""Storage and compute counts of the claims page: BN bound and field images (C3), LoRA at matched structure and
sharing (C4), VeRA+'s extra MACs against rank (C6); each against a hand count."""
import pytest
import torch

from rramlib.study import costs
from rramlib.core.errors import RramlibError
from rramlib.study.experiments import SweepConfig
from rramlib.nn.models import build_model

# ResNet-20 BN channels by hand: stem 16, stage 1: 6 x 16, stage 2: 6 x 32, stage 3: 6 x 64
RESNET20_BN = 16 + 6 * 16 + 6 * 32 + 6 * 64  # 688
# ResNet-50 (torchvision): stem 64; per stage blocks x (w + w + 4w) + one downsample BN of 4w
RESNET50_BN = 64 + sum(n * 6 * w + 4 * w for n, w in ((3, 64), (4, 128), (6, 256), (3, 512)))  # 26,560


def network(name):
    channels, size, classes = costs.INPUT_SHAPES[costs.MODEL_DATA[name]]
    return build_model(name, num_classes=classes, in_channels=channels, seed=0)


@pytest.fixture(scope="module")
def resnet20_tables():
    config = SweepConfig(profile="smoke", preset="ibm_pcm", methods=("bn", "lora", "vera_plus"))
    variants = {"resnet20": costs.method_variants(config)}
    t2, t3, networks = costs.cost_tables(variants)
    return config, variants, t2, t3, networks


def test_bn_bound_against_a_hand_count():
    r20, r50 = network("resnet20"), network("resnet50")
    assert costs.bn_channels(r20) == RESNET20_BN == 688 and costs.widest_layer(r20) == 64
    assert costs.bn_channels(r50) == RESNET50_BN == 26_560 and costs.widest_layer(r50) == 2048
    assert costs.bn_storage_bound(688, 64, 16) == pytest.approx(4 * 688 / 80)  # 34.4: the "~34x"
    assert costs.bn_storage_bound(26_560, 2048, 16) == pytest.approx(4 * 26_560 / 2064)  # 51.5: "~50x"
    assert costs.bn_storage_bound(688, 64, 16, values_per_channel=2) == pytest.approx(2 * 688 / 80)
    with pytest.raises(RramlibError, match="rank"):
        costs.bn_storage_bound(688, 64, 0)


def test_counted_bn_over_cross_vera_meets_the_bound(resnet20_tables):
    """Per level the counted ratio IS the bound; over K levels VeRA+'s seed keeps it just below, for any K."""
    config, variants, t2, _, networks = resnet20_tables
    rank = config.method("vera_plus").params["rank"]
    bound = costs.bn_storage_bound(RESNET20_BN, 64, rank)
    ratios = costs.storage_ratios(t2).set_index(["VeRA+ variant", "other"])
    row = ratios.loc[(costs.VERA_CROSS, costs.BN_AFFINE)]
    assert row["ratio per level"] == pytest.approx(bound, rel=1e-12)
    vera_bytes = config.resolved_profile().levels * (64 + rank) * 4
    assert row["ratio total (K levels)"] == pytest.approx(bound * vera_bytes / (vera_bytes + 8), rel=1e-12)
    readings = costs.bn_readings(variants, t2, networks).iloc[0]
    assert readings["bound 4·ΣC_BN/(C_max+r)"] == pytest.approx(bound)
    assert readings["BN sets per level ÷ VeRA+ (counted)"] == pytest.approx(row["ratio total (K levels)"])
    # field BN: batches x batch_size CIFAR images of 3 x 32 x 32 bytes against VeRA+'s K (C_max + r) fp32 values + seed
    bn = config.method("bn").params
    images = bn["batches"] * bn["batch_size"] * 3 * 32 * 32
    levels = config.resolved_profile().levels
    assert readings["calibration images"] == bn["batches"] * bn["batch_size"]
    assert readings["image bytes (8-bit)"] == images
    assert readings["field BN images ÷ VeRA+"] == pytest.approx(images / (levels * (64 + rank) * 4 + 8))


def test_image_bytes_hand_count_and_errors():
    assert costs.image_bytes(2560, 3 * 32 * 32) == 7_864_320
    assert costs.image_bytes(10, 3 * 224 * 224, bits=16) == 10 * 150_528 * 2
    with pytest.raises(RramlibError, match="n_images"):
        costs.image_bytes(-1, 10)


def test_lora_at_matched_rank_structure_and_sharing(resnet20_tables):
    """LoRA with VeRA+'s 1x1 branch at VeRA+'s rank stores r·(C_in + C_out) per layer, peft's layout
    r·(C_in·k² + C_out); only the 1x1 one against per-layer VeRA+ matches structure and sharing."""
    config, variants, t2, _, _ = resnet20_tables
    rank = config.method("vera_plus").params["rank"]
    layers = [m for m in network("resnet20").modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    dims = [(m.weight.shape[1], m.weight.shape[0], m.weight[0, 0].numel()) for m in layers]
    per_level = t2[t2["model"] == "resnet20"].set_index("method")["values_per_level"]
    assert per_level[costs.LORA_1X1] == sum(rank * (i + o) for i, o, _ in dims)
    assert per_level[costs.LORA_PEFT] == sum(rank * (i * k + o) for i, o, k in dims)
    assert per_level[costs.VERA_LAYER] == sum(o + rank for _, o, _ in dims)
    assert per_level[costs.VERA_CROSS] == 64 + rank
    ratios = costs.storage_ratios(t2).set_index(["VeRA+ variant", "other"])
    matched = ratios.loc[(costs.VERA_LAYER, costs.LORA_1X1)]
    assert (matched["matched structure"], matched["matched sharing"]) == ("yes", "yes")
    assert matched["ratio per level"] == pytest.approx(per_level[costs.LORA_1X1] / per_level[costs.VERA_LAYER])
    flags = ratios.loc[(costs.VERA_CROSS, costs.LORA_PEFT), ["matched structure", "matched sharing"]]
    assert tuple(flags) == ("no", "no")
    assert ratios.loc[(costs.VERA_CROSS, "bn"), "matched sharing"] == "—"


def test_method_variants_name_every_variant():
    config = SweepConfig(profile="smoke", preset="ibm_pcm", methods=("none", "vera_plus", "lora", "bn"),
                         method_params={"vera_plus": {"rank": 8}, "lora": {"rank": 2}})
    rows = {label: cfg for label, _, cfg in costs.method_variants(config)}
    assert list(rows) == ["none", costs.VERA_LAYER, costs.VERA_CROSS, "lora", costs.LORA_1X1, costs.LORA_PEFT, "bn",
                          costs.BN_AFFINE]
    assert rows[costs.VERA_CROSS].method("vera_plus").params["sharing"] == "cross"
    vera = config.method("vera_plus").params
    assert rows[costs.VERA_LAYER].method("vera_plus").params == {**vera, "sharing": "layer"}
    assert rows["lora"].method("lora").params["rank"] == 2
    assert rows[costs.LORA_1X1].method("lora").params == {**config.method("lora").params, "rank": 8,
                                                          "conv_branch": "1x1"}
    assert rows[costs.BN_AFFINE].method("bn").params["finetune_steps"] >= 1
    assert set(costs.ROW_KEYS) >= set(rows) - {"none"}


def test_macs_vs_rank_matches_the_golden_resnet20_count():
    """Same per-rank slope a and floor b as tests/test_compensation.py's hand count of ResNet-20."""
    a = 1024 * 20 + 6 * 1024 * 33 + 256 * 49 + 5 * 256 * 65 + 64 * 97 + 5 * 64 * 129 + 75
    b = 1024 * 16 + 6 * 1024 * 16 + 6 * 256 * 32 + 6 * 64 * 64 + 10
    table, nets = costs.macs_vs_rank(["resnet20"], [1, 2, 16], fraction=0.019)
    assert table["extra_macs_pct"].tolist() == pytest.approx([100 * (a * r + b) / 40_551_040 for r in (1, 2, 16)])
    assert nets.loc["resnet20", ["base_macs", "bn_channels", "widest_layer"]].tolist() == [40_551_040, 688, 64]
    r = nets.loc["resnet20", "rank_within_fraction"]
    assert (a * r + b) / 40_551_040 <= 0.019 < (a * (r + 1) + b) / 40_551_040
    with pytest.raises(RramlibError, match="unknown model"):
        costs.macs_vs_rank(["vgg"], [1])
