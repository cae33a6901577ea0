"""Notifiers: the MQTT alert topic, webhooks with retry, and the in-process live feed."""
