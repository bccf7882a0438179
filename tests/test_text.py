"""Text classifiers: token-id models with a tokenizer, text data, and the text analyses checked against closed forms and Captum."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo"


def word_tokenizer(words, path, cls=True, max_length=32):
    """A word-level tokenizer over ``words``: [PAD]=0, [UNK]=1, [CLS]=2, [MASK]=3, then the words."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[MASK]"] + sorted(set(words)))}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    if cls:
        tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A", special_tokens=[("[CLS]", 2)])
    tokenizer.enable_truncation(max_length)
    tokenizer.save(str(path))
    return vocab


class CountModel(nn.Module):
    """Logits [0, c * (number of `token` ids)]: P(class 1) = sigmoid(c * count)."""

    def __init__(self, token: int, c: float):
        super().__init__()
        self.token, self.c = token, c

    def forward(self, input_ids, attention_mask):
        count = ((input_ids == self.token).to(torch.float32) * attention_mask.to(torch.float32)).sum(1)
        return torch.stack([torch.zeros_like(count), self.c * count], dim=1)


def _make_demo():
    """examples/make_demo.py, which defines the demo text classifier's architecture (loaded as a file: it is a script)."""
    import importlib.util

    import os

    spec = importlib.util.spec_from_file_location("make_demo", DEMO.parent / "make_demo.py")
    module = importlib.util.module_from_spec(spec)
    environment = dict(os.environ)
    try:
        spec.loader.exec_module(module)
    finally:  # the script pins thread variables for its own runs; the test session keeps its own
        os.environ.clear()
        os.environ.update(environment)
    return module


def load_text_model(path, **options):
    from audit.models import LoadOptions, load

    return load(path, LoadOptions(device="cpu", **options))


def demo_twin():
    scripted = torch.jit.load(str(DEMO / "text.pt"))
    state = scripted.state_dict()
    # The torch twin Captum explains: the demo's own architecture with the shipped weights.
    twin = _make_demo().TextClassifier(state["embedding.weight"].shape[0])
    twin.load_state_dict(state)
    return twin.eval()


def demo_texts(n=None):
    import csv

    with open(DEMO / "text.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return rows[:n] if n else rows


# -- loading ---------------------------------------------------------------------------
def test_demo_models_load_as_text_models_and_match_the_torch_twin():
    twin = demo_twin()
    tokenizer_json = json.loads((DEMO / "text.tokenizer.json").read_text())
    texts = [r["text"] for r in demo_texts(50)]
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(DEMO / "text.tokenizer.json"))
    tokenizer.no_padding()
    expected = []
    with torch.no_grad():
        for text in texts:  # one at a time: no padding at all
            ids = torch.tensor([tokenizer.encode(text).ids])
            expected.append(torch.softmax(twin(ids, torch.ones_like(ids)), 1)[0].numpy())
    for name in ("text.onnx", "text.pt"):
        model = load_text_model(DEMO / name)
        assert model.modality == "text" and model.tokenizer_path.name == "text.tokenizer.json"
        assert model.max_length == tokenizer_json["truncation"]["max_length"] == 48
        assert model.max_length_source == "the tokenizer's truncation setting"
        got = model.predict(np.array(texts, dtype=object))
        np.testing.assert_allclose(got, np.array(expected), atol=1e-5)
        assert model.counters.forward_rows == len(texts)
        assert model.counters.forward_seconds > 0
    assert "token_gradients" in load_text_model(DEMO / "text.pt").capabilities
    assert "token_gradients" in load_text_model(DEMO / "text.onnx").capabilities  # through its checked torch conversion


