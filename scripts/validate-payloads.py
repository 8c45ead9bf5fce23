"""Validate request bodies against the platforms' own models.

    validate-payloads.py sekoia FILE...   every item with the Sekoia SDK's UserOCSFModel
    validate-payloads.py qualys FILE...   every body with docs/schemas/qualys-etm-identity.schema.json

A FILE is one JSON request body, an insta snapshot of one (its `---` header is skipped), or
JSON Lines of bodies (a capture from a loopback server). Sekoia bodies are
`{"version": 1, "items": [...]}`.

Pydantic ignores keys a model does not declare, so a field we send that the platform's model
does not know would pass unseen; this check reports those too ("not in the model").

Prints one line per problem and a summary; exits 1 if any body or item is refused, 2 on bad
usage or unreadable input.
"""

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def bodies(path):
    text = pathlib.Path(path).read_text(encoding="utf-8")
    if text.startswith("---\n"):
        # insta snapshot: a YAML-ish header between two `---` lines, then the document.
        _, _, rest = text[4:].partition("\n---\n")
        text = rest
    text = text.strip()
    if not text:
        return
    try:
        yield json.loads(text)
        return
    except json.JSONDecodeError:
        pass
    # Only "\n" ends a line: str.splitlines() would also split inside strings at U+0085,
    # U+2028 and other characters JSON carries unescaped.
    for number, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if line:
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise SystemExit(f"{path}:{number}: not JSON: {e}")


def unknown_keys(value, model_type, where):
    """Keys in `value` that the pydantic model (recursively) does not declare."""
    from pydantic import BaseModel
    import typing

    problems = []
    if not isinstance(value, dict):
        return problems
    fields = model_type.model_fields
    for key, item in value.items():
        if key not in fields:
            problems.append(f"{where}.{key}: not in the model {model_type.__name__}")
            continue
        annotation = fields[key].annotation
        candidates = [annotation, *typing.get_args(annotation)]
        for candidate in candidates:
            inner = typing.get_args(candidate)
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                problems += unknown_keys(item, candidate, f"{where}.{key}")
            elif typing.get_origin(candidate) is list and inner and isinstance(item, list):
                element = inner[0]
                if isinstance(element, type) and issubclass(element, BaseModel):
                    for i, sub in enumerate(item):
                        problems += unknown_keys(sub, element, f"{where}.{key}[{i}]")
    return problems


def sekoia(paths):
    from pydantic import ValidationError
    from sekoia_automation.asset_connector.models.ocsf.user import UserOCSFModel

    checked, problems = 0, []
    for path in paths:
        for b, body in enumerate(bodies(path)):
            where = f"{path} body {b}"
            if not isinstance(body, dict) or body.get("version") != 1 or not isinstance(body.get("items"), list):
                problems.append(f"{where}: not {{\"version\": 1, \"items\": [...]}}")
                continue
            for i, item in enumerate(body["items"]):
                checked += 1
                try:
                    UserOCSFModel.model_validate(item)
                except ValidationError as e:
                    problems.append(f"{where} item {i}: refused by UserOCSFModel: {e}")
                    continue
                problems += [f"{where} item {i}: {p}" for p in unknown_keys(item, UserOCSFModel, "item")]
    return checked, problems


def qualys(paths):
    import jsonschema

    schema = json.loads((ROOT / "docs/schemas/qualys-etm-identity.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    checked, problems = 0, []
    for path in paths:
        for b, body in enumerate(bodies(path)):
            checked += len(body.get("assetData", [])) if isinstance(body, dict) else 0
            for error in validator.iter_errors(body):
                # For a oneOf, the closest alternative's own error says what is wrong.
                if error.context:
                    error = jsonschema.exceptions.best_match(error.context)
                at = "/".join(str(p) for p in error.absolute_path)
                problems.append(f"{path} body {b} at /{at}: {error.message[:300]}")
    return checked, problems


def main(argv):
    if len(argv) < 3 or argv[1] not in ("sekoia", "qualys"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        checked, problems = {"sekoia": sekoia, "qualys": qualys}[argv[1]](argv[2:])
    except OSError as e:
        print(f"cannot read: {e}", file=sys.stderr)
        return 2
    for p in problems[:200]:
        print(p)
    if len(problems) > 200:
        print(f"... and {len(problems) - 200} more")
    print(f"{argv[1]}: {checked} records checked in {len(argv) - 2} file(s), {len(problems)} problem(s)")
    if checked == 0:
        print("nothing was checked: an empty input proves nothing")
        return 1
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
