"""Generic checks of the VeRA+, LoRA and DoRA adapters over tiny models (no peft needed).

A table of methods × models runs the same checks; hand-computed counts and golden values follow.
"""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rramlib.methods.adapters import (DoRA, LoRA, LoRAConfig, VeraPlus, VeraPlusConfig, add_dora, add_lora, add_vera_plus,
                              vera_projections)
from rramlib.methods.adapters.base import AdapterWrapper, kaiming_uniform_
from rramlib.core.errors import RramlibError
from rramlib.core.seeding import generator

# ----------------------------------------------------------------------------------------- fixtures
METHODS = {
    "vera_plus": lambda m, **kw: add_vera_plus(m, rank=4, projection_seed=7, **kw),
    "vera_plus_cross": lambda m, **kw: add_vera_plus(m, rank=4, projection_seed=7, sharing="cross", **kw),
    "lora": lambda m, **kw: add_lora(m, rank=3, alpha=6.0, **kw),
    "lora_1x1": lambda m, **kw: add_lora(m, rank=3, alpha=6.0, conv_branch="1x1", **kw),
    "dora": lambda m, **kw: add_dora(m, rank=3, alpha=6.0, **kw),
}


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 4)).eval(), (3, 6)


def cnn_bn():
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 12, 3, padding=1, bias=False), nn.BatchNorm2d(12), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 5),
    )
    for bn in (model[1], model[4]):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return model.eval(), (2, 3, 8, 8)


def stride2():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 1, stride=2))
    return model.eval(), (2, 3, 9, 9)


MODELS = {"mlp": mlp, "cnn_bn": cnn_bn, "stride2": stride2}
MATRIX = [(m, k) for m in METHODS for k in MODELS]


def build(method, model_name, **kw):
    model, shape = MODELS[model_name]()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(3))
    original = copy.deepcopy(model)
    ctrl = METHODS[method](model, **kw)
    return model, original, ctrl, x


def perturb(ctrl, level, seed, scale=0.3):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ctrl.adapter_parameters(level):
            p.add_(scale * torch.randn(p.shape, generator=gen))


def base_out(layer, x):
    if isinstance(layer, nn.Conv2d):
        return F.conv2d(x, layer.weight, layer.bias, layer.stride, layer.padding, layer.dilation)
    return F.linear(x, layer.weight, layer.bias)


def reference_layer(ctrl, i, x):
    """The adapted layer's output written from the papers' formulas, independently of the implementation."""
    layer, level = ctrl.base_layer(i), ctrl.active_adapter
    key = ctrl.layer_keys[i]
    conv = isinstance(layer, nn.Conv2d)
    n_in, n_out = (layer.in_channels, layer.out_channels) if conv else (layer.in_features, layer.out_features)
    if isinstance(ctrl, VeraPlus):
        if ctrl.sharing == "layer":
            lb, ld = ctrl.lambda_b[key][level], ctrl.lambda_d[key][level]
        else:
            lb, ld = ctrl.lambda_b[level][:n_out], ctrl.lambda_d[level]
        delta = torch.diag(lb) @ ctrl.vera_B[:n_out] @ torch.diag(ld) @ ctrl.vera_A[:, :n_in]
        if conv:
            return base_out(layer, x) + F.conv2d(x, delta[:, :, None, None], stride=layer.stride)
        return base_out(layer, x) + x @ delta.T
    a, b = ctrl.lora_A[key][level], ctrl.lora_B[key][level]
    s = ctrl.alpha / ctrl.rank
    if conv and ctrl.config.conv_branch == "1x1":  # VeRA+'s branch: a 1x1 conv with the layer's stride
        delta = b.reshape(n_out, -1) @ a.reshape(ctrl.rank, -1)
        return base_out(layer, x) + s * F.conv2d(x, delta[:, :, None, None], stride=layer.stride)
    dw = (b.reshape(n_out, -1) @ a.reshape(ctrl.rank, -1)).reshape(layer.weight.shape)
    if isinstance(ctrl, DoRA):
        v = layer.weight + s * dw
        norm = v.reshape(n_out, -1).norm(dim=1)
        m = ctrl.magnitude[key][level].reshape(-1)
        w = (m / norm).reshape((-1,) + (1,) * (v.dim() - 1)) * v
    else:
        w = layer.weight + s * dw
    if conv:
        return F.conv2d(x, w, layer.bias, layer.stride, layer.padding, layer.dilation)
    return F.linear(x, w, layer.bias)


