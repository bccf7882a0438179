"""robustness.blackbox_attack on text: a greedy word-level attack from the shipped edits, within a query budget.

Words are ranked by how much deleting each lowers the true class's
probability (one query per word); then, most important word first, each
still-correct text tries every candidate edit of its next word (the
character edits of the text corruptions: adjacent swap, drop, insert,
keyboard neighbour, case) and keeps the one that lowers the probability
most, until the prediction changes, a share of the words is edited, or the
budget is spent. Every step sends all texts' candidates in one call, and
queries are counted per text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import audit

from ._common import reference_labels
from ._text import keyboard_neighbours

MAX_EDITED_SHARE = 0.25  # at most a quarter of a text's words change: beyond that the meaning may not survive


def candidates(word: str, limit: int = 6) -> list[str]:
    """Deterministic edits of one word: swaps, drops, keyboard neighbours, a case change; distinct, in that order."""
    found: list[str] = []
    letters = [i for i, c in enumerate(word) if c.isalpha()]
    for i in letters:
        if i + 1 < len(word) and word[i + 1].isalpha() and word[i] != word[i + 1]:
            found.append(word[:i] + word[i + 1] + word[i] + word[i + 2 :])
    if len(letters) > 1:
        found += [word[:i] + word[i + 1 :] for i in letters]
    for i in letters:
        found += [word[:i] + n + word[i + 1 :] for n in keyboard_neighbours(word[i])[:1]]
    found.append(word.swapcase())
    unique = []
    for edit in found:
        if edit != word and edit and edit not in unique:
            unique.append(edit)
    # Spread the picks over the word rather than all from its first letters.
    if len(unique) > limit:
        unique = [unique[int(j)] for j in np.linspace(0, len(unique) - 1, limit)]
    return unique


@dataclass
class _Search:
    """The attack's state over the sampled texts; rows with an importance order are the ones attacked."""

    words: list[list[str]]  # each text split on spaces, as it was
    labels: np.ndarray
    clean: np.ndarray  # clean probabilities
    queries: np.ndarray  # model rows spent per text
    broken: np.ndarray  # prediction changed
    order: dict[int, list[int]] = field(default_factory=dict)  # row -> word positions, most important first
    current: dict[int, list[str]] = field(default_factory=dict)  # row -> its words with the edits kept so far
    edited: dict[int, int] = field(default_factory=dict)  # row -> words edited
    score: dict[int, float] = field(default_factory=dict)  # row -> true class's probability after the edits kept


@dataclass
class TextAttack:
    """What robustness.blackbox_attack measures on text: which texts the attack changed, at what query cost."""

    texts: list[str]
    correct: np.ndarray  # clean prediction right (or, without labels, trivially so)
    broken: np.ndarray
    queries: np.ndarray
    current: dict[int, list[str]]  # attacked row -> its words after the attack
    too_long: int  # correct texts not attacked: ranking their words alone would spend the budget
    agreement: bool

    @property
    def n(self) -> int:
        return len(self.texts)

    @property
    def n_correct(self) -> int:
        return int(self.correct.sum())

    @property
    def clean_accuracy(self) -> float:
        return float(self.correct.mean())

    @property
    def robust_accuracy(self) -> float:
        return float((self.correct & ~self.broken).mean())

    @property
    def successes(self) -> np.ndarray:
        return np.flatnonzero(self.broken)

    @property
    def median_queries(self) -> float:
        successes = self.successes
        return float(np.median(self.queries[successes])) if len(successes) else float("nan")


def _rank_words(model, search: _Search, correct: np.ndarray, budget: int) -> int:
    """Order each correct text's words by how much deleting one lowers the true class; returns the texts too long to rank."""
    words, y = search.words, search.labels
    owners, positions, variants = [], [], []
    too_long = 0
    for r in np.flatnonzero(correct):
        if len(words[r]) < 2:
            continue
        if len(words[r]) >= budget:  # ranking alone would spend the budget
            too_long += 1
            continue
        for i in range(len(words[r])):
            owners.append(r)
            positions.append(i)
            variants.append(" ".join(words[r][:i] + words[r][i + 1 :]))
    if variants:
        p = model.predict(np.array(variants, dtype=object))  # all texts' deletions in one call
        owners_a, positions_a = np.asarray(owners), np.asarray(positions)
        drop = search.clean[owners_a, y[owners_a]] - p[np.arange(len(p)), y[owners_a]]
        np.add.at(search.queries, owners_a, 1)
        for r in np.unique(owners_a):
            mine = owners_a == r
            search.order[int(r)] = list(positions_a[mine][np.argsort(-drop[mine], kind="stable")])
    return too_long


def _step_candidates(search: _Search, step: int, budget: int):
    """Texts (and their (row, position, edit)) trying every edit of each still-attacked text's step-th word."""
    batch, owners = [], []
    for r in list(search.order):
        limit = max(1, int(MAX_EDITED_SHARE * len(search.words[r])))
        if search.broken[r] or search.edited[r] >= limit or step >= len(search.order[r]):
            continue
        position = search.order[r][step]
        edits = candidates(search.current[r][position])
        edits = edits[: max(0, budget - int(search.queries[r]))]
        for edit in edits:
            trial = list(search.current[r])
            trial[position] = edit
            batch.append(" ".join(trial))
            owners.append((r, position, edit))
    return batch, owners


