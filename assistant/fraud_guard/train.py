"""Train the scam detector's learned layers (build time only; needs scikit-learn).

    python -m assistant.fraud_guard.train [--data ../shared/data/fraud_dialogues/dev.jsonl] [--no-corpus]

Two layers, both logistic regression:

1. the char n-gram style model over the caller's turns (``ngram_weights.json``), and
2. the combiner (``combiner_weights.json``) over ``detector.call_features``: who asked whom for what (the
   cue table's request / pressure / genuine-call categories, warnings, combinations) plus the n-gram logit.
   Its n-gram feature is computed *out of fold* (the n-gram model that scores a dialogue never saw it), so
   the combiner learns how far to trust the style model on calls it has not seen; every dialogue is also
   fed without punctuation (ASR output), and genuine calls contribute every prefix (the risk is taken
   after every turn, so a genuine call must stay low all the way through, not only at its end).

Training data: the corpus's *train* split (``dataset.is_heldout`` keeps 1/5 for ``--split heldout``) and
the project's own written dialogues (``OWN_TRAIN_FILES``), weighted ``OWN_WEIGHT``× because the corpus's
genuine calls never talk about money or codes. The operating point is chosen on out-of-fold scores of
that training pool (recall is maximised subject to ``MAX_FPR_CORPUS`` / ``MAX_FPR_OWN``), and the bias is
shifted so that it lands on risk 0.5. ``hardcases-dev`` and the blind sets are never used here.

Licence: the corpus (TeleAntiFraud) has no licence file and is for research use. ``--no-corpus`` trains
the combiner on the project's own dialogues only and without the n-gram feature
(``combiner_weights_cues.json``): the weights to ship where corpus-derived weights may not be shipped.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Iterable
from pathlib import Path

from assistant.fraud_guard.dataset import asr_noise, caller_text, load_dialogues, split
from assistant.fraud_guard.detector import (
    COMBINER_NO_NGRAM_PATH,
    COMBINER_PATH,
    CallWatch,
    Combiner,
    ScamDetector,
    call_features,
)
from assistant.fraud_guard.ngram import NGRAM_RANGE, WEIGHTS_PATH, NgramModel, prepare
from assistant.fraud_guard.text import strip_punct
from assistant.settings import load_settings

DATA_DIR = Path(__file__).resolve().parents[2] / "tests" / "data"
# the project's own written dialogues used for training (never the kblind set: that one is only evaluated)
OWN_TRAIN_FILES = ("fraud_hardcases_own.jsonl", "fraud_hardcases_blind.jsonl", "fraud_train_k.jsonl")
OWN_WEIGHT = 4.0
MAX_FPR_CORPUS = 0.005
MAX_FPR_OWN = 0.05
INNER_FOLDS = 4
COMBINER_C = 0.5
# training also sees every dialogue with this fraction of characters swapped for same-pinyin ones (a seed
# different from the evaluation's), so the combiner learns how far cues survive recognition errors
NOISE_RATE = 0.1
NOISE_SEED = 7


def fold_of(dialogue_id: str, k: int, *, salt: str = "fold") -> int:
    return hashlib.sha1(f"{salt}:{dialogue_id}".encode()).digest()[0] % k


def load_own(files: Iterable[str] = OWN_TRAIN_FILES) -> list[dict]:
    out: list[dict] = []
    for name in files:
        p = DATA_DIR / name
        if p.exists():
            for d in load_dialogues(p):
                out.append(dict(d, _own=True))
    return out


def without_punct(d: dict) -> dict:
    return dict(d, turns=[dict(t, text=strip_punct(t.get("text", ""))) for t in d["turns"]])


def train_ngram(dialogues: list[dict], *, max_features: int = 20000, c: float = 1.0) -> NgramModel:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import normalize as l2

    texts = [prepare(caller_text(d)) for d in dialogues]
    y = [1 if d["label"] == "fraud" else 0 for d in dialogues]
    w = [OWN_WEIGHT if d.get("_own") else 1.0 for d in dialogues]
    vec = CountVectorizer(analyzer="char", ngram_range=NGRAM_RANGE, binary=True, lowercase=False, min_df=2)
    x = l2(vec.fit_transform(texts))
    clf = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
    clf.fit(x, y, sample_weight=w)
    coef = clf.coef_[0]
    vocab = vec.get_feature_names_out()
    order = sorted(range(len(coef)), key=lambda i: -abs(coef[i]))[:max_features]
    weights = {str(vocab[i]): float(coef[i]) for i in order if abs(coef[i]) > 1e-4}
    n_own = sum(1 for d in dialogues if d.get("_own"))
    meta = {"n_train": len(dialogues), "n_own": n_own, "ngram_range": list(NGRAM_RANGE), "C": c,
            "features": len(weights),
            "source": "TeleAntiFraud dev split (train part, research use) + own written dialogues, caller turns only"}
    return NgramModel(weights=weights, bias=float(clf.intercept_[0]), meta=meta)


def prefix_features(d: dict, *, ngram: NgramModel | None) -> list[dict[str, float]]:
    """``call_features`` after every turn of the dialogue, as a live call would see them."""
    watch = CallWatch(detector=ScamDetector(ngram=ngram, use_ngram=ngram is not None))
    state = ngram.new_state() if ngram is not None else None
    out: list[dict[str, float]] = []
    for t in d["turns"]:
        speaker = "caller" if t.get("speaker") == "caller" else "callee"
        watch.turns += 1
        watch.evidence.extend(watch.detector.match_turn(t.get("text", ""), speaker=speaker, turn=watch.turns))
        if ngram is not None and speaker == "caller":
            ngram.update(state, t.get("text", ""))
        out.append(call_features(watch.evidence, ngram.logit(state) if ngram is not None else None,
                                 prior=watch._cue_logit()))
    return out


def featurise(d: dict, *, ngram: NgramModel | None, noisy: dict | None = None) -> list[list[dict[str, float]]]:
    """Per-prefix features of the dialogue as written, without punctuation (ASR output) and, when given,
    with simulated recognition errors (``noisy``: same-pinyin character swaps)."""
    variants = [d, without_punct(d)] + ([noisy] if noisy is not None else [])
    return [prefix_features(v, ngram=ngram) for v in variants]


def dialogue_rows(d: dict, variants: list[list[dict[str, float]]]) -> list[tuple[dict[str, float], int, float]]:
    """(features, label, weight) rows: a scam's whole call; every prefix of a genuine call."""
    w = OWN_WEIGHT if d.get("_own") else 1.0
    rows: list[tuple[dict[str, float], int, float]] = []
    for feats in variants:
        if not feats:
            continue
        if d["label"] == "fraud":
            rows.append((feats[-1], 1, w))
        else:
            for f in feats[:-1]:
                rows.append((f, 0, 0.5 * w / max(1, len(feats) - 1)))
            rows.append((feats[-1], 0, w))
    return rows


