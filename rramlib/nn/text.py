"""Text classification data and encoders: SST-5 and QQP, a WordPiece tokenizer, packed token tensors, BERT.

**Data.** Two datasets, read from local folders in their published layouts (plain or gzipped):

* ``sst5`` -- the five-class sentence splits of the Stanford Sentiment Treebank (Socher et al., "Recursive Deep
  Models for Semantic Compositionality Over a Sentiment Treebank", EMNLP 2013): ``sst_train.txt``, ``sst_dev.txt``,
  ``sst_test.txt`` (8,544 / 1,101 / 2,210 lines ``__label__N<TAB>sentence``, N = 1 ... 5, very negative ... very
  positive). A copy ships with the repository in ``data/sst5/`` (its README gives the source and hashes).
* ``qqp`` -- Quora Question Pairs in GLUE's layout (Wang et al., "GLUE", ICLR 2019): ``train.tsv`` and ``dev.tsv``
  with the header ``id qid1 qid2 question1 question2 is_duplicate``. GLUE's test split has no labels, so ``dev.tsv``
  serves as the labelled test split and the validation split is held out from ``train.tsv``.

A missing folder or file, an empty file and a malformed line (with its file and line number) each raise one
:class:`~rramlib.core.errors.RramlibError` before any tokenisation. ``download=True`` fetches the files once
through the optional ``datasets`` package (a clear error without it or without internet) and writes them in the
same layout, so they are read by the same code.

**Splits** (:func:`load_text_dataset`, a :class:`~rramlib.nn.data.DatasetSplits`, deterministic given the seed):
``test`` is the published test split (SST-5) or GLUE's dev split (QQP); ``val`` is the published dev split (SST-5:
our choice, the standard one, so that no training sentence is spent on model selection) or held out from the
training file (QQP); ``calib`` (the few examples calibration methods may see) is held out from the training file
and never trained on; ``train`` is the rest. Every subset is stratified by label.

**Tokens.** ``tokenizer="wordpiece"`` trains a WordPiece vocabulary (Wu et al. 2016, as BERT uses it) with
``tokenizers`` on the *training split only* (:func:`train_wordpiece`); any other value names a pretrained
tokenizer (a hub id such as ``bert-base-uncased`` or a local folder in the hub's layout, :func:`hub_tokenizer`).
Each example becomes ONE LongTensor shaped ``(rows, max_length)`` (:func:`encode`): row 0 the token ids, row 1 the
attention mask, and for sentence pairs row 2 the token type ids. So the rest of rramlib, which indexes rows of
``x`` and calls ``model(x)`` (:func:`rramlib.nn.evaluate.accuracy`), works unchanged. Padding is on the right;
the validation, test and calibration splits are stored shortest first (``info["indices"]`` maps each row back to
its line in the published file), so that a batch carries little padding: :class:`TextClassifier` cuts every batch
to its longest example before the encoder runs, which changes no prediction.

**Models** (:func:`build_text_model`): :class:`TextClassifier` wraps ``transformers.BertForSequenceClassification``
(Devlin et al., "BERT", NAACL 2019). ``bert_toy``, ``bert_tiny`` and ``bert_h64`` are built from a configuration with
seeded random weights (:data:`ENCODER_SIZES`; ``bert_tiny`` has the shape of Google's BERT-Tiny, Turc et al. 2019,
``bert_h64`` half its width), trained here from scratch; ``bert_base`` / ``bert_large`` load pretrained weights with ``from_pretrained`` from the hub
(``bert-base-uncased`` / ``bert-large-uncased``) or from a local folder in the hub's layout (``source``).

``transformers``, ``tokenizers`` (the ``text`` extra: ``pip install 'rramlib[text]'``) and ``datasets`` are imported
inside the functions that need them, so importing this module needs none of them.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from rramlib.core.cache import Cache, config_hash
from rramlib.core.config import Config
from rramlib.core.errors import RramlibError, check_int
from rramlib.nn.data import DatasetSplits

__all__ = ["TEXT_DATASETS", "DATASET_FILES", "SPECIAL_TOKENS", "ENCODER_SIZES", "PRETRAINED", "TEXT_MODELS",
           "BUNDLED_DATA", "TextSplit", "TextDataConfig", "TextClassifier", "read_text_dataset", "dataset_files",
           "text_data_folder", "download_text_dataset", "train_wordpiece", "hub_tokenizer", "encode",
           "load_text_dataset", "build_text_model", "file_sha256"]

#: Dataset name -> (number of classes, class names).
TEXT_DATASETS: dict[str, tuple[str, ...]] = {
    "sst5": ("very negative", "negative", "neutral", "positive", "very positive"),
    "qqp": ("not duplicate", "duplicate"),
}
#: Dataset name -> {split: file name in the published layout} (each may also be read gzipped, ``<name>.gz``).
DATASET_FILES: dict[str, dict[str, str]] = {
    "sst5": {"train": "sst_train.txt", "dev": "sst_dev.txt", "test": "sst_test.txt"},
    "qqp": {"train": "train.tsv", "dev": "dev.tsv"},
}
QQP_HEADER = ("id", "qid1", "qid2", "question1", "question2", "is_duplicate")
#: Validation pairs held out from QQP's train.tsv when ``n_val`` is not given (our choice: about 1.4 % of it).
QQP_VAL = 5000
_SST5_LINE = re.compile(r"__label__([1-5])\t(.*\S.*)")
#: The copies shipped with the repository (``data/<dataset>/`` at its root), where a checkout has them.
BUNDLED_DATA = Path(__file__).resolve().parents[2] / "data"

#: BERT's special tokens; [PAD] is id 0 in every vocabulary :func:`train_wordpiece` makes.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
#: The encoders built from a configuration (``transformers.BertConfig`` fields), seeded random weights:
#: ``bert_toy`` for tests and the smoke profile; ``bert_tiny`` the shape of BERT-Tiny (Turc et al. 2019: 2 layers,
#: 128 features, 2 heads); ``bert_h64`` BERT-Tiny at half its width (our choice for the CPU profile: trained from
#: scratch on SST-5 it matched BERT-Tiny's test accuracy here at about half the time to train and evaluate).
ENCODER_SIZES: dict[str, dict] = {
    "bert_toy": {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64},
    "bert_tiny": {"num_hidden_layers": 2, "hidden_size": 128, "num_attention_heads": 2, "intermediate_size": 512},
    "bert_h64": {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 256},
}
#: The pretrained encoders, by name: the hub id their weights come from unless a ``source`` is given.
PRETRAINED: dict[str, str] = {"bert_base": "bert-base-uncased", "bert_large": "bert-large-uncased"}
TEXT_MODELS = (*ENCODER_SIZES, *PRETRAINED)


def _needs(module: str):
    raise RramlibError(f"this needs the {module} package: pip install 'rramlib[text]'") from None


# ------------------------------------------------------------------------------------------------ reading
@dataclass(frozen=True)
class TextSplit:
    """One split of a text dataset: ``texts`` (strings, or ``(question1, question2)`` pairs) and integer labels."""

    texts: tuple
    labels: tuple[int, ...]


def dataset_files(name: str, folder: str | os.PathLike) -> dict[str, Path]:
    """The files of dataset ``name`` in ``folder`` by split (``<file>`` or ``<file>.gz``); one RramlibError naming
    every missing file, or the missing folder."""
    files = DATASET_FILES[_check_dataset(name)]
    folder = Path(folder)
    if not folder.is_dir():
        raise RramlibError(f"{name}: no folder {folder} (it must hold {', '.join(files.values())}, plain or .gz)")
    found, missing = {}, []
    for split, file in files.items():
        candidates = [folder / file, folder / f"{file}.gz"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            missing.append(file)
        else:
            found[split] = path
    if missing:
        raise RramlibError(f"{name}: {folder} lacks {', '.join(missing)} (plain or .gz)")
    return found


def _check_dataset(name: object) -> str:
    if name not in TEXT_DATASETS:
        raise RramlibError(f"unknown text dataset {name!r}; choose one of: {', '.join(TEXT_DATASETS)}")
    return name


def _lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (plain or gzipped), without line ends; the final newline ends no line."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8", newline="") as f:
            text = f.read()
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        raise RramlibError(f"{path}: cannot read it as UTF-8 text ({exc})") from None
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise RramlibError(f"{path}: the file is empty")
    return lines


def _read_sst5(path: Path) -> TextSplit:
    texts, labels = [], []
    for number, line in enumerate(_lines(path), 1):
        match = _SST5_LINE.fullmatch(line)
        if match is None:
            raise RramlibError(f"{path}, line {number}: expected '__label__N<TAB>sentence' with N in 1..5, "
                               f"got {line[:60]!r}")
        labels.append(int(match.group(1)) - 1)
        texts.append(match.group(2))
    return TextSplit(tuple(texts), tuple(labels))


def _read_qqp(path: Path) -> TextSplit:
    lines = _lines(path)
    if tuple(lines[0].split("\t")) != QQP_HEADER:
        raise RramlibError(f"{path}, line 1: expected the header {' '.join(QQP_HEADER)} (tab-separated), "
                           f"got {lines[0][:80]!r}")
    texts, labels = [], []
    for number, line in enumerate(lines[1:], 2):
        fields = line.split("\t")
        if len(fields) != len(QQP_HEADER) or fields[5] not in ("0", "1") or not fields[3].strip() \
                or not fields[4].strip():
            raise RramlibError(f"{path}, line {number}: expected {len(QQP_HEADER)} tab-separated fields, two "
                               f"non-empty questions and is_duplicate 0 or 1, got {line[:80]!r}")
        texts.append((fields[3], fields[4]))
        labels.append(int(fields[5]))
    if not labels:
        raise RramlibError(f"{path}: the file holds a header and no question pair")
    return TextSplit(tuple(texts), tuple(labels))


def read_text_dataset(name: str, folder: str | os.PathLike) -> dict[str, TextSplit]:
    """Every split of dataset ``name`` from ``folder`` (published layout, module docstring), by split name
    (``train``, ``dev``, and ``test`` for SST-5); the labels count from 0."""
    files = dataset_files(name, folder)  # all present, before reading any
    reader = _read_sst5 if name == "sst5" else _read_qqp
    return {split: reader(path) for split, path in files.items()}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's contents, decompressed for a ``.gz`` file: a gzipped copy has its plain file's hash
    (the hashes ``data/sst5/README.md`` gives)."""
    path = Path(path)
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return hashlib.sha256(data).hexdigest()


