#!/bin/sh
# Starts the GPU container's backends on loopback, then the router on :8080 in the foreground.
# SageMaker runs the image as `docker run <image> serve`: the argument is accepted and ignored.
# Models come from the model data SageMaker unpacks into /opt/ml/model (see README.md).
set -eu

MODEL_DIR="${SM_MODEL_DIR:-/opt/ml/model}"
LLAMA_MODEL="${LLAMA_MODEL:-model.gguf}"          # GGUF file, relative to MODEL_DIR or absolute
WHISPER_MODEL="${WHISPER_MODEL:-ggml-whisper.bin}" # whisper.cpp ggml file, likewise
LLAMA_CTX_SIZE="${LLAMA_CTX_SIZE:-4096}"           # tokens per request (PASTURE_CHAT_CONTEXT_LENGTH)
LLAMA_PARALLEL="${LLAMA_PARALLEL:-4}"              # requests generated at once
LLAMA_PORT=8081
WHISPER_PORT=8082

resolve() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "$MODEL_DIR/$1" ;;
    esac
}

llama_path="$(resolve "$LLAMA_MODEL")"
if [ -f "$llama_path" ]; then
    # The server splits --ctx-size among its slots: give each slot the full context.
    # shellcheck disable=SC2086  # LLAMA_ARGS is a list of extra flags
    llama-server \
        --model "$llama_path" \
        --host 127.0.0.1 --port "$LLAMA_PORT" \
        --n-gpu-layers 999 \
        --ctx-size "$((LLAMA_CTX_SIZE * LLAMA_PARALLEL))" \
        --parallel "$LLAMA_PARALLEL" \
        ${LLAMA_ARGS:-} &
    export ROUTER_LLAMA_URL="http://127.0.0.1:$LLAMA_PORT"
else
    echo "entrypoint: no chat model at $llama_path: chat is off" >&2
    export ROUTER_LLAMA_URL=""
fi

whisper_path="$(resolve "$WHISPER_MODEL")"
if [ -f "$whisper_path" ]; then
    # shellcheck disable=SC2086  # WHISPER_ARGS is a list of extra flags
    whisper-server \
        --model "$whisper_path" \
        --host 127.0.0.1 --port "$WHISPER_PORT" \
        ${WHISPER_ARGS:-} &
    export ROUTER_WHISPER_URL="http://127.0.0.1:$WHISPER_PORT"
else
    echo "entrypoint: no whisper model at $whisper_path: transcription is off" >&2
    export ROUTER_WHISPER_URL=""
fi

exec python /opt/router/router.py
