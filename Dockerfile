# inception-hub's server: TF Serving's REST and gRPC APIs and the Open Inference Protocol (v2),
# on ONNX Runtime and OpenVINO, without TensorFlow.
#
#   docker build -t inception-hub .                                  # weights at first start
#   docker build -t inception-hub --build-arg WEIGHTS="inception_v1 inception_resnet_v2" .
#   docker run -p 8500:8500 -p 8501:8501 -v inception-hub-cache:/var/cache/inception-hub inception-hub
#
# The converted weights and engine models live in /var/cache/inception-hub: baked in by the
# WEIGHTS build argument (`inception-hub fetch` at build time), or downloaded once into a volume
# mounted there. Arguments after the image name replace CMD, e.g. `--models inception_resnet_v2`.
# KServe and scripts written for tensorflow_model_server run `inception-hub-model-server` with
# TF Serving's flags instead (see deploy/kubernetes/).
ARG PYTHON=3.11

FROM python:${PYTHON}-slim AS build
# The lean install plus the server and OpenVINO, in a virtual environment copied whole below.
COPY . /src
RUN python -m venv /opt/inception-hub \
 && /opt/inception-hub/bin/pip install --no-cache-dir "/src[serve,engine]"

FROM python:${PYTHON}-slim
COPY --from=build /opt/inception-hub /opt/inception-hub
ENV PATH=/opt/inception-hub/bin:$PATH \
    INCEPTION_HUB_CACHE=/var/cache/inception-hub \
    PYTHONUNBUFFERED=1
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin inception \
 && mkdir -p /var/cache/inception-hub && chown 10001 /var/cache/inception-hub
USER 10001
ARG WEIGHTS=""
RUN for model in $WEIGHTS; do inception-hub fetch "$model" --no-progress || exit 1; done
VOLUME /var/cache/inception-hub
EXPOSE 8500 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/v2/health/ready', timeout=4)"
ENTRYPOINT ["inception-hub", "serve"]
CMD ["--models", "inception_v1", "--host", "0.0.0.0", "--port", "8501", "--grpc-port", "8500"]
