"""bias.counterfactual on text: swap identity terms (he/she, names, religions, nationalities) and measure the change."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

import audit
from audit import stats

from ._counterfactual import absolute, mean_interval
from ._verdicts import Check, decide, max_of

from ._text_terms import TERM_SETS


def wilson(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a proportion (behaves at 0/n and n/n, where a bootstrap collapses to a point)."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def term_sets(options) -> dict[str, dict[str, list[str]]]:
    """The shipped sets named in ``text_term_sets`` (default all), extended by ``term_sets``; all terms lower-cased.

    A user set with a shipped set's name appends its terms slot by slot to
    the groups it names and adds new groups; every group of one set must end
    with the same number of terms, slot i of each being counterparts.
    """
    chosen = list(options.text_term_sets) if options.text_term_sets is not None else list(TERM_SETS)
    unknown = [n for n in chosen if n not in TERM_SETS and n not in options.term_sets]
    if unknown:
        raise audit.AuditError(f"bias.counterfactual: unknown term set(s) {', '.join(unknown)}; shipped sets: {', '.join(TERM_SETS)}")
    sets = {name: {g: [t.lower() for t in terms] for g, terms in TERM_SETS.get(name, {}).items()} for name in chosen}
    for name, groups in options.term_sets.items():
        target = sets.setdefault(name, {})
        for group, terms in groups.items():
            target.setdefault(group, []).extend(str(t).lower() for t in terms)
    for name, groups in sets.items():
        sizes = {g: len(t) for g, t in groups.items()}
        if len(groups) < 2:
            raise audit.AuditError(f"bias.counterfactual: term set {name!r} needs at least two groups to swap between (has {', '.join(groups) or 'none'})")
        if len(set(sizes.values())) != 1:
            raise audit.AuditError(f"bias.counterfactual: the groups of term set {name!r} have different numbers of terms "
                                   f"({', '.join(f'{g}: {n}' for g, n in sizes.items())}); slot i of each group must be counterparts")
    return sets


def _match_case(original: str, replacement: str) -> str:
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


class Swapper:
    """Finds a set's terms in a text (whole words, any case) and swaps two groups' terms slot by slot."""

    def __init__(self, groups: dict[str, list[str]]):
        self.groups = groups
        self.slot = {g: {} for g in groups}
        for g, terms in groups.items():
            for i, term in enumerate(terms):
                self.slot[g].setdefault(term, i)
        every = sorted({t for terms in groups.values() for t in terms}, key=len, reverse=True)
        self.pattern = re.compile(r"\b(" + "|".join(re.escape(t) for t in every) + r")\b", re.IGNORECASE)
        self.owner = {}
        for g, terms in groups.items():
            for term in terms:
                self.owner.setdefault(term, g)

    def source_group(self, text: str) -> str | None:
        """The group whose terms the text uses most (first group on ties), or None without any term."""
        counts: dict[str, int] = {}
        for match in self.pattern.finditer(text):
            group = self.owner[match.group(0).lower()]
            counts[group] = counts.get(group, 0) + 1
        if not counts:
            return None
        return max(self.groups, key=lambda g: (counts.get(g, 0), -list(self.groups).index(g)))

    def swap(self, text: str, a: str, b: str) -> str:
        """Every term of group a replaced by its counterpart in b, and b's by a's (a true swap)."""

        def replace(match):
            word = match.group(0)
            term = word.lower()
            for src, dst in ((a, b), (b, a)):
                if term in self.slot[src]:
                    return _match_case(word, self.groups[dst][self.slot[src][term]])
            return word

        return self.pattern.sub(replace, text)


@dataclass
class PairShift:
    """How swapping one group's terms for another's (one term set) moved the rows that use the first group's terms."""

    set_name: str
    source: str
    target: str
    rows: int
    flip_rate: float
    flip_ci: tuple[float, float]
    shift: float
    shift_ci: tuple[float, float]
    example: dict | None
    flips: int = 0
    shift_sd: float = 0.0

    @property
    def pair(self) -> str:
        return f"{self.source}->{self.target}"


@dataclass
class Counterfactuals:
    """What bias.counterfactual measures on text: one PairShift per term set and ordered pair of its groups."""

    score_name: str
    pairs: list[PairShift]


