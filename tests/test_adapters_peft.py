"""Cross-checks against peft: VeRA+ (per-layer vectors) equals peft's VeRA to the bit on Linear layers, and
DoRA equals peft's ``LoraConfig(use_dora=True)`` on Linear and Conv2d (forward and gradients within 1e-6)."""
import copy

import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft")

from rramlib.methods.adapters import add_dora, add_vera_plus  # noqa: E402

LEVELS = ("level0", "level1", "level2")


def small_mlp():
    torch.manual_seed(0)
    # in sizes 5, 7, 3 and out sizes 7, 3, 9: in_max and out_max come from different layers
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3), nn.ReLU(), nn.Linear(3, 9)).eval()


def peft_vera(model, rank, seed):
    from peft import VeraConfig, get_peft_model

    def config():
        return VeraConfig(r=rank, target_modules=["0", "2", "4"], projection_prng_key=seed, vera_dropout=0.0)

    pm = get_peft_model(model, config(), adapter_name=LEVELS[0])
    for level in LEVELS[1:]:
        pm.add_adapter(level, config())
    return pm


def test_vera_plus_equals_peft_vera_bit_exactly():
    base = small_mlp()
    ours_model, peft_model = copy.deepcopy(base), copy.deepcopy(base)
    ctrl = add_vera_plus(ours_model, rank=4, projection_seed=1234, adapter_names=LEVELS)
    pm = peft_vera(peft_model, rank=4, seed=1234)
    for level in LEVELS:
        assert torch.equal(ctrl.vera_A, pm.base_model.vera_A[level])
        assert torch.equal(ctrl.vera_B, pm.base_model.vera_B[level])
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for key in ctrl.layer_keys:
            peft_layer = pm.base_model.model[int(key)]
            for level in LEVELS:
                for ours, theirs in ((ctrl.lambda_b[key][level], peft_layer.vera_lambda_b[level]),
                                     (ctrl.lambda_d[key][level], peft_layer.vera_lambda_d[level])):
                    assert torch.equal(ours, theirs)  # same initial values (b = 0, d = 0.1)
                    values = torch.randn(ours.shape, generator=gen)
                    ours.copy_(values)
                    theirs.copy_(values)
    x = torch.randn(6, 5, generator=gen)
    x3 = torch.randn(2, 4, 5, generator=gen)
    outputs = []
    with torch.no_grad():
        for level in LEVELS:
            ctrl.set_adapter(level)
            pm.set_adapter(level)
            y = ours_model(x)
            assert torch.equal(y, pm(x))
            assert torch.equal(ours_model(x3), pm(x3))
            outputs.append(y)
    assert not torch.equal(outputs[0], outputs[1])


def _copy_dora_values(ctrl, pm, level, gen):
    """Random A, B and magnitudes written into both implementations."""
    with torch.no_grad():
        for index, key in enumerate(ctrl.layer_keys):
            peft_layer = pm.base_model.model.get_submodule(ctrl.target_names[index])
            pairs = [(ctrl.lora_A[key][level], peft_layer.lora_A[level].weight),
                     (ctrl.lora_B[key][level], peft_layer.lora_B[level].weight),
                     (ctrl.magnitude[key][level], peft_layer.lora_magnitude_vector[level].weight)]
            for ours, theirs in pairs:
                assert ours.shape == theirs.shape
                values = 0.3 * torch.randn(ours.shape, generator=gen)
                if ours is pairs[2][0]:
                    values = ours + values  # magnitudes near the weight norm
                ours.copy_(values)
                theirs.copy_(values)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_dora_equals_peft_dora(kind):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    if kind == "linear":
        base = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4, bias=False))
        x = torch.randn(3, 6)
    else:
        base = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU(),
                             nn.Conv2d(6, 4, 3, padding=1, bias=False))
        x = torch.randn(2, 3, 7, 7)
    ours_model, peft_model = copy.deepcopy(base), copy.deepcopy(base)
    ctrl = add_dora(ours_model, rank=3, alpha=6.0)
    config = LoraConfig(r=3, lora_alpha=6, target_modules=["0", "2"], use_dora=True, lora_dropout=0.0)
    pm = get_peft_model(peft_model, config, adapter_name="level0")
    gen = torch.Generator().manual_seed(2)
    _copy_dora_values(ctrl, pm, "level0", gen)

    for step in range(2):
        if step == 1:  # drift: both must use the current base weight
            with torch.no_grad():
                for ours_layer, peft_layer in ((ours_model[0], pm.base_model.model[0]),
                                               (ours_model[2], pm.base_model.model[2])):
                    noise = 0.1 * torch.randn(ours_layer.base_layer.weight.shape, generator=gen)
                    ours_layer.base_layer.weight.data.add_(noise)
                    peft_layer.base_layer.weight.data.add_(noise)
        weight_r = torch.randn(ours_model(x).shape, generator=gen)
        y_ours, y_peft = ours_model(x), pm(x)
        torch.testing.assert_close(y_ours, y_peft, atol=1e-6, rtol=0)
        for p in ctrl.parameters():
            p.grad = None
        pm.zero_grad()
        (y_ours * weight_r).sum().backward()
        (y_peft * weight_r).sum().backward()
        for index, key in enumerate(ctrl.layer_keys):
            peft_layer = pm.base_model.model.get_submodule(ctrl.target_names[index])
            for ours, theirs in ((ctrl.lora_A[key]["level0"], peft_layer.lora_A["level0"].weight),
                                 (ctrl.lora_B[key]["level0"], peft_layer.lora_B["level0"].weight),
                                 (ctrl.magnitude[key]["level0"], peft_layer.lora_magnitude_vector["level0"].weight)):
                torch.testing.assert_close(ours.grad, theirs.grad, atol=1e-6, rtol=0)
