"""Run actions against trackers built from JSON, inside the Rasa environment (test helper).

Reads ``{"cases": [{"action": name, "tracker": {...}}]}`` on stdin, runs each action with the domain of
``intents/domain.yml`` through rasa-sdk's own executor, and prints ``[{"events": [...], "responses": [...]}]``.
Used by ``tests/unit/test_dialogue_actions.py`` (the assistant's env has no rasa-sdk). Run with cwd intents/.
``--list`` prints the names of the registered actions instead.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import yaml
from rasa_sdk.executor import ActionExecutor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # intents/: the `actions` and `components` packages
sys.path.append(str(Path(__file__).resolve().parents[2]))  # the project root: assistant/phrases.py (pure data)


async def main(payload: dict, domain: dict) -> None:
    executor = ActionExecutor()
    executor.register_package("actions")
    results = []
    for case in payload["cases"]:
        request = {"next_action": case["action"], "sender_id": case["tracker"]["sender_id"], "tracker": case["tracker"], "domain": domain, "version": "3.6.2"}
        response = await executor.run(request)
        results.append(response or {"events": [], "responses": []})
    json.dump(results, sys.stdout, ensure_ascii=False)


def registered() -> None:
    """``--list``: the names of the actions the action server registers, as JSON."""
    executor = ActionExecutor()
    executor.register_package("actions")
    json.dump(sorted(executor.actions), sys.stdout)


if __name__ == "__main__":
    if sys.argv[1:] == ["--list"]:
        registered()
    else:
        domain_path = Path(__file__).resolve().parent.parent / "domain.yml"
        asyncio.run(main(json.load(sys.stdin), yaml.safe_load(domain_path.read_text(encoding="utf-8"))))
