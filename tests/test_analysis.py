import math

import pytest

from rramlib.study.analysis import accuracy_table, to_frame


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


def fake_result_with_info():
    from rramlib.methods.overhead import Storage

    result = fake_result()
    # VeRA+: 25 values per level (100 bytes), 4 levels, an 8-byte seed and 50 projection values (200 bytes in SRAM)
    storage = {"none": Storage(0), "vera_plus": Storage(25, levels=4, seed_bytes=8, projection_values=50,
                                                        generator_state_bytes=2496)}
    result["metadata"]["method_info"] = {
        m: {"storage": st.as_dict(), "extra_macs_ratio": 0.02 * st.levels, "fit_time_s": 1.5 * st.levels}
        for m, st in storage.items()}
    return result


def test_recovered_per_chip_and_time_table():
    from rramlib.study.analysis import recovered_per_chip, time_table

    per_chip = recovered_per_chip(fake_result(), "vera_plus", "10s")
    # chip 0: (0.8-0.5)/(0.9-0.5), chip 1: (0.8-0.7)/(0.9-0.7)
    assert per_chip.tolist() == pytest.approx([0.75, 0.5])
    assert recovered_per_chip(fake_result(), "vera_plus", "1s").isna().all()  # no loss, nothing to recover
    t1 = time_table(fake_result(), ["none", "vera_plus"], ["10s"], n_test=1000).set_index("method")
    # one estimator: the per-chip fractions [0.75, 0.5], their mean and their std over chips
    assert t1.loc["vera_plus", "recovered"] == pytest.approx(0.625)  # not the ratio of the means (2/3)
    assert t1.loc["vera_plus", "recovered_std"] == pytest.approx(math.sqrt(2) * 0.125)
    assert t1.loc["vera_plus", "retained_std"] == pytest.approx(0.0)
    assert t1.loc["none", "drift_loss_pp"] == pytest.approx(30.0)
    assert t1.loc["vera_plus", "drift_loss_images_min"] == 200  # chip 1 lost 0.2 of 1000 images
    assert t1["recovered_readable"].all()


@pytest.mark.parametrize("n_test, readable", [(250, True), (245, False), (200, False)])
def test_recovered_is_too_small_to_read_when_a_chip_lost_fewer_than_the_threshold(n_test, readable):
    from rramlib.study.analysis import MIN_LOSS_IMAGES, TOO_SMALL, drift_loss_images, time_table, time_table_display

    assert MIN_LOSS_IMAGES == 50  # the documented threshold; the cases below sit at it (0.2 × 250 = 50 images)
    assert drift_loss_images(fake_result(), "10s", n_test).tolist() == pytest.approx([round(0.4 * n_test),
                                                                                      round(0.2 * n_test)])
    t1 = time_table(fake_result(), ["none", "vera_plus"], ["10s"], n_test=n_test)
    row = t1.set_index("method").loc["vera_plus"]
    assert bool(row["recovered_readable"]) == readable
    assert math.isnan(row["recovered"]) != readable and math.isnan(row["recovered_std"]) != readable
    shown = time_table_display(t1, ["none", "vera_plus"], ["10s"])["10s: recovered"].tolist()
    assert shown[0] == "—" and (shown[1] == TOO_SMALL) != readable
    assert shown[2] == f"fewest per chip: {round(0.2 * n_test)} images"


def test_no_loss_at_all_is_too_small_to_read_and_n_test_is_checked():
    from rramlib.core.errors import RramlibError
    from rramlib.study.analysis import TOO_SMALL, time_table, time_table_display

    t1 = time_table(fake_result(), ["none", "vera_plus"], ["1s"], n_test=10_000)  # every chip at drift-free
    assert time_table_display(t1, ["none", "vera_plus"], ["1s"])["1s: recovered"].tolist()[1] == TOO_SMALL
    with pytest.raises(RramlibError, match="n_test"):
        time_table(fake_result(), ["none"], ["1s"], n_test=0)