def layer_inputs(model, ctrl, x):
    """The input each wrapper receives in a forward of ``model`` on ``x``."""
    seen = {}
    hooks = [w.register_forward_hook(lambda mod, inp, out, i=i: seen.__setitem__(i, inp[0]))
             for i, w in enumerate(ctrl.wrappers)]
    model(x)
    for h in hooks:
        h.remove()
    return seen


# ----------------------------------------------------------------------------------------- the matrix
@pytest.mark.parametrize("method,model_name", MATRIX)
def test_init_leaves_output_unchanged(method, model_name):
    model, original, ctrl, x = build(method, model_name)
    with torch.no_grad():
        y0, y1 = original(x), model(x)
    if method == "dora":
        torch.testing.assert_close(y1, y0, atol=1e-6, rtol=0)
    else:
        assert torch.equal(y1, y0)


@pytest.mark.parametrize("method,model_name", MATRIX)
def test_only_adapter_parameters_train(method, model_name):
    model, _, ctrl, x = build(method, model_name, adapter_names=("level0", "level1"))
    perturb(ctrl, "level0", 11)
    y = model(x)
    assert torch.isfinite(y).all()
    assert all(not p.requires_grad for p in model.parameters())
    ctrl_params = list(ctrl.parameters())
    assert ctrl_params and all(p.requires_grad for p in ctrl_params)
    model_ids = {id(p) for p in model.parameters()}
    assert not model_ids & {id(p) for p in ctrl_params}
    assert not any(isinstance(m, AdapterWrapper) for m in ctrl.modules())  # controller excludes the model
    y.square().sum().backward()
    assert all(p.grad is None for p in model.parameters())
    active = ctrl.adapter_parameters("level0")
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in active)
    assert any(p.grad.abs().sum() > 0 for p in active)
    assert all(p.grad is None for p in ctrl.adapter_parameters("level1"))


