# One image for the API and the workers. The torch wheel comes from PyPI's
# default index (a CUDA build on x86-64), so workers can use a GPU.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY biaslab ./biaslab
COPY backend ./backend
COPY worker ./worker
COPY frontend ./frontend
RUN pip install --no-cache-dir .

ENV BIASLAB_DATA_DIR=/data
EXPOSE 8000
CMD ["biaslab", "serve", "--host", "0.0.0.0", "--no-worker", "--auth"]
