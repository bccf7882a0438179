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


def run(analysis, ctx):
    o = analysis.options
    model = ctx.model
    index = ctx.sample_rows(o.max_rows, note="{n} rows in the data; {max_rows} sampled (seeded) to bound the cost (option max_rows)")
    take = (lambda a: a) if index is None else (lambda a: a[index])
    labels, agreement = reference_labels(ctx)
    texts = [str(t) for t in take(ctx.data.x)]
    y = take(labels)
    clean = take(ctx.predictions)
    correct = audit.predicted_classes(clean) == y
    n = len(texts)
    words = [t.split(" ") for t in texts]
    queries = np.zeros(n, dtype=np.int64)
    broken = np.zeros(n, dtype=bool)

    # Importance: drop each word once, all texts in one call.
    owners, positions, variants = [], [], []
    too_long = 0
    for r in np.flatnonzero(correct):
        if len(words[r]) < 2:
            continue
        if len(words[r]) >= o.budget:  # ranking alone would spend the budget
            too_long += 1
            continue
        for i in range(len(words[r])):
            owners.append(r)
            positions.append(i)
            variants.append(" ".join(words[r][:i] + words[r][i + 1 :]))
    order: dict[int, list[int]] = {}
    if variants:
        p = model.predict(np.array(variants, dtype=object))
        owners_a, positions_a = np.asarray(owners), np.asarray(positions)
        drop = clean[owners_a, y[owners_a]] - p[np.arange(len(p)), y[owners_a]]
        np.add.at(queries, owners_a, 1)
        for r in np.unique(owners_a):
            mine = owners_a == r
            order[int(r)] = list(positions_a[mine][np.argsort(-drop[mine], kind="stable")])
    current = {r: list(words[r]) for r in order}
    edited = {r: 0 for r in order}
    score = {r: float(clean[r, y[r]]) for r in order}
    with ctx.progress(None, "word-level attack") as bar:
        step = 0
        while True:
            batch, owners = [], []
            for r in list(order):
                limit = max(1, int(MAX_EDITED_SHARE * len(words[r])))
                if broken[r] or edited[r] >= limit or step >= len(order[r]):
                    continue
                position = order[r][step]
                options = candidates(current[r][position])
                options = options[: max(0, o.budget - int(queries[r]))]
                for edit in options:
                    trial = list(current[r])
                    trial[position] = edit
                    batch.append(" ".join(trial))
                    owners.append((r, position, edit))
            if not batch:
                break
            p = model.predict(np.array(batch, dtype=object))
            best: dict[int, tuple[float, str, int, bool]] = {}
            for (r, position, edit), row in zip(owners, p):
                queries[r] += 1
                value = float(row[y[r]])
                flipped = int(audit.predicted_classes(row[None])[0]) != y[r]
                if r not in best or (flipped, -value) > (best[r][3], -best[r][0]):
                    best[r] = (value, edit, position, flipped)
            for r, (value, edit, position, flipped) in best.items():
                if value < score[r] or flipped:
                    current[r][position] = edit
                    edited[r] += 1
                    score[r] = value
                broken[r] = flipped
            step += 1
            bar.advance(1)

    n_correct = int(correct.sum())
    robust = correct & ~broken
    clean_accuracy = float(correct.mean())
    robust_accuracy = float(robust.mean())
    successes = np.flatnonzero(broken)
    median_queries = float(np.median(queries[successes])) if len(successes) else float("nan")
    what = "agreement with clean predictions" if agreement else "accuracy"
    yield audit.Metric("clean_accuracy", clean_accuracy, count=n)
    yield audit.Metric("robust_accuracy", robust_accuracy, count=n, details={"attack": "greedy word-level character edits"})
    yield audit.Metric("attack_success_rate", len(successes) / n_correct if n_correct else None, count=n_correct)
    yield audit.Metric("median_queries_successful", median_queries if len(successes) else None, count=len(successes))
    yield audit.Metric("queries_total", float(queries.sum()), count=n, unit="forward rows")
    ratio = robust_accuracy / clean_accuracy if clean_accuracy > 0 else 1.0
    example = ""
    if len(successes):
        r = int(successes[0])
        example = f'; e.g. "{texts[r]}" -> "{" ".join(current[r])}"'
    yield audit.Finding(
        check="robust_accuracy", title="Robust accuracy under a word-level black-box attack", severity=audit.Severity.MEDIUM,
        passed=ratio >= o.min_robust_accuracy_ratio, value=robust_accuracy, threshold=o.min_robust_accuracy_ratio * clean_accuracy,
        message=(f"editing at most {MAX_EDITED_SHARE:.0%} of a text's words with typos (greedy, most important word first, "
                 f"budget {o.budget} queries a text) lowers {what} from {clean_accuracy:.3f} to {robust_accuracy:.3f} "
                 f"({ratio:.0%} of clean; at least {o.min_robust_accuracy_ratio:.0%} required); {len(successes)} of "
                 f"{n_correct} texts changed, median {median_queries:.0f} queries{example}"),
        details={"queries_total": int(queries.sum()), "rows": n, "budget": o.budget,
                 "edits": "adjacent swap, drop, keyboard neighbour, case", "max_edited_share": MAX_EDITED_SHARE},
    )
    if too_long:
        ctx.note(f"{too_long} text(s) have at least as many words as the budget ({o.budget} queries) and were not attacked")
    if o.epsilon is not None:
        ctx.note("epsilon and p_init apply to numeric inputs; the text attack is bounded by the share of edited words")
