"""Book figures are readable in the book's text column: no text smaller than the body text.

The book shows each figure as the notebook's inline PNG (``figure.dpi``, tight bounding box) in a column of
``COLUMN_PX`` CSS px, shrunk when wider; a text of s pt then appears s·dpi/72 px high, times column / width
when shrunk. Every figure function of :mod:`rramlib.present.plotting` is drawn here from small synthetic data and
must (1) fit the column without being shrunk and (2) show no text below ``BODY_PX`` (the page's body font,
checked in a real browser by tests/test_browser.py).
"""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from rramlib.present import plotting  # noqa: E402
from rramlib.present.plotting import BODY_PX, COLUMN_PX, DPI, SMALL, displayed_text_px  # noqa: E402
from rramlib.core.times import TIME_GRID, YEAR  # noqa: E402

PRESETS = ["relative_gaussian", "ibm_cmo_reram", "ibm_pcm", "measured"]
FRACTIONS = [0.1, 0.3, 0.5, 0.7, 0.9]
METHODS = ["none", "scale", "bn", "lora", "dora", "vera_plus", "noise_aware", "offline_correction"]


@pytest.fixture(autouse=True)
def style():
    plotting.use_style()
    yield
    plt.close("all")


def png_width(fig) -> int:
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight")
    return Image.open(buf).size[0]


# ------------------------------------------------------------------------------------ the measure itself
def test_text_in_a_figure_that_fits_shows_at_its_point_size():
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.set_title("eleven points", fontsize=11)
    ax.set_xlabel("twenty points", fontsize=20)
    ax.tick_params(labelsize=13)
    assert png_width(fig) <= COLUMN_PX
    sizes = dict((text, px) for px, text in displayed_text_px(fig))
    assert sizes["eleven points"] == pytest.approx(11 * DPI / 72)  # 16.8 px
    assert sizes["twenty points"] == pytest.approx(20 * DPI / 72)
    assert min(sizes.values()) == pytest.approx(11 * DPI / 72)


def test_a_figure_wider_than_the_column_is_shrunk_with_its_text():
    fig, ax = plt.subplots(figsize=(14, 3))
    ax.set_title("title", fontsize=SMALL)
    width = png_width(fig)
    assert width > 1.5 * COLUMN_PX
    (px, _), *_ = displayed_text_px(fig)
    assert px == pytest.approx(SMALL * DPI / 72 * COLUMN_PX / width)
    assert px < BODY_PX  # the failure this file guards against: 14 in figures were common before


def test_hidden_and_empty_texts_do_not_count():
    fig, axes = plt.subplots(1, 2, figsize=(5, 3))
    axes[1].set_title("tiny", fontsize=4)
    axes[1].set_visible(False)
    axes[0].text(0.5, 0.5, "tiny too", fontsize=4, visible=False)
    axes[0].set_title("   ", fontsize=4)
    assert all(text not in ("tiny", "tiny too") for _, text in displayed_text_px(fig))
    assert displayed_text_px(fig)[0][0] >= 11 * DPI / 72 - 1e-9


def test_style_sizes_reach_the_body_text():
    assert SMALL * DPI / 72 >= BODY_PX
    assert (plotting.FIG_WIDTH + 0.2) * DPI <= COLUMN_PX  # 0.1 in of padding each side of the tight box


def test_wrap_text_keeps_lines_within_the_width():
    fig = plt.figure(figsize=(4, 2))
    renderer = fig.canvas.get_renderer()
    text = "a rather long title that cannot fit on one line of a narrow figure\nsecond paragraph"
    wrapped = plotting.wrap_text(text, 200, 12, renderer)
    assert wrapped.replace("\n", " ") == text.replace("\n", " ")
    t = fig.text(0, 0, "", fontsize=12)
    for line in wrapped.split("\n"):
        t.set_text(line)
        assert t.get_window_extent(renderer).width <= 200 or " " not in line
    assert "second paragraph" in wrapped.split("\n")


# ------------------------------------------------------------------------------------ every figure function
@pytest.fixture(scope="module")
def devices():
    from rramlib.device import stats as device_stats

    models = device_stats.drift_models(PRESETS, "ibm_cmo_reram")
    states, stats = device_stats.conductance_statistics(models, FRACTIONS, 300, seed=0)
    errors = device_stats.weight_errors(models, 300, seed=0)
    return models, states, stats, errors