def _sign(name: str) -> int:
    """Sign constraint of a feature: a request or pressure can only raise the risk, genuine-call evidence
    can only lower it (+1 / -1); 0 = free. Keeps rare categories from learning a nonsensical sign."""
    if name.startswith(("gen:",)) or name == "warned":
        return -1
    if name.startswith(("ask:", "combo:")) or name in ("prior", "ngram", "callee:complied"):
        return 1
    return 0


def _fit(rows: list[tuple[dict[str, float], int, float]], *, c: float = COMBINER_C) -> tuple[dict[str, float], float]:
    """Weighted, class-balanced logistic regression with L2 (strength 1/C) and sign constraints (L-BFGS-B)."""
    import numpy as np
    from scipy.optimize import minimize

    names = sorted({k for r in rows for k in r[0]})
    index = {k: i for i, k in enumerate(names)}
    x = np.zeros((len(rows), len(names)))
    for i, (f, _, _) in enumerate(rows):
        for k, v in f.items():
            x[i, index[k]] = v
    y = np.array([r[1] for r in rows], dtype=float)
    w = np.array([r[2] for r in rows], dtype=float)
    for label in (0.0, 1.0):  # class_weight="balanced" on top of the sample weights
        m = y == label
        if m.any():
            w[m] *= w.sum() / (2.0 * w[m].sum())
    w /= w.sum()
    lam = 1.0 / (c * len(rows))

    def loss(theta):
        z = x @ theta[:-1] + theta[-1]
        p = 1.0 / (1.0 + np.exp(-z))
        ll = np.sum(w * (np.logaddexp(0.0, z) - y * z))
        grad_z = w * (p - y)
        g = np.concatenate([x.T @ grad_z + lam * theta[:-1], [grad_z.sum()]])
        return ll + 0.5 * lam * np.dot(theta[:-1], theta[:-1]), g

    bounds = []
    for k in names:
        sign = _sign(k)
        bounds.append((0.0, None) if sign > 0 else (None, 0.0) if sign < 0 else (None, None))
    bounds.append((None, None))
    res = minimize(loss, np.zeros(len(names) + 1), jac=True, method="L-BFGS-B", bounds=bounds)
    theta = res.x
    return {k: float(theta[index[k]]) for k in names if abs(theta[index[k]]) > 1e-6}, float(theta[-1])