def test_time_table_display_and_unknown_time():
    from rramlib.study.analysis import time_table, time_table_display
    from rramlib.core.errors import RramlibError

    t1 = time_table(fake_result(), ["none", "vera_plus"], ["10s"], n_test=1000)
    shown = time_table_display(t1, ["none", "vera_plus"], ["10s"], {"vera_plus": "VeRA+"})
    assert shown["method"].tolist() == ["none", "VeRA+", "drift loss (pp)"]
    assert shown["10s: accuracy"].tolist() == ["0.600 ± 0.141", "0.800 ± 0.000", "30.0"]
    assert shown["10s: recovered"].tolist() == ["—", "0.63 ± 0.18", "fewest per chip: 200 images"]
    with pytest.raises(RramlibError, match="not in this sweep"):
        time_table(fake_result(), ["none"], ["1y"], n_test=1000)


def test_method_summary_and_pareto_table():
    from rramlib.study.analysis import method_summary, pareto_table

    s = method_summary(fake_result_with_info(), "vera_plus", "10s")
    # storage under our reading (A and B in SRAM): 4 levels × 100 bytes + 50 projection values × 4 bytes + the seed
    assert s == pytest.approx({"acc_mean": 0.8, "acc_std": 0.0, "storage_bytes_fp32": 608, "bytes_per_level_fp32": 100,
                               "extra_macs_pct": 8.0, "fit_time_s": 6.0})
    pareto = pareto_table(fake_result_with_info(), ["none", "vera_plus"], "10s").set_index("method")
    assert pareto.loc["none", "acc_mean"] == pytest.approx(0.6) and pareto.loc["vera_plus", "levels"] == 4
    assert pareto.loc["vera_plus", "storage_bytes_fp32"] == 608 and pareto.loc["none", "storage_bytes_fp32"] == 0


def test_storage_bytes_follows_our_reading_and_needs_a_storage_record(monkeypatch):
    from rramlib.core.errors import RramlibError
    from rramlib.study import analysis

    info = fake_result_with_info()["metadata"]["method_info"]["vera_plus"]
    assert analysis.storage_bytes(info) == 608 and analysis.storage_bytes(info, "int8") == 158
    monkeypatch.setattr(analysis, "OUR_READING", "regenerated")  # one place decides
    assert analysis.storage_bytes(info) == 400 + 8 + 2496
    with pytest.raises(RramlibError, match="values_per_level"):
        analysis.storage_bytes({"storage": {"total_bytes_fp32": 8.0}})


@pytest.mark.parametrize("cost, value, front", [
    ([1, 2, 3], [0.5, 0.6, 0.7], [0, 1, 2]),          # every step pays
    ([1, 2, 3], [0.7, 0.6, 0.8], [0, 2]),             # the middle point is dominated
    ([5, 1, 1], [0.9, 0.4, 0.6], [2, 0]),             # equal cost: the better one first, the worse dropped
    ([1, 1], [0.5, 0.5], [0]),                        # a tie adds nothing
])
def test_pareto_front(cost, value, front):
    from rramlib.study.analysis import pareto_front

    assert pareto_front(cost, value) == front


def test_pareto_front_is_not_dominated_property():
    import numpy as np

    from rramlib.study.analysis import pareto_front

    rng = np.random.default_rng(0)
    for _ in range(50):
        cost, value = rng.integers(0, 5, 12), rng.random(12).round(1)
        front = set(pareto_front(cost, value))
        for i in range(12):
            dominated = any(cost[j] <= cost[i] and value[j] > value[i] for j in range(12))
            assert (i in front) <= (not dominated)  # no front point is dominated
            best_so_far = value[cost <= cost[i]].max()
            if value[i] == best_so_far and not dominated:
                assert any(cost[j] <= cost[i] and value[j] == value[i] for j in front)  # its level is reached


def test_switch_jumps_reads_the_nearest_times():
    import pandas as pd

    from rramlib.study.analysis import switch_jumps

    table = pd.DataFrame({"method": "vera_plus", "time_s": [9.3, 10.7, 93.0, 107.0], "mean": [0.5, 0.7, 0.6, 0.55]})
    jumps = switch_jumps(table, "vera_plus", [1.0, 10.0, 100.0, 1000.0])
    assert jumps["from"].tolist() == ["level0", "level1"] and jumps["to"].tolist() == ["level1", "level2"]
    assert jumps["change"].tolist() == pytest.approx([0.2, -0.05])
    assert switch_jumps(table, "vera_plus", [1.0, 1000.0]).empty  # one level: no switch