def _plan(ctx, options, texts) -> list:
    """(set, source, target, row indices, variant texts) for every set and ordered pair of groups some text uses."""
    plan = []
    absent = []
    for set_name, groups in term_sets(options).items():
        swapper = Swapper(groups)
        sources = [swapper.source_group(t) for t in texts]
        if not any(sources):
            absent.append(set_name)
            continue
        unknown = getattr(ctx.model, "unknown_words", lambda words: [])(sorted({t for g in groups.values() for t in g}))
        if unknown:
            ctx.note(f"{set_name}: {len(unknown)} term(s) are unknown to the tokenizer and read as its unknown token, so "
                     f"swaps into them measure that token's effect: {', '.join(unknown[:8])}{', ...' if len(unknown) > 8 else ''}")
        for a in groups:
            rows = np.array([i for i, s in enumerate(sources) if s == a], dtype=np.int64)
            if len(rows) == 0:
                continue
            for b in groups:
                if b != a:
                    plan.append((set_name, a, b, rows, [swapper.swap(texts[i], a, b) for i in rows]))
    if absent:
        ctx.note(f"no text contains terms of the set(s) {', '.join(absent)}: not assessed")
    return plan


def _pair_shift(ctx, options, texts, probabilities, variant_probabilities, score_class, clean_predicted, planned) -> PairShift:
    """Score shift and flip rate of one planned swap, with their intervals and the row that moved most."""
    set_name, a, b, rows, batch = planned
    k = score_class[rows]
    shift = variant_probabilities[np.arange(len(rows)), k] - probabilities[rows, k]
    n_flips = int((audit.predicted_classes(variant_probabilities) != clean_predicted[rows]).sum())
    shift_sd = float(shift.std(ddof=1)) if len(rows) > 1 else 0.0
    lo, hi = mean_interval(float(shift.mean()), shift_sd, len(rows), 0.95)
    # rows is never empty (the plan skips groups no text uses), so there is always a row that moved most.
    j = int(np.argmax(np.abs(shift)))
    example = {"original": texts[rows[j]], "variant": batch[j], "score_before": float(probabilities[rows[j], k[j]]),
               "score_after": float(variant_probabilities[j, k[j]])}
    return PairShift(set_name, a, b, len(rows), n_flips / len(rows), wilson(n_flips, len(rows)), float(shift.mean()),
                     (float(lo), float(hi)), example, n_flips, shift_sd)


def _probabilities(model, rng, texts):
    """The class probabilities of a shard of swapped texts, in one batched call."""
    return model.predict_both(texts)[0]


def measure(ctx, options) -> Counterfactuals | None:
    """Swap every set's terms in every text, one batched predict call per shard of swapped texts; None when no text uses any term."""
    texts = [str(t) for t in ctx.data.x]
    probabilities = np.asarray(ctx.predictions, dtype=np.float64)
    n_rows, n_classes = probabilities.shape
    binary = n_classes == 2
    # Binary: the positive class's probability; multiclass: that of the class predicted on the original text.
    score_class = np.ones(n_rows, dtype=np.int64) if binary else audit.predicted_classes(probabilities)
    clean_predicted = audit.predicted_classes(probabilities)
    class_names = ctx.data.class_names or [str(i) for i in range(n_classes)]
    score_name = f"P({class_names[1]})" if binary else "probability of the predicted class"
    plan = _plan(ctx, options, texts)
    if not plan:
        ctx.note("no identity terms of any term set occur in the texts; nothing to substitute")
        return None
    variants = np.array([v for *_, batch in plan for v in batch], dtype=object)
    with ctx.progress(len(variants), "counterfactual term swaps") as progress:
        variant_probabilities = ctx.map_rows(_probabilities, variants, purpose="counterfactual/text", shard_rows=options.shard_rows)
        progress.advance(len(variants))
    pairs = []
    offset = 0
    for planned in plan:
        rows = planned[3]
        pairs.append(_pair_shift(ctx, options, texts, probabilities, variant_probabilities[offset : offset + len(rows)],
                                 score_class, clean_predicted, planned))
        offset += len(rows)
    return Counterfactuals(score_name, pairs)


