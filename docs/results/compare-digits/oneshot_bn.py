"""One-shot before and after per-child batch-norm recalibration, on the scores `instanas compare` journaled.

Every child in ``oneshot.csv`` was scored on the held-out training images twice: with the meta-graph's shared
batch-norm statistics (``accuracy_shared_bn``, how this project scored one-shot before issue 15) and with statistics
re-estimated for that child (``accuracy``, the one-shot practice). This prints, for each, how many children score
above 80 % and the Pareto frontier chosen on those scores (its cheapest point and its size).

    python docs/results/compare-digits/oneshot_bn.py docs/results/compare-digits/interim/oneshot.csv \
        > docs/results/compare-digits/interim/oneshot_bn.md
"""

import sys

import pandas as pd

from instanas.baselines.oneshot import pareto_frontier


def summary(scores: pd.DataFrame, column: str) -> dict:
    frontier = pareto_frontier(scores.assign(accuracy=scores[column]))
    cheapest, best = frontier.iloc[0], frontier.iloc[-1]
    return {
        "above 80 %": f"{int((scores[column] > 0.8).sum())} of {len(scores)}",
        "median accuracy": f"{100 * scores[column].median():.1f} %",
        "frontier points": str(len(frontier)),
        "cheapest frontier point": f"#{cheapest['index']}: {cheapest['lut_ms']:.2f} ms, {100 * cheapest['accuracy']:.1f} %",
        "most accurate frontier point": f"#{best['index']}: {best['lut_ms']:.2f} ms, {100 * best['accuracy']:.1f} %",
    }


def main(path: str) -> None:
    scores = pd.read_csv(path)
    rows = {"shared statistics (before)": summary(scores, "accuracy_shared_bn"),
            "re-estimated per child (after)": summary(scores, "accuracy")}
    keys = list(next(iter(rows.values())))
    print(
        f"One-shot children scored on the held-out training images ({len(scores)} children, "
        f"{scores['lut_ms'].min():.2f}–{scores['lut_ms'].max():.2f} ms in the LUT; "
        f"{scores['wall_s'].median():.1f} s per child at the median, {scores['wall_s'].sum() / 60:.0f} min in all).\n"
    )
    print("| batch-norm statistics | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(row[key] for key in keys) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
