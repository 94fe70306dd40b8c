"""The language-model chapter's code: SST-5/QQP readers, the WordPiece tokenizer, packed tokens and the BERT
wrapper, a pretrained model loaded from a local folder in the hub's layout, and the smoke pipeline end to end."""
import gzip
import random
import sys

import numpy as np
import pytest
import torch

from rramlib.core.cache import Cache
from rramlib.core.errors import RramlibError
from rramlib.nn import text
from rramlib.nn.text import (BUNDLED_DATA, ENCODER_SIZES, TextClassifier, TextDataConfig, build_text_model, encode,
                             file_sha256, hub_tokenizer, load_text_dataset, read_text_dataset, text_data_folder,
                             train_wordpiece)

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

#: an easy example's words give its label (SST-5 labels 1 and 5 only: chance is one half): a cue word and filler
#: words of its class's own half of the filler
CUE = {1: "awful", 5: "great"}
FILLER = ("the", "movie", "plot", "was", "and", "a", "film", "story", "it", "is", "quite", "really")


def easy_lines(n: int, seed: int, extra: str | None = None) -> list[str]:
    """``n`` SST-5 lines whose label is given by their words (``extra``: one more word in every sentence)."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        label = (1, 5)[i % 2]
        words = [rng.choice(FILLER[i % 2::2]) for _ in range(rng.randrange(2, 7))] + ([extra] if extra else [])
        words.insert(rng.randrange(len(words) + 1), CUE[label])
        lines.append(f"__label__{label}\t{' '.join(words)}")
    return lines


def write_sst5(folder, sizes=(300, 60, 120), extras=(None, None, None), gz_test=True):
    folder.mkdir(parents=True, exist_ok=True)
    for (split, n), extra, seed in zip(zip(("train", "dev", "test"), sizes), extras, (1, 2, 3)):
        data = ("\n".join(easy_lines(n, seed, extra)) + "\n").encode()
        if split == "test" and gz_test:
            (folder / f"sst_{split}.txt.gz").write_bytes(gzip.compress(data))
        else:
            (folder / f"sst_{split}.txt").write_bytes(data)
    return folder


QQP_HEAD = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"


def write_qqp(folder, rows=40):
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train.tsv", "dev.tsv"):
        lines = [QQP_HEAD] + [f"{i}\t{2 * i}\t{2 * i + 1}\thow do I {FILLER[i % 12]}?\twhat is {FILLER[i % 5]}?\t{i % 2}"
                              for i in range(rows)]
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder


# ------------------------------------------------------------------------------------------------ readers
def test_sst5_reader_reads_plain_and_gzipped_files(tmp_path):
    folder = write_sst5(tmp_path / "sst5")
    data = read_text_dataset("sst5", folder)
    assert {k: len(v.labels) for k, v in data.items()} == {"train": 300, "dev": 60, "test": 120}
    first = easy_lines(1, 3)[0]  # the test file is gzipped
    assert data["test"].texts[0] == first.split("\t")[1] and data["test"].labels[0] == 0  # __label__1 -> class 0
    assert set(data["train"].labels) == {0, 4}


def test_qqp_reader_reads_pairs_and_its_errors_name_file_and_line(tmp_path):
    folder = write_qqp(tmp_path / "qqp")
    data = read_text_dataset("qqp", folder)
    assert data["dev"].texts[1] == ("how do I movie?", "what is movie?") and data["dev"].labels[:2] == (0, 1)
    lines = (folder / "train.tsv").read_text().splitlines()
    (folder / "train.tsv").write_text("\n".join(lines[:3] + ["7\t1\t2\tonly one question\t1"] + lines[4:]))
    with pytest.raises(RramlibError, match=r"train.tsv, line 4: expected 6 tab-separated fields"):
        read_text_dataset("qqp", folder)
    (folder / "train.tsv").write_text("\n".join(lines[:2] + ["7\t1\t2\ta?\tb?\t2"]))
    with pytest.raises(RramlibError, match=r"train.tsv, line 3: .*is_duplicate 0 or 1"):
        read_text_dataset("qqp", folder)
    (folder / "train.tsv").write_text("id\tq1\tq2\n" + "\n".join(lines[1:]))
    with pytest.raises(RramlibError, match=r"train.tsv, line 1: expected the header"):
        read_text_dataset("qqp", folder)


def test_missing_folder_and_missing_files_are_named(tmp_path):
    with pytest.raises(RramlibError, match="no folder"):
        read_text_dataset("sst5", tmp_path / "nowhere")
    folder = write_sst5(tmp_path / "sst5")
    (folder / "sst_dev.txt").unlink()
    (folder / "sst_test.txt.gz").unlink()
    with pytest.raises(RramlibError, match=r"lacks sst_dev.txt, sst_test.txt \(plain or .gz\)"):
        read_text_dataset("sst5", folder)
    with pytest.raises(RramlibError, match="unknown text dataset"):
        read_text_dataset("sst2", folder)


@pytest.mark.parametrize("bad, where", [("__label__6\tsix is not a class", "line 3"),
                                        ("__label__3 no tab here", "line 3"),
                                        ("label3\tno prefix", "line 3"),
                                        ("__label__2\t   ", "line 3")])
def test_malformed_sst5_line_names_file_and_line(tmp_path, bad, where):
    folder = write_sst5(tmp_path / "sst5")
    lines = (folder / "sst_dev.txt").read_text().splitlines()
    (folder / "sst_dev.txt").write_text("\n".join(lines[:2] + [bad] + lines[3:]) + "\n")
    with pytest.raises(RramlibError, match=rf"sst_dev.txt, {where}: expected '__label__N<TAB>sentence'"):
        read_text_dataset("sst5", folder)


def test_empty_or_undecodable_file_is_refused(tmp_path):
    folder = write_sst5(tmp_path / "sst5")
    (folder / "sst_train.txt").write_text("")
    with pytest.raises(RramlibError, match="sst_train.txt: the file is empty"):
        read_text_dataset("sst5", folder)
    (folder / "sst_train.txt").write_bytes(b"__label__1\t\xff\xfe bad bytes\n")
    with pytest.raises(RramlibError, match="cannot read it as UTF-8"):
        read_text_dataset("sst5", folder)


def test_bad_input_fails_before_the_tokenizer_is_trained(tmp_path, monkeypatch):
    folder = write_sst5(tmp_path / "sst5")
    (folder / "sst_test.txt.gz").write_bytes(gzip.compress(b"__label__1\tfine\n__label__9\tbad\n"))
    monkeypatch.setattr(text, "train_wordpiece", lambda *a, **k: pytest.fail("trained before checking the input"))
    cache = Cache(tmp_path / "cache")
    with pytest.raises(RramlibError, match=r"sst_test.txt.gz, line 2"):
        load_text_dataset(TextDataConfig(vocab_size=100, max_length=16, n_calib=5), folder, cache=cache)
    with pytest.raises(RramlibError, match="n_calib=200: calibration examples may take at most half"):
        load_text_dataset(TextDataConfig(vocab_size=100, n_calib=200), write_sst5(tmp_path / "ok"), cache=cache)
    assert not (tmp_path / "cache").exists()


def test_download_without_datasets_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(RramlibError, match="download=True needs the datasets package"):
        load_text_dataset(TextDataConfig(dataset="qqp"), tmp_path, download=True)


def test_the_shipped_sst5_copy_is_the_published_one_and_the_fallback(tmp_path):
    """The bundled gzipped files hold exactly the files whose hashes data/sst5/README.md gives; a data folder
    without SST-5 (e.g. CIFAR's) falls back to them, one with an sst5/ folder is used as it is."""
    readme = (BUNDLED_DATA / "sst5" / "README.md").read_text()
    for split in ("train", "dev", "test"):
        assert file_sha256(BUNDLED_DATA / "sst5" / f"sst_{split}.txt.gz") in readme
    data = read_text_dataset("sst5", BUNDLED_DATA / "sst5")
    assert [len(data[s].labels) for s in ("train", "dev", "test")] == [8544, 1101, 2210]
    assert text_data_folder("sst5", tmp_path) == BUNDLED_DATA / "sst5"
    (tmp_path / "sst5").mkdir()
    assert text_data_folder("sst5", tmp_path) == tmp_path / "sst5"
    with pytest.raises(RramlibError, match="no data in"):
        text_data_folder("qqp", tmp_path)


# ------------------------------------------------------------------------------------------------ tokens
def test_wordpiece_is_deterministic_and_learns_from_the_training_split_only(tmp_path):
    sentences = [line.split("\t")[1] for line in gzip.decompress(
        (BUNDLED_DATA / "sst5" / "sst_train.txt.gz").read_bytes()).decode().splitlines()[:400]]
    first = train_wordpiece(sentences, 800).to_str()
    assert all(train_wordpiece(sentences, 800).to_str() == first for _ in range(2))
    folder = write_sst5(tmp_path / "sst5", extras=("trainword", "devword", "testword"))
    splits = load_text_dataset(TextDataConfig(vocab_size=200, max_length=16, n_calib=10), folder)
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_str(splits.info["tokenizer"]).get_vocab()
    assert "trainword" in vocab and "devword" not in vocab and "testword" not in vocab
    assert splits.info["vocab_size"] == len(vocab) <= 200


def test_splits_are_disjoint_stratified_and_sorted_by_length(tmp_path):
    folder = write_sst5(tmp_path / "sst5")
    config = TextDataConfig(vocab_size=100, max_length=16, n_train=200, n_val=40, n_test=100, n_calib=20, seed=3)
    splits = load_text_dataset(config, folder, cache=Cache(tmp_path / "cache"))
    lines = splits.info["indices"]
    assert [len(lines[s]) for s in ("train", "val", "test", "calib")] == [200, 40, 100, 20]
    assert not set(lines["train"]) & set(lines["calib"])  # both from sst_train.txt
    for name in ("train", "val", "test", "calib"):  # labels alternate in the files: stratified = balanced
        y = getattr(splits, name).tensors[1]
        assert abs(int((y == 0).sum()) - int((y == 4).sum())) <= 1
    lengths = splits.test.tensors[0][:, 1].sum(1)
    assert torch.all(lengths[1:] >= lengths[:-1])
    again = load_text_dataset(config, folder, cache=Cache(tmp_path / "cache"))
    assert torch.equal(again.test.tensors[0], splits.test.tensors[0]) and again.info["key"] == splits.info["key"]


def test_encode_packs_ids_mask_and_types():
    tok = train_wordpiece(["a good film", "a bad film", "good or bad"], 60)
    x = encode(tok, ["a good film", "bad"], 6)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    assert x.dtype == torch.long and x.shape == (2, 2, 6)
    assert x[1, 0].tolist() == [cls, tok.token_to_id("bad"), sep, 0, 0, 0] and x[1, 1].tolist() == [1, 1, 1, 0, 0, 0]
    pairs = encode(tok, [("a good film", "good or bad film")], 8)
    ids, mask, types = pairs[0].tolist()
    assert pairs.shape == (1, 3, 8) and mask == [1] * 8  # truncated to 8 tokens, [CLS] and both [SEP] kept
    assert ids[0] == cls and ids[-1] == sep and ids.count(sep) == 2
    assert types == sorted(types) and types[0] == 0 and types[-1] == 1 and types.index(1) == ids.index(sep) + 1


def test_text_classifier_gives_the_hf_models_logits():
    from transformers import BertConfig, BertForSequenceClassification

    tok = train_wordpiece(easy_lines(50, 0), 80)
    torch.manual_seed(0)
    bert = BertForSequenceClassification(BertConfig(vocab_size=tok.get_vocab_size(), max_position_embeddings=24,
                                                    num_labels=5, **ENCODER_SIZES["bert_toy"])).eval()
    x = encode(tok, [line.split("\t")[1] for line in easy_lines(7, 1)], 24)
    n = int(x[:, 1].sum(1).max())
    assert n < 24  # the wrapper does cut the padding
    with torch.no_grad():
        ours = TextClassifier(bert)(x)
        cut = bert(input_ids=x[:, 0, :n], attention_mask=x[:, 1, :n]).logits
        full = bert(input_ids=x[:, 0], attention_mask=x[:, 1]).logits
    assert torch.equal(ours, cut)
    torch.testing.assert_close(ours, full, rtol=1e-5, atol=1e-5)
    with pytest.raises(RramlibError, match="packed tokens"):
        TextClassifier(bert)(x[:, 0])


def test_built_models_are_seeded_and_every_linear_is_an_rram_layer():
    from rramlib.device.analog import rram_layers
    from rramlib.study.text_sweep import rram_share

    a, b = (build_text_model("bert_toy", num_classes=5, vocab_size=50, max_length=16, seed=4) for _ in range(2))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    names = [n for n, _ in rram_layers(a)]
    assert len(names) == 2 * 6 + 2 and names[-2:] == ["bert.bert.pooler.dense", "bert.classifier"]
    share = rram_share(a)
    h, i, v = 32, 64, 50
    assert share["rram"] == 2 * (4 * h * h + 2 * h * i) + h * h + 5 * h
    assert share["embeddings"] == (v + 16 + 2) * h and share["norms"] == (1 + 2 * 2) * 2 * h
    assert share["total"] == sum(p.numel() for p in a.parameters())
    with pytest.raises(RramlibError, match="unknown text model"):
        build_text_model("gpt2", num_classes=2)


# ------------------------------------------------------------------------------------------------ pretrained
@pytest.fixture
def hub_folder(tmp_path):
    """A tiny random BERT and its tokenizer saved with save_pretrained: a checkpoint in the hub's layout."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    tok = train_wordpiece(easy_lines(200, 0), 120)
    folder = tmp_path / "tiny-bert"
    BertTokenizerFast(tokenizer_object=tok).save_pretrained(folder)
    torch.manual_seed(1)
    BertForSequenceClassification(BertConfig(vocab_size=tok.get_vocab_size(), max_position_embeddings=32, num_labels=2,
                                             **ENCODER_SIZES["bert_toy"])).save_pretrained(folder)
    return folder, tok


def test_pretrained_model_loads_from_a_local_folder_in_the_hub_layout(hub_folder, tmp_path):
    from transformers import BertForSequenceClassification

    folder, tok = hub_folder
    saved = BertForSequenceClassification.from_pretrained(folder).state_dict()
    model = build_text_model("bert_base", num_classes=5, source=str(folder), seed=2)
    again = build_text_model("bert_base", num_classes=5, source=str(folder), seed=2)
    state = model.bert.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items() if k.startswith("bert."))
    assert state["classifier.weight"].shape == (5, 32)  # a new head for five classes, drawn from the seed
    assert torch.equal(state["classifier.weight"], again.bert.state_dict()["classifier.weight"])
    assert hub_tokenizer(str(folder)).encode("the film was great").ids == tok.encode("the film was great").ids
    with pytest.raises(RramlibError, match="without internet give a local folder"):
        build_text_model("bert_base", num_classes=2, source=str(tmp_path / "missing"))


def test_the_paper_profile_runs_through_the_same_code_on_a_local_checkpoint(hub_folder, tmp_path):
    from rramlib.study.text import TextTrainConfig, get_text_profile, train_text_model

    folder, _ = hub_folder
    profile = get_text_profile("paper_sst5_base", source=str(folder), device="cpu",
                               data=TextDataConfig(tokenizer=str(folder), max_length=16, n_calib=10),
                               train=TextTrainConfig(epochs=1, lr=1e-3))
    base = train_text_model(profile, data_root=write_sst5(tmp_path / "sst5"), cache=Cache(tmp_path / "cache"))
    assert base.model.bert.config.vocab_size == base.splits.info["vocab_size"]
    assert len(base.history["train_loss"]) == 1 and 0 <= base.accuracy <= 1


# ------------------------------------------------------------------------------------------------ training
def test_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    from rramlib.study import text as study_text
    from rramlib.study.text import TextTrainConfig, linear_warmup_factor, train_text

    assert [linear_warmup_factor(s, 2, 6) for s in range(7)] == [0, 0.5, 1, 0.75, 0.5, 0.25, 0]
    splits = load_text_dataset(TextDataConfig(vocab_size=100, max_length=12, n_calib=10),
                               write_sst5(tmp_path / "s", sizes=(100, 20, 20)))
    cfg = TextTrainConfig(epochs=2, lr=2e-3, batch_size=32)

    def model():
        return build_text_model("bert_toy", num_classes=5, vocab_size=splits.info["vocab_size"], max_length=12)

    straight = model()
    train_text(straight, splits, cfg)
    ckpt, calls = tmp_path / "run.ckpt", []

    def stop_in_epoch_two(*args, **kwargs):  # validation of epoch 2 fails: interrupted after epoch 1's checkpoint
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return 0.5

    monkeypatch.setattr(study_text, "accuracy", stop_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train_text(model(), splits, cfg, checkpoint=ckpt)
    saved = study_text.load_checked(ckpt, study_text._MAGIC)
    assert saved["epoch"] == 1 and len(saved["history"]["epoch_seconds"]) == 1
    resumed = model()
    history = train_text(resumed, splits, cfg, checkpoint=ckpt)
    assert len(calls) == 3 and len(history["train_loss"]) == 2  # one more epoch, two in the history
    assert history["epoch_seconds"][0] == saved["history"]["epoch_seconds"][0] > 0  # the first call's epoch counts
    assert len(history["epoch_seconds"]) == 2
    assert all(torch.equal(p, q) for p, q in zip(straight.state_dict().values(), resumed.state_dict().values()))


# ------------------------------------------------------------------------------------------------ pipeline
@pytest.fixture(scope="module")
def easy_sst5(tmp_path_factory):
    return write_sst5(tmp_path_factory.mktemp("easy") / "sst5", sizes=(400, 80, 160))


def test_smoke_pipeline_end_to_end_and_cached(easy_sst5, tmp_path, monkeypatch):
    """On an easy split the drift-free classifier is far above chance (1/2), a strong drift costs accuracy at ten
    years, the records are the per-sentence means, and a second run neither trains nor fits again."""
    from rramlib.study import text as study_text
    from rramlib.study.text import TextTrainConfig
    from rramlib.study.text_sweep import TextSweepConfig, run_text_sweep

    config = TextSweepConfig(
        profile="smoke", methods=("none", "vera_plus"), preset="relative_gaussian", drift_params={"rd": 3.0},
        profile_overrides={"data": TextDataConfig(vocab_size=100, max_length=12, n_calib=10),
                           "train": TextTrainConfig(epochs=10, lr=2e-3, batch_size=16)})
    cache = Cache(tmp_path / "cache")
    result = run_text_sweep(config, data_root=easy_sst5, cache=cache)
    meta, per = result["metadata"], result["per_sentence"]
    assert meta["drift_free_accuracy"] > 0.9 and meta["n_test"] == 160
    assert per["drift_free"].mean() == pytest.approx(meta["drift_free_accuracy"])
    correct = per["correct"]["none"]
    assert correct.shape == (2, 3, 160) and per["tokens"].shape == per["lines"].shape == (160,)
    ten_years = [r["accuracy"] for r in result["records"] if r["method"] == "none" and r["time_label"] == "10y"]
    assert ten_years == pytest.approx(correct[:, 2].mean(1).tolist())
    assert np.mean(ten_years) < meta["drift_free_accuracy"] - 0.05
    assert meta["method_info"]["vera_plus"]["storage"]["levels"] == 2

    monkeypatch.setattr(study_text, "train_text", lambda *a, **k: pytest.fail("trained again"))
    again = run_text_sweep(config, data_root=easy_sst5, cache=Cache(tmp_path / "cache"))
    assert again["records"] == result["records"]
    assert again["metadata"]["cache"]["misses"] == 0


def test_the_command_line_runs_a_profile_and_refuses_bad_input(tmp_path, capsys):
    import json

    from rramlib.study.text_sweep import main

    small = write_sst5(tmp_path / "small", sizes=(300, 60, 120))
    args = ["--profile", "smoke", "--methods", "none", "--cache-dir", str(tmp_path / "cache")]
    assert main([*args, "--data-root", str(small), "--out", str(tmp_path / "bad.json")]) == 2
    assert "n_val: asked for 100 examples, only 60 are available" in capsys.readouterr().err
    assert main([*args, "--methods", "nonsense", "--out", str(tmp_path / "bad.json")]) == 2
    assert "unknown method 'nonsense'" in capsys.readouterr().err
    assert not (tmp_path / "bad.json").exists()
    folder = write_sst5(tmp_path / "sst5", sizes=(440, 100, 200))
    assert main([*args, "--data-root", str(folder), "--out", str(tmp_path / "out.json")]) == 0
    written = json.loads((tmp_path / "out.json").read_text())
    assert written["metadata"]["profile"] == "smoke" and len(written["records"]) == 1 + 2 * 3


def test_a_text_profile_is_evaluated_on_its_whole_test_split():
    """The drift pipeline reads a profile's ``n_test`` (the test subset its chips read, part of every chip's cache
    key): a text profile has none, its test split's size is set when its data are loaded (``data.n_test``)."""
    from rramlib.study.profiles import get_profile
    from rramlib.study.text import TEXT_PROFILES

    for profile in TEXT_PROFILES.values():
        assert profile.n_test is None and "n_test" not in profile.as_dict()
    assert get_profile("cifar_subset").n_test == 2000 and get_profile("cifar").n_test is None
