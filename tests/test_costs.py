"""Storage and compute counts of the claims page: BN bound and field images (C3, C3b), LoRA at matched structure and
sharing (C4), VeRA+'s projections under both readings (C5), VeRA+'s extra MACs against rank (C6), the full-rank
correction's compute, field-recalibrated BN; each against a hand count."""
import pandas as pd
import pytest
import torch

from rramlib.study import costs
from rramlib.methods.overhead import OUR_READING
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


def test_vera_projections_under_both_readings_resnet20(resnet20_tables):
    """ResNet-20: A is r x max fan-in (64), B is max fan-out (64) x r. In SRAM: their fp32 values and the seed that
    refills them at power-up;
    regenerated per inference: the seed plus MT19937's 624 x 4-byte state, and one draw and one MAC per value."""
    config, _, t2, t3, _ = resnet20_tables
    rank, levels = config.method("vera_plus").params["rank"], config.resolved_profile().levels
    row = t2[t2["model"] == "resnet20"].set_index("method").loc[costs.VERA_CROSS]
    ab = rank * 64 + 64 * rank
    assert row["projection_values"] == ab and row["generator_state_bytes"] == 2496
    vectors = levels * (64 + rank) * 4
    assert row["total_bytes_fp32"] == vectors + 8  # the seed alone (neither reading of the projections)
    assert row["total_bytes_sram_fp32"] == vectors + ab * 4 + 8
    assert row["total_bytes_regenerated_fp32"] == vectors + 8 + 2496
    assert row["total_bytes_sram_int8"] == levels * (64 + rank) + ab + 8
    macs = t3[t3["model"] == "resnet20"].set_index("method").loc[costs.VERA_CROSS]
    assert (macs["regeneration_draws"], macs["regeneration_macs"]) == (ab, ab)
    assert macs["extra_pct_regenerated"] == pytest.approx(100 * (macs["extra_macs"] + ab) / macs["base_macs"])
    # the other methods keep no projections: the readings do not change them
    lora = t2[t2["model"] == "resnet20"].set_index("method").loc[costs.LORA_1X1]
    assert lora["total_bytes_sram_fp32"] == lora["total_bytes_fp32"] == lora["total_bytes_regenerated_fp32"]


def test_storage_readings_reject_an_unknown_reading():
    from rramlib.methods.overhead import Storage

    st = Storage(values_per_level=10, levels=2, seed_bytes=8, projection_values=5, generator_state_bytes=2496,
                 input_values=3, calibration_values=4)
    assert st.total_values == 27  # projections are not among the values kept besides them
    assert st.total_bytes("fp32", None) == (20 + 4) * 4 + 3 + 8  # input pixels at 8 bits whatever the precision
    assert st.total_bytes("fp16", "sram") == (20 + 4 + 5) * 2 + 3 + 8 == st.total_bytes("fp16")  # our reading
    with pytest.raises(RramlibError, match="projections"):
        st.total_bytes("fp32", "rom")


def test_c3_is_the_measured_bn_and_the_four_value_bound_a_note(resnet20_tables):
    """The ``bn`` method that runs stores two statistics per channel: per level its ratio IS the two-value bound;
    over K levels whatever VeRA+ keeps once keeps it below, for any K and both readings."""
    config, variants, t2, _, networks = resnet20_tables
    rank, levels = config.method("vera_plus").params["rank"], config.resolved_profile().levels
    two, four = (costs.bn_storage_bound(RESNET20_BN, 64, rank, values_per_channel=v) for v in (2, 4))
    ratios = costs.storage_ratios(t2).set_index(["VeRA+ variant", "projections", "other"])
    assert ratios.loc[(costs.VERA_CROSS, "sram", "bn"), "ratio per level"] == pytest.approx(two, rel=1e-12)
    assert ratios.loc[(costs.VERA_CROSS, "sram", costs.BN_AFFINE), "ratio per level"] == pytest.approx(four)
    readings = costs.bn_readings(variants, t2, networks).set_index("projections")
    bn_bytes = levels * 2 * RESNET20_BN * 4  # 22,016 B at K = 4
    vectors = levels * (64 + rank) * 4
    assert readings.loc["sram", "bn (run) ÷ VeRA+ (ours)"] == pytest.approx(bn_bytes / (vectors + 2 * 64 * rank * 4 + 8))
    assert readings.loc["regenerated", "bn (run) ÷ VeRA+ (ours)"] == pytest.approx(bn_bytes / (vectors + 8 + 2496))
    assert readings.loc["sram", "bound 4·ΣC_BN/(C_max+r) (not run)"] == pytest.approx(four)
    assert readings.loc["sram", "bound 2·ΣC_BN/(C_max+r)"] == pytest.approx(two)


