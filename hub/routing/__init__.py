"""Routing: who gets an alert (by grid, layer, code, severity and duty roster), silences, inhibition, deadlines."""