def text_data_folder(name: str, root: str | os.PathLike | None = None) -> Path:
    """Where dataset ``name`` is read from: ``root/<name>`` if that folder exists, else ``root`` itself if it holds a
    file of the dataset, else the copy shipped with the repository (:data:`BUNDLED_DATA`; SST-5), so that a data
    folder meant for another chapter (CIFAR) leaves SST-5 to the shipped copy. A RramlibError naming the places
    looked at when none has the dataset."""
    files = DATASET_FILES[_check_dataset(name)].values()
    looked = []
    if root is not None:
        if (Path(root) / name).is_dir():
            return Path(root) / name
        if any((Path(root) / f).is_file() or (Path(root) / f"{f}.gz").is_file() for f in files):
            return Path(root)
        looked += [Path(root) / name, Path(root)]
    if (BUNDLED_DATA / name).is_dir():
        return BUNDLED_DATA / name
    looked.append(BUNDLED_DATA / name)
    raise RramlibError(f"{name}: no data in {', '.join(map(str, looked))}; give the folder of its files "
                       f"(data_root), or download=True on a machine with internet")


def download_text_dataset(name: str, folder: str | os.PathLike) -> Path:
    """Fetch dataset ``name`` through the ``datasets`` package (SST-5: ``SetFit/sst5``, the same sentence splits;
    QQP: GLUE's ``qqp``) and write its files to ``folder`` in the published layout; returns the folder."""
    _check_dataset(name)
    try:
        import datasets
    except ImportError:
        raise RramlibError("download=True needs the datasets package (pip install datasets); or copy the files "
                           "into a folder and give it") from None
    hub = ("SetFit/sst5",) if name == "sst5" else ("nyu-mll/glue", "qqp")
    try:
        data = datasets.load_dataset(*hub)
    except Exception as exc:  # offline, hub changed ...: one clear message
        raise RramlibError(f"{name}: could not download {'/'.join(hub)} through datasets ({type(exc).__name__}: "
                           f"{exc}); on a machine without internet, copy the files into a folder and give it") from None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if name == "sst5":
        for split, hub_split in (("train", "train"), ("dev", "validation"), ("test", "test")):
            lines = [f"__label__{r['label'] + 1}\t{r['text']}" for r in data[hub_split]]
            (folder / DATASET_FILES["sst5"][split]).write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        for split, hub_split in (("train", "train"), ("dev", "validation")):
            rows = ["\t".join(QQP_HEADER)] + [f"{r['idx']}\t-\t-\t{r['question1']}\t{r['question2']}\t{r['label']}"
                                              for r in data[hub_split]]
            (folder / DATASET_FILES["qqp"][split]).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


