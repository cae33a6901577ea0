# commhub hub image: the hub workers. No OpenCV, no pymodbus (the agents' image has them). The API and console
# image is the same build with EXTRAS=postgres,camera: it blurs faces in snapshots with OpenCV.
FROM python:3.11-slim-bookworm
ARG EXTRAS=postgres
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
RUN pip install --no-cache-dir -c requirements.lock ".[${EXTRAS}]" \
    && case ",${EXTRAS}," in *,camera,*) ;; *) python -c "import importlib.util as u, sys; \
       sys.exit(bool(u.find_spec('cv2') or u.find_spec('pymodbus')))" ;; esac
# A user of our own; /data is where the named volumes mount (a new volume takes this directory's owner).
RUN groupadd --gid 10001 commhub && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin commhub \
    && mkdir -p /data/snapshots && chown -R 10001:10001 /data
USER 10001:10001
ENTRYPOINT ["commhub"]
