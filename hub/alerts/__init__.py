"""Alerts in SQL: identity (rule, subject), lifecycle with an audit trail, rule state and the notice outbox."""