# ------------------------------------------------------------------------------------------------ tokens
def _words(texts: Sequence) -> list[str]:
    """The strings of ``texts`` (both questions of a pair)."""
    return [s for t in texts for s in ((t,) if isinstance(t, str) else t)]


def train_wordpiece(texts: Sequence, vocab_size: int, *, lowercase: bool = True):
    """A WordPiece tokenizer (``tokenizers.Tokenizer``) with a vocabulary of at most ``vocab_size`` pieces learnt
    from ``texts`` (strings or pairs): BERT's normaliser and pre-tokeniser, :data:`SPECIAL_TOKENS` first, and the
    ``[CLS] A [SEP] (B [SEP])`` template.

    Deterministic: ``tokenizers``' trainer numbers the continuing pieces (``##c``) in hash-map order, and that order
    breaks ties between merges (huggingface/tokenizers issue 1794), so two runs can learn different vocabularies.
    Here every continuing single character is handed to the trainer first, in sorted order; the trained vocabulary
    is then put into a fresh tokenizer in which only :data:`SPECIAL_TOKENS` are special.
    """
    try:
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    except ImportError:
        _needs("tokenizers")
    check_int("vocab_size", vocab_size, len(SPECIAL_TOKENS) + 1)
    words = _words(texts)
    if not words:
        raise RramlibError("train_wordpiece got no text")
    normalizer, pre = normalizers.BertNormalizer(lowercase=lowercase), pre_tokenizers.BertPreTokenizer()
    continuing = sorted({c for s in words for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(s)) for c in w[1:]})
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, show_progress=False,
                                        special_tokens=[*SPECIAL_TOKENS, *(f"##{c}" for c in continuing)])
    learner = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    learner.normalizer, learner.pre_tokenizer = normalizer, pre
    learner.train_from_iterator(words, trainer)
    tok = Tokenizer(models.WordPiece(learner.get_vocab(), unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre, decoders.WordPiece()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    return tok


def hub_tokenizer(source: str):
    """The fast tokenizer (a ``tokenizers.Tokenizer``) of a pretrained model: a hub id or a local folder in the
    hub's layout, through ``transformers.AutoTokenizer``."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        _needs("transformers")
    try:
        return AutoTokenizer.from_pretrained(source).backend_tokenizer
    except (OSError, ValueError) as exc:
        raise RramlibError(f"cannot load the tokenizer {source!r} ({exc}); without internet give a local folder "
                           "in the hub's layout") from None


def encode(tokenizer, texts: Sequence, max_length: int) -> Tensor:
    """``texts`` (strings, or pairs) as one LongTensor ``(N, rows, max_length)``: token ids, attention mask and, for
    pairs, token type ids; padded on the right with [PAD], truncated to ``max_length`` tokens."""
    check_int("max_length", max_length, 4)
    tok = type(tokenizer).from_str(tokenizer.to_str())  # padding and truncation are set on this copy only
    pad = tok.token_to_id("[PAD]")
    if pad is None:
        raise RramlibError("the tokenizer has no [PAD] token")
    tok.enable_truncation(max_length)
    tok.enable_padding(length=max_length, pad_id=pad, pad_token="[PAD]")
    texts = list(texts)
    pairs = bool(texts) and not isinstance(texts[0], str)
    encodings = tok.encode_batch([tuple(t) for t in texts] if pairs else texts)
    rows = [[e.ids, e.attention_mask, *([e.type_ids] if pairs else [])] for e in encodings]
    return torch.tensor(rows, dtype=torch.long).reshape(len(texts), 3 if pairs else 2, max_length)


# ------------------------------------------------------------------------------------------------ splits
@dataclass(frozen=True)
class TextDataConfig(Config):
    """What :func:`load_text_dataset` reads, splits and tokenises (module docstring)."""

    owner: ClassVar[str] = "text_data"
    dataset: str = field(default="sst5", metadata={"help": "text dataset", "choices": TEXT_DATASETS})
    tokenizer: str = field(default="wordpiece", metadata={
        "help": "wordpiece (trained on the training split), or a pretrained tokenizer: hub id or local folder"})
    vocab_size: int = field(default=8000, metadata={"help": "word pieces a trained wordpiece vocabulary holds at most"})
    lowercase: bool = field(default=True, metadata={"help": "lower-case and strip accents (trained wordpiece only)"})
    max_length: int = field(default=64, metadata={"help": "tokens per example, [CLS] and [SEP] included"})
    n_train: int | None = field(default=None, metadata={
        "help": "training examples, a stratified subset (default: all left once val and calib are out)"})
    n_val: int | None = field(default=None, metadata={
        "help": "validation examples (default: SST-5 all of its dev split; QQP 5000, at most a quarter of "
                "train.tsv, held out from it)"})
    n_test: int | None = field(default=None, metadata={
        "help": "test examples, a stratified subset (default: the whole test split)"})
    n_calib: int = field(default=100, metadata={"help": "calibration examples held out from the training file"})
    seed: int = field(default=0, metadata={"help": "seed of the subsets and hold-outs"})

    def _validate(self) -> None:
        check_int(self._label("vocab_size"), self.vocab_size, len(SPECIAL_TOKENS) + 1)
        check_int(self._label("max_length"), self.max_length, 4)
        check_int(self._label("n_calib"), self.n_calib, 1)
        check_int(self._label("seed"), self.seed, 0)
        for name in ("n_train", "n_val", "n_test"):
            if getattr(self, name) is not None:
                check_int(self._label(name), getattr(self, name), 1)
        if not self.tokenizer:
            raise RramlibError(f"{self._label('tokenizer')} must be 'wordpiece', a hub id or a folder")


def _stratified(labels: np.ndarray, pool: np.ndarray, n: int | None, rng: np.random.Generator,
                what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(taken, rest)``: ``n`` indices of ``pool`` (None: all of it) with each class's share of the pool (floors,
    then one more for the largest remainders, ties to the lower class), members drawn at random; both sorted."""
    if n is None or n == len(pool):
        return np.sort(pool), pool[:0]
    if n > len(pool):
        raise RramlibError(f"{what}: asked for {n} examples, only {len(pool)} are available")
    classes, counts = np.unique(labels[pool], return_counts=True)
    share = counts * n / len(pool)
    quota = np.floor(share).astype(int)
    quota[np.argsort(-(share - quota), kind="stable")[: n - quota.sum()]] += 1
    taken = np.concatenate([rng.permutation(pool[labels[pool] == c])[:q] for c, q in zip(classes, quota)])
    return np.sort(taken), np.setdiff1d(pool, taken)


def _split_indices(config: TextDataConfig, data: dict[str, TextSplit]) -> dict[str, tuple[str, np.ndarray]]:
    """split -> (file split it comes from, indices into that file), module docstring's rules."""
    rng = np.random.default_rng(config.seed)
    train_labels = np.asarray(data["train"].labels)
    pool = np.arange(len(train_labels))
    out = {}
    if config.dataset == "sst5":
        out["val"] = ("dev", _stratified(np.asarray(data["dev"].labels), np.arange(len(data["dev"].labels)),
                                         config.n_val, rng, "n_val")[0])
        test_file = "test"
    else:
        n_val = config.n_val or min(QQP_VAL, len(pool) // 4)
        val, pool = _stratified(train_labels, pool, n_val, rng, "n_val")
        out["val"] = ("train", val)
        test_file = "dev"
    if config.n_calib > len(pool) // 2:
        raise RramlibError(f"n_calib={config.n_calib}: calibration examples may take at most half of the "
                           f"{len(pool)} training examples ({len(pool) // 2})")
    calib, pool = _stratified(train_labels, pool, config.n_calib, rng, "n_calib")
    out["calib"] = ("train", calib)
    out["train"] = ("train", _stratified(train_labels, pool, config.n_train, rng, "n_train")[0])
    test_labels = np.asarray(data[test_file].labels)
    out["test"] = (test_file, _stratified(test_labels, np.arange(len(test_labels)), config.n_test, rng, "n_test")[0])
    return out


def load_text_dataset(config: TextDataConfig, root: str | os.PathLike | None = None, *, download: bool = False,
                      cache: Cache | None = None) -> DatasetSplits:
    """The tokenised splits of ``config.dataset`` (module docstring), cached (kind ``"text_data"``) by the files'
    hashes, ``config`` and, for a pretrained tokenizer, its vocabulary.

    ``root``: see :func:`text_data_folder`; with ``download=True`` the files are first fetched into
    ``root/<dataset>`` (default ``data/<dataset>``) unless they are there. Returns a
    :class:`~rramlib.nn.data.DatasetSplits` of ``TensorDataset(x, y)`` with ``x`` shaped ``(N, rows, max_length)``
    (``in_channels`` = rows, ``image_size`` = ``max_length``); ``info`` holds the tokenizer (JSON), the class names,
    the rows' names, ``vocab_size``, ``indices`` (split -> line of each row in its published file, counted from 0, below any
    header), ``source`` (format and file hashes) and ``key`` (the cache key).
    """
    if not isinstance(config, TextDataConfig):
        raise RramlibError(f"config must be a TextDataConfig, got {type(config).__name__}")
    cache = cache or Cache(None)
    name = config.dataset
    if download:
        target = Path(root if root is not None else "data") / name
        try:
            dataset_files(name, target)
        except RramlibError:
            download_text_dataset(name, target)
        folder = target
    else:
        folder = text_data_folder(name, root)
    files = dataset_files(name, folder)
    hashes = {split: file_sha256(path) for split, path in files.items()}
    data = read_text_dataset(name, folder)  # every line checked before any heavy work
    indices = _split_indices(config, data)
    pretrained = None if config.tokenizer == "wordpiece" else hub_tokenizer(config.tokenizer)
    key = {**config.as_dict(), "files_sha256": hashes,
           "tokenizer_sha256": None if pretrained is None else hashlib.sha256(pretrained.to_str().encode()).hexdigest()}

    def compute() -> dict:
        train_file, train_idx = indices["train"]
        tok = pretrained or train_wordpiece([data[train_file].texts[i] for i in train_idx], config.vocab_size,
                                            lowercase=config.lowercase)
        out = {"tokenizer": tok.to_str(), "vocab_size": tok.get_vocab_size(), "splits": {}}
        for split, (file, idx) in indices.items():
            x = encode(tok, [data[file].texts[i] for i in idx], config.max_length)
            y = torch.tensor([data[file].labels[i] for i in idx], dtype=torch.long)
            idx = torch.as_tensor(idx, dtype=torch.long)
            if split != "train":  # shortest first (stable): batches with little padding
                order = torch.argsort(x[:, 1].sum(1), stable=True)
                x, y, idx = x[order], y[order], idx[order]
            out["splits"][split] = {"x": x, "y": y, "indices": idx}
        return out

    entry = cache.get_or_compute("text_data", key, compute)
    parts = {s: TensorDataset(v["x"], v["y"]) for s, v in entry["splits"].items()}
    rows = ("input_ids", "attention_mask", "token_type_ids")[: parts["train"].tensors[0].shape[1]]
    fmt = {"sst5": "SST-5 sentence splits (__label__N<TAB>sentence)", "qqp": "GLUE QQP (TSV)"}[name]
    info = {"classes": TEXT_DATASETS[name], "rows": rows, "tokenizer": entry["tokenizer"],
            "vocab_size": entry["vocab_size"],
            "indices": {s: v["indices"].tolist() for s, v in entry["splits"].items()},
            "source": {"format": fmt, "files_sha256": hashes, "bundled": folder == BUNDLED_DATA / name}, "key": config_hash(key, "text_data")}
    return DatasetSplits(train=parts["train"], val=parts["val"], test=parts["test"], calib=parts["calib"],
                         num_classes=len(TEXT_DATASETS[name]), in_channels=len(rows), image_size=config.max_length,
                         name=name, info=info)


# ------------------------------------------------------------------------------------------------ models
class TextClassifier(nn.Module):
    """``transformers.BertForSequenceClassification`` reading one packed LongTensor ``(N, rows, L)`` (:func:`encode`)
    and returning the logits ``(N, classes)``.

    Every batch is cut to its longest example (the attention mask's longest run; padding is on the right) before
    the encoder runs: padded positions are masked out of attention, so this changes no prediction, only the work.
    The encoder is ``self.bert``; its ``nn.Linear`` layers (attention Q/K/V and output, feed-forward, pooler,
    classifier) are what :class:`~rramlib.device.analog.AnalogModel` maps onto RRAM, while the embeddings
    (look-ups of a table row, no matrix-vector product) and LayerNorm (a per-token normalisation) stay digital.
    """

    def __init__(self, bert: nn.Module):
        super().__init__()
        self.bert = bert

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[1] not in (2, 3):
            raise RramlibError(f"TextClassifier expects packed tokens (N, 2 or 3, L), got shape {tuple(x.shape)}")
        length = max(int(x[:, 1].sum(1).max()), 1)
        x = x[:, :, :length]
        types = x[:, 2] if x.shape[1] == 3 else None
        return self.bert(input_ids=x[:, 0], attention_mask=x[:, 1], token_type_ids=types).logits


def build_text_model(name: str, *, num_classes: int, vocab_size: int | None = None, max_length: int | None = None,
                     seed: int = 0, source: str | None = None) -> TextClassifier:
    """A :class:`TextClassifier` by name (:data:`TEXT_MODELS`), its random weights drawn from ``seed``.

    ``bert_toy``/``bert_tiny``/``bert_h64`` (:data:`ENCODER_SIZES`): a ``BertConfig`` with ``vocab_size`` word pieces and
    ``max_length`` positions, every weight random (BERT's initialisation). ``bert_base``/``bert_large``
    (:data:`PRETRAINED`): pretrained weights from ``source`` (default: the hub id), a new classifier of
    ``num_classes`` outputs (random, from ``seed``).
    """
    if name not in TEXT_MODELS:
        raise RramlibError(f"unknown text model {name!r}; choose one of: {', '.join(TEXT_MODELS)}")
    check_int("num_classes", num_classes, 2)
    try:
        from transformers import BertConfig, BertForSequenceClassification
    except ImportError:
        _needs("transformers")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name in ENCODER_SIZES:
            if vocab_size is None or max_length is None:
                raise RramlibError(f"{name} is built from a configuration: give vocab_size and max_length")
            config = BertConfig(vocab_size=check_int("vocab_size", vocab_size, 2),
                                max_position_embeddings=check_int("max_length", max_length, 4), num_labels=num_classes,
                                pad_token_id=0, **ENCODER_SIZES[name])
            bert = BertForSequenceClassification(config)
        else:
            try:
                bert = BertForSequenceClassification.from_pretrained(  # a head of another size is drawn anew
                    source or PRETRAINED[name], num_labels=num_classes, dtype=torch.float32,
                    ignore_mismatched_sizes=True)
            except (OSError, ValueError) as exc:
                raise RramlibError(f"cannot load {source or PRETRAINED[name]!r} ({exc}); without internet give a "
                                   "local folder in the hub's layout (save_pretrained)") from None
    return TextClassifier(bert.eval())


