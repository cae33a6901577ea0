"""Rules: small state machines over the envelope stream that fire and clear alert signals."""