def test_field_bn_curve_and_match():
    curve = costs.field_bn_curve([10, 100], 3 * 32 * 32, {"sram": 9472.0, "regenerated": 3784.0})
    assert curve["image bytes (8-bit)"].tolist() == [30_720, 307_200]
    assert curve["ratio to VeRA+ (sram)"].tolist() == pytest.approx([30_720 / 9472, 307_200 / 9472])
    acc = pd.DataFrame({"n_images": [10, 100, 1000], "accuracy": [0.5, 0.8, 0.9]})
    assert costs.field_bn_match(acc, 0.8) == 100
    assert costs.field_bn_match(acc, 0.95) is None


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
    ratios = costs.storage_ratios(t2).set_index(["VeRA+ variant", "projections", "other"])
    for reading in ("sram", "regenerated"):
        matched = ratios.loc[(costs.VERA_LAYER, reading, costs.LORA_1X1)]
        assert (matched["matched structure"], matched["matched sharing"]) == ("yes", "yes")
        assert matched["ratio per level"] == pytest.approx(per_level[costs.LORA_1X1] / per_level[costs.VERA_LAYER])
        flags = ratios.loc[(costs.VERA_CROSS, reading, costs.LORA_PEFT), ["matched structure", "matched sharing"]]
        assert tuple(flags) == ("no", "no")
        assert ratios.loc[(costs.VERA_CROSS, reading, "bn"), "matched sharing"] == "—"
    totals = t2[t2["model"] == "resnet20"].set_index("method")
    assert ratios.loc[(costs.VERA_LAYER, "sram", costs.LORA_1X1), "ratio total (K levels)"] == pytest.approx(
        totals.loc[costs.LORA_1X1, "total_bytes_fp32"] / totals.loc[costs.VERA_LAYER, "total_bytes_sram_fp32"])


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


def test_offline_correction_counts_the_layers_macs():
    """ΔW·x runs digitally beside the crossbar: as many MACs as every adapted (RRAM) layer, 100 %."""
    config = SweepConfig(profile="smoke", preset="ibm_pcm", methods=("offline_correction",))
    t2, t3, networks = costs.cost_tables({"resnet20": costs.method_variants(config)})
    row = t3.set_index("method").loc["offline_correction"]
    assert row["extra_macs"] == networks["resnet20"]["base_macs"] == 40_551_040 and row["extra_pct"] == 100


def test_dora_keeps_its_calibration_images_at_the_pixel_precision():
    from rramlib.methods.overhead import PIXEL_BITS

    config = SweepConfig(profile="smoke", preset="ibm_pcm", methods=("dora",))
    fitted_free = costs.cost_tables({"resnet20": costs.method_variants(config)})[0]
    assert fitted_free.empty  # no fits for this network: DoRA's layers depend on training, its row is left out
    from rramlib.methods.compensation import FitContext, make_method
    from rramlib.methods.schedule import log_windows

    splits = costs.synthetic_splits("digits", n=16)
    net = build_model("digits_cnn", num_classes=10, in_channels=1, seed=0).eval()
    ctx = FitContext(model=net, splits=splits, drift=config.drift_model(), schedule=log_windows(2), train_chips=2)
    method = make_method("dora", n_samples=10, budget=0.5)
    method.setup(ctx)
    st = method.storage()
    assert st.input_values == 10 * 8 * 8 and PIXEL_BITS == 8
    assert st.total_bytes("fp32") == (st.total_values - st.input_values) * 4 + st.input_values
    assert st.total_values == sum(t.numel() for t in method._sram_tensors().values())


