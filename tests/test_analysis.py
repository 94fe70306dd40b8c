import math

import pytest

from rramlib.analysis import accuracy_table, to_frame


def fake_result():
    records = [{"method": "drift_free", "time_s": None, "time_label": None, "chip_seed": None, "accuracy": 0.9}]
    for method, accs in {"none": ([0.9, 0.9], [0.5, 0.7]), "vera_plus": ([0.9, 0.9], [0.8, 0.8])}.items():
        for (t, label), values in zip([(1.0, "1s"), (10.0, "10s")], accs):
            for chip, a in enumerate(values):
                records.append({"method": method, "time_s": t, "time_label": label, "chip_seed": chip, "accuracy": a})
    return {"metadata": {"drift_free_accuracy": 0.9}, "records": records}


def test_accuracy_table_statistics_and_ratios():
    table = accuracy_table(fake_result()).set_index(["method", "time_label"])
    assert table.loc[("none", "10s"), "mean"] == pytest.approx(0.6)
    assert table.loc[("none", "10s"), "std"] == pytest.approx(math.sqrt(0.02))
    assert table.loc[("none", "10s"), "chips"] == 2
    assert table.loc[("vera_plus", "10s"), "retained"] == pytest.approx(0.8 / 0.9)
    assert table.loc[("vera_plus", "10s"), "recovered"] == pytest.approx((0.8 - 0.6) / (0.9 - 0.6))
    assert math.isnan(table.loc[("vera_plus", "1s"), "recovered"])  # no loss to recover at 1 s
    assert len(to_frame(fake_result())) == 8  # drift-free record left out
