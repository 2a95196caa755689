"""schemathesis hooks for revshare (.ci/schemathesis.sh loads them): agreements are posted as
TOML text, a media type schemathesis has no serializer for."""
import schemathesis


@schemathesis.serializer("application/toml")
def toml_text(ctx, value):
    return value.encode() if isinstance(value, str) else str(value).encode()