def test_a_torch_export_text_model_gives_the_torchscript_scores_and_token_ig(tmp_path):
    from audit_attribution._text import integrated_gradients

    ids, mask = torch.tensor([[2, 10, 20, 30, 40]] * 2), torch.ones(2, 5, dtype=torch.int64)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", max=64)
    program = torch.export.export(demo_twin(), (ids, mask), dynamic_shapes={"input_ids": {0: batch, 1: sequence},
                                                                          "attention_mask": {0: batch, 1: sequence}})
    torch.export.save(program, str(tmp_path / "text.pt2"))
    exported = load_text_model(tmp_path / "text.pt2", tokenizer=str(DEMO / "text.tokenizer.json"))
    scripted = load_text_model(DEMO / "text.pt")
    assert exported.format == "torch.export+tokenizer" and "token_gradients" in exported.capabilities
    texts = np.array([r["text"] for r in demo_texts(30)], dtype=object)
    np.testing.assert_allclose(exported.predict(texts), scripted.predict(texts), atol=1e-6)
    sequences, special = exported.encode(texts[:5])
    targets = np.ones(5, dtype=np.int64)
    for a, b in zip(integrated_gradients(exported, sequences, special, targets), integrated_gradients(scripted, sequences, special, targets)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_length_batches_pad_little_and_truncate_at_the_max_length(tmp_path):
    vocab = word_tokenizer(["good", "bad", "word"], tmp_path / "m.tokenizer.json", max_length=6)
    torch.jit.save(torch.jit.script(CountModel(vocab["good"], 1.0)), str(tmp_path / "m.pt"))
    model = load_text_model(tmp_path / "m.pt", batch_size=2)
    widths = []
    runner = model.runner.__call__

    def spy(ids, mask, type_ids):
        widths.append(ids.shape[1])
        return runner(ids, mask, type_ids)

    model.runner = type("Spy", (), {"__call__": staticmethod(spy), "release_memory": lambda self: None})()
    texts = ["good", "good good good good good good good good", "bad good", "word"]
    p = model.predict(np.array(texts, dtype=object))
    # [CLS] + at most 5 words: the long text counts 5 'good' tokens, not 8.
    np.testing.assert_allclose(p[:, 1], 1 / (1 + np.exp(-np.array([1.0, 5.0, 1.0, 0.0]))), atol=1e-6)
    assert sorted(widths) == [2, 6]  # two short rows together, then the two longer ones


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_an_onnx_model_with_a_fixed_sequence_length_truncates_and_pads_to_it(tmp_path):
    vocab = word_tokenizer(["good", "bad"], tmp_path / "m.tokenizer.json", max_length=32)
    ids, mask = torch.ones(2, 4, dtype=torch.int64), torch.ones(2, 4, dtype=torch.int64)
    torch.onnx.export(CountModel(vocab["good"], 1.0), (ids, mask), str(tmp_path / "m.onnx"), input_names=["input_ids", "attention_mask"],
                      output_names=["logits"], dynamic_axes={"input_ids": {0: "b"}, "attention_mask": {0: "b"}}, opset_version=17, dynamo=False)
    model = load_text_model(tmp_path / "m.onnx")
    assert (model.max_length, model.max_length_source) == (4, "the model's fixed input length")
    p = model.predict(np.array(["good", "good good good good good", "bad"], dtype=object))
    # [CLS] + 3 words fit: the long text counts 3 'good' tokens; short ones are padded to 4.
    np.testing.assert_allclose(p[:, 1], 1 / (1 + np.exp(-np.array([1.0, 3.0, 0.0]))), atol=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_token_id_model_without_tokenizer_is_refused(cli, tmp_path):
    module = CountModel(5, 1.0)
    torch.jit.save(torch.jit.script(module), str(tmp_path / "ids.pt"))
    (tmp_path / "data.csv").write_text("text,label\nhello,0\nworld,1\n")
    ids, mask = torch.ones(2, 3, dtype=torch.int64), torch.ones(2, 3, dtype=torch.int64)
    torch.onnx.export(module, (ids, mask), str(tmp_path / "ids.onnx"), input_names=["input_ids", "attention_mask"],
                      output_names=["logits"], dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}},
                      opset_version=17, dynamo=False)
    for name in ("ids.pt", "ids.onnx"):
        code, out, err = cli("run", tmp_path / name, "--data", tmp_path / "data.csv", "--text", "text", "--label", "label")
        assert code == 2, (out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in err
        assert "token ids" in lines[0] and "--tokenizer" in lines[0]
    assert not (tmp_path / "audit.db").exists()


def test_explicit_tokenizer_and_modality_mismatches(cli, tmp_path, assets):
    vocab = word_tokenizer(["good", "bad"], tmp_path / "vocab.json")
    torch.jit.save(torch.jit.script(CountModel(vocab["good"], 1.0)), str(tmp_path / "m.pt"))
    (tmp_path / "data.csv").write_text("text,label\ngood,1\nbad,0\n")
    code, out, err = cli("run", tmp_path / "m.pt", "--tokenizer", tmp_path / "vocab.json", "--data", tmp_path / "data.csv",
                         "--text", "text", "--label", "label", "-a", "performance", "--min-rows", "2")
    assert code == 0, err
    # A text model on numeric data, and a numeric model on text data: refused, never fed the wrong thing.
    code, _, err = cli("run", tmp_path / "m.pt", "--tokenizer", tmp_path / "vocab.json", "--data", assets.data_npz)
    assert code == 2 and "text column" in err
    code, _, err = cli("run", assets.mlp_onnx, "--data", tmp_path / "data.csv", "--text", "text")
    assert code == 2 and "the data is text but the model takes numbers" in err
    code, _, err = cli("run", tmp_path / "m.pt", "--tokenizer", tmp_path / "missing.json", "--data", tmp_path / "data.csv", "--text", "text")
    assert code == 2 and "no such file" in err
    (tmp_path / "broken.json").write_text("{not json")
    code, _, err = cli("run", tmp_path / "m.pt", "--tokenizer", tmp_path / "broken.json", "--data", tmp_path / "data.csv", "--text", "text")
    assert code == 2 and "tokenizer.json" in err and len(err.strip().splitlines()) == 1


# -- data ------------------------------------------------------------------------------
def test_text_data_from_csv_jsonl_and_parquet(tmp_path):
    import pandas as pd

    from audit.data import DataOptions, load

    frame = pd.DataFrame({"review": ["good, really", "bad", "fine"], "label": ["pos", "neg", "pos"], "gender": ["f", "m", "f"]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in frame.to_dict("records")) + "\n")
    for name in ("d.csv", "d.parquet", "d.jsonl"):
        data = load(tmp_path / name, DataOptions(text="review", label="label", attributes=["gender"]))
        assert data.modality == "text" and list(data.x) == ["good, really", "bad", "fine"]
        assert data.class_names == ["neg", "pos"] and data.y.tolist() == [1, 0, 1]
        assert data.attributes["gender"].tolist() == ["f", "m", "f"]
    (tmp_path / "gap.jsonl").write_text('{"review": "ok", "label": 1}\n{"label": 0}\n')
    from audit.errors import AuditError

    with pytest.raises(AuditError, match="first at row 2"):
        load(tmp_path / "gap.jsonl", DataOptions(text="review", label="label"))
    with pytest.raises(AuditError, match="no text column 'body'"):
        load(tmp_path / "d.csv", DataOptions(text="body"))


# -- counterfactual identity-term substitution -----------------------------------------
def test_swapper_swaps_slot_aligned_terms_keeping_case():
    from audit_bias._text import Swapper

    swapper = Swapper({"male": ["he", "his", "james"], "female": ["she", "her", "mary"]})
    assert swapper.source_group("She said James met her") == "female"
    assert swapper.swap("She gave James her book.", "female", "male") == "He gave Mary his book."
    assert swapper.source_group("nothing here") is None


# The demo's own name pairs (examples/make_demo.py), a user term set in the tests below.
DEMO_NAMES = {"male": ["james", "john", "robert", "michael", "david", "thomas"],
              "female": ["mary", "linda", "susan", "sarah", "karen", "emma"]}
TEXT_OPTIONS = {"text_term_sets": ["gender"], "term_sets": {"demo_names": DEMO_NAMES}}


def gender_blind_demo(path):
    """The demo TorchScript model with each gender term sharing one embedding with its counterparts: it cannot see gender."""
    from audit_bias._text_terms import TERM_SETS

    scripted = torch.jit.load(str(DEMO / "text.pt"))
    vocab = json.loads((DEMO / "text.tokenizer.json").read_text())["model"]["vocab"]
    weight = scripted.embedding.weight
    with torch.no_grad():
        for groups in (TERM_SETS["gender"], DEMO_NAMES):
            first = {}
            for male, female in zip(groups["male"], groups["female"]):
                if male in vocab and female in vocab:
                    first.setdefault(female, male)
                    weight[vocab[male]] = weight[vocab[first[female]]]
                    weight[vocab[female]] = weight[vocab[first[female]]]
    torch.jit.save(scripted, str(path / "blind.pt"))
    shutil.copy(DEMO / "text.tokenizer.json", path / "blind.tokenizer.json")
    return path / "blind.pt"


def counterfactual_findings(model_path, data_path):
    from audit.data import DataOptions, load
    from audit.runner import execute
    from audit_bias import Counterfactual

    model = load_text_model(model_path)
    data = load(data_path, DataOptions(text="text", label="label", attributes=["gender"]))
    probabilities, logits = model.predict_both(data.x)
    outcome = execute(Counterfactual(Counterfactual.Options(**TEXT_OPTIONS)), model, data, seed=0, predictions=probabilities, logits=logits)
    assert outcome.status == "ok", outcome.reason
    return outcome


def test_counterfactual_on_the_demo_finds_the_gender_dependence_and_not_on_a_blind_control(tmp_path):
    biased = counterfactual_findings(DEMO / "text.pt", DEMO / "text.csv")
    blind = counterfactual_findings(gender_blind_demo(tmp_path), DEMO / "text.csv")
    rows = len(demo_texts())

    def by(outcome, kind):
        return {(r.subject, r.group): r for r in outcome.records if getattr(r, "name", None) == kind}

    import re

    from audit_bias._text_terms import TERM_SETS

    words = [set(re.findall(r"\w+", r["text"].lower())) for r in demo_texts()]
    sets = {"gender": TERM_SETS["gender"], "demo_names": DEMO_NAMES}
    with_terms = {s: sum(bool(w & {t for g in sets[s].values() for t in g}) for w in words) for s in sets}
    flips, shifts = by(biased, "counterfactual_flip_rate"), by(biased, "counterfactual_score_shift")
    assert flips[("gender", "female->male")].value > 0.1 and flips[("demo_names", "female->male")].value > 0.1
    assert shifts[("gender", "female->male")].value > 0.05  # P(recommend) rises when she becomes he
    assert shifts[("gender", "male->female")].value < -0.05
    # The two directions cover every text with gender words, once each.
    assert flips[("gender", "female->male")].count + flips[("gender", "male->female")].count == with_terms["gender"] < rows
    for record in by(blind, "counterfactual_flip_rate").values():
        assert record.value == 0.0 and record.upper < 0.02
    for record in by(blind, "counterfactual_score_shift").values():
        # Same embeddings, other batch neighbours: equal up to the rounding of batched float32 kernels.
        assert abs(record.value) < 1e-7
    findings = [r for r in biased.records if type(r).__name__ == "Finding"]
    assert any(f.subject == "gender" and not f.passed and "female terms for male terms" in f.message for f in findings) or \
        any(f.subject == "gender" and not f.passed and "terms" in f.message for f in findings)
    # Verdicts rest on intervals (issue 13): no shift passes; no flip in the few texts per swap cannot show the
    # flip rate is under 1%, so it is inconclusive and says how many texts would show it (it never fails).
    for finding in (r for r in blind.records if type(r).__name__ == "Finding"):
        if finding.check == "counterfactual_score_shift":
            assert finding.passed, finding.message
        else:
            assert finding.value == 0.0 and finding.verdict in ("passed", "inconclusive"), finding.message
            assert finding.passed or finding.details["needs_rows"] > finding.rows
    # One batched call for all variants: forward rows = variants (each row once per other group of each set).
    assert biased.forward_rows == with_terms["gender"] + with_terms["demo_names"]  # one row per variant, nothing else


def test_a_model_that_ignores_the_swapped_tokens_shows_exactly_no_shift(tmp_path):
    from audit.data import DataOptions, load
    from audit.runner import execute
    from audit_bias import Counterfactual

    vocab = word_tokenizer(["good", "bad", "he", "she", "his", "her", "him", "mary", "james", "is", "was", "a", "nurse"],
                           tmp_path / "m.tokenizer.json")
    torch.jit.save(torch.jit.script(CountModel(vocab["good"], 0.7)), str(tmp_path / "m.pt"))
    texts = ["he is good", "she was a good nurse", "Mary is bad", "his nurse was good good", "James is a nurse", "her"] * 10
    (tmp_path / "d.csv").write_text("text,label\n" + "\n".join(f"{t},{int('good' in t)}" for t in texts) + "\n")
    model = load_text_model(tmp_path / "m.pt")
    data = load(tmp_path / "d.csv", DataOptions(text="text", label="label"))
    probabilities, logits = model.predict_both(data.x)
    outcome = execute(Counterfactual(Counterfactual.Options()), model, data, seed=0, predictions=probabilities, logits=logits)
    metrics = [r for r in outcome.records if type(r).__name__ == "Metric"]
    assert {m.subject for m in metrics} == {"gender", "names"}
    for metric in metrics:
        assert metric.value == 0.0, metric
    findings = [r for r in outcome.records if type(r).__name__ == "Finding"]
    assert findings and all(f.value == 0.0 and not f.failed for f in findings)
    # Exactly no shift: a zero-width paired interval passes. No flip in ~30 texts is not yet evidence of a flip
    # rate under 1% (Wilson upper bound ~0.11): inconclusive, never failed (issue 13).
    assert all(f.passed for f in findings if f.check == "counterfactual_score_shift")
    assert all(f.verdict == "inconclusive" and f.upper > 0.01 for f in findings if f.check == "counterfactual_flip_rate")


def test_shipped_term_sets_on_the_demo_note_absent_sets_and_unknown_terms():
    from audit.data import DataOptions, load
    from audit.runner import execute
    from audit_bias import Counterfactual

    model = load_text_model(DEMO / "text.onnx")
    data = load(DEMO / "text.csv", DataOptions(text="text", label="label"))  # no attributes needed for term swaps
    probabilities, logits = model.predict_both(data.x)
    outcome = execute(Counterfactual(Counterfactual.Options()), model, data, seed=0, predictions=probabilities, logits=logits)
    assert outcome.status == "ok", outcome.reason
    assert any("religion, nationality" in note for note in outcome.notes)
    assert any(note.startswith("names: 28 term(s) are unknown to the tokenizer") for note in outcome.notes), outcome.notes
    assert {r.subject for r in outcome.records if type(r).__name__ == "Finding"} == {"gender", "names"}


def test_user_term_sets_extend_and_are_checked():
    from audit_bias import Counterfactual
    from audit_bias._text import term_sets

    from audit.errors import AuditError

    options = Counterfactual.Options(text_term_sets=["gender"], term_sets={"gender": {"male": ["fireman"], "female": ["firewoman"]}})
    sets = term_sets(options)
    assert list(sets) == ["gender"] and sets["gender"]["male"][-1] == "fireman" and sets["gender"]["female"][-1] == "firewoman"
    with pytest.raises(AuditError, match="different numbers of terms"):
        term_sets(Counterfactual.Options(term_sets={"gender": {"male": ["fireman"]}}))
    with pytest.raises(AuditError, match="unknown term set"):
        term_sets(Counterfactual.Options(text_term_sets=["planets"]))


# -- corruptions -----------------------------------------------------------------------
def test_text_corruptions_edit_the_stated_share_and_severity_zero_is_identity():
    from audit_robustness._text import TEXT_CORRUPTIONS, corrupt_text, keyboard_neighbours

    rng = np.random.default_rng(0)
    text = " ".join(["alpha", "beta", "gamma", "delta"] * 250)
    for name in TEXT_CORRUPTIONS:
        assert corrupt_text(text, name, 0, rng) == text
    dropped = corrupt_text(text, "word_dropout", 5, rng)  # half the words dropped
    assert abs(len(dropped.split()) / 1000 - 0.5) < 0.05
    swapped = corrupt_text(text, "typo_swap", 3, rng).split()
    changed = sum(a != b for a, b in zip(swapped, text.split()))
    assert abs(changed / 1000 - 0.2) < 0.04 and len(swapped) == 1000
    assert set(keyboard_neighbours("s")) == set("weadzx") and keyboard_neighbours("S") == keyboard_neighbours("s").upper()
    assert set(keyboard_neighbours("a")) == {"q", "w", "s", "z"}


def test_corruptions_on_a_model_that_ignores_case_and_punctuation_never_flip(tmp_path):
    from audit.data import DataOptions, load
    from audit.runner import execute
    from audit_robustness import Corruptions

    # Lower-casing tokenizer, whitespace+punctuation split: case edits and punctuation marks change no 'good' count.
    vocab = word_tokenizer(["good", "bad", ",", ".", ";", ":", "!", "?"], tmp_path / "m.tokenizer.json")
    torch.jit.save(torch.jit.script(CountModel(vocab["good"], 1.0)), str(tmp_path / "m.pt"))
    rows = ["good bad good", "bad bad", "good", "bad good bad bad"] * 20
    (tmp_path / "d.csv").write_text("text,label\n" + "\n".join(f"{t},{int(t.count('good') > 0)}" for t in rows) + "\n")
    model = load_text_model(tmp_path / "m.pt")
    data = load(tmp_path / "d.csv", DataOptions(text="text", label="label"))
    probabilities, logits = model.predict_both(data.x)
    options = Corruptions.Options(corruptions=["case", "punctuation", "word_dropout"], severities=[0, 3, 5])
    outcome = execute(Corruptions(options), model, data, seed=0, predictions=probabilities, logits=logits)
    assert outcome.status == "ok", outcome.reason
    metric = {(r.name, r.subject): r.value for r in outcome.records if type(r).__name__ == "Metric"}
    clean = metric[("clean_accuracy", None)]
    for name in ("case", "punctuation", "word_dropout"):
        assert metric[("accuracy", f"{name} s=0")] == clean
    for s in (3, 5):
        assert metric[("flip_rate", f"case s={s}")] == 0.0
        assert metric[("flip_rate", f"punctuation s={s}")] == 0.0
    assert metric[("flip_rate", "word_dropout s=5")] > 0.05
    assert outcome.forward_rows == 9 * len(rows)  # one batched call: 3 corruptions x 3 severities


def test_word_attack_breaks_exactly_the_texts_that_rest_on_one_word_and_counts_its_queries(tmp_path):
    from audit.data import DataOptions, load
    from audit.runner import execute
    from audit_robustness import BlackBoxAttack
    from audit_robustness._text_attack import candidates

    assert candidates("good") == ["ogod", "godo", "god", "tood", "goid", "GOOD"]  # swaps, drops, keyboard, case; spread
    assert all(c != "good" for c in candidates("good")) and len(candidates("keyboard")) == 6
    vocab = word_tokenizer(["good", "bad", "day", "it", "was", "a"], tmp_path / "m.tokenizer.json")
    torch.jit.save(torch.jit.script(CountModel(vocab["good"], 2.0)), str(tmp_path / "m.pt"))
    # Class 1 rests on one 'good' (any typo in it makes an unknown token: a tie, read as class 0);
    # two 'good's survive the one edit a four-word text allows; class 0 texts have no 'good' to lose.
    texts = ["it was a good day", "good good bad day", "it was a bad day", "bad bad bad day"] * 5
    (tmp_path / "d.csv").write_text("text,label\n" + "\n".join(f"{t},{int('good' in t)}" for t in texts) + "\n")
    model = load_text_model(tmp_path / "m.pt")
    data = load(tmp_path / "d.csv", DataOptions(text="text", label="label"))
    probabilities, logits = model.predict_both(data.x)
    outcome = execute(BlackBoxAttack(BlackBoxAttack.Options(budget=50)), model, data, seed=0, predictions=probabilities, logits=logits)
    assert outcome.status == "ok", outcome.reason
    metric = {r.name: r.value for r in outcome.records if type(r).__name__ == "Metric"}
    assert metric["clean_accuracy"] == 1.0 and metric["robust_accuracy"] == 0.75 and metric["attack_success_rate"] == 0.25
    # A broken text: 5 importance queries, then every candidate edit of 'good' in one step.
    assert metric["median_queries_successful"] == 5 + len(candidates("good"))
    assert outcome.forward_rows == metric["queries_total"]


class TokenMLP(nn.Module):
    """Per-token hidden layer, then a masked mean: its hidden states have a token axis."""

    def __init__(self, vocab_size: int, dim: int = 8):
        super().__init__()
        torch.manual_seed(0)
        self.embedding = nn.Embedding(vocab_size, dim)
        self.token_layer = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, 2)

    def forward(self, input_ids, attention_mask):
        mask = attention_mask.unsqueeze(-1).to(torch.float32)
        hidden = torch.tanh(self.token_layer(self.embedding(input_ids)))
        return self.out((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_hidden_states_of_an_onnx_text_model_are_pooled_over_the_attention_mask(tmp_path):
    vocab = word_tokenizer(["he", "she", "is", "a", "good", "bad", "nurse"], tmp_path / "m.tokenizer.json")
    module = TokenMLP(len(vocab)).eval()
    ids, mask = torch.tensor([[2, 4, 5, 6]] * 2), torch.ones(2, 4, dtype=torch.int64)
    torch.onnx.export(module, (ids, mask), str(tmp_path / "m.onnx"), input_names=["input_ids", "attention_mask"],
                      output_names=["logits"], dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}},
                      opset_version=17, dynamo=False)
    model = load_text_model(tmp_path / "m.onnx")
    assert "activations" in model.capabilities
    tanh = [layer for layer in model.layers() if "Tanh" in layer]
    assert len(tanh) == 1
    texts = ["he is a good nurse", "she is bad", "nurse", "he is a bad bad nurse she is"]
    got = model.activations(np.array(texts, dtype=object), tanh)[tanh[0]]
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tmp_path / "m.tokenizer.json"))
    with torch.no_grad():
        for row, text in enumerate(texts):  # one text at a time: no padding, a plain mean over its tokens
            x = torch.tensor([tokenizer.encode(text).ids])
            expected = torch.tanh(module.token_layer(module.embedding(x)))[0].mean(0).numpy()
            np.testing.assert_allclose(got[row], expected, atol=1e-6)