def _keep_best(search: _Search, owners, probabilities) -> None:
    """Per text, keep the edit that flips the prediction, else the one that lowers the true class most (if it does)."""
    y = search.labels
    best: dict[int, tuple[float, str, int, bool]] = {}
    for (r, position, edit), row in zip(owners, probabilities):
        search.queries[r] += 1
        value = float(row[y[r]])
        flipped = int(audit.predicted_classes(row[None])[0]) != y[r]
        if r not in best or (flipped, -value) > (best[r][3], -best[r][0]):
            best[r] = (value, edit, position, flipped)
    for r, (value, edit, position, flipped) in best.items():
        if value < search.score[r] or flipped:
            search.current[r][position] = edit
            search.edited[r] += 1
            search.score[r] = value
        search.broken[r] = flipped


def measure(ctx, options) -> TextAttack:
    index = ctx.sample_rows(options.max_rows, note="{n} rows in the data; {max_rows} sampled (seeded) to bound the cost (option max_rows)")
    take = (lambda a: a) if index is None else (lambda a: a[index])
    labels, agreement = reference_labels(ctx)
    texts = [str(t) for t in take(ctx.data.x)]
    y = take(labels)
    clean = take(ctx.predictions)
    correct = audit.predicted_classes(clean) == y
    n = len(texts)
    search = _Search([t.split(" ") for t in texts], y, clean, np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool))
    too_long = _rank_words(ctx.model, search, correct, options.budget)
    search.current = {r: list(search.words[r]) for r in search.order}
    search.edited = {r: 0 for r in search.order}
    search.score = {r: float(clean[r, y[r]]) for r in search.order}
    with ctx.progress(None, "word-level attack") as bar:
        step = 0
        while True:
            batch, owners = _step_candidates(search, step, options.budget)
            if not batch:
                break
            _keep_best(search, owners, ctx.model.predict(np.array(batch, dtype=object)))
            step += 1
            bar.advance(1)
    return TextAttack(texts, correct, search.broken, search.queries, search.current, too_long, agreement)


def metrics(attack: TextAttack, level: float = 0.95):
    from audit import stats

    n, successes = attack.n, attack.successes
    robust = int((attack.correct & ~attack.broken).sum())
    robust_lower, robust_upper = stats.wilson(robust, n, level)
    yield audit.Metric("clean_accuracy", attack.clean_accuracy, count=n)
    yield audit.Metric("robust_accuracy", attack.robust_accuracy, count=n, lower=robust_lower, upper=robust_upper,
                       details={"attack": "greedy word-level character edits", "interval": "wilson", "level": level})
    if attack.n_correct:
        success_lower, success_upper = stats.wilson(len(successes), attack.n_correct, level)
        yield audit.Metric("attack_success_rate", len(successes) / attack.n_correct, count=attack.n_correct,
                           lower=success_lower, upper=success_upper, details={"interval": "wilson", "level": level})
    else:
        yield audit.Metric("attack_success_rate", None, count=0)
    yield audit.Metric("median_queries_successful", attack.median_queries if len(successes) else None, count=len(successes))
    yield audit.Metric("queries_total", float(attack.queries.sum()), count=n, unit="forward rows")


def findings(attack: TextAttack, options):
    """Robust accuracy judged by robust / clean on the clean-correct texts (a binomial proportion, Wilson)."""
    from audit import stats

    clean_accuracy, robust_accuracy, successes = attack.clean_accuracy, attack.robust_accuracy, attack.successes
    what = "agreement with clean predictions" if attack.agreement else "accuracy"
    ratio = robust_accuracy / clean_accuracy if clean_accuracy > 0 else 1.0
    robust = int((attack.correct & ~attack.broken).sum())
    ratio_lower, ratio_upper = stats.wilson(robust, attack.n_correct, options.level) if attack.n_correct else (None, None)
    lower = None if ratio_lower is None else ratio_lower * clean_accuracy
    upper = None if ratio_upper is None else ratio_upper * clean_accuracy
    example = ""
    if len(successes):
        r = int(successes[0])
        example = f'; e.g. "{attack.texts[r]}" -> "{" ".join(attack.current[r])}"'
    interval_text = "" if lower is None else f" [{options.level:.0%} CI {lower:.3f}, {upper:.3f}]"
    yield audit.Finding.judged(
        "robust_accuracy", "Robust accuracy under a word-level black-box attack", robust_accuracy, lower, upper,
        severity=audit.Severity.MEDIUM, floor=options.min_robust_accuracy_ratio * clean_accuracy, level=options.level,
        method="wilson on the clean-correct rows", rows=attack.n_correct, min_rows=options.min_rows,
        message=(f"editing at most {MAX_EDITED_SHARE:.0%} of a text's words with typos (greedy, most important word first, "
                 f"budget {options.budget} queries a text) lowers {what} from {clean_accuracy:.3f} to {robust_accuracy:.3f}"
                 f"{interval_text} ({ratio:.0%} of clean; at least {options.min_robust_accuracy_ratio:.0%} required); {len(successes)} of "
                 f"{attack.n_correct} texts changed, median {attack.median_queries:.0f} queries{example}"),
        details={"queries_total": int(attack.queries.sum()), "rows": attack.n, "budget": options.budget,
                 "edits": "adjacent swap, drop, keyboard neighbour, case", "max_edited_share": MAX_EDITED_SHARE,
                 "robust_over_clean": ratio, "robust_over_clean_interval": [ratio_lower, ratio_upper]},
    )


def notes(ctx, attack: TextAttack, options) -> None:
    if attack.too_long:
        ctx.note(f"{attack.too_long} text(s) have at least as many words as the budget ({options.budget} queries) and were not attacked")
    if options.epsilon is not None:
        ctx.note("epsilon and p_init apply to numeric inputs; the text attack is bounded by the share of edited words")


def run(analysis, ctx):
    """Measure, then judge from the measurements; the notes come last, as they follow the finding."""
    attack = measure(ctx, analysis.options)
    yield from metrics(attack, analysis.options.level)
    yield from findings(attack, analysis.options)
    notes(ctx, attack, analysis.options)