def _max_logit(weights: dict[str, float], bias: float, feats: list[dict[str, float]]) -> float:
    return max(bias + sum(weights.get(k, 0.0) * v for k, v in f.items()) for f in feats)


def choose_threshold(scored: list[tuple[float, int, bool]]) -> float:
    """Lowest logit threshold whose false-positive rates stay within bounds (corpus and own calls)."""
    def fpr(thr: float, own: bool) -> float:
        neg = [s for s, y, o in scored if y == 0 and o == own]
        return sum(1 for s in neg if s >= thr) / len(neg) if neg else 0.0

    candidates = sorted({s for s, _, _ in scored} | {0.0})
    for thr in candidates:
        if fpr(thr, False) <= MAX_FPR_CORPUS and fpr(thr, True) <= MAX_FPR_OWN:
            return thr
    return candidates[-1]


def train_all(pool: list[dict], *, use_ngram: bool = True, log=None) -> tuple[NgramModel | None, Combiner]:
    """Both layers from one training pool (corpus dialogues + own dialogues marked ``_own``)."""
    folds = [fold_of(str(d["id"]), INNER_FOLDS) for d in pool]
    noisy_pool: list[dict | None] = [None] * len(pool)
    if NOISE_RATE:
        noisy_pool = list(asr_noise(pool, NOISE_RATE, seed=NOISE_SEED))
    feats_by_dialogue: list[list[list[dict[str, float]]]] = [[] for _ in pool]
    for k in range(INNER_FOLDS):
        ngram_k = train_ngram([d for d, f in zip(pool, folds, strict=True) if f != k]) if use_ngram else None
        for i, d in enumerate(pool):
            if folds[i] == k:
                feats_by_dialogue[i] = featurise(d, ngram=ngram_k, noisy=noisy_pool[i])
        if log:
            log(f"inner fold {k}: features computed")
    rows_by_dialogue = [dialogue_rows(d, fs) for d, fs in zip(pool, feats_by_dialogue, strict=True)]
    # out-of-fold scores of the combiner itself → operating point
    scored: list[tuple[float, int, bool]] = []
    for k in range(INNER_FOLDS):
        weights, bias = _fit([r for i, rs in enumerate(rows_by_dialogue) if folds[i] != k for r in rs])
        for i, d in enumerate(pool):
            if folds[i] == k:
                for feats in feats_by_dialogue[i]:
                    if feats:
                        scored.append((_max_logit(weights, bias, feats), int(d["label"] == "fraud"), bool(d.get("_own"))))
    threshold = choose_threshold(scored)
    weights, bias = _fit([r for rs in rows_by_dialogue for r in rs])
    ngram = train_ngram(pool) if use_ngram else None
    n_own = sum(1 for d in pool if d.get("_own"))
    meta = {"n_train": len(pool), "n_own": n_own, "own_weight": OWN_WEIGHT, "C": COMBINER_C,
            "threshold_logit_oof": round(threshold, 4), "max_fpr_corpus": MAX_FPR_CORPUS, "max_fpr_own": MAX_FPR_OWN,
            "ngram_feature": use_ngram,
            "source": ("TeleAntiFraud dev train split (research use) + own dialogues" if len(pool) > n_own
                       else "own written dialogues only")}
    return ngram, Combiner(weights=weights, bias=bias - threshold, meta=meta)


def main(argv: list[str] | None = None) -> int:

    settings = load_settings()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=settings.paths.shared_dir / "data" / "fraud_dialogues" / "dev.jsonl")
    p.add_argument("--no-corpus", action="store_true",
                   help="own dialogues only, no n-gram feature → combiner_weights_cues.json")
    args = p.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    own = load_own()
    if args.no_corpus:
        _, combiner = train_all(own, use_ngram=False, log=log)
        combiner.save(COMBINER_NO_NGRAM_PATH)
        log(f"wrote {COMBINER_NO_NGRAM_PATH} ({len(own)} own dialogues)")
        return 0
    if not args.data.exists():
        log(f"skip: {args.data} missing; keeping {WEIGHTS_PATH}")
        return 0
    pool = split(load_dialogues(args.data), "train") + own
    ngram, combiner = train_all(pool, log=log)
    assert ngram is not None
    ngram.save(WEIGHTS_PATH)
    combiner.save(COMBINER_PATH)
    log(f"wrote {WEIGHTS_PATH} ({WEIGHTS_PATH.stat().st_size // 1024} KiB) and {COMBINER_PATH}; "
        f"{len(pool)} training dialogues ({len(own)} own)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