# -- attributions and ERASER -----------------------------------------------------------
def test_token_occlusion_and_ig_equal_captum_on_the_demo_twin():
    from captum.attr import FeatureAblation, LayerIntegratedGradients

    from audit_attribution._text import integrated_gradients, occlusion

    model = load_text_model(DEMO / "text.pt")
    twin = demo_twin()
    texts = [r["text"] for r in demo_texts(12)]
    model.predict(np.array(texts, dtype=object))  # settles the output kind, as the clean pass does
    sequences, special = model.encode(texts)
    targets = np.array([int(model.predict(np.array([t], dtype=object))[0].argmax()) for t in texts])

    def probability(ids, mask):
        return torch.softmax(twin(ids, mask), dim=1)

    ours_occ = occlusion(model, sequences, special, targets)
    ours_ig = integrated_gradients(model, sequences, special, targets, steps=32, method="gausslegendre")
    for r, ids in enumerate(sequences):
        x = torch.as_tensor(ids)[None]
        mask = torch.ones_like(x)
        reference = torch.where(torch.as_tensor(special[r])[None], x, torch.full_like(x, model.baseline_id))
        lig = LayerIntegratedGradients(probability, twin.embedding)
        expected_ig = lig.attribute(x, baselines=reference, target=int(targets[r]), additional_forward_args=(mask,),
                                    n_steps=32, method="gausslegendre").sum(-1)[0].detach().double().numpy()
        np.testing.assert_allclose(ours_ig[r], expected_ig, atol=1e-5)
        ablation = FeatureAblation(probability)
        expected_occ = ablation.attribute(x, baselines=model.baseline_id, target=int(targets[r]),
                                          additional_forward_args=(mask,))[0].double().numpy()
        keep = ~special[r]
        np.testing.assert_allclose(ours_occ[r][keep], expected_occ[keep], atol=1e-5)
        assert np.all(ours_occ[r][~keep] == 0)
    assert model.baseline_id == json.loads((DEMO / "text.tokenizer.json").read_text())["model"]["vocab"]["[MASK]"]


