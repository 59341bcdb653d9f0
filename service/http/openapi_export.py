"""Print the app's OpenAPI schema as YAML: `python -m service.http.openapi_export > openapi.yaml`."""

import yaml

from service.core.settings import Settings
from service.http.app import create_app


def openapi_yaml() -> str:
    schema = create_app(Settings()).openapi()
    return yaml.safe_dump(schema, sort_keys=False, allow_unicode=True)


if __name__ == "__main__":
    print(openapi_yaml(), end="")
