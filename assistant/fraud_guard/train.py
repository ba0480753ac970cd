"""Train the char n-gram weights from ../shared (build time only; needs scikit-learn).

    python -m assistant.fraud_guard.train [--data ../shared/data/fraud_dialogues/dev.jsonl]

Trains on the *training* split only (``dataset.is_heldout`` keeps 1/5 aside for ``assistant eval fraud
--split heldout``), caller turns only, and keeps the strongest ``--max-features`` weights so the file
stays well under 1 MB. The dialogues themselves are never written anywhere.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from assistant.fraud_guard.dataset import caller_text, load_dialogues, split
from assistant.fraud_guard.ngram import NGRAM_RANGE, WEIGHTS_PATH, NgramModel, prepare


def train(dialogues: list[dict], *, max_features: int = 20000, c: float = 1.0) -> NgramModel:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import normalize as l2

    texts = [prepare(caller_text(d)) for d in dialogues]
    y = [1 if d["label"] == "fraud" else 0 for d in dialogues]
    vec = CountVectorizer(analyzer="char", ngram_range=NGRAM_RANGE, binary=True, lowercase=False, min_df=2)
    x = l2(vec.fit_transform(texts))
    clf = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
    clf.fit(x, y)
    coef = clf.coef_[0]
    vocab = vec.get_feature_names_out()
    order = sorted(range(len(coef)), key=lambda i: -abs(coef[i]))[:max_features]
    weights = {str(vocab[i]): float(coef[i]) for i in order if abs(coef[i]) > 1e-4}
    meta = {"n_train": len(dialogues), "ngram_range": list(NGRAM_RANGE), "C": c, "features": len(weights),
            "source": "TeleAntiFraud dev split (train part), caller turns only"}
    return NgramModel(weights=weights, bias=float(clf.intercept_[0]), meta=meta)


def main(argv: list[str] | None = None) -> int:
    from assistant.settings import load_settings

    settings = load_settings()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=settings.paths.shared_dir / "data" / "fraud_dialogues" / "dev.jsonl")
    p.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    p.add_argument("--max-features", type=int, default=20000)
    p.add_argument("-C", type=float, default=1.0)
    args = p.parse_args(argv)
    if not args.data.exists():
        print(f"skip: {args.data} missing; keeping {args.out}", file=sys.stderr)
        return 0
    dialogues = split(load_dialogues(args.data), "train")
    model = train(dialogues, max_features=args.max_features, c=args.C)
    model.save(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB, {len(model.weights)} n-grams, "
          f"{len(dialogues)} training dialogues)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