def test_eraser_on_a_one_token_model_has_the_closed_form(tmp_path):
    from audit_attribution._text import ERASER_FRACTIONS, eraser, occlusion

    vocab = word_tokenizer(["key", "a", "b", "c", "d", "e", "f", "g", "h", "i"], tmp_path / "m.tokenizer.json")
    c = 1.5
    torch.jit.save(torch.jit.script(CountModel(vocab["key"], c)), str(tmp_path / "m.pt"))
    model = load_text_model(tmp_path / "m.pt")
    texts = ["a b key c d e f g h i", "key a b", "a b c d key"]
    model.predict(np.array(texts, dtype=object))
    sequences, special = model.encode(texts)
    targets = np.ones(len(texts), dtype=np.int64)
    maps = occlusion(model, sequences, special, targets)
    sig = 1 / (1 + math.exp(-c))
    for r, ids in enumerate(sequences):
        key = int(np.flatnonzero(ids == vocab["key"])[0])
        expected = np.zeros(len(ids))
        expected[key] = sig - 0.5
        np.testing.assert_allclose(maps[r], expected, atol=1e-7)
    best = [[np.concatenate([[int(np.flatnonzero(s == vocab["key"])[0])],
                             [i for i in np.flatnonzero(~m) if s[i] != vocab["key"]]])] for s, m in zip(sequences, special)]
    worst = [[o[0][::-1]] for o in best]
    comp, suff = eraser(model, sequences, special, targets, best)
    # Removing any top-k always removes the key: score falls from sigmoid(c) to 1/2; keeping only them keeps it.
    np.testing.assert_allclose(comp[:, 0], sig - 0.5, atol=1e-7)
    np.testing.assert_allclose(suff[:, 0], 0.0, atol=1e-7)
    comp, suff = eraser(model, sequences, special, targets, worst)
    for r, ids in enumerate(sequences):
        n = int((~special[r]).sum())
        ks = [max(1, math.ceil(f * n)) for f in ERASER_FRACTIONS]
        removes_key = np.array([k >= n for k in ks])  # the key is last in the worst order
        np.testing.assert_allclose(comp[r, 0], np.mean(np.where(removes_key, sig - 0.5, 0.0)), atol=1e-7)
        np.testing.assert_allclose(suff[r, 0], np.mean(np.where(removes_key, 0.0, sig - 0.5)), atol=1e-7)


