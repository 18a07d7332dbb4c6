# lpms in a container: RTMP on 1935, HTTP (HLS, status, API, metrics) on 8000.
#
#   docker build -t lpms .
#   docker run --rm -p 1935:1935 -p 8000:8000 -v lpms-data:/var/lib/lpms lpms
#
# Settings come from LPMS_* variables (`-e LPMS_HLS_RECORD=true`), from flags after
# the image name (`lpms serve --profiles P360p30fps16x9`), or from a mounted file
# (`-v ./lpms.toml:/etc/lpms/lpms.toml:ro`, then `serve --config /etc/lpms/lpms.toml`);
# see lpms.example.toml. `docker run ... lpms serve --print-config` shows the result.
#
# `docker stop` sends SIGTERM: lpms ends every live playlist, finishes the
# recordings and exits within Settings.shutdown_timeout (5 s) of its clients, plus
# up to transcode.finish_timeout (30 s) while a ladder finishes its last segments.
# Docker kills after 10 s by default; with --profiles give it more
# (`docker run --stop-timeout 60`, compose `stop_grace_period: 60s`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# PyAV's wheels bundle FFmpeg and its codecs: no system packages needed.
WORKDIR /usr/src/lpms
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && rm -rf /usr/src/lpms

RUN useradd --system --user-group --home-dir /var/lib/lpms --create-home \
        --shell /usr/sbin/nologin lpms
WORKDIR /var/lib/lpms
VOLUME ["/var/lib/lpms"]

# Recordings (LPMS_HLS_RECORD=true) go to the volume.
ENV LPMS_WORKDIR=/var/lib/lpms

USER lpms
EXPOSE 1935 8000
STOPSIGNAL SIGTERM
ENTRYPOINT ["lpms"]
CMD ["serve"]
