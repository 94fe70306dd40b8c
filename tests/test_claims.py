"""The claims list compares like with like: one VeRA+ variant per row, retained with retained, matched LoRA."""
import json

import pandas as pd
import pytest

from rramlib.core.errors import RramlibError

from rramlib.study import costs
from rramlib.methods.overhead import OUR_READING
from rramlib.study.claims import CLAIMS
from rramlib.methods.compensation import make_method
from rramlib.study.profiles import PROFILES

# C1 is a maximum over settings of both sharings (its own test below); every other VeRA+ row names one variant
VERA_CLAIMS = [c for c in CLAIMS if "VeRA+" in c.claim and c.notebook and not c.over_settings]
KEY_MARKS = {"cross-layer": ("vera_cross", "vera_plus_cross", "ratio_cross_"),
             "per-layer": ("vera_layer", "vera_plus_layer", "ratio_layer_")}


@pytest.mark.parametrize("claim", VERA_CLAIMS, ids=lambda c: c.id)
def test_each_vera_claim_names_one_variant_and_its_key_measures_that_variant(claim):
    assert claim.vera in KEY_MARKS and f"VeRA+ ({claim.vera})" in claim.claim
    other = next(v for v in KEY_MARKS if v != claim.vera)
    assert not any(mark in claim.key for mark in KEY_MARKS[other])
    if not any(mark in claim.key for mark in KEY_MARKS[claim.vera]):
        # a key without a variant mark is the notebook's plain VeRA+: the profiles' sharing must be the claimed one
        # (notebook 06's rank ablation varies the rank of the profile's VeRA+, at the profile's sharing)
        assert claim.key.startswith(("vera_plus_", "acc_rank_", "bn_bound"))
        if claim.key.startswith(("vera_plus_", "acc_rank_")):
            for profile in PROFILES.values():
                sharing = make_method("vera_plus", **profile.method_params.get("vera_plus", {})).params["sharing"]
                assert {"layer": "per-layer", "cross": "cross-layer"}[sharing] == claim.vera


def test_the_abstracts_vera_is_cross_layer_and_accuracy_claims_compare_retained_fractions():
    by_id = {c.id: c for c in CLAIMS}
    for cid in ("C2", "C3", "C3b", "C5", "C6"):
        assert by_id[cid].vera == "cross-layer"
    # the paper's "% of the drift-free accuracy" is a retained fraction; C2's over every base model, with its interval
    assert by_id["C2"].key.startswith("lead_retained_pct_vera_plus_cross_") and by_id["C2"].interval
    assert by_id["C1"].over_settings and by_id["C1"].key == "retained_pct" and by_id["C1"].vera is None
    assert all(c.scale == 1.0 for c in (by_id["C1"], by_id["C2"]))
    assert not any(c.key and c.key.startswith("recovered_vera") for c in CLAIMS)


def test_c4_is_the_ratio_with_matched_structure_and_sharing():
    labels = [costs.VERA_LAYER, costs.VERA_CROSS, "lora", costs.LORA_1X1, costs.LORA_PEFT]
    t2 = pd.DataFrame({"model": "resnet20", "method": labels, "bytes_per_level_fp32": [1.0, 2, 3, 4, 5],
                       "total_bytes_sram_fp32": [1.0, 2, 3, 4, 5], "total_bytes_regenerated_fp32": [1.0, 2, 3, 4, 5]})
    ratios = costs.storage_ratios(t2)
    matched = ratios[(ratios["matched structure"] == "yes") & (ratios["matched sharing"] == "yes")]
    keys = [f"ratio_{costs.ROW_KEYS[r['other']]}_over_{costs.ROW_KEYS[r['VeRA+ variant']]}_{r['projections']}_"
            f"{r['model']}" for _, r in matched.iterrows()]
    c4 = next(c for c in CLAIMS if c.id == "C4")
    assert keys == [c4.key, c4.other_key] and OUR_READING in c4.key


def test_dora_claims_say_online_per_chip():
    assert all("online" in c.note and "per chip" in c.note for c in CLAIMS if c.claim.startswith("DoRA"))


def test_a_claim_not_measurable_at_a_profile_reads_n_a(tmp_path):
    """NaN (06's accuracy at the rank within 1.9 % extra compute, which the digits CNN does not have) is shown as
    n/a, not as 'nan %', and is not glued as a measured claim."""
    from rramlib.study.claims import claims_table
    from rramlib.study.recorded import load
    from rramlib.present.report import Report

    report = Report("06_ablations", params={"profile": "smoke"}, out_dir=tmp_path)
    report.number("acc_rank_within_paper_macs", float("nan"))
    report.finish()
    table, ours = claims_table(tmp_path, "smoke", load(folder=tmp_path / "nothing"))
    row = table.set_index("id").loc["C6b"]
    assert row["ours"] == "n/a" and "C6b" not in ours


