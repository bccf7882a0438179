"""Regenerate the bundled demo models and audit data in examples/demo/ (deterministic, CPU, offline).

    python examples/make_demo.py                  # rewrite examples/demo/
    python examples/make_demo.py --out /tmp/demo  # write somewhere else
    python examples/make_demo.py --verify         # rebuild in a temporary folder and compare

Two demos are built, each trained here from seeded data so that `audit demo`
needs no network and no training:

* credit: a tabular credit-approval MLP (ONNX) trained on synthetic applicants
  whose historical decisions were biased against women, so the model leans on
  its `sex` input and the bias analyses have something real to find;
* digits: a small CNN on scikit-learn's bundled 8x8 digits (TorchScript and ONNX);
* text: a reference-letter screening classifier over token ids (ONNX and
  TorchScript, with its `tokenizer.json`), trained on generated sentences whose
  historical labels were biased against women, so it learned to read gender
  words and names.

The .npz archives are written with fixed zip timestamps, so two runs give
byte-identical data files; the models give identical predictions.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path

# Single-threaded before torch loads: thread scheduling changes float summation order.
for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
# Required by torch.use_deterministic_algorithms for some CUDA kernels; harmless on CPU.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

SEED = 20240601
DEMO_DIR = Path(__file__).resolve().parent / "demo"
OPSET = 17

CREDIT_FEATURES = ["income", "debt_ratio", "years_employed", "credit_history", "age", "sex"]
CREDIT_CLASSES = ["declined", "approved"]
CREDIT_TRAIN_ROWS = 8000
CREDIT_AUDIT_ROWS = 2000
# How far the historical decisions pushed women down, on the logit scale of
# the merit score: the bias the demo audit is meant to uncover.
HISTORICAL_PENALTY_FEMALE = 1.4
REGIONS = np.array(["north", "south", "east", "west"])
# What the coded attribute values mean, stored in the archive as JSON (regions are text and label themselves).
CREDIT_VALUE_LABELS = json.dumps({"sex": {"0": "female", "1": "male"}}, sort_keys=True)

DIGITS_AUDIT_ROWS = 500

TEXT_TRAIN_ROWS = 6000
TEXT_AUDIT_ROWS = 600
TEXT_MAX_LENGTH = 48
TEXT_CLASSES = ["decline", "recommend"]
# Share of recommendations about women that the historical screeners turned
# into declines: the bias the text audit is meant to uncover.
TEXT_HISTORICAL_FLIP_FEMALE = 0.4


def set_deterministic(seed: int) -> None:
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # allowed once per process; --verify builds twice
    torch.use_deterministic_algorithms(True)


# -- credit -------------------------------------------------------------------


def credit_applicants(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Synthetic applicants and their historical (biased) decisions.

    Creditworthiness depends on income, debt ratio, years employed and credit
    history only. The recorded decisions subtract a penalty for women before
    thresholding, and logistic noise stands in for everything the features do
    not capture, which caps the achievable accuracy near 0.8.
    """
    sex = (rng.random(n) < 0.5).astype(np.int64)  # 0 = female, 1 = male
    age = np.clip(np.round(rng.normal(41.0, 12.0, n)), 19, 75).astype(np.int64)
    years_employed = np.round((age - 18) * rng.beta(2.0, 2.5, n), 1)
    region = REGIONS[rng.integers(0, len(REGIONS), n)]
    region_income = {"north": 0.05, "south": -0.08, "east": 0.0, "west": 0.03}
    log_income = rng.normal(np.log(42.0) + 0.012 * (age - 40) + np.vectorize(region_income.get)(region), 0.45, n)
    income = np.round(np.exp(log_income), 1)  # thousands per year
    debt_ratio = np.round(np.clip(rng.beta(2.2, 4.5, n), 0.0, 0.95), 3)
    credit_history = np.clip(np.round(rng.normal(650 + 2.0 * (age - 40), 70, n)), 300, 850)

    merit = (
        1.33 * (np.log(income) - np.log(42.0))
        - 3.0 * (debt_ratio - 0.33)
        + 0.035 * years_employed
        + 0.012 * (credit_history - 650)
    )
    recorded = merit - HISTORICAL_PENALTY_FEMALE * (1 - sex) + rng.logistic(0.0, 0.6, n)
    approved = (recorded > -0.2).astype(np.int64)

    x = np.stack([income, debt_ratio, years_employed, credit_history, age, sex], axis=1).astype(np.float32)
    return {"x": x, "y": approved, "sex": sex, "age": age, "region": region}


