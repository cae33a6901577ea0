"""The API's data services: InfluxQL events and telemetry, devices and coverage, snapshots and evidence."""
