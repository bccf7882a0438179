"""robustness.corruptions on text: character noise (typos, case, punctuation, whitespace) and word dropout at severities."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import audit

from . import _figures
from . import _verdicts as V
from ._run_corruptions import drop_family, mean_corruption_error
from ._common import reference_labels

TEXT_CORRUPTIONS = ("typo_swap", "typo_drop", "typo_insert", "keyboard", "case", "punctuation", "whitespace", "word_dropout")
# Share of words (or, for punctuation and whitespace, of places) edited at severities 1..5.
RATES = (0.05, 0.1, 0.2, 0.3, 0.5)
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_POSITION = {c: (r, i) for r, row in enumerate(_ROWS) for i, c in enumerate(row)}
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_MARKS = ",.;:!?"


def keyboard_neighbours(char: str) -> str:
    """Keys next to ``char`` on a QWERTY keyboard (same row and the rows above and below)."""
    lower = char.lower()
    if lower not in _POSITION:
        return ""
    r, i = _POSITION[lower]
    found = []
    # Staggered rows: each row sits half a key right of the one above it.
    for dr, columns in ((-1, (i, i + 1)), (0, (i - 1, i + 1)), (1, (i - 1, i))):
        if 0 <= r + dr < len(_ROWS):
            row = _ROWS[r + dr]
            found.extend(row[j] for j in columns if 0 <= j < len(row))
    return "".join(found).upper() if char.isupper() else "".join(found)


def rate(severity: int) -> float:
    return 0.0 if severity == 0 else RATES[severity - 1]


def _edit_word(word: str, name: str, rng: np.random.Generator) -> str:
    letters = [i for i, c in enumerate(word) if c.isalpha()]
    if not letters:
        return word
    if name == "typo_swap":
        pairs = [i for i in letters if i + 1 < len(word) and word[i + 1].isalpha()]
        if not pairs:
            return word
        i = pairs[rng.integers(len(pairs))]
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    i = letters[rng.integers(len(letters))]
    if name == "typo_drop":
        return word[:i] + word[i + 1 :] if len(letters) > 1 else word
    if name == "typo_insert":
        return word[: i + 1] + _LETTERS[rng.integers(26)] + word[i + 1 :]
    if name == "keyboard":
        options = keyboard_neighbours(word[i])
        return word[:i] + options[rng.integers(len(options))] + word[i + 1 :] if options else word
    if name == "case":
        kind = rng.integers(3)
        return word.upper() if kind == 0 else word.lower() if kind == 1 else word.swapcase()
    raise ValueError(name)


def corrupt_text(text: str, name: str, severity: int, rng: np.random.Generator) -> str:
    """One corrupted copy of ``text``; severity 0 returns it unchanged."""
    p = rate(severity)
    if p == 0.0:
        return text
    words = text.split(" ")
    if name == "word_dropout":
        kept = [w for w in words if rng.random() >= p]
        return " ".join(kept)
    if name == "punctuation":
        out = []
        for w in words:
            w = "".join(c for c in w if not (c in _MARKS and rng.random() < p))
            if w and rng.random() < p / 2:
                w += _MARKS[rng.integers(len(_MARKS))]
            out.append(w)
        return " ".join(out)
    if name == "whitespace":
        out = []
        for w in words:
            if len(w) > 3 and rng.random() < p / 2:
                cut = int(rng.integers(1, len(w) - 1))
                w = w[:cut] + " " + w[cut:]
            if out and rng.random() < p / 2:
                out[-1] += w  # two words run together
            else:
                out.append(w)
        return " ".join(out)
    return " ".join(_edit_word(w, name, rng) if rng.random() < p else w for w in words)


def describe(name: str, severity: int) -> str:
    p = rate(severity)
    what = {"word_dropout": "of words dropped", "punctuation": "of marks dropped, half as many added",
            "whitespace": "of words split or run together (half each)"}.get(name, "of words edited")
    return f"{p:.0%} {what}"


@dataclass
class TextCorruptionTable:
    """What robustness.corruptions measures on text: accuracy, flip rate and accuracy drop per (corruption, severity)."""

    n: int
    names: list[str]
    severities: list[int]
    judged: int
    agreement: bool
    clean_accuracy: float
    accuracy: dict = field(default_factory=dict)  # (name, severity) -> accuracy
    flips: dict = field(default_factory=dict)  # (name, severity) -> share of predictions changed
    drops: dict = field(default_factory=dict)  # (name, severity) -> (mean drop, lower, upper), paired
    correct: dict = field(default_factory=dict)  # (name, severity) -> per-row correctness
    clean_correct: np.ndarray | None = None
    examples: dict = field(default_factory=dict)  # name -> (clean text, corrupted text) at the judged severity

    @property
    def what(self) -> str:
        return "agreement with clean predictions" if self.agreement else "accuracy"


def _corruption_names(options) -> list[str]:
    names = list(options.corruptions or TEXT_CORRUPTIONS)
    unknown = [n for n in names if n not in TEXT_CORRUPTIONS]
    if unknown:
        raise audit.AuditError(f"unknown text corruption(s) {', '.join(unknown)}; available: {', '.join(TEXT_CORRUPTIONS)}")
    return names


def _predict_corrupted(ctx, texts, keys):
    """Every corrupted copy (draws in key order, then text order) and the model's probabilities on all of them."""
    batches = [[corrupt_text(t, name, s, ctx.rng) for t in texts] for name, s in keys]
    everything = np.array([t for batch in batches for t in batch], dtype=object)
    with ctx.progress(len(everything), "text corruptions") as bar:
        probabilities = ctx.model.predict(everything)  # every corruption and severity in one batched call
        bar.advance(len(everything))
    return batches, probabilities


