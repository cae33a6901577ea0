"""The rule kinds, one small state machine per module."""
