# commhub: one image for the hub workers, the API, the agents and the simulator.
FROM python:3.11-slim-bookworm
WORKDIR /app
COPY pyproject.toml requirements.lock README.md ./
COPY commhub commhub
COPY hub hub
COPY edge_agents edge_agents
COPY simulators simulators
COPY api api
COPY bench bench
COPY configs configs
COPY scenarios scenarios
RUN pip install --no-cache-dir -c requirements.lock '.[postgres]'
ENTRYPOINT ["commhub"]