def test_field_bn_recalibration_matches_a_hand_estimate_and_restores_the_momentum():
    from rramlib.methods.compensation.field_bn import field_bn_accuracy, recalibrate_in_field

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.Flatten(),
                                torch.nn.LazyLinear(2))
    images = torch.randn(10, 1, 6, 6)
    model(images)
    recalibrate_in_field(model, images, batch_size=4)  # batches of 4, 4 and 2 images: a cumulative average
    feats = [model[0](images[i:i + 4]) for i in (0, 4, 8)]
    mean = sum(f.mean((0, 2, 3)) for f in feats) / 3
    var = sum(f.var((0, 2, 3), unbiased=True) for f in feats) / 3
    bn = model[1]
    assert torch.allclose(bn.running_mean, mean, atol=1e-6) and torch.allclose(bn.running_var, var, atol=1e-6)
    assert bn.momentum == 0.1 and not bn.training
    with pytest.raises(RramlibError, match="BatchNorm"):
        recalibrate_in_field(torch.nn.Linear(2, 2), images)
    with pytest.raises(RramlibError, match="at least 2"):
        recalibrate_in_field(model, images[:1])


def test_field_bn_accuracy_on_a_drifted_chip():
    """One record per (chip, N); the chip's own network is not changed by a recalibration."""
    from rramlib.device.analog import AnalogModel
    from rramlib.device.drift import make_drift_model
    from rramlib.methods.compensation.field_bn import field_bn_accuracy

    net = build_model("digits_cnn", num_classes=10, in_channels=1, seed=0).eval()
    analog = AnalogModel(net, make_drift_model("ibm_pcm"), seed=0)
    x, y = torch.randn(40, 1, 8, 8), torch.arange(40) % 10
    records = field_bn_accuracy(analog, x, [2, 20], 3600.0, [0, 1], (x, y))
    assert [(r["chip_seed"], r["n_images"]) for r in records] == [(0, 2), (0, 20), (1, 2), (1, 20)]
    assert all(0 <= r["accuracy"] <= 1 for r in records)
    assert analog.seed == 1 and all(m.momentum == 0.1 for m in analog.model.modules()
                                    if isinstance(m, torch.nn.BatchNorm2d))
    with pytest.raises(RramlibError, match="only 40"):
        field_bn_accuracy(analog, x, [41], 3600.0, [0], (x, y))


def test_storage_ratios_divide_by_vera_under_each_projection_reading():
    import pandas as pd

    from rramlib.study.costs import storage_ratios

    t2 = pd.DataFrame({"model": "m", "method": ["vera_plus (cross-layer)", "bn", "lora"],
                       "bytes_per_level_fp32": [10, 200, 50],
                       "total_bytes_sram_fp32": [80, 800, 200], "total_bytes_regenerated_fp32": [40, 800, 200]})
    r = storage_ratios(t2).set_index(["other", "projections"])
    assert r.loc[("bn", "sram"), "ratio per level"] == r.loc[("bn", "regenerated"), "ratio per level"] == 20
    assert r.loc[("bn", "sram"), "ratio total (K levels)"] == 10
    assert r.loc[("lora", "regenerated"), "ratio total (K levels)"] == 5
    assert set(r["matched sharing"]) == {"—", "no"}  # cross-layer VeRA+ never matches LoRA's per-layer sharing


def test_every_projection_reading_has_a_label_and_ours_is_one_of_them():
    from rramlib.methods.overhead import PROJECTION_READINGS

    assert set(costs.READING_LABELS) == set(PROJECTION_READINGS) and OUR_READING in PROJECTION_READINGS
    assert costs.our_reading_label() == f"VeRA+: {costs.READING_LABELS[OUR_READING]} (our reading)"


def test_method_variants_add_the_other_sharing_and_bn_finetuning():
    from rramlib.study.costs import method_variants
    from rramlib.study.experiments import SweepConfig

    rows = method_variants(SweepConfig(profile="smoke", preset="ibm_pcm", methods=("vera_plus", "bn")))
    labels = [r[0] for r in rows]
    assert labels == ["vera_plus (per-layer)", "vera_plus (cross-layer)", "bn", "bn (+ γ/β fine-tuned)"]
    sharing = [r[2].method("vera_plus").params["sharing"] for r in rows[:2]]
    assert sharing == ["layer", "cross"]
    assert rows[3][2].method("bn").params["finetune_steps"] >= 1