@pytest.mark.parametrize("method,model_name", MATRIX)
def test_wrapper_uses_current_base_weight(method, model_name):
    model, original, ctrl, x = build(method, model_name)
    perturb(ctrl, "level0", 12)
    names = dict(original.named_modules())
    for i, wrapper in enumerate(ctrl.wrappers):
        assert wrapper.base_layer is ctrl.base_layer(i)
        assert type(wrapper.base_layer) is type(names[ctrl.target_names[i]])
    before = model(x).detach()
    gen = torch.Generator().manual_seed(13)
    with torch.no_grad():  # what a drift model does: overwrite weight.data in place
        for i in range(len(ctrl.wrappers)):
            w = ctrl.base_layer(i).weight
            w.data.mul_(0.7).add_(0.05 * torch.randn(w.shape, generator=gen))
    after = model(x).detach()
    assert not torch.allclose(after, before)
    inputs = layer_inputs(model, ctrl, x)
    with torch.no_grad():
        for i, wrapper in enumerate(ctrl.wrappers):
            got = wrapper(inputs[i])
            torch.testing.assert_close(got, reference_layer(ctrl, i, inputs[i]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method,model_name", MATRIX)
def test_merge_equals_unmerged(method, model_name):
    model, _, ctrl, x = build(method, model_name)
    perturb(ctrl, "level0", 14)
    weights = [ctrl.base_layer(i).weight.detach().clone() for i in range(len(ctrl.wrappers))]
    with torch.no_grad():
        y = model(x)
        ctrl.merge()
        assert ctrl.merged
        with pytest.raises(RramlibError):
            ctrl.set_adapter("level0")
        y_merged = model(x)
        ctrl.unmerge()
        y_back = model(x)
    torch.testing.assert_close(y_merged, y, atol=1e-5, rtol=1e-5)
    assert torch.equal(y_back, y)
    assert all(torch.equal(ctrl.base_layer(i).weight, w) for i, w in enumerate(weights))


@pytest.mark.parametrize("method,model_name", MATRIX)
def test_adapter_state_round_trip(method, model_name, tmp_path):
    model, _, ctrl, x = build(method, model_name, adapter_names=("level0", "level1"))
    perturb(ctrl, "level1", 15)
    ctrl.set_adapter("level1")
    with torch.no_grad():
        y = model(x)
    torch.save(ctrl.adapter_state_dict("level1"), tmp_path / "level.pt")
    torch.save(ctrl.state_dict(), tmp_path / "full.pt")

    model2, _, ctrl2, _ = build(method, model_name, adapter_names=("level0", "level1"))
    ctrl2.load_adapter_state_dict("level0", torch.load(tmp_path / "level.pt"))
    with torch.no_grad():
        assert torch.equal(model2(x), y)
    model3, _, ctrl3, _ = build(method, model_name, adapter_names=("level0", "level1"))
    ctrl3.load_state_dict(torch.load(tmp_path / "full.pt"))
    ctrl3.set_adapter("level1")
    with torch.no_grad():
        assert torch.equal(model3(x), y)


@pytest.mark.parametrize("method,model_name", MATRIX)
def test_switching_adapters_switches_outputs(method, model_name):
    model, _, ctrl, x = build(method, model_name, adapter_names=("level0", "level1"))
    perturb(ctrl, "level0", 16)
    perturb(ctrl, "level1", 17)
    with torch.no_grad():
        y0 = model(x)
        ctrl.set_adapter("level1")
        y1 = model(x)
        ctrl.set_adapter("level0")
        assert torch.equal(model(x), y0)
        ctrl.add_adapter("level1_copy", init_from="level1")
        ctrl.set_adapter("level1_copy")
        assert torch.equal(model(x), y1)
    assert not torch.allclose(y0, y1)
    assert ctrl.adapter_names == ["level0", "level1", "level1_copy"]


@pytest.mark.parametrize("method,model_name", MATRIX)
def test_disable_and_remove_restore_the_model(method, model_name):
    model, original, ctrl, x = build(method, model_name)
    modules_before = {n: m for n, m in original.named_modules()}
    perturb(ctrl, "level0", 18)
    with torch.no_grad():
        y_ref = original(x)
        with ctrl.disabled():
            assert torch.equal(model(x), y_ref)
        assert not torch.equal(model(x), y_ref)
    bases = {n: ctrl.base_layer(n) for n in ctrl.target_names}
    ctrl.remove()
    names_after = dict(model.named_modules())
    assert list(names_after) == list(modules_before)
    for n, m in names_after.items():
        assert type(m) is type(modules_before[n])
    for n, base in bases.items():
        assert names_after[n] is base
    assert all(p.requires_grad for p in model.parameters())
    assert model.state_dict().keys() == original.state_dict().keys()
    with torch.no_grad():
        assert torch.equal(model(x), y_ref)
    with pytest.raises(RramlibError):
        ctrl.extra_macs(x)


# ----------------------------------------------------------------------------------------- counts
def test_values_per_adapter_hand_counts():
    r = 4
    counts = {}
    for method, kw in [("vera", {}), ("cross", {"sharing": "cross"})]:
        model, _ = mlp()
        counts[method] = add_vera_plus(model, rank=r, **kw)
    assert counts["vera"].values_per_adapter() == (10 + r) + (8 + r) + (4 + r)
    assert counts["cross"].values_per_adapter() == 10 + r
    model, _ = mlp()
    lora = add_lora(model, rank=3)
    assert lora.values_per_adapter() == 3 * (6 + 10) + 3 * (10 + 8) + 3 * (8 + 4)
    model, _ = mlp()
    assert add_dora(model, rank=3).values_per_adapter() == lora.values_per_adapter() + (10 + 8 + 4)
    model, _ = cnn_bn()
    lora_cnn = add_lora(model, rank=2)
    assert lora_cnn.values_per_adapter() == 2 * (3 * 9 + 8) + 2 * (8 * 9 + 12) + 2 * (12 + 5)
    model, _ = cnn_bn()
    assert add_dora(model, rank=2).values_per_adapter() == lora_cnn.values_per_adapter() + 8 + 12 + 5
    model, _ = cnn_bn()
    assert add_vera_plus(model, rank=5, adapter_names=("a", "b")).values_per_adapter() == (8 + 5) + (12 + 5) + (5 + 5)
    for c in (counts["vera"], counts["cross"]):
        assert c.shared_values() == 0 and c.shared_seed_bytes() == 8
    assert lora.shared_values() == 0 and lora.shared_seed_bytes() == 0


def test_extra_macs_linear_hand_counts():
    def single():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3))

    x = torch.randn(5, 6)
    m = single()
    assert add_vera_plus(m, targets=["0"], rank=4).extra_macs(x) == 4 * 6 + 4 + 10 * 4 + 10
    m = single()
    assert add_lora(m, targets=["0"], rank=3).extra_macs(x) == 3 * 6 + 10 * 3
    m = single()
    dora = add_dora(m, targets=["0"], rank=3)
    assert dora.extra_macs(x) == 3 * 6 + 10 * 3 + 10
    assert dora.target_macs(x) == 6 * 10
    assert dora.extra_macs(torch.randn(2, 7, 6)) == 7 * (3 * 6 + 10 * 3 + 10)  # 7 tokens per sample
    assert dora.extra_macs(torch.randn(1, 6)) == dora.extra_macs(x)  # per sample, any batch size


