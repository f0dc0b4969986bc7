"""OpenAI's schemas that the gateway's API description ships (gateway/api/docs/openai/), made
from OpenAI's openapi.yaml in the shared folder the way its chat-schemas.json was made.

The `$ref` closure of some root schemas of `components.schemas`, as a standalone JSON Schema
(draft 2020-12) with no external refs: every `#/components/schemas/X` (and every
`discriminator.mapping` target) becomes `#/$defs/X`, and OpenAPI 3.0's `nullable: true` is made
to take effect (`type: T` becomes `[T, "null"]`, `null` joins an `enum`, a schema without a
`type` is wrapped in `anyOf: [<schema>, {type: null}]`), the `nullable` keys kept. Everything
else is unchanged. Made from the chat roots it gives the shared chat-schemas.json byte for byte
(test_openapi checks that, and that the shipped files are what it makes).

    python tests/openai_extract.py    # writes the shipped files again from the shared openapi.yaml
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SHARED = Path(__file__).resolve().parents[2] / "shared" / "openai-openapi"
SPEC = SHARED / "openapi.yaml"
SHIPPED = Path(__file__).resolve().parents[1] / "gateway" / "api" / "docs" / "openai"
COMPONENTS = "#/components/schemas/"
COMMIT = "f85dbe223d40e1a31cba812ab2d755c7e98a92a3"  # openai/openai-openapi, as the shared README says


@dataclass(frozen=True, slots=True)
class Extract:
    file: str
    name: str  # the file's `$id` is urn:openai-openapi:<name>
    title: str
    roots: tuple[str, ...]


CHAT = Extract(
    "chat-schemas.json",
    "chat-schemas",
    "OpenAI chat-completions schemas (extracted)",
    (
        "CreateChatCompletionRequest",
        "CreateChatCompletionResponse",
        "CreateChatCompletionStreamResponse",
        "ChatCompletionRequestMessage",
        "ErrorResponse",
        "Error",
        "ListModelsResponse",
        "Model",
    ),
)
EMBEDDINGS = Extract(
    "embeddings-schemas.json",
    "embeddings-schemas",
    "OpenAI embeddings schemas (extracted)",
    ("CreateEmbeddingRequest", "CreateEmbeddingResponse"),
)
RESPONSES = Extract(
    "responses-schemas.json",
    "responses-schemas",
    "OpenAI Responses API schemas (extracted)",
    ("CreateResponse", "Response", "ResponseStreamEvent"),
)
SHIPPED_EXTRACTS = (EMBEDDINGS, RESPONSES)  # chat-schemas.json is the shared file itself, copied


def load_spec(path: Path = SPEC) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml reads the 3 MB in a second
    with path.open("rb") as file:  # bytes: the C loader reads a str several times slower
        spec: dict[str, Any] = yaml.load(file, Loader=loader)
    return spec


def referenced(node: Any) -> set[str]:
    """The names of the component schemas `node` refers to, directly."""
    names: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                names.add(value.removeprefix(COMPONENTS))
            elif key == "mapping" and isinstance(value, dict):
                names.update(target.removeprefix(COMPONENTS) for target in value.values())
            else:
                names |= referenced(value)
    elif isinstance(node, list):
        for value in node:
            names |= referenced(value)
    return names


def closure(schemas: dict[str, Any], roots: tuple[str, ...]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += referenced(schemas[name]) - seen
    return seen


def rewritten(node: Any) -> Any:
    """`node` with its refs into `$defs` and its `nullable: true` in effect."""
    if isinstance(node, list):
        return [rewritten(value) for value in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            out[key] = "#/$defs/" + value.removeprefix(COMPONENTS)
        elif key == "mapping" and isinstance(value, dict):
            out[key] = {name: "#/$defs/" + target.removeprefix(COMPONENTS) for name, target in value.items()}
        else:
            out[key] = rewritten(value)
    if out.get("nullable") is not True:
        return out
    if "type" not in out:
        inner = {key: value for key, value in out.items() if key != "nullable"}
        return {"anyOf": [inner, {"type": "null"}], "nullable": True}
    kinds = [out["type"]] if isinstance(out["type"], str) else list(out["type"])
    if "null" not in kinds:
        out["type"] = [*kinds, "null"]
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def extract(spec: dict[str, Any], which: Extract) -> str:
    """The file's text."""
    schemas = spec["components"]["schemas"]
    names = closure(schemas, which.roots)
    bundle = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:openai-openapi:{which.name}",
        "title": which.title,
        "description": (
            f"Extracted from openai/openai-openapi openapi.yaml (commit {COMMIT}): components.schemas closure of "
            f"{', '.join(which.roots)}. Refs rewritten to #/$defs/. OpenAPI 'nullable: true' turned into type "
            "[..., null]."
        ),
        "x-roots": list(which.roots),
        "$defs": {name: rewritten(schemas[name]) for name in sorted(names)},
    }
    return json.dumps(bundle, indent=1) + "\n"


def main() -> None:
    spec = load_spec()
    for which in SHIPPED_EXTRACTS:
        (SHIPPED / which.file).write_text(extract(spec, which), encoding="utf-8")
        print(f"wrote {SHIPPED / which.file}")


if __name__ == "__main__":
    main()
