"""`commhub alerts|silence|users|audit`: the operator CLI on the same service layer as the API (no HTTP)."""