STORAGE_CLAIMS = ("C3", "C3b", "C4", "C5", "C6")


def test_vera_storage_and_work_claims_give_both_projection_readings_ours_first():
    """Issue 21: A and B in SRAM is ours (key), regenerated per inference the other reading (other_key)."""
    import json
    from pathlib import Path

    from rramlib.book import glued_keys

    path = Path(__file__).parent.parent / "notebooks" / "04_overhead.ipynb"
    patterns = glued_keys(json.loads(path.read_text()), path.stem)
    for claim in (c for c in CLAIMS if c.id in STORAGE_CLAIMS):
        assert claim.other_key and "regenerated" in claim.other_key, claim.id
        assert "regenerated" not in claim.key, claim.id
        assert any(p.match(claim.other_key) for p in patterns), claim.other_key
    c3 = next(c for c in CLAIMS if c.id == "C3")
    assert c3.key.startswith("ratio_bn_over_") and "bound" not in c3.key  # the bn method that was run


def test_claim_rows_name_the_profile_their_chapter_ran_at(tmp_path):
    from rramlib.study.claims import claims_table
    from rramlib.study.recorded import load
    from rramlib.study.scope import chapter_profile

    table, _ = claims_table(tmp_path, "cifar", load(folder=tmp_path / "nothing"))
    rows = table.set_index("id")
    for claim in CLAIMS:
        expected = chapter_profile("cifar", claim.notebook) if claim.notebook else "-"
        assert rows.loc[claim.id, "profile"] == expected
    assert rows.loc["C9", "profile"] == "cifar_subset" and rows.loc["C1", "profile"] == "cifar"
    assert rows.loc["C5", "profile"] == "cifar_subset"


# a measurement typed into prose: a number followed by a unit (glued values are {glue:text}`key` roles)
TYPED = r"(?<![\w.·-])\d[\d,.]*\s*(%|×(?!\d)|x\b|kB|KB|B\b|bytes|images|min\b|s\b)"
# a count of what the build configures or runs, written as a word ("all eight methods", "three chips")
TYPED_COUNT = r"\b(two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)\s+(\w+\s+)?(methods|chips|levels)\b"
# What prose may write as a number: each entry is a regular expression, removed before the check, and the reason.
# Code spans, math ($...$), fenced blocks and glue roles are left out as a whole: there a number is code, an
# equation constant or glued. Years, dates and chapter numbers never carry a unit, so the patterns do not see them.
ALLOWED = {
    r"\b1 s\b": "the first time of the study's grid (rramlib.core.times.T_START) and the reference time of the "
                "published CMO drift model's fits in ln t: a definition, not a result",
    r"\b2\.34 %": "the DoRA-calibration study's own parameter budget, quoted (notebook 08)",
    r"\b28 % to 0\.27 %": "the 2019 SEU study's own figures, quoted (notebook 10)",
    r"\b0\.93× and 1\.07×": "the factors of rramlib.study.experiments.switching_times around each window edge: the "
                            "definition of the grid notebook 05 reads",
    r"\b25–75 %|\b5–95 %": "the quantile bands notebook 01's figure draws: the figure's definition",
    r"bands of two methods": "any two methods of the figure, not a count",
    r"two seeds give two chips": "an example of the seeding rule, not a count of the build",
}
ROOT = __import__("pathlib").Path(__file__).parent.parent


def _prose():
    """(where, text) of every markdown cell of every notebook and of every book page."""
    import json

    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            if cell["cell_type"] == "markdown":
                yield f"{path.stem} cell {i}", "".join(cell["source"])
    for path in sorted((ROOT / "book").glob("*.md")):
        yield path.name, path.read_text()


def _typed(text: str) -> tuple[list[str], set[str]]:
    """The typed numbers of ``text`` (glue roles, code spans, math and allowed phrases left out), and the
    :data:`ALLOWED` patterns that matched."""
    import re

    for skip in (r"```.*?```", r"\{glue:text\}`[^`]*`", r"`[^`]*`", r"\$\$.*?\$\$", r"\$[^$]*\$"):
        text = re.sub(skip, " ", text, flags=re.S)
    used = {pattern for pattern in ALLOWED if re.search(pattern, text)}
    for pattern in used:
        text = re.sub(pattern, " ", text)
    found = [m.group(0) for m in re.finditer(TYPED, text)]
    found += [m.group(0) for m in re.finditer(TYPED_COUNT, text, flags=re.I)]
    return found, used


def test_the_typed_number_check_sees_what_it_should():
    assert _typed("all eight methods, 2.3 % of 400 images and 12 kB")[0] == ["2.3 %", "400 images", "12 kB",
                                                                             "eight methods"]
    assert _typed("{glue:text}`x:.1f` %, `-p levels 8`, $4\\cdot C$, in 2024, notebook 04, 1 s to 10 years")[0] == []