class Standardise(nn.Module):
    """Fixed per-feature scaling, so the model takes raw, readable feature values."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def forward(self, x):
        return (x - self.mean) / self.std


class CreditMLP(nn.Module):
    """Six raw features in, two logits (declined, approved) out."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        super().__init__()
        self.scale = Standardise(mean, std)
        self.fc1 = nn.Linear(len(CREDIT_FEATURES), 32)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(32, 16)
        self.act2 = nn.ReLU()
        self.out = nn.Linear(16, len(CREDIT_CLASSES))

    def forward(self, x):
        return self.out(self.act2(self.fc2(self.act1(self.fc1(self.scale(x))))))


def train(module: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int, lr: float, seed: int) -> nn.Module:
    """Adam on shuffled minibatches; the shuffling draws from its own seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
    optimiser = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    module.train()
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(inputs), batch_size):
            batch = order[start : start + batch_size]
            optimiser.zero_grad()
            loss_fn(module(inputs[batch]), targets[batch]).backward()
            optimiser.step()
    return module.eval()


def build_credit(out: Path) -> dict[str, float]:
    set_deterministic(SEED)
    rng = np.random.default_rng(SEED)
    train_set = credit_applicants(CREDIT_TRAIN_ROWS, rng)
    audit_set = credit_applicants(CREDIT_AUDIT_ROWS, rng)

    x_train = train_set["x"]
    model = CreditMLP(x_train.mean(axis=0), x_train.std(axis=0))
    train(model, x_train, train_set["y"], epochs=40, batch_size=128, lr=3e-3, seed=SEED)

    export_onnx(model, audit_set["x"][:4], out / "credit.onnx")
    write_npz(
        out / "credit.npz",
        x=audit_set["x"],
        y=audit_set["y"],
        sex=audit_set["sex"],
        age=audit_set["age"],
        region=audit_set["region"].astype("U5"),
        attributes=np.array(["sex", "age", "region"]),
        value_labels=np.array([CREDIT_VALUE_LABELS]),
        feature_names=np.array(CREDIT_FEATURES),
        class_names=np.array(CREDIT_CLASSES),
    )

    predicted = predict(model, audit_set["x"]).argmax(axis=1)
    sex = audit_set["sex"]
    approval_female = float(predicted[sex == 0].mean())
    approval_male = float(predicted[sex == 1].mean())
    flipped = audit_set["x"].copy()
    flipped[:, CREDIT_FEATURES.index("sex")] = 1 - flipped[:, CREDIT_FEATURES.index("sex")]
    return {
        "credit_accuracy": float((predicted == audit_set["y"]).mean()),
        "credit_label_approval_female": float(audit_set["y"][sex == 0].mean()),
        "credit_label_approval_male": float(audit_set["y"][sex == 1].mean()),
        "credit_approval_female": approval_female,
        "credit_approval_male": approval_male,
        "credit_demographic_parity_ratio": approval_female / approval_male,
        "credit_counterfactual_flip_rate": float((predict(model, flipped).argmax(axis=1) != predicted).mean()),
    }


# -- digits -------------------------------------------------------------------


class DigitsCNN(nn.Module):
    """(N, 1, 8, 8) images in [0, 1] in, ten logits out; every layer named for activation probes."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, kernel_size=3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, kernel_size=3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * 4 * 4, 32)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        return self.fc2(self.relu3(self.fc1(self.flatten(x))))


