"""The service layer the HTTP routes and the `commhub alerts|silence|users|audit` CLI share."""
