"""Checks `thrum serve`'s OpenAI embeddings endpoint with the `openai` Python client, unchanged:
`client.embeddings.create` with the client's default encoding (base64, decoded by the client) and
with `encoding_format="float"`. Prints one JSON object: both results' embeddings, the model and
usage the server reported. Run with the venv-serve interpreter of scripts/install-test-data.sh.

    python openai_check.py HOST:PORT MODEL TEXT...
"""
import json
import sys

import openai


def main():
    address, model, texts = sys.argv[1], sys.argv[2], sys.argv[3:]
    client = openai.OpenAI(base_url=f"http://{address}/v1", api_key="not-needed", max_retries=0)
    default = client.embeddings.create(model=model, input=texts)
    floats = client.embeddings.create(model=model, input=texts, encoding_format="float")
    single = client.embeddings.create(model=model, input=texts[0])
    print(json.dumps({
        "model": default.model,
        "prompt_tokens": default.usage.prompt_tokens,
        "total_tokens": default.usage.total_tokens,
        "default": [d.embedding for d in default.data],
        "float": [d.embedding for d in floats.data],
        "indices": [d.index for d in default.data],
        "single": single.data[0].embedding,
        "openai": openai.__version__,
    }))


if __name__ == "__main__":
    main()
