"""Hidden-Fold Networks: supermask, folding (rramlib.nn.hidden_fold), memory accounting
(rramlib.methods.hidden_fold_memory), crossbar mapping, training and drift (rramlib.study.hidden_fold)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from rramlib.device.analog import AnalogModel
from rramlib.nn.data import DatasetSplits
from rramlib.core.errors import RramlibError
from rramlib.nn.evaluate import accuracy
from rramlib.methods.hidden_fold_memory import dense_memory, hfn_memory
from rramlib.nn.hidden_fold import HFNArch, SupermaskLinear, build_hfn, materialise, supermask_layers
from rramlib.study.hidden_fold import accuracy_over_time
from rramlib.device.mapping import Mapping
from rramlib.nn.train import TrainConfig, train

#: one stage of 3 blocks at 4 channels on 1-channel inputs, 3 classes: small enough to count by hand
TINY = HFNArch(widths=(4,), blocks=(3,), folded=(0,))


def tiny(seed=0, dense=False, **kw):
    return build_hfn(TINY, num_classes=3, in_channels=1, seed=seed, dense=dense, **kw)


def fake_splits(n=48, size=8, classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=gen)
    y = torch.arange(n) % classes
    x[:, 0, 0, :] += y[:, None].float()  # something learnable
    data = TensorDataset(x, y)
    return DatasetSplits(train=data, val=data, test=data, calib=data, num_classes=classes, in_channels=1,
                         image_size=size, name="fake")


# ------------------------------------------------------------------------------------------ supermask
@pytest.mark.parametrize("k", [0.3, 0.05, 1.0])
def test_mask_keeps_exactly_the_top_k_scores_of_each_layer(k):
    model = tiny(k=k)
    for name, layer in supermask_layers(model):
        mask = layer.mask().detach()
        n = mask.numel()
        assert int(mask.sum()) == max(1, round(k * n)), name
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        s = layer.scores.detach().abs()
        if k < 1:
            assert s[mask == 1].min() > s[mask == 0].max(), name  # kept = the largest |score|


def test_weights_are_signed_constants_with_fan_in_scaling():
    model = tiny()
    for _, layer in supermask_layers(model):
        fan_in = layer.weight[0].numel()
        c = math.sqrt(2.0 / fan_in)
        assert torch.equal(layer.weight.abs(), torch.full_like(layer.weight, c))
        assert 0 < float((layer.weight > 0).float().mean()) < 1  # both signs occur
    scaled = tiny(scale_fan=True)
    layer = supermask_layers(scaled)[1][1]
    assert torch.allclose(layer.weight.abs(), torch.full_like(layer.weight, math.sqrt(2.0 / (0.3 * 36))))


def test_weights_bit_identical_after_training_and_only_scores_train():
    model = tiny()
    before = {n: m.weight.clone() for n, m in supermask_layers(model)}
    scores = {n: m.scores.detach().clone() for n, m in supermask_layers(model)}
    assert all(n.endswith("scores") for n, _ in model.named_parameters())
    assert not any("weight" in k for k in model.state_dict())  # regenerated from the seed, not stored
    train(model, fake_splits(), TrainConfig(epochs=2, lr=0.1, batch_size=16), progress=False)
    for n, m in supermask_layers(model):
        assert torch.equal(m.weight, before[n]), n
        assert m.weight.is_contiguous()
    assert any(not torch.equal(m.scores, scores[n]) for n, m in supermask_layers(model))


def test_scores_get_the_straight_through_gradient():
    torch.manual_seed(0)
    layer = SupermaskLinear(6, 5, k=0.3, seed=3)
    x = torch.randn(4, 6)
    g_out = torch.randn(4, 5)
    (layer(x) * g_out).sum().backward()
    # d loss / d W_eff = g_out^T x; W_eff = W * m; straight through m -> |s|; d|s|/ds = sign(s)
    expected = (g_out.T @ x) * layer.weight * layer.scores.detach().sign()
    assert torch.allclose(layer.scores.grad, expected, atol=1e-6)
    assert (layer.scores.grad != 0).float().mean() > 0.9  # pruned weights get gradients too


def test_every_layer_of_an_hfn_gets_score_gradients():
    model = tiny()
    F.cross_entropy(model(torch.randn(8, 1, 8, 8)), torch.arange(8) % 3).backward()
    for name, layer in supermask_layers(model):
        assert layer.scores.grad is not None and layer.scores.grad.abs().sum() > 0, name


# ------------------------------------------------------------------------------------------ folding
def test_folded_block_is_one_weight_tensor_applied_n_minus_1_times_with_bn_per_iteration():
    model = tiny()
    stage = model.stages[0]
    assert stage.fold and stage.iterations == 2
    calls = {"conv1": 0, "conv2": 0}
    for name in calls:
        getattr(stage.folded, name).register_forward_hook(lambda *a, name=name: calls.__setitem__(name, calls[name] + 1))
    model.train()
    model(torch.randn(5, 1, 8, 8))
    assert calls == {"conv1": 2, "conv2": 2}
    # one tensor per folded layer; stem + first block (2) + folded block (2) + classifier = 6 distinct layers
    assert len(supermask_layers(model)) == 6
    assert len({m.weight.data_ptr() for _, m in supermask_layers(model)}) == 6
    bns = list(stage.folded.bn1) + list(stage.folded.bn2)
    assert len(bns) == 4 and len({id(b) for b in bns}) == 4
    assert [int(b.num_batches_tracked) for b in bns] == [1, 1, 1, 1]  # each BN saw exactly one iteration
    assert not any(b.affine for b in model.modules() if isinstance(b, nn.BatchNorm2d))


def test_folded_forward_equals_the_unrolled_computation():
    model = tiny().eval()
    x = torch.randn(3, 1, 8, 8)
    blk, first = model.stages[0].folded, model.stages[0].first
    h = F.relu(model.stem_bn(model.stem(x)))
    h = first(h)
    for i in range(2):
        h = F.relu(blk.bn2[i](blk.conv2(F.relu(blk.bn1[i](blk.conv1(h))))) + h)
    out = model.classifier(h.mean((2, 3)))
    assert torch.allclose(model(x), out, atol=1e-6)


def test_cifar_hfn_builds_runs_and_folds_stages_3_and_4():
    hfn = build_hfn("hfn_cifar", num_classes=100, in_channels=3, seed=0)
    dense = build_hfn("hfn_cifar", num_classes=100, in_channels=3, seed=0, dense=True)
    # stem 1, stage 1: 3 blocks x 2 (identity shortcut), stage 2: 4 x 2 + projection, stages 3 and 4 folded:
    # first block (2 + projection) + one folded block (2), classifier 1
    assert len(supermask_layers(hfn)) == 1 + 6 + 9 + 5 + 5 + 1
    assert sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in dense.modules()) == 1 + 6 + 9 + 13 + 7 + 1
    assert [s.fold for s in hfn.stages] == [False, False, True, True]
    assert [len(s.folded.bn1) for s in hfn.stages[2:]] == [5, 2]
    x = torch.randn(2, 3, 32, 32)
    out = hfn(x)
    assert out.shape == (2, 100)
    out.sum().backward()
    assert all(m.scores.grad is not None for _, m in supermask_layers(hfn))
    assert dense(x).shape == (2, 100)


def test_same_seed_same_network_whatever_the_global_rng():
    torch.manual_seed(123)
    a = tiny(seed=7)
    torch.manual_seed(456)
    b = tiny(seed=7)
    c = tiny(seed=8)
    for (_, la), (_, lb), (_, lc) in zip(supermask_layers(a), supermask_layers(b), supermask_layers(c)):
        assert torch.equal(la.weight, lb.weight) and torch.equal(la.scores, lb.scores)
        assert not torch.equal(la.weight, lc.weight)
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(a.eval()(x), b.eval()(x))
    da, db = tiny(seed=7, dense=True), tiny(seed=7, dense=True)
    assert all(torch.equal(p, q) for p, q in zip(da.parameters(), db.parameters()))


# ------------------------------------------------------------------------------------------ memory
def test_memory_accounting_golden_values():
    # HFN: masks of stem 1*4*9 = 36, first block 2 x 144, folded block 2 x 144 (once), classifier 4*3 = 12
    #   -> 624 bits = 78 bytes; BN (non-affine: mean, var) on 4 + 2*4 + 2*2*4 = 28 features -> 56 values; seed 8 B
    mem = hfn_memory(tiny())
    assert (mem.mask_bits, mem.mask_bytes, mem.digital.total_values, mem.digital.seed_bytes) == (624, 78, 56, 8)
    assert mem.total_bytes("fp32") == 78 + 8 + 56 * 4 == 310
    assert mem.total_bytes("int8") == 78 + 8 + 56 == 142
    # dense, unfolded: 36 + 6 x 144 + 12 weights + 3 biases = 915; BN (affine: 4 values) on 4 + 3*2*4 = 28
    # features -> 112; 1027 values
    dense = dense_memory(tiny(dense=True))
    assert dense.total_values == 1027
    assert dense.total_bytes("fp32") == 4108 and dense.total_bytes("int8") == 1027
    assert mem.as_dict()["total_bytes_fp16"] == 78 + 8 + 112


def test_memory_of_the_wrong_kind_of_network_is_refused():
    with pytest.raises(RramlibError, match="hfn_memory"):
        dense_memory(tiny())
    with pytest.raises(RramlibError, match="supermask"):
        hfn_memory(tiny(dense=True))


# ------------------------------------------------------------------------------------------ crossbar
def test_materialised_hfn_computes_the_same_and_holds_minus_c_zero_plus_c():
    model = tiny().eval()
    plain = materialise(model).eval()
    x = torch.randn(4, 1, 8, 8)
    assert torch.allclose(plain(x), model(x), atol=1e-5)
    assert not supermask_layers(plain)
    layers = [m for m in plain.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 6  # the folded layers stay one module each
    for (_, sm), layer in zip(supermask_layers(model), layers):
        c = sm.weight.abs().max()
        assert set(layer.weight.unique().tolist()) <= {-float(c), 0.0, float(c)}
        assert torch.equal(layer.weight != 0, sm.mask().bool())
    assert all(b.affine and torch.equal(b.weight, torch.ones_like(b.weight))
               for b in plain.modules() if isinstance(b, nn.BatchNorm2d))


def test_hfn_mapping_pruned_pairs_at_g_min_kept_at_plus_minus_c():
    plain = materialise(tiny())
    mapping = Mapping(g_min=1.0, g_max=25.0)
    for layer in (m for m in plain.modules() if isinstance(m, (nn.Conv2d, nn.Linear))):
        w = layer.weight.detach()
        g, w_max = mapping.to_conductance(w)
        assert torch.equal(w_max, w.abs().max())  # = c
        pruned, pos, neg = w == 0, w > 0, w < 0
        assert torch.all(g[0][pruned] == 1.0) and torch.all(g[1][pruned] == 1.0)
        assert torch.all(g[0][pos] == 25.0) and torch.all(g[1][pos] == 1.0)
        assert torch.all(g[0][neg] == 1.0) and torch.all(g[1][neg] == 25.0)
    # AnalogModel programs exactly these weights (relative Gaussian: no programming noise, no drift at t = 0)
    chip = AnalogModel(plain, "relative_gaussian", seed=10_000, mapping="differential")
    for name, w in chip.weights_at(0.0):
        assert torch.allclose(w, dict(plain.named_modules())[name].weight, atol=1e-6)
    assert chip.num_devices() == 2 * hfn_memory(tiny()).mask_bits


def test_accuracy_over_time_records_and_drift_free_start():
    splits = fake_splits()
    model = tiny().eval()
    test = splits.test.tensors
    recs = accuracy_over_time(model, "relative_gaussian", times={"0s": 0.0, "10y": 3.15576e8},
                              chips=[10_000, 10_001], test=test)
    assert [(r["chip"], r["time_label"]) for r in recs] == [(10_000, "0s"), (10_000, "10y"), (10_001, "0s"),
                                                            (10_001, "10y")]
    software = accuracy(model, test)
    assert [r["accuracy"] for r in recs if r["time_s"] == 0.0] == [software, software]
    with pytest.raises(RramlibError, match="chip"):
        accuracy_over_time(model, "relative_gaussian", times={"1s": 1.0}, chips=[], test=test)


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kw, match", [
    (dict(k=0.0), "density"), (dict(k=1.5), "density"), (dict(folded=(3,)), "folded stage"),
    (dict(widths=(4, 8)), "one entry per stage"), (dict(bn_affine="yes"), "bn_affine"), (dict(depth=3), "unknown"),
])
def test_bad_layouts_are_refused(kw, match):
    with pytest.raises(RramlibError, match=match):
        tiny(**kw)


def test_bad_names_and_seeds_are_refused():
    with pytest.raises(RramlibError, match="HFN architecture"):
        build_hfn("hfn_nope", num_classes=10, in_channels=1)
    with pytest.raises(RramlibError, match="seed"):
        build_hfn("hfn_digits", num_classes=10, in_channels=1, seed=-1)
    with pytest.raises(RramlibError, match="num_classes"):
        build_hfn("hfn_digits", num_classes=0, in_channels=1)


def test_bn_recalibration_of_an_hfn_covers_every_per_iteration_batchnorm():
    from rramlib.study.hidden_fold import fit_compensation

    splits = fake_splits()
    method = fit_compensation("bn", tiny(), splits, "relative_gaussian", levels=2, train_chips=2,
                              params={"batches": 2, "batch_size": 16})
    storage = method.storage()
    # running mean and variance of 28 BN features: stem 4, first block 2 x 4, folded block 2 x 2 iterations x 4
    assert (storage.values_per_level, storage.levels) == (56, 2)
    recs = accuracy_over_time(method, times={"1s": 1.0, "10y": 3.15576e8}, chips=[10_000], test=splits.test.tensors)
    assert [r["time_label"] for r in recs] == ["1s", "10y"] and all(0 <= r["accuracy"] <= 1 for r in recs)
    with pytest.raises(RramlibError, match="drift=None"):
        accuracy_over_time(method, "ibm_pcm", times={"1s": 1.0}, chips=[10_000], test=splits.test.tensors)


def test_crossbar_layout_counts_folded_reads_and_pruned_pairs():
    from rramlib.study.hidden_fold import crossbar_layout

    model = tiny().train()
    rows = {r["layer"]: r for r in crossbar_layout(model, torch.randn(2, 1, 8, 8))}
    assert model.training  # restored
    assert rows["stages.0.folded.conv1"]["reads_per_inference"] == 2
    assert rows["stages.0.first.conv1"]["reads_per_inference"] == 1
    assert rows["stem"]["pairs"] == 36 and rows["stem"]["kept"] == 11 and rows["stem"]["pruned"] == 25
    assert rows["stem"]["c"] == pytest.approx(math.sqrt(2 / 9))


def test_methods_that_rewrite_weights_are_refused_for_an_hfn():
    from rramlib.study.hidden_fold import check_hfn_method

    assert check_hfn_method("vera_plus") == "vera_plus"
    for name in ("offline_correction", "noise_aware"):
        with pytest.raises(RramlibError, match="does not apply"):
            check_hfn_method(name)
    with pytest.raises(RramlibError, match="unknown method"):
        check_hfn_method("nope")


def test_paper_profile_uses_the_authors_cifar100_recipe():
    from rramlib.nn.hidden_fold import HFN_ARCHS
    from rramlib.study.hidden_fold import HFN_PROFILES

    spec = HFN_PROFILES["paper"]
    assert (spec.dataset, spec.arch) == ("cifar100", "hfn_cifar")
    r = spec.hfn_train
    assert (r.epochs, r.lr, r.momentum, r.weight_decay, r.batch_size) == (200, 0.1, 0.9, 5e-4, 128)
    assert HFN_ARCHS["hfn_cifar"].folded == (2, 3) and HFN_ARCHS["hfn_cifar"].k == 0.3


def test_train_pair_caches_scores_and_regenerates_the_weights(tmp_path, monkeypatch):
    from rramlib.core.cache import Cache
    from rramlib.study.hidden_fold import HFN_PROFILES, HFNProfile, train_pair

    one_epoch = TrainConfig(epochs=1, lr=0.1, batch_size=128)
    monkeypatch.setitem(HFN_PROFILES, "smoke", HFNProfile("digits", "hfn_digits", one_epoch, one_epoch))
    cache = Cache(tmp_path)
    first = train_pair("smoke", cache=cache)
    second = train_pair("smoke", cache=cache)
    assert (cache.misses, cache.hits) == (1, 1)
    assert (second.hfn_accuracy, second.dense_accuracy) == (first.hfn_accuracy, first.dense_accuracy)
    assert second.key == first.key
    for (_, a), (_, b) in zip(supermask_layers(first.hfn), supermask_layers(second.hfn)):
        assert torch.equal(a.scores, b.scores) and torch.equal(a.mask(), b.mask())
    with pytest.raises(RramlibError, match="HFN profile"):
        train_pair("huge")


def test_chapter_method_parameters_override_the_book_profile():
    from rramlib.study.hidden_fold import HFN_PROFILES

    spec = HFN_PROFILES["quick"]
    book = {"vera_plus": {"steps": 300, "rank": 8}, "bn": {"batches": 5}}
    assert spec.method("vera_plus", book) == {"steps": 150, "rank": 8}
    assert spec.method("bn", book) == {"batches": 5} and spec.method("lora") == {}


def test_weight_noise_accuracy_is_seeded_and_leaves_the_model_alone():
    from rramlib.study.hidden_fold import weight_noise_accuracy

    model = tiny().eval()
    test = fake_splits().test.tensors
    before = [m.scores.detach().clone() for _, m in supermask_layers(model)]
    rows = weight_noise_accuracy(model, test, sigmas=[0.0, 0.5], repeats=2, seed=1)
    assert [(r["sigma"], r["repeat"]) for r in rows] == [(0.0, 0), (0.0, 1), (0.5, 0), (0.5, 1)]
    software = accuracy(model, test)
    assert rows[0]["accuracy"] == rows[1]["accuracy"] == software
    assert rows == weight_noise_accuracy(model, test, sigmas=[0.0, 0.5], repeats=2, seed=1)
    assert all(torch.equal(b, m.scores) for b, (_, m) in zip(before, supermask_layers(model)))
    dense = tiny(dense=True).eval()
    w = dense.stem.weight.clone()
    weight_noise_accuracy(dense, test, sigmas=[1.0], repeats=1)
    assert torch.equal(dense.stem.weight, w)
    with pytest.raises(RramlibError, match="sigma"):
        weight_noise_accuracy(model, test, sigmas=[-1.0])