def metrics(measured: Counterfactuals):
    for swap in measured.pairs:
        details = {"term_set": swap.set_name, "source": swap.source, "target": swap.target, "score": measured.score_name,
                   "example": swap.example}
        yield audit.Metric("counterfactual_score_shift", swap.shift, subject=swap.set_name, group=swap.pair,
                           lower=swap.shift_ci[0], upper=swap.shift_ci[1], count=swap.rows, details=details)
        yield audit.Metric("counterfactual_flip_rate", swap.flip_rate, subject=swap.set_name, group=swap.pair, lower=swap.flip_ci[0],
                           upper=swap.flip_ci[1], count=swap.rows, details=details)


def findings(measured: Counterfactuals, options):
    """Flip-rate and score-shift findings per term set, decided as one family over the run's sets."""
    by_set: dict[str, list[PairShift]] = {}
    for swap in measured.pairs:
        by_set.setdefault(swap.set_name, []).append(swap)
    pending = [check for set_name, results in by_set.items() for check in _checks(set_name, results, measured.score_name, options)]
    yield from decide(pending, options.level, options.correction)


def run(analysis, ctx):
    """Measure, then judge from the measurements."""
    measured = measure(ctx, analysis.options)
    if measured is None:
        return
    yield from metrics(measured)
    yield from findings(measured, analysis.options)


def _example_text(example) -> str:
    if not example:
        return ""
    return (f'; e.g. "{example["original"]}" -> "{example["variant"]}" moves it from '
            f'{example["score_before"]:.2f} to {example["score_after"]:.2f}')


def _checks(set_name, results: list[PairShift], score_name, options):
    """The worst pair of one set, with an interval simultaneous over the set's pairs (see _verdicts.max_of)."""
    several = f", max over {len(results)} swaps" if len(results) > 1 else ""
    worst = max(results, key=lambda r: r.flip_rate)
    yield Check(
        "counterfactual_flip_rate", "Counterfactual prediction flips (identity terms)", set_name, worst.flip_rate,
        max_of([lambda level, r=r: stats.wilson(r.flips, r.rows, level) for r in results]),
        options.flip_rate_medium, False, "medium", "wilson" + several, sum(r.rows for r in results),
        lambda lo, hi, worst=worst: (
            f"swapping {worst.source} terms for {worst.target} terms ({set_name} set), all other words fixed, changes "
            f"{worst.flip_rate:.1%} of predictions over {worst.rows} texts (worst swap; all swaps: [95% CI {lo:.1%}, {hi:.1%}])"
            f"{_example_text(worst.example)}; "
            f"above {options.flip_rate_medium:g} is medium, above {options.flip_rate_high:g} high"),
        {"pair": worst.pair, "texts": worst.rows, "per_pair": {r.pair: r.flip_rate for r in results},
         "extra_forward_rows": sum(r.rows for r in results),
         "thresholds": {"medium": options.flip_rate_medium, "high": options.flip_rate_high}},
        high=options.flip_rate_high,
    )
    worst = max(results, key=lambda r: abs(r.shift))
    yield Check(
        "counterfactual_score_shift", "Counterfactual score shift (identity terms)", set_name, worst.shift,
        max_of([lambda level, r=r: absolute(mean_interval(r.shift, r.shift_sd, r.rows, level)) for r in results]),
        options.score_shift_medium, False, "medium", "paired t" + several, sum(r.rows for r in results),
        lambda lo, hi, worst=worst: (
            f"swapping {worst.source} terms for {worst.target} terms ({set_name} set) moves the {score_name} by "
            f"{worst.shift:+.4f} on average [95% CI {worst.shift_ci[0]:+.4f}, {worst.shift_ci[1]:+.4f}] over {worst.rows} texts; "
            f"the absolute shift, [{lo:.4f}, {hi:.4f}] over all swaps, above {options.score_shift_medium:g} is medium, "
            f"above {options.score_shift_high:g} high"),
        {"pair": worst.pair, "texts": worst.rows, "signed_ci": list(worst.shift_ci), "per_pair": {r.pair: r.shift for r in results},
         "thresholds": {"medium": options.score_shift_medium, "high": options.score_shift_high}},
        high=options.score_shift_high, by=abs(worst.shift),
    )
