"""Turn (topic, payload) into an Accepted message or a DeadLetter saying why not."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from pydantic import ValidationError

from commhub import topics
from commhub.community import Device
from commhub.topics import TopicError, TopicParts
from commhub.wire import KIND_BODIES, DeadLetter, DeviceKind, Envelope, body_channel
from hub.ingest.message import Accepted

_KINDS = {k.value: k for k in DeviceKind}


class Validator:
    """Checks topic grammar, payload schema and the agreement between the two."""

    def __init__(self, root: str, registry: dict[str, Device], worker: str) -> None:
        self.root = root
        self.registry = registry
        self.worker = worker
        self._topics: dict[str, TopicParts | str] = {}

    def parse_topic(self, topic: str) -> TopicParts | str:
        """Parsed parts, or the reason the topic is invalid (cached: devices repeat their topics)."""
        cached = self._topics.get(topic)
        if cached is None:
            parts: TopicParts | str
            try:
                parsed = topics.parse(topic, self.root)
                ok = parsed.device_kind in _KINDS
                parts = parsed if ok else f"unknown device kind {parsed.device_kind!r}"
            except TopicError as e:
                parts = str(e)
            if len(self._topics) > 500_000:
                self._topics.clear()
            self._topics[topic] = parts
            cached = parts
        return cached

    def check(self, topic: str, payload: bytes, received_at: float) -> Accepted | DeadLetter:
        """Validate one envelope message (evt, tele, state, birth)."""
        parts = self.parse_topic(topic)
        if isinstance(parts, str):
            return self.reject("topic", parts, topic, payload, received_at)
        try:
            env = Envelope.model_validate_json(payload)
        except ValidationError as e:
            # include_input=False: the payload may carry personal data, which must not reach logs or storage.
            errs = e.errors(include_input=False, include_url=False)
            reason = "json" if any(x["type"] == "json_invalid" for x in errs) else "schema"
            detail = "; ".join(f"{'.'.join(str(p) for p in x['loc']) or '<root>'}: {x['msg']}" for x in errs[:5])
            return self.reject(reason, detail, topic, payload, received_at)
        if env.device_id != parts.device_id:
            return self.reject("device_mismatch", f"payload device_id {env.device_id!r} is not the topic's "
                               f"{parts.device_id!r}", topic, payload, received_at)
        body_type = env.body.type
        if body_type not in KIND_BODIES[_KINDS[parts.device_kind]]:
            return self.reject("kind_body", f"a {parts.device_kind} may not send {body_type}",
                               topic, payload, received_at)
        if body_channel(body_type) != parts.channel.value:
            return self.reject("channel_body", f"{body_type} belongs on channel {body_channel(body_type)!r}, "
                               f"not {parts.channel.value!r}", topic, payload, received_at)
        return Accepted(parts, env, self.registry.get(parts.device_id), received_at)

    def reject(self, reason: str, detail: str, topic: str, payload: bytes, received_at: float) -> DeadLetter:
        """Build the dead letter for a refused message."""
        return DeadLetter(reason=reason, detail=detail[:2000], topic=topic[:65535],  # type: ignore[arg-type]
                          payload_b64=base64.b64encode(payload[:65536]).decode(), payload_bytes=len(payload),
                          received_at=datetime.fromtimestamp(received_at, UTC), worker=self.worker)