def test_extra_macs_stride2_conv_hand_counts():
    x = torch.randn(4, 3, 9, 9)
    pos = 5 * 5  # 9x9, kernel 3, stride 2, padding 1 -> 5x5
    model, _ = stride2()
    model.train()
    state = copy.deepcopy(model.state_dict())
    vera = add_vera_plus(model, targets=["0"], rank=4)
    assert vera.extra_macs(x) == pos * (4 * 3 + 4 + 6 * 4 + 6)
    assert vera.target_macs(x) == pos * 6 * 3 * 9
    assert model.training  # training flags restored
    vera.remove()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    model, _ = stride2()
    assert add_lora(model, targets=["0"], rank=3).extra_macs(x) == pos * (3 * 3 * 9 + 6 * 3)
    model, _ = stride2()
    assert add_dora(model, targets=["0"], rank=3).extra_macs(x) == pos * (3 * 3 * 9 + 6 * 3 + 6)
    model, _ = stride2()  # both layers: second is 1x1 stride 2 on 5x5 -> 3x3
    assert add_vera_plus(model, rank=2).extra_macs(x) == pos * (2 * 3 + 2 + 6 * 2 + 6) + 9 * (2 * 6 + 2 + 4 * 2 + 4)
    # LoRA with VeRA+'s 1x1 branch at matched rank: VeRA+ minus its two vector products (r + out per position)
    model, _ = stride2()
    lora = add_lora(model, rank=2, conv_branch="1x1")
    assert lora.extra_macs(x) == pos * (2 * 3 + 6 * 2) + 9 * (2 * 6 + 4 * 2)
    assert lora.values_per_adapter() == (2 * 3 + 6 * 2) + (2 * 6 + 4 * 2)


def test_extra_macs_does_not_touch_batchnorm_statistics():
    model, shape = cnn_bn()
    model.train()
    stats = [b.clone() for b in model.buffers()]
    ctrl = add_lora(model, rank=2)
    ctrl.extra_macs(torch.randn(*shape))
    assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers()))


# ----------------------------------------------------------------------------------------- golden values
def test_vera_plus_golden_linear():
    layer = nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        layer.bias.copy_(torch.tensor([0.5, -0.5]))
    model = nn.Sequential(layer)
    ctrl = add_vera_plus(model, rank=2)
    with torch.no_grad():
        ctrl.vera_A.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
        ctrl.vera_B.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
        ctrl.lambda_d["0"]["level0"].copy_(torch.tensor([0.5, 2.0]))
        ctrl.lambda_b["0"]["level0"].copy_(torch.tensor([1.0, -1.0]))
        y = model(torch.tensor([[1.0, 2.0]]))
    # Wx+b = [5.5, 10.5]; Ax = [1, 3]; λ_d⊙ = [0.5, 6]; B· = [1, 6]; λ_b⊙ = [1, -6]
    assert torch.equal(y, torch.tensor([[6.5, 4.5]]))


def test_vera_plus_init_values_and_projections():
    model, _ = mlp()
    ctrl = add_vera_plus(model, rank=4, projection_seed=42, d_init=0.25)
    assert (ctrl.in_max, ctrl.out_max) == (10, 10)
    gen = torch.Generator().manual_seed(42)
    bound_a, bound_b = math.sqrt(3.0) * (math.sqrt(2) / math.sqrt(10)), math.sqrt(3.0) * (math.sqrt(2) / math.sqrt(4))
    a = torch.empty(4, 10).uniform_(-bound_a, bound_a, generator=gen)  # A first ...
    b = torch.empty(10, 4).uniform_(-bound_b, bound_b, generator=gen)  # ... then B, same generator
    assert torch.equal(ctrl.vera_A, a) and torch.equal(ctrl.vera_B, b)
    assert ctrl.vera_A.dtype == torch.float32
    assert torch.equal(vera_projections(4, 10, 10, 42)[0], a)
    for key in ctrl.layer_keys:
        assert torch.equal(ctrl.lambda_b[key]["level0"], torch.zeros_like(ctrl.lambda_b[key]["level0"]))
        assert torch.equal(ctrl.lambda_d[key]["level0"], torch.full((4,), 0.25))
    assert "vera_A" not in ctrl.state_dict()  # regenerable: not stored