def accuracy_curves(names, key, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i, name in enumerate(names):
        for t_label, t in TIME_GRID.items():
            mean = 0.97 - 0.04 * (i + 1) * np.log10(t + 1) / 9
            rows.append({key: name, "time_label": t_label, "time_s": t, "mean": mean,
                         "std": 0.01 + 0.01 * rng.random()})
    return pd.DataFrame(rows)


LONG_TITLE = ("a title as long as the notebooks write them — ibm_cmo_reram, drift_scale=1.0, cnn on digits, "
              "mean ± std over 5 chips")


def f1_bands(d):
    models, _, stats, _ = d
    return plotting.conductance_bands(stats, models, FRACTIONS, main="ibm_cmo_reram")


def f1_histograms(d):
    models, states, _, _ = d
    return plotting.conductance_histograms(models, states, FRACTIONS, {"1 s": 1.0, "1 d": 86400.0, "10 y": 10 * YEAR},
                                           main="ibm_cmo_reram")


def f1_shift(d):
    models, _, stats, _ = d
    return plotting.shift_and_spread(stats, models, FRACTIONS, main="ibm_cmo_reram")


def f2(d):
    models, _, _, errors = d
    return plotting.weight_error_curves(errors, models, main="ibm_cmo_reram")


def f3(d):
    table = accuracy_curves(PRESETS, "preset")
    frame = pd.concat([table.assign(chip_seed=s, accuracy=table["mean"] + 0.01 * s) for s in range(3)])
    return plotting.preset_accuracy(table, frame, 0.97, 0.1, None, "ibm_cmo_reram", LONG_TITLE)


def f3_scale(d):
    rows = [{"preset": p, "drift_scale": s, "mean": 0.9 - 0.1 * s, "std": 0.02} for p in PRESETS for s in (0.5, 1, 2)]
    return plotting.drift_scale_plot(pd.DataFrame(rows), 0.97, "10y")


def f5_switching(d):
    from rramlib.methods.schedule import log_windows

    table = accuracy_curves(["none", "vera_plus"], "method")
    windows = pd.DataFrame(log_windows(4).describe())
    return plotting.switching_plot(table, windows, 0.97, LONG_TITLE)


def f5_levels(d):
    rows = [{"K": k, "time": t, "acc_mean": 0.9 + 0.01 * k, "acc_std": 0.01, "uncompensated": 0.5 if t == "10y" else 0.9,
             "storage_bytes_fp32": 1234 * k} for k in (1, 2, 4, 8) for t in ("1d", "1y", "10y")]
    return plotting.levels_plot(pd.DataFrame(rows), 0.97, LONG_TITLE)


def f6(d):
    rows = [{"factor": f, "value": plotting.ablation_label(f, v), "baseline": i == 1, "acc_mean": 0.9 + 0.01 * i,
             "acc_std": 0.01, "storage_bytes_fp32": 12345 * (i + 1)}
            for f, values in (("rank", (4, 16, 64)), ("sharing", ("layer", "cross")), ("loss", (0.0, 1.0)))
            for i, v in enumerate(values)]
    refs = pd.DataFrame([{"method": "none", "acc_mean": 0.4, "storage_bytes_fp32": 0},
                         {"method": "bn", "acc_mean": 0.91, "storage_bytes_fp32": 5120},
                         {"method": "lora", "acc_mean": 0.93, "storage_bytes_fp32": 123456}])
    return plotting.ablation_plot(pd.DataFrame(rows), refs, 0.97, "test accuracy at 10y", LONG_TITLE)


def f7_table(d, shifted=False):
    from rramlib.device.drift.measured import DriftTable

    t = d[0]["measured"].table
    if shifted:
        t = DriftTable(t.times, t.g, t.std * 0.3, t.std)
    return plotting.drift_table_plot(t, [YEAR, 10 * YEAR], "F7: drift table (NeuRRAM)\ndashed: extrapolated")


def f7_table_shifted(d):
    return f7_table(d, shifted=True)


def f9(d):
    rng = np.random.default_rng(1)
    pareto = pd.DataFrame({"method": METHODS, "storage_bytes_fp32": [0, 40, 5120, 80000, 60000, 2600, 0, 900000],
                           "acc_mean": 0.9 + 0.07 * rng.random(len(METHODS)), "acc_std": 0.01})
    return plotting.pareto_plot(pareto, 0.97, "storage (bytes, fp32)", "test accuracy at 10y", LONG_TITLE)


FIGURES = [f1_bands, f1_histograms, f1_shift, f2, f3, f3_scale, f5_switching, f5_levels, f6, f7_table,
           f7_table_shifted, f9]


@pytest.mark.parametrize("make", FIGURES, ids=lambda f: f.__name__)
def test_figure_fits_the_column_with_text_at_least_body_size(make, devices):
    fig = make(devices)
    width = png_width(fig)
    assert width <= COLUMN_PX, f"{make.__name__} is {width} px wide: the column ({COLUMN_PX} px) shrinks it"
    smallest = displayed_text_px(fig)[:3]
    assert smallest[0][0] >= BODY_PX, f"{make.__name__}: texts shown smaller than the body text: {smallest}"


def test_report_records_each_figures_smallest_text_less_its_footer(tmp_path):
    from rramlib.present.report import Report

    report = Report("00_test", {"profile": "smoke"}, out_dir=tmp_path)
    fig, ax = plt.subplots(figsize=(plotting.FIG_WIDTH, 3))
    ax.set_title("title", fontsize=13)
    ax.tick_params(labelsize=12)
    report.figure(fig, "F0_small")  # its 5.5 pt provenance footer does not count
    assert report.figure_text_px["F0_small"] == pytest.approx(12 * DPI / 72)
    wide, ax = plt.subplots(figsize=(14, 3))
    ax.tick_params(labelsize=12)
    report.figure(wide, "F0_wide")
    assert report.figure_text_px["F0_wide"] < BODY_PX


def test_place_labels_do_not_overlap():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rramlib.present.plotting import place_labels

    fig, ax = plt.subplots(figsize=(4, 3))
    xs, ys = [1.0, 1.05, 1.1, 3.0], [0.5, 0.5, 0.52, 0.9]
    ax.plot(xs, ys, "o")
    ax.set_xlim(0, 4)
    ax.set_ylim(0, 1)
    texts = place_labels(ax, xs, ys, ["alpha", "beta", "gamma", "delta"])
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    plt.close(fig)


@pytest.mark.parametrize("size, label", [(2_348_490, "2.35 MB"), (1e6, "1 MB"), (409_920, "410 kB"),
                                         (22_016, "22 kB"), (9_480, "9.48 kB"), (80, "80 B"), (0, "0 B")])
def test_byte_labels_keep_three_significant_digits(size, label):
    assert plotting.byte_label(size) == label