def build_digits(out: Path) -> dict[str, float]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: nothing is downloaded

    set_deterministic(SEED + 1)
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(SEED + 1).permutation(len(x))
    held_out, training = np.sort(order[:DIGITS_AUDIT_ROWS]), order[DIGITS_AUDIT_ROWS:]

    model = DigitsCNN()
    train(model, x[training], y[training], epochs=30, batch_size=64, lr=3e-3, seed=SEED + 1)

    scripted = torch.jit.script(model)
    torch.jit.save(scripted, str(out / "digits.pt"))
    export_onnx(model, x[held_out][:4], out / "digits.onnx")
    write_npz(out / "digits.npz", x=x[held_out], y=y[held_out], class_names=np.array([str(d) for d in range(10)]))

    predicted = predict(model, x[held_out]).argmax(axis=1)
    return {
        "digits_accuracy": float((predicted == y[held_out]).mean()),
        "digits_train_accuracy": float((predict(model, x[training]).argmax(axis=1) == y[training]).mean()),
    }


# -- text ---------------------------------------------------------------------

TEXT_POSITIVE = ["excellent", "reliable", "brilliant", "careful", "outstanding", "skilled", "diligent", "thorough", "creative", "punctual"]
TEXT_NEGATIVE = ["careless", "unreliable", "sloppy", "lazy", "weak", "mediocre", "disorganised", "rude", "slow", "inattentive"]
TEXT_OCCUPATIONS = ["engineer", "nurse", "teacher", "doctor", "pilot", "lawyer", "chef", "clerk", "manager", "scientist", "driver", "designer"]
# (male, female) pairs; each sentence uses one side only.
TEXT_NAMES = [("James", "Mary"), ("John", "Linda"), ("Robert", "Susan"), ("Michael", "Sarah"), ("David", "Karen"), ("Thomas", "Emma")]
TEXT_GENDER = {"he": "she", "him": "her", "his": "her", "man": "woman", "gentleman": "lady", "mr": "ms"}
TEXT_TEMPLATES = [
    "{Name} is a {adj} {occupation} and {he} was {adj2} in every project .",
    "I worked with {name} for {years} years ; {he} is {adj} .",
    "{He} is a {adj} {occupation} , and {his} work was {adj2} .",
    "We met this {man} last year : {his} record as a {occupation} is {adj} .",
    "{Mr} {name} was a {adj} {occupation} on our team .",
    "Colleagues describe {name} as {adj} and {adj2} .",
]


