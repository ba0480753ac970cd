"""Intent classifier: TF-IDF over character 1–4-grams of the normalised text + multinomial logistic regression.

Why not DIET: on our held-out sets (tests/data/nlu_heldout_*.tsv; set C written blind, before this model
was tried) DIET reached 0.89 while this linear model reached 0.97 with the same training data. Short,
colloquial, often mis-recognised Chinese utterances are mostly decided by a few characters (气, 饭, 修, 医,
救命, 唔啱); character n-grams with sublinear TF-IDF weigh them well and do not need word segmentation,
which is poor for Cantonese. Training takes a second instead of a minute.

The model is stored as plain arrays (``model.npz``) and a JSON vocabulary — no pickle. Prediction is
re-implemented with numpy (counts → 1 + log tf → × idf → L2 → softmax(W·x + b)), identical to sklearn's.
"""

from __future__ import annotations

import json
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


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=True)
class CharNgramIntentClassifier(GraphComponent, IntentClassifier):
    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {"min_ngram": 1, "max_ngram": 4, "C": 50.0, "max_iter": 3000, "ranking_length": 10}

    def __init__(self, config: dict[str, Any], model_storage: ModelStorage, resource: Resource) -> None:
        self._config = {**self.get_default_config(), **config}
        self._storage = model_storage
        self._resource = resource
        self._vocab: dict[str, int] = {}
        self._idf = np.zeros(0)
        self._coef = np.zeros((0, 0))
        self._intercept = np.zeros(0)
        self._labels: list[str] = []

    @classmethod
    def create(
        cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource, execution_context: ExecutionContext
    ) -> CharNgramIntentClassifier:
        return cls(config, model_storage, resource)

    # -- training ------------------------------------------------------------------------------------------
    def train(self, training_data: TrainingData) -> Resource:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        examples = [m for m in training_data.intent_examples if m.get(TEXT) and m.get(INTENT)]
        labels = sorted({m.get(INTENT) for m in examples})
        if len(labels) < 2:
            return self._resource
        cfg = self._config
        vectorizer = TfidfVectorizer(
            analyzer=lambda s: char_ngrams(s, cfg["min_ngram"], cfg["max_ngram"]), sublinear_tf=True, lowercase=False
        )
        x = vectorizer.fit_transform([m.get(TEXT) for m in examples])
        clf = LogisticRegression(C=cfg["C"], max_iter=cfg["max_iter"], class_weight="balanced", random_state=7)
        clf.fit(x, [m.get(INTENT) for m in examples])
        self._vocab = {k: int(v) for k, v in vectorizer.vocabulary_.items()}
        self._idf = np.asarray(vectorizer.idf_, dtype=np.float64)
        self._labels = [str(c) for c in clf.classes_]
        self._coef = np.asarray(clf.coef_, dtype=np.float64)
        self._intercept = np.asarray(clf.intercept_, dtype=np.float64)
        with self._storage.write_to(self._resource) as folder:
            np.savez(Path(folder) / "model.npz", idf=self._idf, coef=self._coef, intercept=self._intercept)
            (Path(folder) / "vocab.json").write_text(
                json.dumps({"vocab": self._vocab, "labels": self._labels}, ensure_ascii=False), encoding="utf-8"
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
        return self

    # -- prediction ----------------------------------------------------------------------------------------
    def probabilities(self, text: str) -> np.ndarray:
        x = np.zeros(len(self._idf))
        for gram in char_ngrams(text, self._config["min_ngram"], self._config["max_ngram"]):
            j = self._vocab.get(gram)
            if j is not None:
                x[j] += 1.0
        nz = x > 0
        x[nz] = (1.0 + np.log(x[nz])) * self._idf[nz]
        norm = np.linalg.norm(x)
        if norm > 0:
            x /= norm
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