def test_lora_initialisation_is_seeded_per_adapter_and_layer():
    m1, _ = mlp()
    m2, _ = mlp()
    c1 = add_lora(m1, rank=3, init_seed=5, adapter_names=("a", "b"))
    c2 = add_lora(m2, rank=3, init_seed=5, adapter_names=("b", "a"))
    for key in c1.layer_keys:
        assert torch.equal(c1.lora_A[key]["a"], c2.lora_A[key]["a"])
        assert not torch.equal(c1.lora_A[key]["a"], c1.lora_A[key]["b"])
        assert torch.equal(c1.lora_B[key]["a"], torch.zeros_like(c1.lora_B[key]["a"]))
    bound = 1 / math.sqrt(6)  # kaiming_uniform(a=sqrt(5)) on fan_in 6
    assert c1.lora_A["0"]["a"].abs().max() <= bound
    # the stream is (init_seed, "lora_init", adapter name, layer name) of rramlib.core.seeding
    expected = kaiming_uniform_(torch.empty(c1.lora_A["0"]["a"].shape), generator(5, "lora_init", "a", "0"), a=5**0.5)
    assert torch.equal(c1.lora_A["0"]["a"], expected)


@pytest.mark.parametrize("method", ["vera_plus", "vera_plus_cross", "lora", "dora"])
def test_adapter_tensors_are_the_live_tensors_of_one_adapter(method):
    model, _, ctrl, x = build(method, "mlp", adapter_names=("level0", "level1"))
    tensors = ctrl.adapter_tensors("level1")
    assert sum(t.numel() for t in tensors.values()) == ctrl.values_per_adapter()
    assert {id(t) for t in tensors.values()} == {id(p) for p in ctrl.adapter_parameters("level1")}
    layer_keyed = [k for k in tensors if "." in k]
    assert all(k.split(".")[0] in ctrl.target_names for k in layer_keyed)
    assert len(layer_keyed) == (len(tensors) if method != "vera_plus_cross" else 0)


def test_dora_norm_is_detached():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(5, 4))
    ctrl = add_dora(model, rank=2, alpha=4.0)
    perturb(ctrl, "level0", 19)
    x = torch.randn(3, 5)
    weight_r = torch.randn(3, 4)
    (model(x) * weight_r).sum().backward()
    layer = ctrl.base_layer(0)
    a0, b0, m0 = (t.detach().clone().requires_grad_() for t in
                  (ctrl.lora_A["0"]["level0"], ctrl.lora_B["0"]["level0"], ctrl.magnitude["0"]["level0"]))
    s = 2.0

    def reference(detach):
        v = layer.weight + s * b0 @ a0
        norm = v.norm(dim=1)
        norm = norm.detach() if detach else norm
        return (m0 / norm) * (x @ layer.weight.T + s * (x @ a0.T) @ b0.T) + layer.bias

    (reference(True) * weight_r).sum().backward()
    got = [ctrl.lora_A["0"]["level0"].grad, ctrl.lora_B["0"]["level0"].grad, ctrl.magnitude["0"]["level0"].grad]
    for g, ref in zip(got, (a0.grad, b0.grad, m0.grad)):
        torch.testing.assert_close(g, ref, atol=1e-6, rtol=1e-5)
    detached_grads = [a0.grad.clone(), b0.grad.clone()]
    a0.grad = b0.grad = m0.grad = None
    (reference(False) * weight_r).sum().backward()  # the non-detached gradient is different
    assert not torch.allclose(detached_grads[0], a0.grad, atol=1e-4)
    assert not torch.allclose(detached_grads[1], b0.grad, atol=1e-4)


