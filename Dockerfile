# The worker image (also runs `iu replay` and `iu train`: every iu command). CPU torch: the encoder
# uses a GPU when one is present (IU_DEVICE=auto), so swap the torch wheel for a CUDA one to use it.
FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 \
    IU_DATA_DIR=/var/iu/data IU_MODEL_DIR=/var/iu/models
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY models models
COPY streams streams
RUN pip install . torch==2.13.0
EXPOSE 6066
ENTRYPOINT ["iu"]
CMD ["worker", "--loglevel", "info"]
