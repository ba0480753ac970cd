"""Rasa graph components: script/punctuation normaliser (before the tokenizer) and out-of-scope → nlu_fallback.

``ChineseNormalizer`` rewrites each message's text with ``components.normalize.normalize`` both when the
model is trained and when a message is parsed, so 石油氣 and 石油气, "你好，" and "你好" are one input.

``OutOfScopeAsFallback`` runs after the FallbackClassifier: the model learns off-topic talk as Rasa's
built-in ``out_of_scope`` intent, and this component reports it as ``nlu_fallback`` (same confidence), the
one name the pipeline and the rules treat as "not understood".
"""

from __future__ import annotations

from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import INTENT, INTENT_NAME_KEY, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from components.normalize import normalize

OUT_OF_SCOPE = "out_of_scope"
NLU_FALLBACK = "nlu_fallback"


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER], is_trainable=False)
class ChineseNormalizer(GraphComponent):
    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> ChineseNormalizer:
        return cls()

    @staticmethod
    def _apply(message: Message) -> None:
        text = message.get(TEXT)
        if isinstance(text, str) and text and not text.startswith("/"):
            message.set(TEXT, normalize(text) or text, add_to_output=True)

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        for message in training_data.training_examples:
            self._apply(message)
        return training_data

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            self._apply(message)
        return messages


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=False)
class OutOfScopeAsFallback(GraphComponent):
    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> OutOfScopeAsFallback:
        return cls()

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            intent = message.get(INTENT) or {}
            if intent.get(INTENT_NAME_KEY) == OUT_OF_SCOPE:
                message.set(INTENT, {**intent, INTENT_NAME_KEY: NLU_FALLBACK}, add_to_output=True)
                ranking = [
                    {**item, INTENT_NAME_KEY: NLU_FALLBACK} if item.get(INTENT_NAME_KEY) == OUT_OF_SCOPE else item
                    for item in message.get(INTENT_RANKING_KEY) or []
                ]
                seen: set[str] = set()
                deduped = [i for i in ranking if not (i.get(INTENT_NAME_KEY) in seen or seen.add(i.get(INTENT_NAME_KEY)))]
                message.set(INTENT_RANKING_KEY, deduped, add_to_output=True)
        return messages