def measure(ctx, options) -> TextCorruptionTable:
    index = ctx.sample_rows(options.max_rows, note="{n} rows in the data; {max_rows} sampled (seeded) to bound the cost (option max_rows)")
    take = (lambda a: a) if index is None else (lambda a: a[index])
    labels, agreement = reference_labels(ctx)
    texts = [str(t) for t in take(ctx.data.x)]
    y = take(labels)
    clean_predicted = audit.predicted_classes(take(ctx.predictions))
    clean_correct = clean_predicted == y
    names = _corruption_names(options)
    severities = sorted(set(options.severities))
    judged = options.judged_severity if options.judged_severity in severities else max(severities)
    table = TextCorruptionTable(len(texts), names, severities, judged, agreement, float(clean_correct.mean()))
    table.clean_correct = clean_correct
    keys = [(name, s) for name in names for s in severities]
    batches, probabilities = _predict_corrupted(ctx, texts, keys)
    n = table.n
    for k, key in enumerate(keys):
        predicted = audit.predicted_classes(probabilities[k * n : (k + 1) * n])
        correct = predicted == y
        table.accuracy[key] = float(correct.mean())
        table.flips[key] = float(np.mean(predicted != clean_predicted))
        table.correct[key] = correct
        drop, interval, _ = V.drop_interval(clean_correct, correct)
        table.drops[key] = (drop, *interval(options.level))
        name, s = key
        if s == judged:
            changed = np.flatnonzero(predicted != clean_predicted)
            if len(changed):
                table.examples[name] = (texts[changed[0]], batches[k][changed[0]])
    return table


def metrics(table: TextCorruptionTable, level: float):
    for (name, s), accuracy in table.accuracy.items():
        subject = f"{name} s={s}"
        drop, lower, upper = table.drops[(name, s)]
        yield audit.Metric("accuracy", accuracy, subject=subject, count=table.n, details={"parameter": describe(name, s)})
        yield audit.Metric("accuracy_drop", drop, subject=subject, lower=lower, upper=upper, count=table.n,
                           details={"interval": V.DROP_METHOD, "level": level})
        yield audit.Metric("flip_rate", table.flips[(name, s)], subject=subject, count=table.n)
    yield audit.Metric("clean_accuracy", table.clean_accuracy, count=table.n)


