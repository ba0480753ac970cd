"""``assistant eval fraud --data FILE.jsonl [--split heldout | --cv 5] [--no-punct] [--asr-noise 0.1] --json``

Feeds each dialogue's turns one at a time, as a live call would, and scores the call by whether (and when)
the detector flags it. Prints ``{"n","precision","recall","f1","false_positive_rate","median_turns_to_flag",
...}`` and writes a PR curve (max risk per call as the score) to ``reports/fraud_pr_<name>.png``.

Every run also scores the same dialogues with the punctuation removed (``"no_punct"``: what ASR gives),
and with ``--asr-noise P`` with a fraction P of the Chinese characters swapped for a same-pinyin character
(``"asr_noise"``: a cheap stand-in for recognition errors). ``--no-punct`` makes the unpunctuated text the
main result. ``--cv K`` is K-fold cross-validation over the file: for each fold both learned layers are
retrained (``train.train_all``) on the other folds plus the project's own dialogues, and the fold is scored.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from assistant.fraud_guard.dataset import asr_noise, load_dialogues, split
from assistant.fraud_guard.detector import ScamDetector
from assistant.fraud_guard.text import strip_punct
from assistant.fraud_guard.train import fold_of, load_own, train_all
from assistant.settings import load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="JSONL dialogues (shared fraud format)")
    parser.add_argument("--split", choices=("all", "heldout", "train"), default="all",
                        help="deterministic split by hashed id (train the n-gram model on 'train' only)")
    parser.add_argument("--threshold", type=float, help="flag threshold (default settings.fraud.flag_threshold)")
    parser.add_argument("--no-ngram", action="store_true", help="cue layer only")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--errors", action="store_true", help="list misclassified dialogues with evidence")
    parser.add_argument("--no-plot", action="store_true", help="skip the PR-curve PNG")
    parser.add_argument("--no-punct", action="store_true", help="score the dialogues with punctuation removed")
    parser.add_argument("--asr-noise", type=float, default=0.0, metavar="P",
                        help="also score with a fraction P of characters swapped for same-pinyin ones")
    parser.add_argument("--no-learned", action="store_true", help="hand-weighted cue sum instead of the learned layer")
    parser.add_argument("--cv", type=int, default=0, metavar="K",
                        help="K-fold cross-validation over --data (retrains both learned layers per fold)")


def no_punct(dialogues: list[dict]) -> list[dict]:
    return [dict(d, turns=[dict(t, text=strip_punct(t.get("text", ""))) for t in d["turns"]]) for d in dialogues]


def _summary(r: dict) -> dict:
    return {k: r[k] for k in ("n", "recall", "false_positive_rate", "precision")}


def by_language(dialogues: list[dict], *, detector) -> dict:
    """Recall / FPR per ``lang`` field (cmn, yue) where the file has one."""
    langs = sorted({d["lang"] for d in dialogues if d.get("lang")})
    return {lang: _summary(evaluate([d for d in dialogues if d.get("lang") == lang], detector=detector))
            for lang in langs}


def cross_validate(dialogues: list[dict], *, k: int, threshold: float, asr_rate: float = 0.0, log=None) -> dict:
    """K-fold CV over ``dialogues``: both learned layers retrained per fold on the other folds + own data."""
    own = load_own()
    parts: dict[str, dict] = {}
    for fold in range(k):
        test = [d for d in dialogues if fold_of(str(d["id"]), k, salt="cv") == fold]
        pool = [d for d in dialogues if fold_of(str(d["id"]), k, salt="cv") != fold] + own
        ngram, combiner = train_all(pool)
        det = ScamDetector(threshold=threshold, ngram=ngram, combiner=combiner)
        sets = {"main": test, "no_punct": no_punct(test)}
        if asr_rate:
            sets["asr_noise"] = asr_noise(test, asr_rate)
        for name, ds in sets.items():
            r = evaluate(ds, detector=det)
            acc = parts.setdefault(name, {"tp": 0, "fp": 0, "fn": 0, "tn": 0, "errors": [], "scores": []})
            nf, nl = r["n_fraud"], r["n_legit"]
            tp = round(r["recall"] * nf)
            fp = round(r["false_positive_rate"] * nl)
            acc["tp"] += tp
            acc["fn"] += nf - tp
            acc["fp"] += fp
            acc["tn"] += nl - fp
            acc["errors"] += r["_errors"]
            acc["scores"] += r["_scores"]
        if log:
            log(f"cv fold {fold}: {len(test)} dialogues scored")
    out = {}
    for name, a in parts.items():
        tp, fp, fn, tn = a["tp"], a["fp"], a["fn"], a["tn"]
        out[name] = {"n": tp + fp + fn + tn, "n_fraud": tp + fn, "n_legit": fp + tn,
                     "recall": round(tp / (tp + fn), 4) if tp + fn else 0.0,
                     "false_positive_rate": round(fp / (fp + tn), 4) if fp + tn else 0.0,
                     "precision": round(tp / (tp + fp), 4) if tp + fp else 0.0,
                     "_errors": a["errors"], "_scores": a["scores"]}
    return out


def evaluate(dialogues: list[dict], *, detector) -> dict:
    tp = fp = fn = tn = 0
    turns_to_flag: list[int] = []
    scores: list[tuple[float, int]] = []
    per_turn_ms: list[float] = []
    errors: list[dict] = []
    turn_cpu_ms: list[float] = []
    for d in dialogues:
        t0 = time.perf_counter()
        watch = detector.watch()
        for t in d["turns"]:
            c0 = time.thread_time()
            watch.add_turn(t.get("speaker", "caller"), t.get("text", ""))
            turn_cpu_ms.append((time.thread_time() - c0) * 1000)
        risk, flagged_at = watch.max_risk, watch.flagged_at_turn
        per_turn_ms.append((time.perf_counter() - t0) * 1000 / max(1, len(d["turns"])))
        truth = d["label"] == "fraud"
        pred = flagged_at is not None
        scores.append((risk, int(truth)))
        if truth and pred:
            tp += 1
            turns_to_flag.append(flagged_at)
        elif truth:
            fn += 1
        elif pred:
            fp += 1
        else:
            tn += 1
        if truth != pred:
            errors.append({"id": d.get("id"), "label": d["label"], "risk": round(risk, 3), "flagged_at": flagged_at,
                           "scam_type": watch.scam_type(), "evidence": watch.evidence_phrases()})
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "n": len(dialogues),
        "n_fraud": tp + fn,
        "n_legit": fp + tn,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "false_positive_rate": round(fp / (fp + tn), 4) if fp + tn else 0.0,
        "median_turns_to_flag": statistics.median(turns_to_flag) if turns_to_flag else None,
        "threshold": detector.threshold,
        "ngram": detector.ngram is not None,
        "per_turn_ms_mean": round(statistics.fmean(per_turn_ms), 3) if per_turn_ms else None,
        "per_turn_ms_max": round(max(per_turn_ms), 3) if per_turn_ms else None,
        # CPU time of each add_turn (time.thread_time: less distorted by other processes than wall clock)
        "turn_cpu_ms_median": round(statistics.median(turn_cpu_ms), 3) if turn_cpu_ms else None,
        "turn_cpu_ms_p95": round(sorted(turn_cpu_ms)[int(0.95 * (len(turn_cpu_ms) - 1))], 3) if turn_cpu_ms else None,
        "_scores": scores,
        "_errors": errors,
    }


def plot_pr(scores: list[tuple[float, int]], path: Path, *, title: str) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        return None
    pos = sum(y for _, y in scores)
    pts = []
    for thr in sorted({s for s, _ in scores} | {0.5}, reverse=True):
        tp = sum(1 for s, y in scores if s >= thr and y)
        fp = sum(1 for s, y in scores if s >= thr and not y)
        if tp + fp:
            pts.append((tp / pos if pos else 0.0, tp / (tp + fp)))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 4))
    if pts:
        ax.plot([r for r, _ in pts], [p for _, p in pts], marker=".")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    threshold = args.threshold if args.threshold is not None else settings.fraud.flag_threshold
    dialogues = split(load_dialogues(args.data), args.split)
    if args.cv:
        cv = cross_validate(dialogues, k=args.cv, threshold=threshold, asr_rate=args.asr_noise,
                            log=lambda m: print(m, file=sys.stderr))
        main = cv.pop("no_punct") if args.no_punct else cv.pop("main")
        cv.pop("main", None)
        result = {k: v for k, v in main.items() if not k.startswith("_")}
        result.update({"cv_folds": args.cv, "threshold": threshold, "learned": True, "ngram": True})
        scores, errors = main["_scores"], main["_errors"]
        for name, r in cv.items():
            result[name] = _summary(r)
    else:
        detector = ScamDetector.default(threshold=threshold, use_ngram=not args.no_ngram, learned=not args.no_learned)
        main_set = no_punct(dialogues) if args.no_punct else dialogues
        result = evaluate(main_set, detector=detector)
        scores, errors = result.pop("_scores"), result.pop("_errors")
        result["learned"] = detector.combiner is not None
        if not args.no_punct:
            result["no_punct"] = _summary(evaluate(no_punct(dialogues), detector=detector))
        if args.asr_noise:
            result["asr_noise"] = _summary(evaluate(asr_noise(dialogues, args.asr_noise), detector=detector))
        if any(d.get("lang") for d in dialogues):
            result["by_language"] = by_language(main_set, detector=detector)
    result["data"] = str(args.data)
    result["split"] = args.split
    result["no_punct_main"] = bool(args.no_punct)
    if args.asr_noise:
        result["asr_noise_rate"] = args.asr_noise
    if not args.no_plot:
        name = (f"{args.data.stem}_{args.split}{'_cv' if args.cv else ''}{'_cues' if args.no_ngram else ''}"
                f"{'_nopunct' if args.no_punct else ''}")
        png = plot_pr(scores, settings.paths.reports_dir / f"fraud_pr_{name}.png", title=f"fraud guard PR: {name}")
        result["pr_curve_png"] = str(png) if png else None
    if args.errors:
        result["errors"] = errors
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0