def test_dora_magnitude_init_and_reset_on_drifted_weight():
    model, shape = cnn_bn()
    w0_norm = model[0].weight.detach().reshape(8, -1).norm(dim=1)
    ctrl = add_dora(model, rank=2, adapter_names=("a",))
    assert ctrl.magnitude["0"]["a"].shape == (1, 8, 1, 1)
    assert ctrl.magnitude["8"]["a"].shape == (5,)
    torch.testing.assert_close(ctrl.magnitude["0"]["a"].reshape(-1), w0_norm)
    layer = ctrl.base_layer("0")
    with torch.no_grad():
        layer.weight.data.mul_(1.5)  # drift: the adapter rescales back to the stored magnitude
        x = torch.randn(2, 3, 8, 8)
        torch.testing.assert_close(ctrl.wrappers[0](x), base_out(layer, x) / 1.5
                                   + layer.bias.view(-1, 1, 1) * (1 - 1 / 1.5), atol=1e-5, rtol=1e-5)
        ctrl.add_adapter("b")  # a new level takes the current (drifted) norm
        torch.testing.assert_close(ctrl.magnitude["0"]["b"].reshape(-1), 1.5 * w0_norm)
        ctrl.reset_magnitude("a")
        torch.testing.assert_close(ctrl.wrappers[0](x), base_out(layer, x), atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------------------- errors
def _bad_shape(ctrl):
    state = ctrl.adapter_state_dict("level0")
    state["lambda_b.0"] = torch.zeros(99)
    ctrl.load_adapter_state_dict("level0", state)


CONTROLLER_ERRORS = {
    "set unknown": ("unknown adapter", lambda model, ctrl: ctrl.set_adapter("nope")),
    "parameters of unknown": ("unknown adapter", lambda model, ctrl: ctrl.adapter_parameters("nope")),
    "add existing": ("exists already", lambda model, ctrl: ctrl.add_adapter("level0")),
    "dotted name": ("invalid adapter name", lambda model, ctrl: ctrl.add_adapter("a.b")),
    "ParameterDict method name": ("invalid adapter name", lambda model, ctrl: ctrl.add_adapter("copy")),
    "adapt twice": ("already carries adapters", lambda model, ctrl: add_lora(model)),
    "state keys": ("adapter state", lambda model, ctrl: ctrl.load_adapter_state_dict("level0",
                                                                                     {"lambda_b.0": torch.zeros(3)})),
    "state shape": ("shape", lambda model, ctrl: _bad_shape(ctrl)),
    "delete active": ("active", lambda model, ctrl: ctrl.delete_adapter("level0")),
    "other projection seed": ("projection seed", lambda model, ctrl: ctrl.load_state_dict(
        add_vera_plus(mlp()[0], rank=2, projection_seed=1).state_dict())),
    "config and keywords": ("not both", lambda model, ctrl: add_lora(mlp()[0], LoRAConfig(), rank=2)),
    "wrong config class": ("must be a LoRAConfig", lambda model, ctrl: add_lora(mlp()[0], VeraPlusConfig())),
}


@pytest.mark.parametrize("case", list(CONTROLLER_ERRORS))
def test_controller_errors(case):
    match, action = CONTROLLER_ERRORS[case]
    model, _ = mlp()
    ctrl = add_vera_plus(model, rank=2)
    with pytest.raises(RramlibError, match=match):
        action(model, ctrl)


FACTORY_ERRORS = [(add, {"rank": bad}, "rank") for bad in (0, -1, 2.5, True, "4")
                  for add in (add_vera_plus, add_lora, add_dora)] + [
    (add_vera_plus, {"sharing": "both"}, "sharing"),
    (add_vera_plus, {"d_init": float("nan")}, "d_init"),
    (add_vera_plus, {"projection_seed": -1}, "projection_seed"),
    (add_lora, {"alpha": 0}, "alpha"),
    (add_lora, {"init_seed": 2**63}, "init_seed"),
    (add_lora, {"colour": 1}, "unknown parameter"),
    (add_lora, {"targets": ["7"]}, "not a module"),
    (add_lora, {"targets": ["1"]}, "only Linear and Conv2d"),
    (add_lora, {"adapter_names": ()}, "at least one"),
    (add_lora, {"adapter_names": ("a", "a")}, "duplicate"),
]


@pytest.mark.parametrize("add,kwargs,match", FACTORY_ERRORS)
def test_factory_errors_leave_the_model_untouched(add, kwargs, match):
    fresh, _ = mlp()
    with pytest.raises(RramlibError, match=match):
        add(fresh, **kwargs)
    assert not any(isinstance(m, AdapterWrapper) for m in fresh.modules())


def test_unsupported_layers():
    with pytest.raises(RramlibError, match="grouped"):
        add_dora(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)))
    with pytest.raises(RramlibError, match="single layer"):
        add_lora(nn.Linear(2, 2))
    shrinking = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))  # 3x3 without padding
    vera = add_vera_plus(shrinking, rank=2)
    with pytest.raises(RramlibError, match="'0'"):
        shrinking(torch.randn(1, 3, 8, 8))
    with pytest.raises(RramlibError, match="cannot merge"):
        vera.merge()
    assert isinstance(vera, VeraPlus) and isinstance(add_lora(nn.Sequential(nn.Linear(2, 2))), LoRA)
