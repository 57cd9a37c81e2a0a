"""Regenerate src/inception_hub/serve/openapi.json, the published spec of the REST API.

python tools/make_openapi.py
"""

import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "inception_hub" / "serve" / "openapi.json"
SIGNATURES = ["serving_default", "image_classification", "image_feature_vector"]
FEATURES = ["image", "images", "image/encoded"]  # where a :classify example holds its image


def error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def post(
    summary: str,
    params: list,
    body: dict,
    ok: tuple[str, dict],
    bad: str,
    missing: str = "unknown model or version",
    too_large: str = "body or image count over the limit",
) -> dict:
    """A POST taking images: its body, its answer, and the refusals every such request can get."""
    return {
        "post": {
            "summary": summary,
            "parameters": params,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                "200": {"description": ok[0], "content": {"application/json": {"schema": ok[1]}}},
                "400": error(bad),
                "404": error(missing),
                "413": error(too_large),
                "429": error("queue full: retry later"),
                "503": error("shutting down"),
                "504": error("timed out"),
            },
        }
    }


def main() -> None:
    pixel = {"type": "array", "minItems": 3, "maxItems": 3, "items": {"type": "number", "minimum": 0, "maximum": 1}}
    floats = {
        "type": "array",
        "description": "height x width x 3 floats in [0, 1]",
        "items": {"type": "array", "items": pixel},
    }
    b64 = {
        "type": "object",
        "required": ["b64"],
        "additionalProperties": False,
        "properties": {"b64": {"type": "string", "format": "byte", "description": "a JPEG or PNG file, base64"}},
    }
    image = {"oneOf": [floats, b64]}
    instance = {
        "oneOf": [
            floats,
            b64,
            {"type": "object", "required": ["images"], "additionalProperties": False, "properties": {"images": image}},
        ]
    }
    signature = {"type": "string", "enum": SIGNATURES}
    body = {
        "oneOf": [
            {
                "type": "object",
                "required": ["instances"],
                "properties": {
                    "signature_name": signature,
                    "instances": {"type": "array", "minItems": 1, "items": instance},
                },
            },
            {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "signature_name": signature,
                    "inputs": {
                        "oneOf": [
                            {"type": "array", "minItems": 1, "items": image},
                            {
                                "type": "object",
                                "required": ["images"],
                                "properties": {"images": {"type": "array", "items": image}},
                            },
                        ]
                    },
                },
            },
        ]
    }
    rows = {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}
    result = {"type": "object", "properties": {"predictions": rows, "outputs": rows}}
    status = {
        "type": "object",
        "properties": {
            "model_version_status": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "version": {"type": "string"},
                        "state": {"type": "string"},
                        "status": {"type": "object"},
                    },
                },
            }
        },
    }
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[^/:]+$"}}
    version = {"name": "version", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}
    missing = error("unknown model or version")
    paths = {}
    for prefix, params in (("/v1/models/{name}", [name]), ("/v1/models/{name}/versions/{version}", [name, version])):
        paths[prefix] = {
            "get": {
                "summary": "Model status",
                "parameters": params,
                "responses": {
                    "200": {"description": "status", "content": {"application/json": {"schema": status}}},
                    "404": missing,
                },
            }
        }
        paths[prefix + "/metadata"] = {
            "get": {
                "summary": "Signatures",
                "parameters": params,
                "responses": {
                    "200": {
                        "description": "signature defs",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "404": missing,
                },
            }
        }
        paths[prefix + ":predict"] = post(
            "Logits or feature vectors for images",
            params,
            body,
            ("one row per image", result),
            "malformed JSON, wrong shape, NaN, values outside [0, 1], undecodable image",
        )
        example = {
            "type": "object",
            "description": "the image under one of image, images, image/encoded",
            "properties": {
                k: {"oneOf": [b64, {"type": "array", "maxItems": 1, "items": b64}, floats]} for k in FEATURES
            },
        }
        classify_body = {
            "type": "object",
            "required": ["examples"],
            "properties": {
                "signature_name": {"type": "string", "enum": SIGNATURES[:2]},
                "context": example,
                "examples": {"type": "array", "minItems": 1, "items": example},
                "top_k": {"type": "integer", "minimum": 1, "default": 5},
            },
        }
        pair = {
            "type": "array",
            "minItems": 2,
            "maxItems": 2,
            "items": {"oneOf": [{"type": "string"}, {"type": "number"}]},
        }
        classified = {
            "type": "object",
            "properties": {"result": {"type": "array", "items": {"type": "array", "items": pair}}},
        }
        paths[prefix + ":classify"] = post(
            "TF Serving's Classify: [label, probability] pairs, best first (classification models)",
            params,
            classify_body,
            ("per example", classified),
            "not a classification model or signature, malformed example, undecodable image",
        )
    paths["/healthz"] = {
        "get": {
            "summary": "Health",
            "responses": {"200": {"description": "serving"}, "503": {"description": "draining"}},
        }
    }
    paths["/metrics"] = {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text format"}}}}
    paths.update(v2_routes(name, version))
    paths.update(page_routes(name, b64["properties"]["b64"]))
    paths["/openapi.json"] = {
        "get": {"summary": "This description", "responses": {"200": {"description": "OpenAPI 3"}}}
    }
    spec = {
        "openapi": "3.0.3",
        "info": {
            "title": "inception-hub serving API",
            "version": "1",
            "description": (
                "TensorFlow Serving's REST API for the Inception modules. An image is float32 [H][W][3] in [0, 1], "
                'or a base64 JPEG/PNG as {"b64": ...}. The model page (GET /, /models/{name}) uses the same API, '
                "and /models/{name}/explain and /models/{name}/similar besides. The Open Inference Protocol (v2) "
                "is under /v2: input images, FP32 [N, H, W, 3] in [0, 1] or BYTES [N] of JPEG/PNG files."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}}
        },
    }
    OUT.write_text(json.dumps(spec, indent=1) + "\n")
    print(f"wrote {OUT}")


def v2_routes(name: dict, version: dict) -> dict:
    """The Open Inference Protocol's routes (KServe v2), with the binary tensor data extension."""
    tensor = {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string", "enum": ["FP32", "BYTES"]},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer", "minimum": 0}}},
            "data": {"type": "array", "description": "row-major values; BYTES as base64 strings"},
        },
    }
    wanted = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "enum": ["logits", "feature_vector"]},
            "parameters": {
                "type": "object",
                "properties": {
                    "binary_data": {"type": "boolean"},
                    "classification": {"type": "integer", "minimum": 0, "description": 'top k as "score:index:label"'},
                },
            },
        },
    }
    request = {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}},
            "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": tensor},
            "outputs": {"type": "array", "items": wanted},
        },
    }
    answer = {
        "type": "object",
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": tensor},
        },
    }
    binary = {
        "schema": {"type": "string", "format": "binary"},
        "description": "the JSON, then the binary tensors; Inference-Header-Content-Length gives the JSON's length",
    }
    length = {"name": "Inference-Header-Content-Length", "in": "header", "schema": {"type": "integer", "minimum": 1}}

    def get(summary: str, ok: str, params: list, not_ok: dict | None = None) -> dict:
        responses = {"200": {"description": ok, "content": {"application/json": {"schema": {"type": "object"}}}}}
        return {"get": {"summary": summary, "parameters": params, "responses": {**responses, **(not_ok or {})}}}

    paths = {
        "/v2": get("Server metadata: name, version, extensions", "metadata", []),
        "/v2/health/live": get("Liveness", '{"live": true}', []),
        "/v2/health/ready": get("Readiness", '{"ready": true}', [], {"503": {"description": "draining or busy"}}),
    }
    for prefix, params in (("/v2/models/{name}", [name]), ("/v2/models/{name}/versions/{version}", [name, version])):
        missing = {"404": error("unknown model or version")}
        paths[prefix] = get("Model metadata: inputs and outputs", "metadata", params, missing)
        paths[prefix + "/ready"] = get(
            "Model readiness", '{"name": ..., "ready": true}', params, {**missing, "503": {"description": "draining"}}
        )
        infer = post(
            "Inference (JSON tensors, or the binary tensor data extension)",
            [*params, length],
            request,
            ("the outputs asked for (default: the main one)", answer),
            "malformed header or tensor, wrong shape or type, NaN, values outside [0, 1], undecodable image",
        )
        infer["post"]["requestBody"]["content"]["application/octet-stream"] = binary
        infer["post"]["responses"]["200"]["content"]["application/octet-stream"] = binary
        paths[prefix + "/infer"] = infer
    return paths


