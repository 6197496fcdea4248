"""Prints, as JSON, the `POST /register` sections Zulip's API description
documents and the response keys each one brings: every key whose
description says "Present if `<section>` is present in `fetch_event_types`".

Usage: register_sections.py OPENAPI_YAML
"""

import json
import re
import sys

import yaml


def properties(schema):
    out = {}
    for part in schema.get("allOf", []):
        out.update(properties(part))
    out.update(schema.get("properties", {}))
    return out


def description(prop):
    text = prop.get("description", "")
    for part in prop.get("allOf", []):
        if isinstance(part, dict):
            text += part.get("description", "")
    return " ".join(text.split())


def main():
    api = yaml.safe_load(open(sys.argv[1]))
    response = api["paths"]["/register"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    sections = {}
    for key, prop in properties(response).items():
        match = re.search(r"Present if `([a-z_]+)` is present in `fetch_event_types`(.{0,120})", description(prop))
        if match is None:
            continue
        rest = match.group(2)
        # Keys that also depend on something else (a capability, a server
        # setting) are left to the tests of that condition.
        if rest.startswith(" and only") or rest.startswith(" and if"):
            continue
        sections.setdefault(match.group(1), []).append(key)
    json.dump(sections, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