def sweep_like(accs_by_method, chips=(0, 1), free=0.9, config_hash="h"):
    """A run_sweep-shaped result: accs_by_method[method] = per-chip accuracies at one time "10y"."""
    records = [{"method": "drift_free", "time_s": None, "time_label": None, "chip_seed": None, "accuracy": free}]
    for m, accs in accs_by_method.items():
        records += [{"method": m, "time_s": 3e8, "time_label": "10y", "chip_seed": c, "accuracy": a}
                    for c, a in zip(chips, accs)]
    from rramlib.methods.overhead import Storage

    info = {m: {"method": m, "storage": Storage(2, levels=4, online=m == "dora").as_dict(), "extra_macs_ratio": 0.0,
                "fit_time_s": 1.0} for m in accs_by_method}
    meta = {"drift_free_accuracy": free, "methods": list(accs_by_method), "method_info": info,
            "chip_seeds": list(chips), "config_hash": config_hash, "preset": "p"}
    return {"metadata": meta, "records": records}


def test_combine_sweeps_renames_one_method_of_each_variant_sweep():
    from rramlib.study.analysis import accuracy_table, combine_sweeps

    main = sweep_like({"none": [0.5, 0.7], "bn": [0.8, 0.8]})
    layer, cross = sweep_like({"vera_plus": [0.7, 0.8]}), sweep_like({"none": [0.1, 0.1], "vera_plus": [0.6, 0.9]})
    both = combine_sweeps(main, {"vera_plus_layer": (layer, "vera_plus"), "vera_plus_cross": (cross, "vera_plus")})
    assert both["metadata"]["methods"] == ["none", "bn", "vera_plus_layer", "vera_plus_cross"]
    assert both["metadata"]["method_info"]["vera_plus_cross"]["method"] == "vera_plus"
    table = accuracy_table(both).set_index("method")
    assert table.loc["vera_plus_layer", "mean"] == pytest.approx(0.75)
    assert table.loc["vera_plus_cross", "mean"] == pytest.approx(0.75)
    # "recovered" is taken against the MAIN sweep's uncompensated chip (0.6), not the variant sweep's "none"
    assert table.loc["vera_plus_cross", "recovered"] == pytest.approx((0.75 - 0.6) / (0.9 - 0.6))
    assert len(main["records"]) == 5 and main["metadata"]["methods"] == ["none", "bn"]  # inputs left as they were


@pytest.mark.parametrize("change, match", [
    ({"config_hash": "other"}, "config_hash"), ({"drift_free_accuracy": 0.8}, "drift_free_accuracy"),
    ({"chip_seeds": [0, 2]}, "chip_seeds"),
])
def test_combine_sweeps_refuses_sweeps_that_are_not_like_for_like(change, match):
    from rramlib.study.analysis import combine_sweeps
    from rramlib.core.errors import RramlibError

    main, other = sweep_like({"none": [0.5, 0.7]}), sweep_like({"vera_plus": [0.7, 0.8]})
    other["metadata"].update(change)
    with pytest.raises(RramlibError, match=match):
        combine_sweeps(main, {"v": (other, "vera_plus")})
    with pytest.raises(RramlibError, match="already"):
        combine_sweeps(main, {"none": (sweep_like({"vera_plus": [0.7, 0.8]}), "vera_plus")})
    with pytest.raises(RramlibError, match="no method"):
        combine_sweeps(main, {"v": (sweep_like({"lora": [0.7, 0.8]}), "vera_plus")})