def test_no_measurement_is_typed_into_the_prose():
    """Every notebook's markdown, every book page and the claims' notes: numbers are glued, or
    reworded, or on the documented :data:`ALLOWED` list; every entry of that list is still needed."""
    import re

    typed, used = {}, set()
    for where, text in _prose():
        found, allowed = _typed(text)
        used |= allowed
        if found:
            typed[where] = found
    assert not typed, typed
    assert used == set(ALLOWED), set(ALLOWED) - used  # an entry nothing needs any more goes
    for claim in CLAIMS:  # the claims' own notes are prose too
        assert not re.search(TYPED, claim.note), (claim.id, claim.note)


def _settings(rows):
    from rramlib.study.claims import SETTINGS_COLUMNS

    return pd.DataFrame([dict(zip(SETTINGS_COLUMNS, r)) for r in rows])


def test_up_to_is_the_maximum_over_every_chapters_settings_with_its_median(tmp_path):
    """C1 ('up to 99.77 %') reads the maximum of every chapter's settings table, names where it came from and
    gives the median beside it; NaN settings do not count; a chapter without the table adds nothing."""
    from rramlib.study.claims import SETTINGS_TABLE, claims_table, settings_summary, vera_settings
    from rramlib.study.recorded import load
    from rramlib.present.report import Report

    tables = {"03_comparison": [("cross, raw", "cross", "raw", "p", 4, True, 96.0),
                                ("layer, gdc", "layer", "gdc", "p", 4, True, 98.5)],
              "05_scheduling": [("K = 1", "layer", "raw", "p", 1, True, 97.0),
                                ("K = 8", "layer", "raw", "p", 8, True, float("nan"))]}
    for name, rows in tables.items():
        report = Report(name, params={"profile": "smoke"}, out_dir=tmp_path)
        report.table(SETTINGS_TABLE, _settings(rows), glue=False)
        report.finish()
    frame = vera_settings({"03_comparison": json.loads((tmp_path / "03_comparison.json").read_text()),
                           "05_scheduling": json.loads((tmp_path / "05_scheduling.json").read_text()),
                           "07_measured_drift": None})
    assert len(frame) == 4 and set(frame["notebook"]) == {"03_comparison", "05_scheduling"}
    assert settings_summary(frame) == {"max": 98.5, "setting": "layer, gdc", "notebook": "03_comparison",
                                       "median": 97.0, "n": 3}
    # the 03 results above lack C2's numbers: claims_table refuses them (a claim's key must exist)
    with pytest.raises(RramlibError, match="C2"):
        claims_table(tmp_path, "smoke", load(folder=tmp_path / "nothing"))
    # with them, the page's C1 is the maximum over both chapters (05 carries no claim of its own), C2 has its interval
    report = Report("03_comparison", params={"profile": "smoke"}, out_dir=tmp_path)
    report.table(SETTINGS_TABLE, _settings(tables["03_comparison"]), glue=False)
    for key, value in (("", 96.0), ("_low", 95.0), ("_high", 97.25)):
        report.number(f"lead_retained_pct_vera_plus_cross_10y{key}", value)
    report.finish()
    table, ours = claims_table(tmp_path, "smoke", load(folder=tmp_path / "nothing"))
    rows = table.set_index("id")
    assert rows.loc["C1", "ours"] == ("98.5 % (maximum of 3 settings, at: layer, gdc, 03_comparison; median 97 %)")
    assert rows.loc["C2", "ours"] == "96 % [95, 97.25]"
    assert ours["C1"] == 98.5 and ours["C2"] == 96.0


def test_a_settings_table_without_its_columns_is_refused():
    from rramlib.study.claims import SETTINGS_TABLE, vera_settings

    with pytest.raises(RramlibError, match="lacks the columns"):
        vera_settings({"05_scheduling": {"tables": {SETTINGS_TABLE: [{"setting": "K = 1", "retained_pct": 97.0}]}}})
    assert vera_settings({"05_scheduling": {"tables": {}}}).empty


def test_a_record_made_before_a_claims_number_existed_reads_not_in_the_record(tmp_path):
    """The record may be older than a claim's key: its column says so instead of failing the page."""
    from rramlib.study.claims import measured

    c2 = next(c for c in CLAIMS if c.id == "C2")
    old = {"03_comparison": {"numbers": {"retained_pct_vera_plus_cross_10y": 97.0}, "tables": {}}}
    assert measured(c2, old, strict=False) == (None, None)
    with pytest.raises(RramlibError, match="C2: 03_comparison stores no number"):
        measured(c2, old)
    interval_missing = {"03_comparison": {"numbers": {c2.key: 97.0}}}
    assert measured(c2, interval_missing, strict=False) == (None, None)
    with pytest.raises(RramlibError, match="no interval"):
        measured(c2, interval_missing)
