"""Facility agent: per-kind report rules, a simulated adapter and a Modbus TCP adapter."""
