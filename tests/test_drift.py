"""Drift presets (rramlib.device.drift; sources in each preset's docstring): statistics against the formulas, trajectories, tables, bad input.

Statistical checks use N = 200 000 devices at one target conductance and compare the
empirical mean and standard deviation with the analytical values within K = 5 standard
errors: SE(mean) = s / sqrt(N) and SE(std) = sqrt((m4 - s^4) / (4 s^2 N)) with the sample's
own fourth central moment m4 (this is sigma / sqrt(2N) for a normal law, and stays right
for the skewed PCM law). At 5 SE a correct model fails a check with probability < 1e-6;
seeds are fixed, so the outcome is deterministic anyway. Targets are chosen in the interior
of [g_min, g_max] so that clamping is negligible (each case states the margin).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from rramlib.device.drift import PRESETS, DriftModel, DriftTable, make_drift_model, neurram_table, preset_parameters
from rramlib.device.drift.measured import NEURRAM_CSV, neurram_sigma
from rramlib.core.errors import RramlibError
from rramlib.core.times import DAY, YEAR

N = 200_000
K = 5.0
TIMES = [1.0, DAY, 10 * YEAR]

# quadrature grid for expectations over one standard normal z (trapezoid on [-12, 12])
_Z = np.linspace(-12.0, 12.0, 480_001)
_PHI = np.exp(-0.5 * _Z**2) / math.sqrt(2 * math.pi)


def expect(values: np.ndarray) -> float:
    """E[f(z)] for z ~ N(0, 1), given f evaluated on the grid _Z."""
    return float(np.trapezoid(values * _PHI, _Z))


def program(model: DriftModel, g: float, seed: int = 0, n: int = N) -> dict:
    return model.program(torch.full((n,), g), torch.Generator().manual_seed(seed))


def assert_stats(x: torch.Tensor, mean: float, std: float, what: str = "") -> None:
    """Empirical mean and std of x within K standard errors of (mean, std)."""
    x = x.double()
    n = x.numel()
    m, s = x.mean().item(), x.std().item()
    m4 = ((x - m) ** 4).mean().item()
    se_mean = s / math.sqrt(n)
    se_std = math.sqrt(max(m4 - s**4, 0.0) / (4 * s * s * n)) if s > 0 else 0.0
    assert abs(m - mean) <= K * se_mean + 1e-6 * abs(mean), f"{what}: mean {m} vs {mean} (SE {se_mean:.3g})"
    assert abs(s - std) <= K * se_std + 1e-6 * abs(std), f"{what}: std {s} vs {std} (SE {se_std:.3g})"


# ---------------------------------------------------------------------------- relative_gaussian
@pytest.mark.parametrize("t", TIMES)
@pytest.mark.parametrize("time_model,drift_scale", [("log", 1.0), ("constant", 1.0), ("log", 2.5)])
def test_relative_gaussian_statistics(t, time_model, drift_scale):
    """G = G_t + N(0, (RD G_t)^2) (Dong et al. 2025), RD(t) per the documented map; no clamping."""
    model = make_drift_model("relative_gaussian", rd=0.2, time_model=time_model, drift_scale=drift_scale)
    g_t = 50.0
    if time_model == "log":
        rd = 0.2 * math.log1p(t / 1.0) / math.log1p(10 * YEAR / 1.0)
    else:
        rd = 0.2
    rd *= drift_scale
    assert model.relative_drift(t) == pytest.approx(rd, rel=1e-12)
    g = model.conductance(program(model, g_t), t)
    assert_stats(g, g_t, rd * g_t, f"relative_gaussian {time_model} t={t}")


def test_relative_gaussian_time_map():
    model = make_drift_model("relative_gaussian")
    assert model.relative_drift(0.0) == 0.0
    assert model.relative_drift(10 * YEAR) == pytest.approx(0.2)
    # linear in ln(1 + t): equal steps in ln(1 + t) give equal steps in RD
    a, b, c = (model.relative_drift(math.expm1(x)) for x in (2.0, 4.0, 6.0))
    assert b - a == pytest.approx(c - b)
    assert make_drift_model("relative_gaussian", time_model="constant").relative_drift(1e-3) == 0.2


# ---------------------------------------------------------------------------- ibm_cmo_reram
# aihwkit ReRamCMONoiseModel constants, typed here independently of the module under test
CMO_PROG = {0.2: (0.00081107, 0.00106879), 2.0: (0.0112185391, 0.01129027418)}


def cmo_expected(model, g: float, t: float) -> tuple[float, float]:
    """Mean and std of the CMO model at t > 0 (aihwkit ReRamCMONoiseModel), by quadrature over the drift normal."""
    c0, c1 = CMO_PROG[model.acceptance]
    sigma_prog = model.prog_noise_scale * (c0 + c1 * g)
    te = max(t, 1.0)
    shift = model.drift_scale * -0.08900206 * math.log(te)
    sigma_drift = model.drift_scale * (0.04201137 * math.log(te) + 0.41183342)
    sd = math.sqrt(sigma_prog**2 + sigma_drift**2)
    read = model.read_noise_scale * 0.0277316483 * math.sqrt(math.log((te + 1e-6) / (2e-6)))
    # g_drift ~ N(g + shift, sd^2); the read normal is independent with zero mean
    e_log2 = expect(np.log10(np.maximum(g + shift + sd * _Z, 1e-7)) ** 2)  # floor as in the model
    return g + shift, math.sqrt(sd**2 + read**2 * e_log2)


@pytest.mark.parametrize("t", TIMES)
@pytest.mark.parametrize("acceptance", [0.2, 2.0])
def test_cmo_statistics(t, acceptance):
    """Target 50 µS in [9, 88.2]: at 10 y mean 48.3, std 1.3 -> both edges > 25 std away (no clamping)."""
    model = make_drift_model("ibm_cmo_reram", acceptance=acceptance)
    mean, std = cmo_expected(model, 50.0, t)
    g = model.conductance(program(model, 50.0, seed=1), t)
    assert_stats(g, mean, std, f"cmo acc={acceptance} t={t}")


def test_cmo_drift_scale_and_programming():
    model = make_drift_model("ibm_cmo_reram", acceptance=2.0, drift_scale=3.0, read_noise_scale=0.5)
    mean, std = cmo_expected(model, 40.0, YEAR)
    assert_stats(model.conductance(program(model, 40.0, seed=2), YEAR), mean, std, "cmo scaled")
    # programming alone: sigma = c0 + c1 g
    state = program(model, 40.0, seed=3)
    assert_stats(state["g_prog"], 40.0, 0.0112185391 + 0.01129027418 * 40.0, "cmo programming")


def test_cmo_below_one_second_uses_one_second():
    """Decision: for 0 < t < 1 s the fits (linear in ln t) are evaluated at t = 1 s."""
    model = make_drift_model("ibm_cmo_reram")
    state = program(model, 30.0, n=1000)
    at_1s = model.conductance(state, 1.0)
    for t in (1e-9, 1e-3, 0.5, 0.999):
        assert torch.equal(model.conductance(state, t), at_1s)
    assert not torch.equal(model.conductance(state, 0.0), at_1s)
    assert not torch.equal(model.conductance(state, 2.0), at_1s)


def test_cmo_clamps_to_range_and_handles_low_g_min():
    model = make_drift_model("ibm_cmo_reram", drift_scale=50.0)
    state = model.program(torch.linspace(9.0, 88.2, 10_000), torch.Generator().manual_seed(0))
    g = model.conductance(state, 10 * YEAR)
    assert float(g.min()) >= 9.0 and float(g.max()) <= 88.2
    assert float(g.min()) == 9.0  # the strong drift does push devices onto the edge
    low = make_drift_model("ibm_cmo_reram", g_min=0.0, g_max=10.0, drift_scale=5.0)
    g = low.conductance(low.program(torch.linspace(0.0, 10.0, 10_000), torch.Generator().manual_seed(0)), YEAR)
    assert bool(torch.isfinite(g).all())


# ---------------------------------------------------------------------------- ibm_pcm
def folded_normal(mu: float, sigma: float) -> tuple[float, float]:
    """Mean and std of |X|, X ~ N(mu, sigma^2)."""
    phi = 0.5 * (1 + math.erf(-mu / sigma / math.sqrt(2)))  # Phi(-mu/sigma)
    mean = sigma * math.sqrt(2 / math.pi) * math.exp(-mu * mu / (2 * sigma * sigma)) + mu * (1 - 2 * phi)
    return mean, math.sqrt(mu * mu + sigma * sigma - mean * mean)


def pcm_nu_params(g_hat: float) -> tuple[float, float]:
    ln = math.log(max(g_hat, 1e-7))
    return min(max(-0.0155 * ln + 0.0244, 0.049), 0.1), min(max(-0.0125 * ln - 0.0059, 0.008), 0.045)


@pytest.mark.parametrize("g_hat", [1.0, 0.5, 0.05, 0.01, 0.0])
def test_pcm_nu_statistics(g_hat):
    """nu = |mu + sigma z| (folded normal) with the clipped mu, sigma of Nandakumar et al. 2019 / aihwkit."""
    mu, sigma = pcm_nu_params(g_hat)
    mean, std = folded_normal(mu, sigma)
    model = make_drift_model("ibm_pcm")
    state = program(model, 25.0 * g_hat, seed=4)
    assert_stats(state["nu"], mean, std, f"nu at g_hat={g_hat}")
    scaled = program(make_drift_model("ibm_pcm", drift_scale=2.0), 25.0 * g_hat, seed=4)
    assert torch.allclose(scaled["nu"], 2.0 * state["nu"], rtol=1e-6)


def test_pcm_clipping_constants():
    # mu and sigma sit on their clip bounds at the extremes and in between near g_hat = 0.02
    assert pcm_nu_params(1.0) == (0.049, 0.008)
    assert pcm_nu_params(0.0) == (0.1, 0.045)
    mu, sigma = make_drift_model("ibm_pcm").nu_parameters(torch.tensor([0.02 * 25.0]))
    assert mu.item() == pytest.approx(-0.0155 * math.log(0.02) + 0.0244, rel=1e-6)
    assert sigma.item() == pytest.approx(-0.0125 * math.log(0.02) - 0.0059, rel=1e-6)


def pcm_expected(g: float, t: float, g_max: float = 25.0, drift_scale: float = 1.0,
                 prog: float = 1.0, read: float = 1.0) -> tuple[float, float]:
    """Mean and std of the PCM model at t > 0 by quadrature (programming, nu, read normals independent)."""
    g_hat = g / g_max
    sigma_p = prog * (0.26348 + 1.9650 * g_hat - 1.1731 * g_hat**2) * g_max / 25.0
    g_prog = np.maximum(g + sigma_p * _Z, 0.0)
    q_s = np.minimum(0.0088 / np.maximum((g_prog / g_max) ** 0.65, 1e-3), 0.2)
    s = math.sqrt(math.log((t + 20.0 + 250e-9) / (2 * 250e-9)))
    mu, sigma = pcm_nu_params(g_hat)
    nu = np.abs(mu + sigma * _Z) * drift_scale
    a = math.log((t + 20.0) / 20.0)
    e_decay, e_decay2 = expect(np.exp(-a * nu)), expect(np.exp(-2 * a * nu))
    mean = expect(g_prog) * e_decay
    second = expect(g_prog**2 * (1 + (read * s * q_s) ** 2)) * e_decay2
    return mean, math.sqrt(second - mean * mean)


@pytest.mark.parametrize("t", TIMES)
@pytest.mark.parametrize("g", [12.5, 2.5])
def test_pcm_statistics(t, g):
    """Targets 12.5 and 2.5 µS: programming sigma 0.95 / 0.44 µS (> 5 sigma above 0) and read noise
    below 10 % per unit normal, so the clamp at 0 is reached with probability < 1e-6."""
    model = make_drift_model("ibm_pcm")
    mean, std = pcm_expected(g, t)
    assert_stats(model.conductance(program(model, g, seed=5), t), mean, std, f"pcm g={g} t={t}")


def test_pcm_power_law_decay():
    """Without programming/read noise each device follows g_target ((t + t0)/t0)^(-nu) exactly,
    and the mean follows g_target E[((t + t0)/t0)^(-nu)]."""
    model = make_drift_model("ibm_pcm", prog_noise_scale=0.0, read_noise_scale=0.0)
    g = 10.0
    state = program(model, g, seed=6)
    assert torch.equal(state["g_prog"], torch.full((N,), g))
    mu, sigma = pcm_nu_params(g / 25.0)
    nu = np.abs(mu + sigma * _Z)
    means = []
    for t in (60.0, 3600.0, DAY, YEAR, 10 * YEAR):
        out = model.conductance(state, t)
        factor = ((t + 20.0) / 20.0) ** (-state["nu"].double())
        assert torch.allclose(out.double(), g * factor, rtol=2e-6)
        expected = g * expect(((t + 20.0) / 20.0) ** (-nu))
        se = out.double().std().item() / math.sqrt(N)
        assert abs(out.double().mean().item() - expected) <= K * se
        means.append(out.double().mean().item())
    assert means == sorted(means, reverse=True)
    # for t >> t0 the log-log slope of the mean is close to -E[nu] (within the spread of nu)
    slope = math.log(means[-1] / means[-2]) / math.log((10 * YEAR + 20) / (YEAR + 20))
    assert slope == pytest.approx(-folded_normal(mu, sigma)[0], abs=2 * sigma)


def test_pcm_other_g_max_and_scales():
    mean, std = pcm_expected(40.0, DAY, g_max=80.0, drift_scale=1.5, prog=0.5, read=2.0)
    model = make_drift_model("ibm_pcm", g_max=80.0, drift_scale=1.5, prog_noise_scale=0.5, read_noise_scale=2.0)
    assert_stats(model.conductance(program(model, 40.0, seed=7), DAY), mean, std, "pcm g_max=80")


# ---------------------------------------------------------------------------- measured
def neurram_expected_std(g_hat: float, t: float, g_max: float = 40.0) -> float:
    times = [1.0, DAY, 2 * DAY]
    if t <= times[0]:
        return neurram_sigma(g_hat, times[0], g_max)
    k = 0 if t <= times[1] else 1  # extrapolation beyond 2 days uses the last two times
    a = (math.log(t) - math.log(times[k])) / (math.log(times[k + 1]) - math.log(times[k]))
    return max((1 - a) * neurram_sigma(g_hat, times[k], g_max) + a * neurram_sigma(g_hat, times[k + 1], g_max), 0)


@pytest.mark.parametrize("t", TIMES + [0.25, 1.5 * DAY])
def test_measured_neurram_statistics(t):
    """Default table at 20 µS (a grid level): zero mean, sigma from the polynomials, extrapolated in ln t
    beyond 2 days (10 y: 4.15 µS). The clamp to [0, 40] is 4.8 sigma away on both sides: symmetric, so the
    mean is unaffected and the std changes by < 1e-5 of itself."""
    model = make_drift_model("measured")
    std = neurram_expected_std(0.5, t)
    assert_stats(model.conductance(program(model, 20.0, seed=8), t), 20.0, std, f"measured t={t}")


def test_neurram_golden_values():
    """Polynomials of Wan et al. 2022 (via aihwkit ReRamWan2022NoiseModel), hand-evaluated."""
    golden = {  # g_hat -> sigma at 1 s, 1 day, 2 days (µS, g_max = 40)
        0.0: (0.348, 0.701, 0.782),
        0.5: (2.0229375, 3.909, 3.929125),
        1.0: (1.103, 2.651, 2.677),
    }
    table = neurram_table()
    for g_hat, values in golden.items():
        for t, v in zip((1.0, DAY, 2 * DAY), values):
            assert neurram_sigma(g_hat, t) == pytest.approx(v, abs=1e-12)
            mean, std = table.interpolate(torch.tensor([40.0 * g_hat]), t)
            assert std.item() == pytest.approx(v, abs=1e-12) and mean.item() == 0.0
    # another g_max scales g and sigma by g_max / 40
    doubled = neurram_table(g_max=80.0)
    assert torch.equal(doubled.g, 2 * table.g)
    assert torch.allclose(doubled.std, 2 * table.std, rtol=1e-14)
    assert float(table.std.min()) > 0


def test_shipped_csv_equals_neurram_table():
    assert DriftTable.from_csv(NEURRAM_CSV) == neurram_table()
    assert NEURRAM_CSV.read_text() == neurram_table().to_csv_text()


def _small_table() -> DriftTable:
    # times 1 s and 100 s; levels 0, 10, 20 µS; the spread shrinks with time so that extrapolation hits 0
    return DriftTable([1.0, 100.0], [0.0, 10.0, 20.0],
                      mean_shift=[[0.0, -1.0, -2.0], [1.0, -3.0, -6.0]],
                      std=[[1.0, 2.0, 4.0], [0.5, 1.0, 2.0]])


def test_table_interpolation_rules():
    table = _small_table()
    g = torch.tensor([0.0, 10.0, 20.0, 5.0, 15.0, -3.0, 25.0], dtype=torch.float64)
    # exactly at table points, and linear in g between them; edge values outside the g range
    mean, std = table.interpolate(g, 1.0)
    assert mean.tolist() == [0.0, -1.0, -2.0, -0.5, -1.5, 0.0, -2.0]
    assert std.tolist() == [1.0, 2.0, 4.0, 1.5, 3.0, 1.0, 4.0]
    mean, std = table.interpolate(g[:3], 100.0)
    assert mean.tolist() == [1.0, -3.0, -6.0] and std.tolist() == [0.5, 1.0, 2.0]
    # linear in ln t: t = 10 s is halfway between 1 s and 100 s
    mean, std = table.interpolate(g[:3], 10.0)
    assert torch.allclose(mean, torch.tensor([0.5, -2.0, -4.0], dtype=torch.float64))
    assert torch.allclose(std, torch.tensor([0.75, 1.5, 3.0], dtype=torch.float64))
    # below the first time: the first row
    for t in (1e-6, 0.5):
        assert torch.equal(table.interpolate(g, t)[0], table.interpolate(g, 1.0)[0])
        assert torch.equal(table.interpolate(g, t)[1], table.interpolate(g, 1.0)[1])
    # beyond the last time: linear in ln t through the last two times; std clamped at 0
    mean, std = table.interpolate(g[:3], 1e4)  # two decades on: a = 2
    assert torch.allclose(mean, torch.tensor([2.0, -5.0, -10.0], dtype=torch.float64))
    assert torch.allclose(std, torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64))
    mean, std = table.interpolate(g[:3], 1e3)  # a = 1.5
    assert torch.allclose(std, torch.tensor([0.25, 0.5, 1.0], dtype=torch.float64))
    single = DriftTable([5.0], [0.0, 1.0], [[0.1, 0.2]], [[0.3, 0.4]])
    assert single.interpolate(torch.tensor([0.5]), 1e9)[1].item() == pytest.approx(0.35)


def test_measured_model_reads_the_table(tmp_path):
    """Per device: G = g + d (mean + std z), clamped; same rules as the table, in float32."""
    path = _small_table().to_csv(tmp_path / "small.csv")
    model = make_drift_model("measured", table=str(path), drift_scale=2.0, g_min=0.0, g_max=30.0)
    g = torch.tensor([0.0, 10.0, 20.0, 5.0, 15.0, 12.5] * 100)
    state = model.program(g, torch.Generator().manual_seed(9))
    assert torch.equal(model.conductance(state, 0.0), g)
    for t in (0.1, 1.0, 10.0, 100.0, 1e3, 1e5):
        mean, std = _small_table().interpolate(g.double(), t)
        expected = (g.double() + 2.0 * (mean + std * state["z"].double())).clamp(0.0, 30.0)
        assert torch.allclose(model.conductance(state, t).double(), expected, atol=1e-5)
    assert torch.equal(model.conductance(state, 0.5), model.conductance(state, 1.0))


MALFORMED = {
    "missing column": ("time_s,g_uS,mean_shift_uS\n1,0,0\n", 1),
    "extra column": ("time_s,g_uS,mean_shift_uS,std_uS,extra\n1,0,0,1,2\n", 1),
    "repeated column": ("time_s,g_uS,g_uS,std_uS\n", 1),
    "empty file": ("", 1),
    "header only": ("time_s,g_uS,mean_shift_uS,std_uS\n", 1),
    "non-numeric cell": ("time_s,g_uS,mean_shift_uS,std_uS\n1,0,0,1\n1,10,abc,1\n", 3),
    "nan cell": ("time_s,g_uS,mean_shift_uS,std_uS\n1,0,0,1\n1,10,0,nan\n", 3),
    "too few cells": ("time_s,g_uS,mean_shift_uS,std_uS\n1,0,0,1\n1,10,0\n", 3),
    "negative std": ("time_s,g_uS,mean_shift_uS,std_uS\n1,0,0,1\n1,10,0,1\n2,0,0,1\n2,10,0,-0.5\n", 5),
    "zero time": ("time_s,g_uS,mean_shift_uS,std_uS\n0,0,0,1\n", 2),
    "negative time": ("time_s,g_uS,mean_shift_uS,std_uS\n1,0,0,1\n-1,0,0,1\n", 3),
    "negative g": ("time_s,g_uS,mean_shift_uS,std_uS\n1,-1,0,1\n", 2),
    "one g point": ("time_s,g_uS,mean_shift_uS,std_uS\n1,0,0,1\n1,10,0,1\n5,0,0,1\n", 4),
    "missing g at a time": ("time_s,g_uS,mean_shift_uS,std_uS\n1,0,0,1\n1,10,0,1\n1,20,0,1\n"
                            "5,0,0,1\n5,10,0,1\n", 5),
    "extra g at a time": ("time_s,g_uS,mean_shift_uS,std_uS\n1,0,0,1\n1,10,0,1\n"
                          "5,0,0,1\n5,10,0,1\n5,15,0,1\n", 6),
    "repeated row": ("time_s,g_uS,mean_shift_uS,std_uS\n1,0,0,1\n1,10,0,1\n1,0,0,2\n", 4),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_table_names_file_and_line(tmp_path, case):
    text, line = MALFORMED[case]
    path = tmp_path / "bad table.csv"
    path.write_text(text)
    with pytest.raises(RramlibError) as err:
        DriftTable.from_csv(path)
    assert str(path) in str(err.value) and f"line {line}:" in str(err.value), str(err.value)
    with pytest.raises(RramlibError):
        make_drift_model("measured", table=str(path))


def test_table_files(tmp_path):
    with pytest.raises(RramlibError, match="nowhere.csv"):
        make_drift_model("measured", table=str(tmp_path / "nowhere.csv"))
    # column order, blank lines and spaces are accepted; round trip through to_csv is exact
    path = tmp_path / "ok.csv"
    path.write_text("g_uS, time_s ,std_uS,mean_shift_uS\n\n0,100,0.5,1\n10,100,1,-3\n20,100,2,-6\n"
                    "0,1,1,0\n10,1,2,-1\n20,1,4,-2\n\n")
    table = DriftTable.from_csv(path)
    assert table == _small_table()
    assert DriftTable.from_csv(table.to_csv(tmp_path / "again.csv")) == table
    # the content hash pins the table
    model = make_drift_model("measured", table=str(path))
    assert model.params()["table_sha256"] == table.sha256()
    make_drift_model("measured", **model.params())
    with pytest.raises(RramlibError, match="hash"):
        make_drift_model("measured", table=str(path), table_sha256="0" * 64)


# ---------------------------------------------------------------------------- every preset
@pytest.fixture(params=sorted(PRESETS))
def preset(request):
    return make_drift_model(request.param)


def _targets(model: DriftModel, seed: int = 0) -> torch.Tensor:
    u = torch.rand(64, 48, generator=torch.Generator().manual_seed(seed))
    return model.g_min + (model.g_max - model.g_min) * u


def test_trajectory_is_deterministic(preset):
    g = _targets(preset)
    state = preset.program(g, torch.Generator().manual_seed(11))
    assert set(state) == set(preset.state_keys)
    for v in state.values():
        assert v.dtype == torch.float32 and v.shape == g.shape
    saved = {k: v.clone() for k, v in state.items()}
    rng = torch.get_rng_state()
    for t in (0.0, 0.5, 1.0, 3600.0, DAY, YEAR, 10 * YEAR):
        first = preset.conductance(state, t)
        torch.manual_seed(12345)  # global RNG must not matter
        second = preset.conductance(state, t)
        assert torch.equal(first, second)
        assert first.dtype == torch.float32 and first.shape == g.shape
        assert bool(torch.isfinite(first).all())
    torch.set_rng_state(rng)
    assert all(torch.equal(saved[k], state[k]) for k in state)  # conductance() does not modify the state


def test_t0_gives_programmed_conductance(preset):
    g = _targets(preset)
    state = preset.program(g, torch.Generator().manual_seed(12))
    at0 = preset.conductance(state, 0)
    assert torch.equal(at0, state["g_prog"])
    at0.add_(1.0)  # the result is a copy, not the state
    assert torch.equal(preset.conductance(state, 0.0), state["g_prog"])
    if preset.name in ("relative_gaussian", "measured"):  # no separate programming noise
        assert torch.equal(state["g_prog"], g)


def test_seeds_give_chips(preset):
    g = _targets(preset)
    a = preset.program(g, torch.Generator().manual_seed(1))
    b = preset.program(g, torch.Generator().manual_seed(1))
    c = preset.program(g, torch.Generator().manual_seed(2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert not torch.equal(preset.conductance(a, DAY), preset.conductance(c, DAY))
    assert torch.equal(preset.conductance(a, DAY), preset.conductance(b, DAY))


def test_drift_scale_zero_freezes_drift(preset):
    """With drift_scale = 0 the drift terms vanish (the PCM/CMO read noise is separate)."""
    extra = {"read_noise_scale": 0.0} if "read_noise_scale" in preset.params() else {}
    model = make_drift_model(preset.name, drift_scale=0.0, **extra)
    state = model.program(_targets(model), torch.Generator().manual_seed(3))
    assert torch.allclose(model.conductance(state, 10 * YEAR), state["g_prog"], atol=1e-5)


def test_params_round_trip_and_json(preset):
    params = preset.params()
    json.dumps(params)
    assert set(params) <= set(preset_parameters(preset.name))
    again = make_drift_model(preset.name, **params)
    assert again.params() == params
    assert preset.name in PRESETS and PRESETS[preset.name] is type(preset)
    assert preset.default_mapping in ("differential", "single")
    m = preset.mapping()
    assert (m.g_min, m.g_max, m.kind) == (preset.g_min, preset.g_max, preset.default_mapping)


def test_defaults_follow_their_sources():
    """Each default range is the one its source's equations are written for (a scale factor of exactly 1)."""
    from rramlib.device.drift.ibm_pcm import PROG_G_REF
    from rramlib.device.drift.measured import NEURRAM_CSV, NEURRAM_G_REF, DriftTable

    pcm = make_drift_model("ibm_pcm")
    assert (pcm.g_min, pcm.g_max) == (0.0, PROG_G_REF)  # PCM programming-noise polynomial is fitted at 25 µS
    measured = make_drift_model("measured")
    table = DriftTable.from_csv(NEURRAM_CSV)  # the shipped source table
    assert (measured.g_min, measured.g_max) == (0.0, NEURRAM_G_REF) == (0.0, float(table.g[-1]))
    # aihwkit's SingleDeviceConductanceConverter defaults (no importable source: aihwkit is not a dependency)
    cmo = make_drift_model("ibm_cmo_reram")
    assert (cmo.params()["g_min"], cmo.params()["g_max"], cmo.default_mapping) == (9.0, 88.2, "single")
    assert make_drift_model("relative_gaussian").g_min == 0.0  # relative drift: G = 0 stays 0


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("t", [-1.0, -1e-9, "1d", None, float("nan"), float("inf"), True])
def test_bad_time(name, t):
    model = make_drift_model(name)
    state = model.program(torch.full((4,), 5.0), torch.Generator().manual_seed(0))
    with pytest.raises(RramlibError):
        model.conductance(state, t)


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("params", [
    {"drift_scale": -0.1}, {"drift_scale": "1"}, {"drift_scale": True}, {"drift_scale": float("nan")},
    {"g_min": 10.0, "g_max": 10.0}, {"g_min": -1.0}, {"no_such_parameter": 1},
])
def test_bad_parameters(name, params):
    with pytest.raises(RramlibError):
        make_drift_model(name, **params)