def _worst_drop_finding(table: TextCorruptionTable, options):
    judged, n = table.judged, table.n
    verdict, worst, shown, drops, by_name = drop_family(table.names, judged, table.clean_correct, table.correct, options)
    example = table.examples.get(worst)
    said = f'; e.g. "{example[0]}" became "{example[1]}"' if example else ""
    return V.finding(
        "corruption_accuracy_drop", "Accuracy drop under the worst text corruption", audit.Severity.MEDIUM, verdict,
        drops[worst], options.max_accuracy_drop, shown, V.DROP_METHOD, n, f"{worst} s={judged}",
        message=(f"{worst} at severity {judged} ({describe(worst, judged)}) lowers {table.what} from {table.clean_accuracy:.3f} to "
                 f"{table.accuracy[(worst, judged)]:.3f}, a drop of {drops[worst]:.3f} [{shown.level:.1%} CI {shown.lower:.3f}, "
                 f"{shown.upper:.3f}, paired over {n} rows] (allowed {options.max_accuracy_drop:g}; {len(table.names)} corruptions, "
                 f"{options.correction} correction); {table.flips[(worst, judged)]:.1%} of predictions change{said}"),
        details={"judged_severity": judged, "clean_accuracy": table.clean_accuracy, "ci": [shown.lower, shown.upper],
                 "drop_by_corruption": drops, "by_corruption": by_name,
                 "labels": "clean predictions" if table.agreement else "true labels", "examples": table.examples},
    )


def _mean_corruption_error_finding(table: TextCorruptionTable, options, corrupted_levels: list[int]):
    names = table.names
    clean_error = 1.0 - table.clean_accuracy
    error_by_corruption = {m: float(np.mean([1.0 - table.accuracy[(m, s)] for s in corrupted_levels])) for m in names}
    mce = float(np.mean(list(error_by_corruption.values())))
    relative, interval = mean_corruption_error(names, corrupted_levels, table.clean_correct, table.correct, options)
    return audit.Finding.judged(
        "mean_corruption_error", "Mean corruption error relative to clean (text)", relative,
        None if interval is None else interval.lower, None if interval is None else interval.upper,
        severity=audit.Severity.MEDIUM, ceiling=options.max_mean_corruption_error, level=options.level,
        method="paired t over rows", rows=table.n, min_rows=options.min_rows,
        subject=f"{len(names)} corruptions s={','.join(map(str, corrupted_levels))}",
        message=(f"error averaged over {len(names)} text corruptions and severities {corrupted_levels[0]}-{corrupted_levels[-1]} "
                 f"is {mce:.3f} against {clean_error:.3f} on clean text: {relative:+.3f} (allowed {options.max_mean_corruption_error:g}); "
                 f"worst corruption {max(error_by_corruption, key=error_by_corruption.get)}"),
        details={"mean_corruption_error": mce, "clean_error": clean_error, "corruption_error": error_by_corruption},
    )


def findings(table: TextCorruptionTable, options):
    yield _worst_drop_finding(table, options)
    corrupted_levels = [s for s in table.severities if s > 0]
    # The mean corruption error compares corrupted to clean: with severity 0 alone there is nothing to average.
    if corrupted_levels:
        yield _mean_corruption_error_finding(table, options, corrupted_levels)


def figures(table: TextCorruptionTable):
    yield audit.Figure(
        "corruption_curves", "Accuracy and flip rate against text corruption severity",
        _figures.severity_curves(table.names, table.severities, table.accuracy, table.flips, table.clean_accuracy, table.what),
        caption=(f"One line per corruption; severity 0 is the clean text. Severities 1-5 edit "
                 f"{', '.join(f'{r:.0%}' for r in RATES)} of the words. Every corruption and severity went through the model "
                 f"in one batched call over {table.n} rows."),
    )


def run(analysis, ctx):
    """Measure, then judge and draw from the measurements."""
    table = measure(ctx, analysis.options)
    yield from metrics(table, analysis.options.level)
    yield from findings(table, analysis.options)
    yield from figures(table)
