"""bias.counterfactual on text: swap identity terms (he/she, names, religions, nationalities) and measure the change."""

from __future__ import annotations

import math
import re

import numpy as np

import audit
from audit import stats

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


def run(analysis, ctx):
    o = analysis.options
    texts = [str(t) for t in ctx.data.x]
    probs = np.asarray(ctx.predictions, dtype=np.float64)
    n_rows, n_classes = probs.shape
    binary = n_classes == 2
    score_class = np.ones(n_rows, dtype=np.int64) if binary else audit.predicted_classes(probs)
    clean_pred = audit.predicted_classes(probs)
    class_names = ctx.data.class_names or [str(i) for i in range(n_classes)]
    score_name = f"P({class_names[1]})" if binary else "probability of the predicted class"

    # Every variant of every row for every set and pair, then one batched predict call.
    plan = []  # (set, source, target, row indices, variant texts)
    absent = []
    for set_name, groups in term_sets(o).items():
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
    if not plan:
        ctx.note("no identity terms of any term set occur in the texts; nothing to substitute")
        return
    variants = [v for *_, batch in plan for v in batch]
    with ctx.progress(len(variants), "counterfactual term swaps") as progress:
        v_probs, _ = ctx.model.predict_both(np.array(variants, dtype=object))
        progress.advance(len(variants))

    by_set: dict[str, list] = {}
    offset = 0
    for set_name, a, b, rows, batch in plan:
        vp = v_probs[offset : offset + len(rows)]
        offset += len(rows)
        k = score_class[rows]
        shift = vp[np.arange(len(rows)), k] - probs[rows, k]
        flips = audit.predicted_classes(vp) != clean_pred[rows]
        n, n_flips = len(rows), int(flips.sum())
        flip_rate = n_flips / n
        flo, fhi = wilson(n_flips, n)
        lo, hi = stats.percentile_interval(stats.bootstrap_means(shift, ctx.rng, o.n_bootstrap))
        pair = f"{a}->{b}"
        example = None
        if n_flips or n:
            j = int(np.argmax(np.abs(shift)))
            example = {"original": texts[rows[j]], "variant": batch[j], "score_before": float(probs[rows[j], k[j]]),
                       "score_after": float(vp[j, k[j]])}
        details = {"term_set": set_name, "source": a, "target": b, "score": score_name, "example": example}
        yield audit.Metric("counterfactual_score_shift", float(shift.mean()), subject=set_name, group=pair,
                           lower=float(lo), upper=float(hi), count=n, details=details)
        yield audit.Metric("counterfactual_flip_rate", flip_rate, subject=set_name, group=pair, lower=flo, upper=fhi,
                           count=n, details=details)
        by_set.setdefault(set_name, []).append((pair, a, b, n, flip_rate, (flo, fhi), float(shift.mean()), (float(lo), float(hi)), example))

    for set_name, results in by_set.items():
        yield from _findings(set_name, results, score_name, o)


def _example_text(example) -> str:
    if not example:
        return ""
    return (f'; e.g. "{example["original"]}" -> "{example["variant"]}" moves it from '
            f'{example["score_before"]:.2f} to {example["score_after"]:.2f}')


def _findings(set_name, results, score_name, o):
    pair, a, b, n, flip_rate, (flo, fhi), _, _, example = max(results, key=lambda r: r[4])
    yield audit.Finding.graded(
        "counterfactual_flip_rate", "Counterfactual prediction flips (identity terms)", flip_rate,
        medium=o.flip_rate_medium, high=o.flip_rate_high, subject=set_name,
        message=(f"swapping {a} terms for {b} terms ({set_name} set), all other words fixed, changes {flip_rate:.1%} of "
                 f"predictions [95% CI {flo:.1%}, {fhi:.1%}] over {n} texts{_example_text(example)}; "
                 f"above {o.flip_rate_medium:g} is medium, above {o.flip_rate_high:g} high"),
        details={"pair": pair, "ci": [flo, fhi], "rows": n, "per_pair": {r[0]: r[4] for r in results},
                 "extra_forward_rows": sum(r[3] for r in results),
                 "thresholds": {"medium": o.flip_rate_medium, "high": o.flip_rate_high}},
    )
    pair, a, b, n, _, _, shift, (lo, hi), example = max(results, key=lambda r: abs(r[6]))
    yield audit.Finding.graded(
        "counterfactual_score_shift", "Counterfactual score shift (identity terms)", shift, by=abs(shift),
        medium=o.score_shift_medium, high=o.score_shift_high, subject=set_name,
        message=(f"swapping {a} terms for {b} terms ({set_name} set) moves the {score_name} by {shift:+.4f} on average "
                 f"[95% CI {lo:+.4f}, {hi:+.4f}] over {n} texts; an absolute shift above {o.score_shift_medium:g} is medium, "
                 f"above {o.score_shift_high:g} high"),
        details={"pair": pair, "ci": [lo, hi], "rows": n, "per_pair": {r[0]: r[6] for r in results},
                 "thresholds": {"medium": o.score_shift_medium, "high": o.score_shift_high}},
    )
