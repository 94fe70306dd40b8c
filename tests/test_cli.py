"""The command line: every bad input gives one clear error (exit 2, no traceback) before heavy work."""
import json
import subprocess
import sys

import pytest

import rramlib.study.base_model as base_model
from rramlib.cli.main import main


@pytest.fixture
def no_heavy_work(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("heavy work started before the input was checked")

    monkeypatch.setattr(base_model, "train", refuse)


@pytest.fixture
def bad_table(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("time_s,g_uS,mean_shift_uS,std_uS\n1,0,0,0.1\n1,10,zero,0.1\n")
    return str(path)


BAD = {
    "unknown preset": (["--preset", "nonsense"], "unknown preset"),
    "unknown profile": (["--profile", "huge"], "unknown profile"),
    "unknown method": (["--methods", "none,magic"], "unknown method"),
    "unknown dataset": (["--dataset", "mnist"], "unknown dataset"),
    "unknown model": (["--model", "vgg"], "unknown model"),
    "negative time": (["--times", "1s,-1d"], "time"),
    "non-numeric time": (["--times", "soon"], "time"),
    "negative drift scale": (["--drift-scale", "-1"], "drift_scale"),
    "g_min >= g_max": (["--drift-param", "g_min=50", "--drift-param", "g_max=10"], "g_min"),
    "unknown drift parameter": (["--drift-param", "colour=3"], "colour"),
    "missing data root": (["--data-root", "/nonexistent/rramlib-data"], "/nonexistent/rramlib-data"),
    "zero chips": (["--chips", "0"], "chips"),
    "unknown readout": (["--readout", "gdc2"], "unknown readout 'gdc2'"),
    "negative base seed": (["--base-seed", "-1"], "base_seed"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_clear_error(case, tmp_path, capsys, no_heavy_work):
    args, expected = BAD[case]
    code = main(["sweep", "--profile", "smoke", "--out", str(tmp_path / "r.json"), *args]
                if "--profile" not in args else ["sweep", "--out", str(tmp_path / "r.json"), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and expected in err and "Traceback" not in err
    assert not (tmp_path / "r.json").exists()


def test_malformed_drift_table_names_file_and_line(tmp_path, capsys, bad_table, no_heavy_work):
    code = main(["sweep", "--profile", "smoke", "--preset", "measured", "--drift-param", f"table={bad_table}",
                 "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 2 and bad_table in err and "line 3" in err


def test_cifar_root_without_data_fails_before_training(tmp_path, capsys, no_heavy_work):
    code = main(["sweep", "--profile", "paper", "--data-root", str(tmp_path), "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 2 and "download" in err


def test_module_entry_point_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rramlib", "sweep", "--preset", "nonsense", "--out",
                           str(tmp_path / "r.json")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: unknown preset")
    assert "Traceback" not in proc.stderr


def test_every_option_has_help():
    from rramlib.cli.main import build_parser

    parser = build_parser()
    for action in parser._subparsers._group_actions[0].choices["sweep"]._actions:
        assert action.help, f"option {action.option_strings} has no help"


def _listing(out: str) -> dict:
    """``{name: (first doc line, the indented line below it)}`` of a ``rramlib presets|methods|profiles`` listing."""
    lines = out.strip().splitlines()
    return {head.split(":", 1)[0]: (head.split(":", 1)[1].strip(), body.strip()) for head, body in zip(lines[::2], lines[1::2])}


def test_presets_list_shows_every_preset_with_its_real_defaults(capsys):
    import ast

    from rramlib.device.drift import PRESETS, make_drift_model

    assert main(["presets"]) == 0
    listing = _listing(capsys.readouterr().out)
    assert list(listing) == list(PRESETS)
    for name, (doc, defaults) in listing.items():
        assert defaults.startswith("defaults: ")
        assert ast.literal_eval(defaults[len("defaults: "):]) == make_drift_model(name).params()
        assert doc == PRESETS[name].__doc__.strip().splitlines()[0]
    cmo = ast.literal_eval(listing["ibm_cmo_reram"][1][len("defaults: "):])
    assert (cmo["g_min"], cmo["g_max"], cmo["drift_scale"]) == (9.0, 88.2, 1.0)  # aihwkit's CMO range


def test_profiles_list_matches_the_profiles(capsys):
    from rramlib.study.profiles import PROFILES

    assert main(["profiles"]) == 0
    listing = _listing(capsys.readouterr().out)
    assert list(listing) == list(PROFILES)
    for name, (doc, line) in listing.items():
        p = PROFILES[name]
        assert doc == p.description
        assert line == (f"{p.dataset}/{p.model}, {p.train.epochs} epochs, times {','.join(p.times)}, "
                        f"{p.chips} chips, device {p.device}")
    assert "5 chips" in listing["quick"][1] and "2 chips" in listing["smoke"][1]


def test_sweep_writes_the_promised_records(tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["sweep", "--profile", "smoke", "--preset", "ibm_pcm", "--out", str(out), "--quiet",
                 "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    result = json.loads(out.read_text())
    meta = result["metadata"]
    for key in ("profile", "config_hash", "rramlib_version", "git_commit", "wall_time_s", "peak_rss_mb",
                "drift_free_accuracy", "chip_seeds"):
        assert key in meta
    drifted = [r for r in result["records"] if r["method"] == "none"]
    assert len(drifted) == 3 * 2  # smoke: 3 times x 2 chips
    assert {r["time_label"] for r in drifted} == {"1s", "1d", "10y"}
    assert all(set(r) >= {"method", "preset", "time_s", "chip_seed", "accuracy"} for r in drifted)
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in drifted)


def test_method_parameters_reach_the_sweep(tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["sweep", "--profile", "smoke", "--preset", "ibm_pcm", "--methods", "vera_plus", "--levels", "1",
                 "--method-param", "vera_plus.rank=2", "--method-param", "vera_plus.steps=5", "--out", str(out),
                 "--quiet", "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    info = json.loads(out.read_text())["metadata"]["method_info"]["vera_plus"]
    assert info["rank"] == 2 and info["steps"] == 5 and info["storage"]["levels"] == 1


@pytest.mark.parametrize("args, expected", [
    (["--method-param", "rank=2"], "method.name=value"),
    (["--method-param", "vera_plus.colour=2"], "colour"),
    (["--method-param", "magic.rank=2"], "unknown method"),
    (["--levels", "0"], "levels"),
])
def test_bad_method_parameters(args, expected, tmp_path, capsys, no_heavy_work):
    code = main(["sweep", "--profile", "smoke", "--methods", "vera_plus", "--out", str(tmp_path / "r.json"), *args])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err


def test_methods_list_shows_the_defaults_a_method_is_built_with(capsys):
    import ast

    from rramlib.methods.compensation import METHODS, make_method

    assert main(["methods"]) == 0
    listing = _listing(capsys.readouterr().out)
    assert list(listing) == list(METHODS)
    for name, (_, defaults) in listing.items():
        assert ast.literal_eval(defaults[len("defaults: "):]) == dict(make_method(name).params)
    assert ast.literal_eval(listing["dora"][1][len("defaults: "):])["budget"] == 0.0234  # the study's 2.34 %


def _option_help(parser, flag: str) -> str:
    """The help text of ``flag`` in ``parser``'s formatted help (``--help``), whitespace normalised."""
    blocks, current = {}, None
    for line in parser.format_help().splitlines():
        if line.startswith("  -"):  # an option's first line: its names (and metavars), then maybe its help
            names, _, start = line.strip().partition("  ")
            current = [start]
            blocks.update({name.split()[0]: current for name in names.split(", ")})
        elif current is not None and line.startswith("    "):
            current.append(line)
        else:
            current = None
    return " ".join(" ".join(blocks[flag]).split())


def _subparser(name: str):
    from rramlib.cli.main import build_parser

    return build_parser()._subparsers._group_actions[0].choices[name]


def _option_fields():
    from rramlib.nn.train import TrainConfig
    from rramlib.study.experiments import SweepConfig
    from rramlib.study.profiles import Profile

    sweep = {f"--{name.replace('_', '-')}": (SweepConfig, name) for name in (
        "profile", "preset", "methods", "levels", "mapping", "per_channel", "crossbar", "n_conductance_states",
        "times", "chips", "readout", "base_seed")}
    profile = {"--dataset": (Profile, "dataset"), "--model": (Profile, "model"), "--device": (Profile, "device"),
               "--epochs": (TrainConfig, "epochs")}
    return [("sweep", flag, cls, name) for flag, (cls, name) in {**sweep, **profile}.items()] + [
        ("book", "--profile", SweepConfig, "profile"), ("record", "--profile", SweepConfig, "profile")]


@pytest.mark.parametrize("command, flag, cls, name", _option_fields(),
                         ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", str(v)))
def test_option_help_and_choices_come_from_the_config_fields(command, flag, cls, name):
    from rramlib.core.config import config_field

    f = config_field(cls, name)
    text = _option_help(_subparser(command), flag)
    assert text.startswith(" ".join(f.help.split())), text
    if f.choices:
        assert text.split("one of: ", 1)[1].split(" (default")[0].split(", ") == list(f.choices), text
    else:
        assert "one of: " not in text


def test_method_option_lists_the_registered_methods():
    from rramlib.methods.compensation import METHODS

    text = _option_help(_subparser("sweep"), "--methods")
    assert text.split("any of: ", 1)[1].startswith(", ".join(METHODS))


@pytest.mark.parametrize("command", ["sweep", "book", "record"])
def test_every_profile_is_accepted_and_shown(command, tmp_path, capsys, no_heavy_work):
    from rramlib.study.profiles import PROFILES

    assert "cifar" in PROFILES
    text = _option_help(_subparser(command), "--profile")
    assert text.split("one of: ", 1)[1].startswith(", ".join(PROFILES))
    if command == "sweep":  # the profile passes; the bad preset after it is what is refused
        for name in PROFILES:
            assert main(["sweep", "--profile", name, "--preset", "nonsense", "--out", str(tmp_path / "r.json")]) == 2
            assert capsys.readouterr().err.startswith("error: unknown preset")
    else:
        for name in PROFILES:
            assert _subparser(command).parse_args(["--profile", name]).profile == name


def test_readout_and_base_seed_reach_the_sweep(tmp_path, monkeypatch):
    import rramlib.cli.main as cli

    seen = []

    def sweep(config, **kwargs):
        seen.append(config)
        return {"metadata": {"drift_free_accuracy": 1.0, "wall_time_s": 0.0}, "records": []}

    monkeypatch.setattr(cli, "run_sweep", sweep)
    assert main(["sweep", "--profile", "smoke", "--readout", "gdc", "--base-seed", "2", "--no-cache", "--quiet",
                 "--out", str(tmp_path / "r.json")]) == 0
    assert [(c.readout, c.base_seed, c.resolved_profile().model_seed) for c in seen] == [("gdc", 2, 2)]
    defaults = cli.build_parser().parse_args(["sweep", "--out", "r.json"])
    assert (defaults.readout, defaults.base_seed) == ("raw", None)