@pytest.mark.parametrize("name,params", [
    ("no_such_preset", {}),
    ("relative_gaussian", {"rd": -0.2}),
    ("relative_gaussian", {"time_model": "linear"}),
    ("ibm_cmo_reram", {"acceptance": 1.0}),
    ("ibm_cmo_reram", {"acceptance": "0.2"}),
    ("ibm_cmo_reram", {"read_noise_scale": -1.0}),
    ("ibm_pcm", {"prog_noise_scale": -1.0}),
    ("measured", {"table": 3}),
    ("measured", {"table_sha256": 5}),
])
def test_bad_preset_specific_parameters(name, params):
    with pytest.raises(RramlibError):
        make_drift_model(name, **params)


def test_cli_style_values_are_accepted():
    """The CLI passes integers where floats are meant (e.g. rd=1, acceptance=2)."""
    assert make_drift_model("relative_gaussian", rd=1, drift_scale=2).params()["rd"] == 1.0
    assert make_drift_model("ibm_cmo_reram", acceptance=2).params()["acceptance"] == 2.0


def test_bad_program_and_state(preset):
    with pytest.raises(RramlibError):
        preset.program([1.0, 2.0], torch.Generator())
    with pytest.raises(RramlibError):
        preset.program(torch.ones(3), 0)
    with pytest.raises(RramlibError):
        preset.program(torch.tensor([1.0, float("nan")]), torch.Generator())
    with pytest.raises(RramlibError):
        preset.conductance({"g_prog": torch.ones(3)}, 1.0) if len(preset.state_keys) > 1 else \
            preset.conductance({}, 1.0)


@pytest.mark.parametrize("args", [
    ([], [0.0, 1.0], [], []),                                  # no time
    ([1.0], [0.0], [[0.0]], [[1.0]]),                          # one g point
    ([1.0], [0.0, 1.0], [[0.0, 1.0], [2.0]], [[1.0, 1.0]]),    # ragged
    ([1.0, 1.0], [0.0, 1.0], [[0.0, 0.0]] * 2, [[1.0, 1.0]] * 2),  # times not increasing
    ([0.0], [0.0, 1.0], [[0.0, 0.0]], [[1.0, 1.0]]),           # time 0
    ([1.0], [1.0, 0.0], [[0.0, 0.0]], [[1.0, 1.0]]),           # g not increasing
    ([1.0], [0.0, 1.0], [[0.0, 0.0]], [[1.0, -1.0]]),          # negative std
    ([1.0], [0.0, 1.0], [[0.0, float("inf")]], [[1.0, 1.0]]),  # not finite
])
def test_table_constructor_rejects_bad_grids(args):
    with pytest.raises(RramlibError):
        DriftTable(*args)