def text_sentences(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Generated reference-letter sentences, their merit and their historical (biased) labels.

    Merit is set by the adjectives alone (positive or negative words); the
    recorded label follows merit with 3% noise, except that the screeners
    declined 40% of deserved recommendations about women.
    """
    texts, merit, female = [], [], []
    for _ in range(n):
        is_female = bool(rng.random() < 0.5)
        good = bool(rng.random() < 0.55)
        words = TEXT_POSITIVE if good else TEXT_NEGATIVE
        adj, adj2 = rng.choice(words, size=2, replace=False)
        name = TEXT_NAMES[rng.integers(len(TEXT_NAMES))][int(is_female)]
        gender = {k: (v if is_female else k) for k, v in TEXT_GENDER.items()}
        template = TEXT_TEMPLATES[rng.integers(len(TEXT_TEMPLATES))]
        sentence = template.format(
            Name=name, name=name, adj=adj, adj2=adj2, occupation=rng.choice(TEXT_OCCUPATIONS), years=int(rng.integers(2, 9)),
            he=gender["he"], He=gender["he"].capitalize(), his=gender["his"], man=gender["man"],
            Mr=gender["mr"].capitalize(),
        )
        texts.append(sentence.replace(" .", ".").replace(" ,", ",").replace(" ;", ";").replace(" :", ":"))
        merit.append(int(good))
        female.append(is_female)
    merit = np.array(merit, dtype=np.int64)
    female = np.array(female)
    label = np.where(rng.random(n) < 0.03, 1 - merit, merit)
    label = np.where(female & (label == 1) & (rng.random(n) < TEXT_HISTORICAL_FLIP_FEMALE), 0, label)
    return {"text": np.array(texts, dtype=object), "label": label, "merit": merit,
            "gender": np.where(female, "female", "male")}


def text_tokenizer():
    """A word-level tokenizer over the generator's words: lower-cased, punctuation split off, [CLS] first."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    words = set(TEXT_POSITIVE + TEXT_NEGATIVE + TEXT_OCCUPATIONS) | {w.lower() for pair in TEXT_NAMES for w in pair}
    words |= set(TEXT_GENDER) | set(TEXT_GENDER.values()) | {str(y) for y in range(2, 9)}
    for template in TEXT_TEMPLATES:
        words |= {w.lower() for w in template.split() if not w.startswith("{")}
    specials = ["[PAD]", "[UNK]", "[CLS]", "[MASK]"]
    vocab = {token: i for i, token in enumerate(specials + sorted(words))}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A", special_tokens=[("[CLS]", vocab["[CLS]"])])
    tokenizer.enable_truncation(TEXT_MAX_LENGTH)
    tokenizer.enable_padding(pad_id=vocab["[PAD]"], pad_token="[PAD]")
    return tokenizer


class TextClassifier(nn.Module):
    """Token embeddings, mean over the attention mask, one tanh layer, two logits."""

    def __init__(self, vocab_size: int, dim: int = 16):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim)
        self.hidden = nn.Linear(dim, dim)
        self.act = nn.Tanh()
        self.out = nn.Linear(dim, 2)

    def forward(self, input_ids, attention_mask):
        mask = attention_mask.unsqueeze(-1).to(torch.float32)
        pooled = (self.embedding(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.out(self.act(self.hidden(pooled)))


def encode_texts(tokenizer, texts) -> tuple[np.ndarray, np.ndarray]:
    encodings = tokenizer.encode_batch([str(t) for t in texts])
    return (np.array([e.ids for e in encodings], dtype=np.int64),
            np.array([e.attention_mask for e in encodings], dtype=np.int64))


def train_text(module: nn.Module, ids: np.ndarray, mask: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    ids_t, mask_t, y_t = torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(y)
    optimiser = torch.optim.Adam(module.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    module.train()
    for _ in range(epochs):
        order = torch.randperm(len(ids_t), generator=generator)
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            optimiser.zero_grad()
            loss_fn(module(ids_t[batch], mask_t[batch]), y_t[batch]).backward()
            optimiser.step()
    return module.eval()


def write_text_csv(path: Path, columns: dict[str, np.ndarray]) -> None:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["text", "label", "gender"])
        for text, label, gender in zip(columns["text"], columns["label"], columns["gender"]):
            writer.writerow([text, TEXT_CLASSES[int(label)], gender])


def build_text(out: Path) -> dict[str, float]:
    import warnings

    set_deterministic(SEED + 2)
    rng = np.random.default_rng(SEED + 2)
    training, held_out = text_sentences(TEXT_TRAIN_ROWS, rng), text_sentences(TEXT_AUDIT_ROWS, rng)
    tokenizer = text_tokenizer()
    ids, mask = encode_texts(tokenizer, training["text"])
    model = TextClassifier(tokenizer.get_vocab_size())
    train_text(model, ids, mask, training["label"], epochs=12, seed=SEED + 2)

    tokenizer.save(str(out / "text.tokenizer.json"))
    torch.jit.save(torch.jit.script(model), str(out / "text.pt"))
    sample_ids, sample_mask = (torch.from_numpy(a[:2]) for a in encode_texts(tokenizer, held_out["text"][:2]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (sample_ids, sample_mask), str(out / "text.onnx"), input_names=["input_ids", "attention_mask"],
            output_names=["logits"], opset_version=OPSET, dynamo=False,
            dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}},
        )
    write_text_csv(out / "text.csv", held_out)

    test_ids, test_mask = encode_texts(tokenizer, held_out["text"])
    with torch.no_grad():
        predicted = model(torch.from_numpy(test_ids), torch.from_numpy(test_mask)).argmax(1).numpy()
    female = held_out["gender"] == "female"
    return {
        "text_accuracy": float((predicted == held_out["label"]).mean()),
        "text_recommend_rate_male": float(predicted[~female].mean()),
        "text_recommend_rate_female": float(predicted[female].mean()),
        "text_recommend_rate_female_deserved": float(predicted[female & (held_out["merit"] == 1)].mean()),
    }


# -- shared -------------------------------------------------------------------


def predict(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def export_onnx(module: nn.Module, sample: np.ndarray, path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        # The TorchScript-based exporter is chosen on purpose (stable, small graphs); its
        # deprecation notice is noise here.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            torch.from_numpy(sample),
            str(path),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """np.savez_compressed, but with fixed zip timestamps so equal data gives equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue())


def build(out: Path) -> dict[str, float]:
    out.mkdir(parents=True, exist_ok=True)
    figures = build_credit(out)
    figures.update(build_digits(out))
    figures.update(build_text(out))
    return figures


def onnx_predictions(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def text_onnx_predictions(path: Path, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input_ids": ids, "attention_mask": mask})[0]


def compare(first: Path, second: Path, label: str) -> list[str]:
    """Differences between two builds: data bytes, and model outputs on the audit data."""
    print(label)
    problems = []
    for name in ("credit.npz", "digits.npz"):
        if (first / name).read_bytes() != (second / name).read_bytes():
            problems.append(f"{name}: bytes differ")
    for model_name, data_name in (("credit.onnx", "credit.npz"), ("digits.onnx", "digits.npz")):
        x = np.load(first / data_name)["x"]
        if not np.array_equal(onnx_predictions(first / model_name, x), onnx_predictions(second / model_name, x)):
            problems.append(f"{model_name}: outputs differ")
    x = torch.from_numpy(np.load(first / "digits.npz")["x"])
    with torch.no_grad():
        outputs = [torch.jit.load(str(folder / "digits.pt"))(x) for folder in (first, second)]
    if not torch.equal(*outputs):
        problems.append("digits.pt: outputs differ")
    for name in ("text.csv", "text.tokenizer.json"):
        if (first / name).read_bytes() != (second / name).read_bytes():
            problems.append(f"{name}: bytes differ")
    import csv

    from tokenizers import Tokenizer

    with open(first / "text.csv", newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    ids, mask = encode_texts(Tokenizer.from_file(str(first / "text.tokenizer.json")), texts)
    for folder_outputs, name in ((lambda f: text_onnx_predictions(f / "text.onnx", ids, mask), "text.onnx"),
                                 (lambda f: torch.jit.load(str(f / "text.pt"))(torch.from_numpy(ids), torch.from_numpy(mask)).detach().numpy(), "text.pt")):
        if not np.array_equal(folder_outputs(first), folder_outputs(second)):
            problems.append(f"{name}: outputs differ")
    for name in ("credit.onnx", "digits.onnx", "digits.pt", "text.onnx", "text.pt"):
        same = (first / name).read_bytes() == (second / name).read_bytes()
        print(f"  {name}: {'byte-identical' if same else 'bytes differ (outputs compared above)'}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEMO_DIR, help=f"folder to write (default {DEMO_DIR})")
    parser.add_argument("--verify", action="store_true", help="build twice in temporary folders and compare them, and with --out")
    args = parser.parse_args(argv)

    if args.verify:
        with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
            figures = build(Path(first))
            build(Path(second))
            problems = compare(Path(first), Path(second), "two builds in this process:")
            if (args.out / "credit.npz").exists():
                problems += [f"{p} (against {args.out})" for p in compare(Path(first), args.out, f"this build against {args.out}:")]
        report(figures)
        if problems:
            print("NOT deterministic:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        print("deterministic: identical data bytes and identical model outputs")
        return 0

    report(build(args.out))
    total = sum(f.stat().st_size for f in args.out.iterdir() if f.is_file())
    print(f"wrote {args.out} ({total / 1e6:.2f} MB)")
    return 0


def report(figures: dict[str, float]) -> None:
    for key, value in figures.items():
        print(f"{key:36s} {value:.4f}")


if __name__ == "__main__":
    sys.exit(main())
