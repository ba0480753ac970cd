"""``assistant eval fraud --data FILE.jsonl [--split heldout] --json``

Feeds each dialogue's turns one at a time, as a live call would, and scores the call by whether (and when)
the detector flags it. Prints ``{"n","precision","recall","f1","false_positive_rate","median_turns_to_flag",
...}`` and writes a PR curve (max risk per call as the score) to ``reports/fraud_pr_<name>.png``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="JSONL dialogues (shared fraud format)")
    parser.add_argument("--split", choices=("all", "heldout", "train"), default="all",
                        help="deterministic split by hashed id (train the n-gram model on 'train' only)")
    parser.add_argument("--threshold", type=float, help="flag threshold (default settings.fraud.flag_threshold)")
    parser.add_argument("--no-ngram", action="store_true", help="cue layer only")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--errors", action="store_true", help="list misclassified dialogues with evidence")
    parser.add_argument("--no-plot", action="store_true", help="skip the PR-curve PNG")


def evaluate(dialogues: list[dict], *, detector) -> dict:
    from assistant.fraud_guard.detector import score_dialogue

    tp = fp = fn = tn = 0
    turns_to_flag: list[int] = []
    scores: list[tuple[float, int]] = []
    per_turn_ms: list[float] = []
    errors: list[dict] = []
    for d in dialogues:
        t0 = time.perf_counter()
        risk, flagged_at, watch = score_dialogue(detector, d["turns"])
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
    from assistant.fraud_guard.dataset import load_dialogues, split
    from assistant.fraud_guard.detector import ScamDetector
    from assistant.settings import load_settings

    settings = load_settings()
    threshold = args.threshold if args.threshold is not None else settings.fraud.flag_threshold
    dialogues = split(load_dialogues(args.data), args.split)
    detector = ScamDetector.default(threshold=threshold, use_ngram=not args.no_ngram)
    result = evaluate(dialogues, detector=detector)
    scores, errors = result.pop("_scores"), result.pop("_errors")
    result["data"] = str(args.data)
    result["split"] = args.split
    if not args.no_plot:
        name = f"{args.data.stem}_{args.split}{'_cues' if args.no_ngram else ''}"
        png = plot_pr(scores, settings.paths.reports_dir / f"fraud_pr_{name}.png", title=f"fraud guard PR: {name}")
        result["pr_curve_png"] = str(png) if png else None
    if args.errors:
        result["errors"] = errors
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0
