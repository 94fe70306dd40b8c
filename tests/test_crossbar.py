"""The crossbar periphery (rramlib.device.crossbar): converters, tiles, noise, the ideal path, adapters, aihwkit-lightning."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from rramlib.methods.adapters import add_lora
from rramlib.device.analog import AnalogModel
from rramlib.device.crossbar import (CROSSBARS, Crossbar, analog_matmul, kernel_rows, make_crossbar, patches, quantise,
                              resolution, split_sizes, step_size)
from rramlib.device.drift import PRESETS
from rramlib.core.errors import RramlibError
from rramlib.core.times import TIME_GRID


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 30), nn.ReLU(), nn.Linear(30, 3),
    ).eval()


def images(n=16, seed=1):
    return torch.randn(n, 2, 8, 8, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------- converters
def test_resolutions_and_steps_follow_aihwkit():
    assert resolution(7) == 1 / 126 and resolution(9) == 1 / 510
    assert step_size(1 / 126, 1.0) == pytest.approx(2 / 126)    # a fraction of the range 2*bound
    assert step_size(254, 1.0) == pytest.approx(2 / 254)        # > 1: a number of steps
    assert step_size(1 / 510, 12.0) == pytest.approx(24 / 510)
    assert step_size(0.0, 1.0) == 0.0 and step_size(-1, 1.0) == 0.0
    aihwkit = CROSSBARS["aihwkit"]
    assert (aihwkit.inp_step, aihwkit.out_step) == (pytest.approx(2 / 126), pytest.approx(24 / 510))
    assert (aihwkit.max_input_size, aihwkit.max_output_size, aihwkit.out_noise) == (512, 512, 0.06)


def test_quantiser_golden_values():
    v = torch.tensor([-2.0, -0.8, -0.25, 0.25, 0.3, 0.75, 1.2])
    # step 0.5, bound 1: round half to even (-0.5 -> -0, 0.5 -> 0, 1.5 -> 2), then clip
    assert quantise(v, 0.5, 1.0).tolist() == [-1.0, -1.0, 0.0, 0.0, 0.5, 1.0, 1.0]
    assert quantise(v, 0.0, 1.0).tolist() == pytest.approx([-1.0, -0.8, -0.25, 0.25, 0.3, 0.75, 1.0])
    assert torch.equal(quantise(v, 0.0, 0.0), v)
    # 7-bit DAC: 0.25 / (2/126) = 15.75 -> 16 steps; 9-bit ADC with bound 12: 1.0 / (24/510) = 21.25 -> 21
    assert quantise(torch.tensor([0.25]), 2 / 126, 1.0).item() == pytest.approx(16 * 2 / 126)
    assert quantise(torch.tensor([1.0]), 24 / 510, 12.0).item() == pytest.approx(21 * 24 / 510)


@pytest.mark.parametrize("bits,bound", [(7, 1.0), (9, 12.0), (4, 3.0)])
def test_quantiser_round_trip_within_half_a_step(bits, bound):
    step = step_size(resolution(bits), bound)
    v = (torch.rand(20_000, generator=torch.Generator().manual_seed(bits), dtype=torch.float64) * 2 - 1) * bound
    q = quantise(v, step, bound)
    assert (q - v).abs().max() <= step / 2 + 1e-12
    k = q / step
    assert torch.allclose(k, k.round(), atol=1e-9)                       # on the grid
    assert k.round().unique().numel() == 2**bits - 1                    # 2**bits - 1 levels, 0 included
    assert bound / step == pytest.approx(2**bits / 2 - 1)               # the bound is a level


def test_quantiser_clips_at_the_bound_and_passes_gradients_straight_through():
    assert quantise(torch.tensor([-30.0, -12.01, 11.99, 12.0, 50.0]), 24 / 510, 12.0).tolist() == [-12.0] * 2 + [12.0] * 3
    v = torch.tensor([-30.0, -5.0, 0.3, 11.0, 50.0], requires_grad=True)
    q = quantise(v, 24 / 510, 12.0)
    q.sum().backward()
    assert v.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]  # clipped: no gradient; rounded: straight through


def test_adc_saturates_at_out_bound():
    # 100 full-scale products of 1: the analog sum 100 is clipped to 12 (normalised units)
    x, w = torch.ones(3, 100), torch.ones(5, 100)
    y = analog_matmul(x * 0.5, w, make_crossbar("aihwkit", out_noise=0.0, bound_management="none"))
    assert torch.equal(y, torch.full((3, 5), 12.0 * 0.5))   # times the abs-max scale 0.5
    # iterative bound management halves the input until the read fits: 100/8 = 12.5 > 12, 100/16 fits;
    # the DAC then sees 1/16 = 0.0625 -> 4 steps of 2/126, the ADC 100*4*2/126 -> 135 steps of 24/510
    y = analog_matmul(x * 0.5, w, make_crossbar("aihwkit", out_noise=0.0))
    dac = round(0.0625 / (2 / 126)) * 2 / 126
    adc = round(100 * dac / (24 / 510)) * 24 / 510
    assert (round(0.0625 / (2 / 126)), round(100 * dac / (24 / 510))) == (4, 135)
    assert torch.allclose(y, torch.full((3, 5), adc * 16 * 0.5))


def test_zero_input_vector_gives_zero_output_without_noise():
    x = torch.zeros(4, 10)
    x[1, 3] = 1.0
    y = analog_matmul(x, torch.ones(6, 10), make_crossbar("aihwkit", out_noise=1.0), reads=torch.Generator())
    assert torch.equal(y[[0, 2, 3]], torch.zeros(3, 6)) and not torch.equal(y[1], torch.zeros(6))


# ----------------------------------------------------------------------------------------- tiles
def test_split_sizes_follow_aihwkit():
    assert split_sizes(1000, 512) == [500, 500]
    assert split_sizes(1025, 512) == [342, 342, 341]
    assert split_sizes(300, 0) == [300] and split_sizes(300, 512) == [300]
    assert split_sizes(64 * 9, 512, group=9) == [32 * 9, 32 * 9]   # kernels stay whole: 56 channels max per tile
    with pytest.raises(RramlibError, match="kernel"):
        split_sizes(25 * 4, 16, group=25)


@pytest.mark.parametrize("kernel,stride,padding,dilation", [(3, 1, 1, 1), (3, 2, 1, 1), ((3, 2), (2, 1), (0, 1), 1),
                                                             (3, 1, 2, 2)])
@pytest.mark.parametrize("channels", [None, [2, 1]])
def test_patches_are_unfold_in_channels_last_order(kernel, stride, padding, dilation, channels):
    conv = nn.Conv2d(3, 4, kernel, stride, padding, dilation, bias=False)
    x = torch.randn(2, 3, 9, 7)
    rows = patches(x, conv.kernel_size, conv.stride, conv.padding, conv.dilation, channels)
    ref = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)  # (N, C·kh·kw, L), C outermost
    kh, kw = conv.kernel_size
    ref = ref.reshape(2, 3, kh, kw, -1).permute(0, 4, 2, 3, 1)                    # (N, L, kh, kw, C)
    groups = [ref] if channels is None else ref.split(channels, dim=-1)
    expected = torch.cat([g.reshape(2, ref.shape[1], -1) for g in groups], dim=-1)
    assert torch.equal(rows.reshape(2, -1, rows.shape[-1]), expected)
    # the weights in the same column order give the convolution
    out = rows.reshape(-1, rows.shape[-1]) @ kernel_rows(conv.weight, channels).T
    n, h, w, _ = rows.shape
    assert torch.allclose(out.reshape(n, h, w, 4).permute(0, 3, 1, 2), conv(x), atol=1e-5)


@pytest.mark.parametrize("preset", ["ibm_pcm", "ibm_cmo_reram"])
@pytest.mark.parametrize("tiles", [(9, 7), (20, 4), (27, 0)])
def test_tiling_with_ideal_periphery_equals_the_unsplit_product(preset, tiles):
    """Linear and Conv2d layers split into tiles (kernels kept whole) sum to the exact product."""
    x, t = images(), TIME_GRID["1y"]
    exact = AnalogModel(small_cnn(), preset, seed=5)
    tiled = AnalogModel(small_cnn(), preset, seed=5, crossbar=Crossbar(max_input_size=tiles[0],
                                                                      max_output_size=tiles[1]))
    assert tiled.periphery.layers[-1].n_tiles > 1   # the last Linear (30 inputs) is split
    with torch.no_grad():
        assert torch.allclose(tiled.at(t)(x), exact.at(t)(x), rtol=1e-5, atol=1e-6)
    # per-layer check on inputs that exercise every tile
    for mod_exact, mod_tiled in zip(exact.layer_modules, tiled.layer_modules):
        shape = (3, mod_exact.in_channels, 6, 6) if isinstance(mod_exact, nn.Conv2d) else (3, mod_exact.in_features)
        z = torch.randn(shape)
        assert torch.allclose(mod_tiled(z), mod_exact(z), rtol=1e-5, atol=1e-6)


def test_unbatched_inputs():
    analog = AnalogModel(small_cnn(), "ibm_pcm", seed=1, crossbar=Crossbar(max_input_size=9))
    conv, lin = analog.layer_modules[0], analog.layer_modules[-1]
    z = torch.randn(2, 8, 8)
    assert torch.allclose(conv(z), F.conv2d(z, conv.weight, None, 1, 1), atol=1e-6)
    v = torch.randn(30)
    assert torch.allclose(lin(v), F.linear(v, lin.weight, lin.bias), atol=1e-6)


# ----------------------------------------------------------------------------------------- noise
def test_output_noise_statistics():
    """Per-read noise: mean 0 and std out_noise within standard-error bounds (4 sigma)."""
    sigma, n = 0.3, 40_000
    x = torch.rand(n, 8, generator=torch.Generator().manual_seed(0)) + 0.5
    w = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    reads = torch.Generator().manual_seed(2)
    err = analog_matmul(x, w, Crossbar(out_noise=sigma), reads=reads) - x @ w.T
    assert err.mean().abs() < 4 * sigma / math.sqrt(err.numel())
    assert abs(err.std().item() - sigma) < 4 * sigma / math.sqrt(2 * err.numel())
    # columns are independent: correlation between two columns ~ 0
    corr = torch.corrcoef(err.T)[0, 1]
    assert corr.abs() < 4 / math.sqrt(n)


def test_same_seed_same_draw():
    x, w = torch.randn(50, 8), torch.randn(4, 8)
    xb = make_crossbar("aihwkit")
    a = analog_matmul(x, w, xb, reads=torch.Generator().manual_seed(7))
    b = analog_matmul(x, w, xb, reads=torch.Generator().manual_seed(7))
    c = analog_matmul(x, w, xb, reads=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_chip_reads_are_reproducible_and_independent_of_order():
    analog = AnalogModel(small_cnn(), "ibm_pcm", seed=3, crossbar="aihwkit")
    x, t1, t2 = images(), TIME_GRID["1d"], TIME_GRID["10y"]
    with torch.no_grad():
        first = analog.at(t1)(x)
        analog.at(t2)(x)
        assert torch.equal(analog.at(t1)(x), first)                       # read at t1 again: same draw
        assert not torch.equal(analog.model(x), first)                     # a second read in the same at(): new draw
        other = AnalogModel(small_cnn(), "ibm_pcm", seed=3, crossbar="aihwkit")
        assert torch.equal(other.at(t1)(x), first)                        # same chip, same time: same draw
        other.program(4)
        assert not torch.equal(other.at(t1)(x), first)


def test_systematic_parts_are_fixed_at_programming():
    xb = Crossbar(out_noise=0.2, out_noise_std=0.5, out_offset_std=0.1, max_input_size=10)
    a = AnalogModel(small_cnn(), "ibm_pcm", seed=3, crossbar=xb)
    layer = a.periphery.layers[-2]                                       # Linear 8 -> 30: one tile, 30 columns
    sigma, offset = layer.sigma.clone(), layer.offset.clone()
    assert sigma.shape == offset.shape == (1, 30)
    assert (sigma > 0).all() and sigma.std() > 0.02 and offset.std() > 0.01
    a.at(1.0); a.at(100.0)
    assert torch.equal(layer.sigma, sigma) and torch.equal(layer.offset, offset)
    a.program(3)
    assert torch.equal(layer.sigma, sigma)
    a.program(4)
    assert not torch.equal(layer.sigma, sigma)
    # the drift draws do not depend on the crossbar: same drifted weights as without it
    plain = AnalogModel(small_cnn(), "ibm_pcm", seed=4)
    assert all(torch.equal(p, q) for (_, p), (_, q) in zip(plain.weights_at(5.0), a.weights_at(5.0)))


def test_systematic_noise_statistics_per_column():
    """Per column: mean = its fixed offset, std = its fixed sigma_j (4 standard errors)."""
    n = 20_000
    xb = Crossbar(out_noise=0.2, out_noise_std=0.5, out_offset_std=0.3)
    gen = torch.Generator().manual_seed(0)
    sigma = (0.2 * (1 + 0.5 * torch.randn(1, 4, generator=gen))).abs()
    offset = 0.3 * torch.randn(1, 4, generator=gen)
    x, w = torch.ones(n, 2), torch.zeros(4, 2)
    y = analog_matmul(x, w, xb, sigma=sigma, offset=offset, reads=torch.Generator().manual_seed(1))
    assert ((y.mean(0) - offset[0]).abs() < 4 * sigma[0] / math.sqrt(n)).all()
    assert ((y.std(0) - sigma[0]).abs() < 4 * sigma[0] / math.sqrt(2 * n)).all()


# ----------------------------------------------------------------------------------------- the ideal path
@pytest.mark.parametrize("preset", list(PRESETS))
def test_ideal_crossbar_is_todays_code_path_bit_for_bit(preset):
    net, x = small_cnn(), images()
    default = AnalogModel(net, preset, seed=11)
    ideal = AnalogModel(net, preset, seed=11, crossbar="ideal")
    assert ideal.periphery is None and ideal.crossbar.is_ideal
    for t in (1.0, TIME_GRID["1y"]):
        with torch.no_grad():
            y = ideal.at(t)(x)
            assert torch.equal(y, default.at(t)(x))
            # independent reference: plain torch layers carrying the drifted weights
            ref = copy.deepcopy(net)
            state = {f"{name}.weight": w for name, w in ideal.weights_at(t)}
            assert torch.equal(y, functional_call(ref, state, (x,)))
    # switching to another crossbar and back restores the exact forward
    ideal.set_crossbar("aihwkit")
    with torch.no_grad():
        assert not torch.equal(ideal.at(1.0)(x), default.at(1.0)(x))
        ideal.set_crossbar("ideal")
        assert torch.equal(ideal.at(1.0)(x), default.at(1.0)(x))
    assert all("forward" not in m.__dict__ for m in ideal.layer_modules)


def test_digital_correction_paths_stay_exact():
    """An adapter adds the same digital correction to the base layer's output with or without the periphery."""
    xb = make_crossbar("aihwkit", out_noise=0.0)
    chips = [AnalogModel(small_cnn(), "ibm_pcm", seed=2), AnalogModel(small_cnn(), "ibm_pcm", seed=2, crossbar=xb)]
    corrections = []
    for analog in chips:
        lora = add_lora(analog.model, rank=2, adapter_names=["a"])
        with torch.no_grad():
            for p in lora.adapter_parameters("a"):
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        analog.at(TIME_GRID["1d"])
        per_layer = []
        for wrapper in lora.wrappers:
            layer = wrapper.base_layer
            shape = (3, layer.in_channels, 5, 5) if isinstance(layer, nn.Conv2d) else (3, layer.in_features)
            z = torch.randn(shape, generator=torch.Generator().manual_seed(9))
            with torch.no_grad():
                per_layer.append((wrapper(z) - layer(z), layer(z)))
        corrections.append(per_layer)
    for (exact_corr, exact_base), (xbar_corr, xbar_base) in zip(*corrections):
        assert torch.allclose(xbar_corr, exact_corr, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(xbar_base, exact_base, rtol=1e-5, atol=1e-5)   # the base did go through the periphery


def test_deepcopy_of_a_model_with_a_crossbar():
    analog = AnalogModel(small_cnn(), "ibm_pcm", seed=2, crossbar="aihwkit")
    model = analog.at(1.0)
    clone = copy.deepcopy(model)
    x = images()
    with torch.no_grad():
        analog.at(1.0)
        assert torch.equal(clone(x), model(x))   # same generator state, own modules
        clone[0].weight.zero_()
        analog.at(1.0)
        assert not torch.equal(analog.model(x), clone(x))


def test_bad_crossbar_settings_fail_early():
    with pytest.raises(RramlibError, match="crossbar"):
        make_crossbar("nonsense")
    with pytest.raises(RramlibError, match="inp_bound"):
        Crossbar(inp_res=0.1)
    with pytest.raises(RramlibError, match="out_bound"):
        Crossbar(out_res=0.1)
    with pytest.raises(RramlibError, match="noise_management"):
        Crossbar(noise_management="abs_min")
    with pytest.raises(RramlibError, match="out_noise"):
        Crossbar(out_noise=-1.0)
    with pytest.raises(RramlibError, match="unknown crossbar setting"):
        make_crossbar("aihwkit", dac_bits=3)
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(RramlibError, match="groups"):
        AnalogModel(grouped, "ibm_pcm", seed=0, crossbar="aihwkit")


# ----------------------------------------------------------------------------------------- aihwkit-lightning
def lightning_linear(weight, max_input_size):
    lightning = pytest.importorskip(
        "aihwkit_lightning.nn", reason="aihwkit-lightning is not installed: pip install --no-deps aihwkit-lightning==2.1.0")
    from aihwkit_lightning.simulator.configs import TorchInferenceRPUConfig

    config = TorchInferenceRPUConfig()
    config.forward.inp_res = resolution(7)
    config.forward.out_res = resolution(9)
    config.forward.out_bound = 12.0
    config.forward.out_noise = 0.0
    config.pre_post.input_range.enable = True
    config.pre_post.input_range.dynamic = True   # abs-max per input vector and slice
    config.mapping.max_input_size = max_input_size
    layer = lightning.AnalogLinear(weight.shape[1], weight.shape[0], bias=False, rpu_config=config)
    layer.set_weights(weight)
    return layer.eval()


@pytest.mark.parametrize("max_input_size", [0, 48])
def test_periphery_matches_aihwkit_lightning(max_input_size):
    """DAC, ADC, bound and input tiles against aihwkit-lightning's AnalogLinear (no noise, no bound management).

    Lightning scales the ADC range by each input slice's max|W|; every slice here holds the layer's max|W|, so
    both normalise by the same full-scale weight. Rounding ties may fall differently (other operation order):
    we require at most one ADC step of difference, and on almost every output none.
    """
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(40, 150, generator=gen, dtype=torch.float64).float() * 0.2
    w_max = w.abs().max()
    start = 0
    for i, size in enumerate(split_sizes(150, max_input_size)):   # every input slice holds the layer's max|W|
        w[i, start] = w_max
        start += size
    x = torch.randn(256, 150, generator=gen)
    x[:, :75] *= 4.0   # some saturating reads: |y| beyond out_bound in normalised units
    layer = lightning_linear(w, max_input_size)
    with torch.no_grad():
        expected = layer(x)
    xb = make_crossbar("aihwkit", out_noise=0.0, bound_management="none", max_input_size=max_input_size)
    ours = analog_matmul(x, w / w_max, xb) * w_max
    n_tiles = len(split_sizes(150, max_input_size))
    step = xb.out_step * x.abs().max() * w_max           # the largest ADC step of any read
    diff = (ours - expected).abs()
    assert diff.max() <= n_tiles * step * 1.001
    assert (diff > 1e-4).float().mean() < 0.01
    clipped = (analog_matmul(x, w / w_max, xb.replace(max_input_size=0)).abs() >= 12.0 - 1e-6).float().mean()
    assert max_input_size or clipped > 0.01   # the comparison does exercise the ADC bound


# ----------------------------------------------------------------------------------------- sweeps and the CLI
def test_sweep_reads_evaluation_chips_through_the_crossbar(tmp_path):
    """An aihwkit sweep equals the chips read directly through the crossbar; ideal records stay as they were."""
    from rramlib.core.cache import Cache
    from rramlib.nn.data import as_tensors
    from rramlib.nn.evaluate import accuracy
    from rramlib.study.experiments import SweepConfig, prepare, run_sweep

    common = dict(profile="smoke", preset="ibm_pcm", times=("1d", "10y"), chips=2)
    cache = Cache(tmp_path)
    plain = run_sweep(SweepConfig(**common), cache=cache, progress=False)
    ideal = run_sweep(SweepConfig(**common, crossbar="ideal"), cache=Cache(None), progress=False)
    assert ideal["records"] == plain["records"]
    config = SweepConfig(**common, crossbar="aihwkit")
    periphery = run_sweep(config, cache=cache, progress=False)
    base = prepare(config, cache=cache).base
    test = as_tensors(base.splits.test)
    direct = [accuracy(AnalogModel(base.model, "ibm_pcm", seed=seed, crossbar="aihwkit").at(TIME_GRID[label]), test)
              for seed in config.chip_seeds() for label in ("1d", "10y")]
    assert [r["accuracy"] for r in periphery["records"] if r["method"] == "none"] == direct
    assert periphery["metadata"]["crossbar"] == "aihwkit" and plain["metadata"]["crossbar"] == "ideal"
    assert config.crossbar_key()["crossbar"] == make_crossbar("aihwkit").params()
    assert SweepConfig(**common).crossbar_key() == {}   # ideal keeps every cache key as it was


def test_crossbar_sweep_restores_the_periphery(tmp_path):
    from rramlib.core.cache import Cache
    from rramlib.nn.data import as_tensors
    from rramlib.nn.evaluate import accuracy
    from rramlib.study.experiments import SweepConfig, crossbar_sweep, prepare

    config = SweepConfig(profile="smoke", preset="ibm_pcm")
    exp = prepare(config, cache=Cache(tmp_path))
    method = exp.fit("none", config, Cache(tmp_path))
    test = as_tensors(exp.base.splits.test)
    coarse = make_crossbar("aihwkit", out_res=resolution(4))
    records = crossbar_sweep(method, {"coarse": coarse, "ideal": "ideal"}, {"1d": TIME_GRID["1d"]}, [10_000], test)
    expected = accuracy(AnalogModel(exp.base.model, "ibm_pcm", seed=10_000, crossbar=coarse).at(TIME_GRID["1d"]), test)
    assert [r["crossbar"] for r in records] == ["coarse", "ideal"] and records[0]["accuracy"] == expected
    assert method.analog_.crossbar.is_ideal and method.analog_.periphery is None


def test_cli_rejects_an_unknown_crossbar_before_any_work(capsys):
    from rramlib.cli.main import main

    assert main(["sweep", "--profile", "smoke", "--crossbar", "analogue", "--out", "x.json"]) == 2
    assert "unknown crossbar 'analogue'; choose one of: aihwkit, ideal" in capsys.readouterr().err


@pytest.mark.parametrize("padding,dilation,max_input_size", [(1, 1, 0), (1, 1, 27), (0, 2, 18), (2, 1, 0)])
def test_convolution_is_the_periphery_product_of_its_unfolded_patches(padding, dilation, max_input_size):
    """A Conv2d through the periphery = analog_matmul of its F.unfold patches, input tiles of whole channels."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(5, 7, 3, stride=2, padding=padding, dilation=dilation))
    xb = make_crossbar("aihwkit", out_noise=0.0, max_input_size=max_input_size)
    analog = AnalogModel(net, "ibm_pcm", seed=1, crossbar=xb)
    conv = analog.at(TIME_GRID["1y"])[0]
    x = torch.relu(torch.randn(3, 5, 9, 9))
    x[0, :, :4] = 0.0   # all-zero patches
    cols = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)   # (N, 45, L), channel-major
    h = w = (9 + 2 * padding - dilation * 2 - 1) // 2 + 1
    w_max = analog.periphery.layers[0].w_max
    expected = analog_matmul(cols.transpose(1, 2).reshape(-1, 45), conv.weight.reshape(7, -1) / w_max, xb,
                             in_sizes=split_sizes(45, max_input_size, group=9)) * w_max
    with torch.no_grad():
        got = conv(x)
    assert torch.allclose(got, expected.reshape(3, h, w, 7).permute(0, 3, 1, 2) + conv.bias.view(1, -1, 1, 1),
                          atol=1e-6)


def test_ir_drop_golden_value():
    """aihwkit's applyIrDrop: a_i = n/g_ratio·Σ|w||x|, c = a(a(0.05a - 0.2) + 0.5), y -= ir·c·Σ w x (1-(1-j/n)^2)."""
    x, w = torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 1.0]])
    # a = 2/1·2 = 4, c = 4·(4·0 + 0.5) = 2, Σ w x' = 1·0 + 1·0.75 = 0.75 -> y = 2 - 1·2·0.75 = 0.5
    assert analog_matmul(x, w, Crossbar(ir_drop=1.0, ir_drop_g_ratio=1.0)).item() == pytest.approx(0.5)
    # the default wire/device ratio makes the drop tiny on a small tile
    y = analog_matmul(x, w, Crossbar(ir_drop=1.0))
    assert 0 < 2.0 - y.item() < 1e-4
