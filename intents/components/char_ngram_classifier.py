"""Intent classifier: TF-IDF over character 1–4-grams of the normalised text + multinomial logistic regression.

Why not DIET: on our held-out sets (tests/data/nlu_heldout_*.tsv; set C written blind, before this model
was tried) DIET reached 0.89 while this linear model reached 0.97 with the same training data. Short,
colloquial, often mis-recognised Chinese utterances are mostly decided by a few characters (气, 饭, 修, 医,
救命, 唔啱); character n-grams with sublinear TF-IDF weigh them well and do not need word segmentation,
which is poor for Cantonese. Training takes a second instead of a minute.

Sound views (``pinyin: true``): the text also becomes toneless pinyin, and its syllable 1–3-grams and letter
3–6-grams are two more TF-IDF blocks (each L2-normalised on its own, as separate vectorizers would be). ASR
errors on short words are mostly homophones or near-homophones (挂号 → 挂好, 咳嗽 → 可怂, 罐 → 官): the characters
differ, the sound barely does. Measured on held-out requests spoken by our TTS through the phone line and
recognised by whisper-base (112 Mandarin texts; the view set was chosen on them, weights not tuned): 0.866 →
0.946 intent accuracy, typed held-out text 0.996 → 0.992 (offline replica of this component).

The model is stored as plain arrays (``model.npz``) and a JSON vocabulary — no pickle. Prediction is
re-implemented with numpy (counts → 1 + log tf → × idf → L2 per block → softmax(W·x + b)), identical to
sklearn's.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.shared.nlu.constants import (
    INTENT,
    INTENT_NAME_KEY,
    INTENT_RANKING_KEY,
    PREDICTED_CONFIDENCE_KEY,
    TEXT,
)
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData


def char_ngrams(text: str, min_n: int, max_n: int) -> list[str]:
    return [text[i : i + n] for n in range(min_n, max_n + 1) for i in range(len(text) - n + 1)]


@lru_cache(maxsize=4096)
def _syllables(text: str) -> tuple[str, ...]:
    """Toneless pinyin, once per text for both pinyin views."""
    from pypinyin import Style, lazy_pinyin

    return tuple(lazy_pinyin(text, style=Style.NORMAL, errors=lambda chars: list(chars)))


def pinyin_syllable_grams(text: str) -> list[str]:
    syl = _syllables(text)
    return ["py:" + " ".join(syl[i : i + n]) for n in (1, 2, 3) for i in range(len(syl) - n + 1)]


def pinyin_letter_grams(text: str) -> list[str]:
    s = "|" + "|".join(_syllables(text)) + "|"
    return ["pl:" + s[i : i + n] for n in (3, 4, 5, 6) for i in range(len(s) - n + 1)]


def feature_views(config: dict[str, Any]) -> list[tuple[str, Any]]:
    """(name, analyzer) per TF-IDF block, in the order the blocks are stored."""
    views: list[tuple[str, Any]] = [("chars", lambda s: char_ngrams(s, config["min_ngram"], config["max_ngram"]))]
    if config["pinyin"]:
        views += [("pinyin", pinyin_syllable_grams), ("pinyin_letters", pinyin_letter_grams)]
    return views


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=True)
class CharNgramIntentClassifier(GraphComponent, IntentClassifier):
    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {"min_ngram": 1, "max_ngram": 4, "pinyin": True, "C": 50.0, "max_iter": 3000, "ranking_length": 10}

    def __init__(self, config: dict[str, Any], model_storage: ModelStorage, resource: Resource) -> None:
        self._config = {**self.get_default_config(), **config}
        self._storage = model_storage
        self._resource = resource
        self._vocab: dict[str, int] = {}
        self._idf = np.zeros(0)
        self._coef = np.zeros((0, 0))
        self._intercept = np.zeros(0)
        self._labels: list[str] = []
        self._blocks: list[tuple[str, int, int]] = []  # (view, first column, end column)

    @classmethod
    def create(
        cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource, execution_context: ExecutionContext
    ) -> CharNgramIntentClassifier:
        return cls(config, model_storage, resource)

    # -- training ------------------------------------------------------------------------------------------
    def train(self, training_data: TrainingData) -> Resource:
        from scipy.sparse import hstack
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        examples = [m for m in training_data.intent_examples if m.get(TEXT) and m.get(INTENT)]
        labels = sorted({m.get(INTENT) for m in examples})
        if len(labels) < 2:
            return self._resource
        texts = [m.get(TEXT) for m in examples]
        self._vocab, self._blocks, blocks, idf = {}, [], [], []
        for name, analyzer in feature_views(self._config):
            vectorizer = TfidfVectorizer(analyzer=analyzer, sublinear_tf=True, lowercase=False)
            blocks.append(vectorizer.fit_transform(texts))
            start = len(self._vocab)
            self._vocab.update({k: start + int(v) for k, v in vectorizer.vocabulary_.items()})
            self._blocks.append((name, start, len(self._vocab)))
            idf.append(np.asarray(vectorizer.idf_, dtype=np.float64))
        x = hstack(blocks).tocsr()
        clf = LogisticRegression(C=self._config["C"], max_iter=self._config["max_iter"], class_weight="balanced", random_state=7)
        clf.fit(x, [m.get(INTENT) for m in examples])
        self._idf = np.concatenate(idf)
        self._labels = [str(c) for c in clf.classes_]
        self._coef = np.asarray(clf.coef_, dtype=np.float64)
        self._intercept = np.asarray(clf.intercept_, dtype=np.float64)
        with self._storage.write_to(self._resource) as folder:
            np.savez(Path(folder) / "model.npz", idf=self._idf, coef=self._coef, intercept=self._intercept)
            (Path(folder) / "vocab.json").write_text(
                json.dumps({"vocab": self._vocab, "labels": self._labels, "blocks": self._blocks}, ensure_ascii=False),
                encoding="utf-8",
            )
        return self._resource

    @classmethod
    def load(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> CharNgramIntentClassifier:
        self = cls(config, model_storage, resource)
        try:
            with model_storage.read_from(resource) as folder:
                arrays = np.load(Path(folder) / "model.npz")
                meta = json.loads((Path(folder) / "vocab.json").read_text(encoding="utf-8"))
        except (ValueError, FileNotFoundError):
            return self  # not trained (no NLU data): predicts nothing
        self._idf, self._coef, self._intercept = arrays["idf"], arrays["coef"], arrays["intercept"]
        self._vocab, self._labels = meta["vocab"], meta["labels"]
        self._blocks = [tuple(b) for b in meta.get("blocks", [("chars", 0, len(self._idf))])]
        return self

    # -- prediction ----------------------------------------------------------------------------------------
    def probabilities(self, text: str) -> np.ndarray:
        x = np.zeros(len(self._idf))
        views = dict(feature_views(self._config))
        for name, start, end in self._blocks:
            for gram in views[name](text):
                j = self._vocab.get(gram)
                if j is not None:
                    x[j] += 1.0
            block = x[start:end]  # a view of x
            nz = block > 0
            block[nz] = (1.0 + np.log(block[nz])) * self._idf[start:end][nz]
            norm = np.linalg.norm(block)
            if norm > 0:
                block /= norm
        scores = self._coef @ x + self._intercept
        if len(self._labels) == 2:  # sklearn's binary case: one row of coefficients
            p1 = 1.0 / (1.0 + np.exp(-scores[0]))
            return np.array([1.0 - p1, p1])
        scores -= scores.max()
        e = np.exp(scores)
        return e / e.sum()

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            text = message.get(TEXT)
            if not self._labels or not isinstance(text, str) or not text:
                continue
            probs = self.probabilities(text)
            order = np.argsort(-probs)[: self._config["ranking_length"]]
            ranking = [{INTENT_NAME_KEY: self._labels[i], PREDICTED_CONFIDENCE_KEY: float(probs[i])} for i in order]
            message.set(INTENT, ranking[0], add_to_output=True)
            message.set(INTENT_RANKING_KEY, ranking, add_to_output=True)
        return messages