# -- the whole run ---------------------------------------------------------------------
def test_audit_run_on_the_text_demo_runs_text_analyses_and_skips_numeric_ones(cli, tmp_path):
    code, out, err = cli("run", DEMO / "text.pt", "--data", DEMO / "text.csv", "--text", "text", "--label", "label",
                         "--attribute", "gender", "--fail-on", "never", "--json", "--set", "attribution.faithfulness.rows=16",
                         "--set", "attribution.agreement.rows=16", "--set", "robustness.corruptions.severities=[3]",
                         "--set", "bias.group_fairness.dcov_permutations=19", "--sample", "120")
    assert code == 0, err
    document = json.loads(out)
    status = {a["name"]: a["status"] for a in document["analyses"]}
    for name in ("performance", "bias.group_fairness", "bias.counterfactual", "robustness.corruptions", "robustness.calibration",
                 "attribution.faithfulness", "attribution.agreement"):
        assert status[name] == "ok", (name, document["analyses"])
    assert status["robustness.blackbox_attack"] == "ok"
    for name in ("robustness.adversarial", "robustness.ood", "attribution.sanity", "bias.leakage"):  # leakage: TorchScript has no hooks
        assert status[name] == "skipped", name
    html = (tmp_path / document["reports"][0]).read_text()
    assert "texts truncated at 48 tokens (the tokenizer&#39;s truncation setting)" in html or \
        "texts truncated at 48 tokens (the tokenizer's truncation setting)" in html
    checks = {(f["analysis"], f["check"], f["subject"]) for f in document["findings"]}
    assert ("attribution.faithfulness", "faithful_vs_random", "integrated_gradients") in checks
    assert ("bias.counterfactual", "counterfactual_flip_rate", "gender") in checks
