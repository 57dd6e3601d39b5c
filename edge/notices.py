"""Notices: what is wrong right now, by topic, for `status`, the preview and systemd's STATUS.

Each part sets and clears its own topic ("storage", "engine", "preview", ...);
the newest message per topic wins. Shared between threads.
"""
from __future__ import annotations

import threading


class Notices:
    def __init__(self):
        self._lock = threading.Lock()
        self._by_topic: dict[str, str] = {}

    def set(self, topic: str, message: str) -> None:
        with self._lock:
            self._by_topic[topic] = message

    def clear(self, topic: str, containing: str = "") -> None:
        """Clear a topic (only if its message contains `containing`, when given)."""
        with self._lock:
            message = self._by_topic.get(topic)
            if message is not None and containing in message:
                del self._by_topic[topic]

    def get(self, topic: str) -> str | None:
        with self._lock:
            return self._by_topic.get(topic)

    def messages(self) -> list[str]:
        with self._lock:
            return list(self._by_topic.values())