def test_dora_is_marked_online_per_chip_in_t1_and_pareto():
    from rramlib.study.analysis import FITTING, pareto_table, time_table, time_table_display

    result = sweep_like({"none": [0.5, 0.7], "dora": [0.85, 0.85], "vera_plus": [0.8, 0.8]})
    methods = ["none", "dora", "vera_plus"]
    t1 = time_table(result, methods, ["10y"], n_test=1000).set_index("method")
    assert t1.loc["dora", "fitted"] == FITTING["dora"] and "online, per chip" in FITTING["dora"]
    assert t1.loc["vera_plus", "fitted"].startswith("offline")
    shown = time_table_display(t1.reset_index(), methods, ["10y"])
    assert shown["fitted"].tolist() == [FITTING["none"], FITTING["dora"], FITTING["vera_plus"], ""]
    assert pareto_table(result, methods, "10y").set_index("method").loc["dora", "fitted"] == FITTING["dora"]


def test_combine_sweeps_adds_up_wall_time_and_cache_counts():
    from rramlib.study.analysis import combine_sweeps

    main, other = sweep_like({"none": [0.5, 0.7]}), sweep_like({"vera_plus": [0.7, 0.8]})
    main["metadata"].update(wall_time_s=2.0, cache={"hits": 1, "misses": 2})
    other["metadata"].update(wall_time_s=0.5, cache={"hits": 3, "misses": 0})
    meta = combine_sweeps(main, {"v": (other, "vera_plus")})["metadata"]
    assert meta["wall_time_s"] == 2.5 and meta["cache"] == {"hits": 4, "misses": 2}
    assert main["metadata"]["wall_time_s"] == 2.0


def test_stats_at_and_stats_wide_golden():
    from rramlib.study.analysis import stats_at, stats_wide

    table = accuracy_table(fake_result())
    stats = stats_at({m: table[table["method"] == m] for m in ("none", "vera_plus")}, {"start": "1s", "end": "10s"})
    assert stats[["name", "key", "time_label"]].values.tolist() == [
        ["none", "start", "1s"], ["none", "end", "10s"], ["vera_plus", "start", "1s"], ["vera_plus", "end", "10s"]]
    end = stats.set_index(["name", "key"])
    assert end.loc[("none", "end"), "mean"] == pytest.approx(0.6)
    assert end.loc[("none", "end"), "std"] == pytest.approx(math.sqrt(0.02))
    assert end.loc[("vera_plus", "end"), "retained"] == pytest.approx(0.8 / 0.9)
    wide = stats_wide(stats, "preset")
    assert list(wide.columns) == ["preset", "mean 1s", "std 1s", "% of drift-free 1s", "mean 10s", "std 10s",
                                  "% of drift-free 10s"]
    assert wide["% of drift-free 10s"].tolist() == pytest.approx([100 * 0.6 / 0.9, 100 * 0.8 / 0.9])
    named = stats_wide(stats, "scenario", names={"none": "left alone"}, extra={"drift-free": 0.9},
                       header="{what} at {label}")
    assert list(named.columns[:3]) == ["scenario", "drift-free", "mean at 1s"]
    assert named["scenario"].tolist() == ["left alone", "vera_plus"]


def test_storage_standing_reads_the_pareto_plane():
    import pandas as pd

    from rramlib.study.analysis import storage_standing

    pareto = pd.DataFrame({"method": ["none", "bn", "vera_plus", "lora"], "storage_bytes_fp32": [0, 100, 600, 4000],
                           "acc_mean": [0.5, 0.9, 0.8, 0.95]})
    assert storage_standing(pareto, "lora", str.upper) == "LORA is on the Pareto front"
    assert storage_standing(pareto, "vera_plus") == ("vera_plus is off the Pareto front: bn stores at most as much "
                                                     "and is more accurate")
    tie = pareto.assign(storage_bytes_fp32=[0, 600, 600, 4000])  # as much storage and more accurate: dominates
    assert storage_standing(tie, "vera_plus").endswith("bn stores at most as much and is more accurate")
    assert storage_standing(pareto.assign(acc_mean=[0.85, 0.9, 0.8, 0.95]), "vera_plus").endswith(
        ": none, bn store at most as much and are more accurate")  # cheapest first
    assert storage_standing(pareto.assign(acc_mean=[0.5, 0.8, 0.8, 0.95]), "vera_plus") == \
        "vera_plus is on the Pareto front"  # as accurate is not more accurate
    assert storage_standing(None, "vera_plus") == "not recorded"
    assert storage_standing(pareto, "dora", missing="n/a") == "n/a"