def page_routes(name: dict, photo: dict) -> dict:
    """The routes the model page calls: class activation maps, and with serve --index similar photos."""
    one_photo = {"type": "object", "required": ["b64"], "additionalProperties": False}
    explain_body = {
        **one_photo,
        "properties": {
            "b64": photo,
            "class": {"type": "integer", "minimum": 0, "description": "the class to map (default: the top one)"},
        },
    }
    unit = {"type": "number", "minimum": 0, "maximum": 1}
    explained = {
        "type": "object",
        "properties": {
            "class": {"type": "integer"},
            "label": {"type": "string"},
            "heatmap": {
                "type": "array",
                "description": "rows of the map, values in [0, 1]",
                "items": {"type": "array", "items": unit},
            },
            "central_fraction": {
                "type": "number",
                "description": "the share of each side of the photo the map covers, centred",
            },
            "predictions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "class": {"type": "integer"},
                        "label": {"type": "string"},
                        "score": {"type": "number"},
                    },
                },
            },
        },
    }
    similar_body = {
        **one_photo,
        "properties": {"b64": photo, "k": {"type": "integer", "minimum": 1, "maximum": 50, "default": 10}},
    }
    neighbour = {
        "type": "object",
        "properties": {
            "rank": {"type": "integer"},
            "name": {"type": "string"},
            "similarity": {"type": "number", "description": "cosine similarity"},
            "thumbnail": {"type": "string", "description": "address of the photo's thumbnail"},
        },
    }
    found = {"type": "object", "properties": {"neighbours": {"type": "array", "items": neighbour}}}
    limits = {"missing": "unknown model", "too_large": "body over the limit"}
    index = {"name": "i", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}
    return {
        "/models/{name}/explain": post(
            "Class activation map (Grad-CAM at the final end point) of one photo, for the model page "
            "(ImageNet classifiers served from their checkpoint)",
            [name],
            explain_body,
            ("the map over the central crop the network sees", explained),
            "not a checkpoint classifier, malformed body, class out of range, undecodable image",
            **limits,
        ),
        "/models/{name}/similar": post(
            "The indexed photos most similar to one photo, by the model's feature vector "
            "(only with serve --index, for models whose features the index holds)",
            [name],
            similar_body,
            ("best first", found),
            "a model whose features the index does not hold, malformed body, undecodable image",
            **limits,
        ),
        "/index/thumbnails/{i}": {
            "get": {
                "summary": "A small JPEG of indexed photo i (only with serve --index)",
                "parameters": [index],
                "responses": {
                    "200": {"description": "image/jpeg"},
                    "404": error("no such indexed photo, or it cannot be read now"),
                },
            }
        },
    }


if __name__ == "__main__":
    main()
