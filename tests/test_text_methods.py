"""The compensation methods on the Linear layers of a BERT encoder (tiny random configs, in seconds), the LayerNorm
re-fit (our analogue of BN recalibration), VeRA+ against peft's VeRA on a BERT, and the storage and extra compute
of BERT-base and BERT-large counted from their architectures (rramlib.study.costs.text_storage_table)."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

pytest.importorskip("transformers")

from transformers import BertConfig, BertForSequenceClassification  # noqa: E402

from rramlib.core.errors import RramlibError  # noqa: E402
from rramlib.core.seeding import EVAL_CHIP_BASE  # noqa: E402
from rramlib.core.times import TIME_GRID  # noqa: E402
from rramlib.device.drift import make_drift_model  # noqa: E402
from rramlib.methods.adapters import AdapterWrapper, add_vera_plus  # noqa: E402
from rramlib.methods.compensation import METHODS, FitContext, make_method  # noqa: E402
from rramlib.methods.overhead import MT19937_STATE_BYTES, OUR_READING, TOKEN_BITS, Storage, base_macs  # noqa: E402
from rramlib.methods.schedule import log_windows  # noqa: E402
from rramlib.nn.data import DatasetSplits  # noqa: E402
from rramlib.nn.evaluate import accuracy, predict_logits  # noqa: E402
from rramlib.study import costs  # noqa: E402

LENGTH, VOCAB = 8, 12
TINY = {"vocab_size": VOCAB, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 32, "max_position_embeddings": LENGTH, "num_labels": 2, "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0}
#: per encoder layer: query, key, value, attention output, intermediate, output; then the pooler and the classifier
N_LINEAR = TINY["num_hidden_layers"] * 6 + 2
#: the embeddings' LayerNorm and two per encoder layer
N_LAYERNORM = 1 + 2 * TINY["num_hidden_layers"]
T1D = TIME_GRID["1d"]


class PackedBert(nn.Module):
    """``BertForSequenceClassification`` reading one packed LongTensor per batch, (B, 2, L): token ids and attention
    mask (the input layout of the text pipeline's classifier)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.bert = BertForSequenceClassification(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=x[:, 0], attention_mask=x[:, 1]).logits


def sequences(n: int, gen: torch.Generator, length: int = LENGTH) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` packed sequences of 4..``length`` tokens (id 1 first, id 0 padding); label 1 when token 4 or 5 occurs."""
    ids = torch.randint(4, VOCAB, (n, length), generator=gen)
    lengths = torch.randint(length // 2, length + 1, (n,), generator=gen)
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    ids = ids * mask
    ids[:, 0] = 1
    return torch.stack([ids, mask], 1), ((ids == 4) | (ids == 5)).any(1).long()


def tiny_bert(seed: int = 0) -> PackedBert:
    torch.manual_seed(seed)
    return PackedBert(BertConfig(**TINY)).eval()


@pytest.fixture(scope="module")
def trained():
    """A tiny BERT trained to 100 % test accuracy on its toy task (a few seconds), and its data splits."""
    model = tiny_bert()
    gen = torch.Generator().manual_seed(0)
    x, y = sequences(640, gen)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(120):
        idx = torch.randint(384, (64,), generator=gen)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    split = {"train": TensorDataset(x[:384], y[:384]), "val": TensorDataset(x[384:512], y[384:512]),
             "test": TensorDataset(x[512:], y[512:])}
    splits = DatasetSplits(**split, calib=split["val"], num_classes=2, in_channels=2, image_size=LENGTH,
                           name="tiny text")
    assert accuracy(model, splits.test) == 1.0
    return model, splits


def context(trained, preset="ibm_pcm", levels=2, train_chips=3, **drift):
    model, splits = trained
    return FitContext(model=model, splits=splits, drift=make_drift_model(preset, **drift), schedule=log_windows(levels),
                      train_chips=train_chips)


# ---------------------------------------------------------------------------------------------- every method
#: label -> (method, hyper-parameters): every method that applies to a BERT, with few steps
VARIANTS = {
    "none": ("none", {}),
    "scale": ("scale", {}),
    "scale_column": ("scale", {"mode": "column"}),
    "ln_refit": ("ln_refit", {"steps": 5}),
    "lora": ("lora", {"steps": 5}),
    "vera_plus": ("vera_plus", {"steps": 5, "rank": 4}),
    "vera_plus_cross": ("vera_plus", {"steps": 5, "rank": 4, "sharing": "cross"}),
    "offline_correction": ("offline_correction", {"steps": 5}),
    "dora": ("dora", {"steps": 3, "budget": 0.2}),
    "noise_aware": ("noise_aware", {"epochs": 1}),
    "reprogram": ("reprogram", {}),
}


def test_the_matrix_covers_every_method_but_bn():
    assert {name for name, _ in VARIANTS.values()} == set(METHODS) - {"bn"}


@pytest.fixture(scope="module")
def fitted(trained):
    return {label: make_method(name, **params).fit(context(trained)) for label, (name, params) in VARIANTS.items()}


@pytest.mark.parametrize("label", list(VARIANTS))
def test_every_method_fits_and_evaluates_on_a_drifted_bert(fitted, trained, label):
    """Every Linear (attention, feed-forward, pooler, classifier) is on the chip; the method's network gives finite
    logits and an accuracy, the same on a second read; the digital values it keeps are what its storage counts."""
    method, test = fitted[label], trained[1].test
    assert len(method.analog_.layer_names) == N_LINEAR
    assert all(isinstance(m, nn.Linear) for m in method.analog_.layer_modules)
    x = test.tensors[0][:32]
    with torch.no_grad():
        y1 = method.at(EVAL_CHIP_BASE, T1D)(x).clone()
        method.at(EVAL_CHIP_BASE + 1, T1D)
        y2 = method.at(EVAL_CHIP_BASE, T1D)(x)
    assert torch.isfinite(y1).all()
    torch.testing.assert_close(y1, y2, rtol=0, atol=1e-5 if label == "dora" else 0)
    assert 0.0 <= accuracy(method.at(EVAL_CHIP_BASE, T1D), test) <= 1.0
    assert sum(t.numel() for t in method.sram_tensors().values()) == method.storage().total_values


@pytest.mark.parametrize("label", ["lora", "vera_plus", "vera_plus_cross"])
def test_adapters_wrap_every_linear_of_the_bert(fitted, label):
    wrappers = [m for m in fitted[label].analog_.model.modules() if isinstance(m, AdapterWrapper)]
    assert len(wrappers) == N_LINEAR and all(isinstance(w.base_layer, nn.Linear) for w in wrappers)
    names = fitted[label].adapters_.target_names
    assert sum(".attention.self." in n for n in names) == 3 * TINY["num_hidden_layers"]
    assert {"bert.bert.pooler.dense", "bert.classifier"} < set(names)


def test_offline_correction_wraps_every_linear_and_dora_some(fitted):
    assert len(fitted["offline_correction"].wrappers_) == N_LINEAR
    dora = fitted["dora"]
    assert 0 < len(dora.layers_) <= N_LINEAR
    assert all(isinstance(w.base_layer, nn.Linear) for w in dora.adapters_.wrappers)
    # the stored calibration sequences are token ids and masks: counted at TOKEN_BITS, not as pixels
    st = dora.storage()
    assert st.input_bits == TOKEN_BITS and st.input_values == dora.hparams.n_samples * 2 * LENGTH
    assert st.total_bytes("fp32") == (st.total_values - st.input_values) * 4 + st.input_values * TOKEN_BITS / 8


def test_ln_refit_keeps_one_layernorm_set_per_level(fitted, trained):
    method = fitted["ln_refit"]
    hidden, levels = TINY["hidden_size"], 2
    assert len(method.norm_layers_) == N_LAYERNORM
    assert method.storage() == Storage(values_per_level=N_LAYERNORM * 2 * hidden, levels=levels)
    assert len(method.sram_tensors()) == levels * N_LAYERNORM * 2
    # the sets differ by level, and the network reads the set of the level holding t
    sets = method.sets_
    assert not torch.equal(*[s["bert.bert.encoder.layer.0.output.LayerNorm.weight"] for s in sets.values()])
    model = method.at(EVAL_CHIP_BASE, T1D)
    live = method.sram_tensors(T1D)
    layer = model.get_submodule("bert.bert.encoder.layer.0.output.LayerNorm")
    name = method.schedule_.name_of(T1D)
    assert live[f"{name}/bert.bert.encoder.layer.0.output.LayerNorm.weight"] is layer.weight
    # the caller's model keeps its own LayerNorm values
    original = trained[0].get_submodule("bert.bert.encoder.layer.0.output.LayerNorm").weight
    assert not torch.equal(original, layer.weight)


def test_ln_refit_recovers_a_strongly_drifted_bert(trained):
    """ibm_pcm at three times its drift, one day after programming: the uncompensated tiny BERT falls below chance
    on every evaluation chip; re-fitting LayerNorm's γ/β on drifted training chips (one level) lowers the test
    cross-entropy on every chip and raises the mean accuracy by at least 0.2 (measured: 0.26 -> about 0.8)."""
    ctx = context(trained, levels=1, train_chips=4, drift_scale=3.0)
    test = trained[1].test
    scores = {}
    for name, params in (("none", {}), ("ln_refit", {"steps": 40, "lr": 1e-2})):
        method = make_method(name, **params).fit(ctx)
        scores[name] = [(accuracy(net, test), float(F.cross_entropy(predict_logits(net, test), test.tensors[1])))
                        for net in (method.at(EVAL_CHIP_BASE + c, T1D) for c in range(4))]  # one chip at a time
    none, refit = scores["none"], scores["ln_refit"]
    assert max(acc for acc, _ in none) < 0.5  # below chance: the drift is strong
    assert all(r[1] < n[1] for r, n in zip(refit, none))
    assert sum(acc for acc, _ in refit) / 4 >= sum(acc for acc, _ in none) / 4 + 0.2


def test_bn_refuses_a_bert_and_ln_refit_refuses_a_network_without_layernorm(trained):
    with pytest.raises(RramlibError, match="needs a model with BatchNorm layers"):
        make_method("bn").fit(context(trained))
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)).eval()
    data = TensorDataset(torch.randn(16, 4), torch.arange(16) % 2)
    splits = DatasetSplits(train=data, val=data, test=data, calib=data, num_classes=2, in_channels=4, image_size=1,
                           name="mlp")
    ctx = FitContext(model=model, splits=splits, drift=make_drift_model("ibm_pcm"), schedule=log_windows(1),
                     train_chips=2)
    ctx.analog = None  # the refusal comes before a chip is programmed
    with pytest.raises(RramlibError, match="ln_refit .* needs a model with affine LayerNorm layers"):
        make_method("ln_refit").fit(ctx)
    no_affine = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8, elementwise_affine=False), nn.Linear(8, 2))
    ctx.model = no_affine
    with pytest.raises(RramlibError, match="affine LayerNorm"):
        make_method("ln_refit").fit(ctx)


# ---------------------------------------------------------------------------------------------- MACs per token
def linear_shapes(layers: int, hidden: int, intermediate: int, labels: int):
    """(in, out) of a BERT classifier's Linear layers: the encoder's (applied to every token) and the head's, the
    pooler and the classifier (applied to the first token only)."""
    per_layer = [(hidden, hidden)] * 4 + [(hidden, intermediate), (intermediate, hidden)]
    return per_layer * layers, [(hidden, hidden), (hidden, labels)]


def vera_macs(shape, rank):
    """VeRA+'s MACs per position of one layer: A x, λ_d, B z, λ_b."""
    n_in, n_out = shape
    return rank * n_in + rank + n_out * rank + n_out


def test_macs_count_every_token(trained, fitted):
    """On a sequence of L tokens every encoder Linear runs L times, the pooler and the classifier once: the base
    network's MACs, VeRA+'s and output scaling's extra MACs, by hand from the layer shapes, at two lengths."""
    model = trained[0]
    ctrl = add_vera_plus(copy.deepcopy(model), rank=3)
    encoder, head = linear_shapes(TINY["num_hidden_layers"], TINY["hidden_size"], TINY["intermediate_size"], 2)
    gen = torch.Generator().manual_seed(1)
    for length in (LENGTH, LENGTH // 2):
        x, _ = sequences(1, gen, length)
        assert base_macs(model, x) == length * sum(i * o for i, o in encoder) + sum(i * o for i, o in head)
        assert ctrl.extra_macs(x) == (length * sum(vera_macs(s, 3) for s in encoder)
                                      + sum(vera_macs(s, 3) for s in head))
        # output scaling: one multiplication per output value
        assert fitted["scale"].extra_macs(x) == length * sum(o for _, o in encoder) + sum(o for _, o in head)


# ---------------------------------------------------------------------------------------------- peft's VeRA
LEVELS = ("level0", "level1", "level2")


def test_vera_plus_on_a_bert_equals_peft_vera_bit_for_bit(trained):
    """VeRA+ with per-layer vectors on every Linear of a BERT (attention, feed-forward, pooler, classifier) is peft's
    VeRA (``VeraConfig``/``VeraModel``, one named adapter per drift level, one ``projection_prng_key``): the same
    frozen A and B (one pair sized to the largest fan-in and fan-out, sliced per layer, so layers of the same shape
    read the same slices), and with the same λ_b, λ_d the same logits to the last bit, also after the base
    weights drift (both read the current weight). Where the definitions differ: VeRA+ keeps one (λ_b, λ_d) set
    per drift level and selects it by elapsed time (peft switches named adapters by hand; the forward is the
    same); VeRA+'s cross-layer sharing (one λ_b sliced per layer, one λ_d) has no peft counterpart — it equals
    peft's VeRA with per-layer vectors tied to those slices, checked here too; peft's VeRA adapts Linear layers
    only (VeRA+'s 1×1 convolution branch is checked against peft's matrices in test_adapters_peft.py)."""
    pytest.importorskip("peft")
    from peft import VeraConfig, VeraModel, get_peft_model

    base = trained[0]
    ours, cross, theirs = copy.deepcopy(base), copy.deepcopy(base), copy.deepcopy(base)
    ctrl = add_vera_plus(ours, rank=4, projection_seed=77, adapter_names=LEVELS)
    cross_ctrl = add_vera_plus(cross, rank=4, projection_seed=77, sharing="cross", adapter_names=LEVELS[:1])
    names = ctrl.target_names
    assert len(names) == N_LINEAR

    def config():
        return VeraConfig(r=4, target_modules=names, projection_prng_key=77, vera_dropout=0.0)

    pm = get_peft_model(theirs, config(), adapter_name=LEVELS[0])
    for level in LEVELS[1:]:
        pm.add_adapter(level, config())
    assert isinstance(pm.base_model, VeraModel)
    for level in LEVELS:
        assert torch.equal(ctrl.vera_A, pm.base_model.vera_A[level])
        assert torch.equal(ctrl.vera_B, pm.base_model.vera_B[level])
    peft_layers = [pm.base_model.model.get_submodule(n) for n in names]
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for key, layer in zip(ctrl.layer_keys, peft_layers):
            for level in LEVELS:
                for mine, peft_value in ((ctrl.lambda_b[key][level], layer.vera_lambda_b[level]),
                                         (ctrl.lambda_d[key][level], layer.vera_lambda_d[level])):
                    assert torch.equal(mine, peft_value)  # the same start: λ_b = 0, λ_d = 0.1
                    values = torch.randn(mine.shape, generator=gen)
                    mine.copy_(values)
                    peft_value.copy_(values)
    x = trained[1].test.tensors[0][:16]
    with torch.no_grad():
        for drift_step in range(2):
            if drift_step:  # the chip drifts: the same new base weights in both
                for i, layer in enumerate(peft_layers):
                    noisy = ctrl.base_layer(i).weight * (1 + 0.2 * torch.randn(layer.weight.shape, generator=gen))
                    ctrl.base_layer(i).weight.copy_(noisy)
                    layer.base_layer.weight.copy_(noisy)
            outputs = []
            for level in LEVELS:
                ctrl.set_adapter(level)
                pm.set_adapter(level)
                outputs.append(ours(x))
                assert torch.equal(outputs[-1], pm(x))
            assert not torch.equal(outputs[0], outputs[1])
        # cross-layer vectors = peft with per-layer vectors tied to slices of one λ_b and one λ_d
        cross_ctrl.lambda_b["level0"].copy_(torch.randn(cross_ctrl.out_max, generator=gen))
        cross_ctrl.lambda_d["level0"].copy_(torch.randn(4, generator=gen))
        for i, layer in enumerate(peft_layers):
            cross_ctrl.base_layer(i).weight.copy_(ctrl.base_layer(i).weight)
            layer.vera_lambda_b["level0"].copy_(cross_ctrl.lambda_b["level0"][:layer.out_features])
            layer.vera_lambda_d["level0"].copy_(cross_ctrl.lambda_d["level0"])
        pm.set_adapter("level0")
        assert torch.equal(cross(x), pm(x))


# ---------------------------------------------------------------------------------------------- BERT-base/large
def hand_counts(model: str) -> dict:
    """The counts of BERT ``model`` by hand from its Linear shapes (default ranks: VeRA+ 16, LoRA 4)."""
    sizes = costs.BERT_SIZES[model]
    layers, hidden = sizes["num_hidden_layers"], sizes["hidden_size"]
    encoder, head = linear_shapes(layers, hidden, sizes["intermediate_size"], costs.TEXT_NUM_LABELS)
    shapes, vera_rank, lora_rank = encoder + head, 16, 4
    seq = costs.TEXT_SEQ_LEN
    return {
        "vera_layer": sum(o + vera_rank for _, o in shapes),
        "vera_cross": max(o for _, o in shapes) + vera_rank,
        "projections": vera_rank * (max(i for i, _ in shapes) + max(o for _, o in shapes)),
        "lora": lora_rank * sum(i + o for i, o in shapes),
        "lora_vera_rank": vera_rank * sum(i + o for i, o in shapes),
        "layernorm": (1 + 2 * layers) * 2 * hidden,
        "base_macs": seq * sum(i * o for i, o in encoder) + sum(i * o for i, o in head),
        "vera_macs": seq * sum(vera_macs(s, vera_rank) for s in encoder) + sum(vera_macs(s, vera_rank) for s in head),
        "lora_macs": seq * sum(lora_rank * (i + o) for i, o in encoder) + sum(lora_rank * (i + o) for i, o in head),
    }


@pytest.fixture(scope="module")
def bert_table():
    from rramlib.study.claims import CLAIMS

    table = costs.text_storage_table(methods=("ln_refit", "lora", "vera_plus"), levels=4,
                                     paper={c.id: c.paper for c in CLAIMS})
    return table.set_index(["model", "method"])


def test_bert_base_storage_and_macs_golden(bert_table):
    """BERT-base at the default ranks, four levels, fp32, A and B in SRAM (our reading), 128 tokens: literal values
    checked against the hand count, then every row of both networks against the hand count."""
    base = hand_counts("bert-base")
    assert (base["vera_layer"], base["vera_cross"], base["lora"], base["layernorm"]) == (84_901, 3_088, 672_788, 38_400)
    assert base["base_macs"] == 10_872_229_632 and base["vera_macs"] == 350_540_661
    assert OUR_READING == "sram"
    for model in costs.BERT_SIZES:
        hand, k = hand_counts(model), 4
        rows = bert_table.loc[model]
        vera_shared = hand["projections"] * 4 + 8  # A and B in SRAM, and the 8-byte seed
        expect = {costs.VERA_LAYER: (hand["vera_layer"], hand["vera_macs"], vera_shared),
                  costs.VERA_CROSS: (hand["vera_cross"], hand["vera_macs"], vera_shared),
                  "lora": (hand["lora"], hand["lora_macs"], 0),
                  costs.LORA_VERA_RANK: (hand["lora_vera_rank"], hand["lora_macs"] * 4, 0),
                  "ln_refit": (hand["layernorm"], 0, 0)}
        for label, (values, macs, shared) in expect.items():
            row = rows.loc[label]
            assert row["K"] == k and row["values_per_level"] == values
            assert row["bytes_per_level_fp32"] == 4 * values and row["bytes_per_level_int8"] == values
            assert row["total_bytes_fp32"] == k * 4 * values + shared
            assert row["base_macs"] == hand["base_macs"] and row["extra_macs"] == macs
            assert row["extra_macs_per_token"] == macs / costs.TEXT_SEQ_LEN
            assert row["extra_macs_pct"] == pytest.approx(100 * macs / hand["base_macs"], rel=1e-12)
        vera = rows.loc[costs.VERA_CROSS]
        assert vera["total_bytes_regenerated_fp32"] == k * 4 * hand["vera_cross"] + 8 + MT19937_STATE_BYTES


def test_bert_table_ratios_and_claims(bert_table):
    from rramlib.study.claims import CLAIMS

    paper = {c.id: c.paper for c in CLAIMS}
    for model in costs.BERT_SIZES:
        rows = bert_table.loc[model]
        cross, layer = rows.loc[costs.VERA_CROSS], rows.loc[costs.VERA_LAYER]
        ln, lora = rows.loc["ln_refit"], rows.loc[costs.LORA_VERA_RANK]
        assert ln["ratio_total_vs_vera_cross"] == ln["total_bytes_fp32"] / cross["total_bytes_fp32"]
        assert lora["ratio_per_level_vs_vera_layer"] == lora["bytes_per_level_fp32"] / layer["bytes_per_level_fp32"]
        assert (ln["claim"], ln["claim_paper"]) == ("C3", paper["C3"])
        assert ln["claim_ours"] == ln["ratio_total_vs_vera_cross"]
        assert (lora["claim"], lora["claim_ours"]) == ("C4", lora["ratio_total_vs_vera_layer"])
        assert (cross["claim"], cross["claim_ours"], cross["claim_paper"]) == ("C6", cross["extra_macs_pct"],
                                                                                paper["C6"])
        assert rows.loc["lora"]["claim"] is None and layer["claim"] is None


def test_counting_on_the_meta_device_equals_a_programmed_chip(monkeypatch):
    """The table's counts (meta device, no weights) equal each method's storage and extra MACs set up on a real chip
    (AnalogModel) of the same network, for every method of the table, on a tiny BERT."""
    monkeypatch.setitem(costs.BERT_SIZES, "tiny", {k: v for k, v in TINY.items() if k != "num_labels"})
    table = costs.text_storage_table(("tiny",), levels=2, seq_len=LENGTH, num_labels=2).set_index("method")
    torch.manual_seed(0)
    net = BertForSequenceClassification(BertConfig(**TINY)).eval()
    data = TensorDataset(torch.randint(VOCAB, (4, LENGTH)), torch.arange(4) % 2)
    splits = DatasetSplits(train=data, val=data, test=data, calib=data, num_classes=2, in_channels=1,
                           image_size=LENGTH, name="tiny ids")
    ctx = FitContext(model=net, splits=splits, drift=make_drift_model("ibm_pcm"), schedule=log_windows(2))
    example = ctx.example()
    n_params, n_macs = sum(p.numel() for p in net.parameters()), base_macs(net, example)
    labels = set()
    for label, name, params in costs.text_variants():
        method = make_method(name, **params)
        method.setup(ctx)
        storage, macs = costs.method_costs(method, example, n_params, n_macs)
        row = table.loc[label]
        assert row["values_per_level"] == storage["values_per_level"]
        assert row["total_bytes_fp32"] == storage[f"total_bytes_{OUR_READING}_fp32"]
        assert (row["base_macs"], row["extra_macs"]) == (n_macs, macs["extra_macs"])
        labels.add(label)
    assert labels == set(table.index) and len(labels) == len(costs.TEXT_METHODS) + 2


def test_text_table_bad_input():
    with pytest.raises(RramlibError, match="unknown model 'bert-huge'"):
        costs.text_storage_table(("bert-huge",))
    with pytest.raises(RramlibError, match="unknown method"):
        costs.text_storage_table(methods=("vera",))
    with pytest.raises(RramlibError, match="rank"):
        costs.text_storage_table(method_params={"vera_plus": {"rank": 0}})
