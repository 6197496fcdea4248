"""Validate a JSON response body (stdin) against Zulip's OpenAPI description.

Usage: validate_response.py OPENAPI_YAML PATH METHOD STATUS < body.json
Exits 0 when the body matches the schema, 1 with the reason otherwise.
"""

import json
import sys

import openapi_schema_validator
import yaml


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    spec_path, path, method, status = sys.argv[1:]
    with open(spec_path) as f:
        spec = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    response = spec["paths"][path][method]["responses"][status]
    while "$ref" in response:  # e.g. "#/components/responses/SimpleSuccess"
        node = spec
        for part in response["$ref"].lstrip("#/").split("/"):
            node = node[part]
        response = node
    schema = dict(response["content"]["application/json"]["schema"])
    schema["components"] = spec["components"]
    body = json.load(sys.stdin)
    try:
        openapi_schema_validator.validate(body, schema, cls=openapi_schema_validator.OAS30Validator)
    except Exception as e:  # jsonschema.ValidationError
        print(f"{method.upper()} {path} {status} does not match the schema: {str(e)[:2000]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
