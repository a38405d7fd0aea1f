from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from core.api.throttling import record_key_failure, refuse_if_guessing_keys
from core.api_tokens import api_token_authenticate, api_token_exists
from core.client_address import client_address

# DRF's own word first; "Bearer" is what most HTTP clients and API tools send for a key.
KEYWORDS = ("Token", "Bearer")


class ApiTokenAuthentication(authentication.TokenAuthentication):
    """`Authorization: Token <key>` or `Authorization: Bearer <key>`, checked against the stored digest of the key."""

    keyword = KEYWORDS[0]  # named in WWW-Authenticate on a 401

    def authenticate(self, request):
        words = authentication.get_authorization_header(request).split()
        if not words or words[0].lower() not in {keyword.lower().encode() for keyword in KEYWORDS}:
            return None  # another scheme (or none): left to the other authentication classes
        if len(words) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid Authorization header: give exactly one API key after the keyword, without spaces.")
        try:
            key = words[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed(
                "Invalid Authorization header: the API key should not contain invalid characters.") from None
        address = client_address(request._request)
        token = api_token_authenticate(key, address=address)
        if token is not None:
            return token.user, token
        # Only keys that never existed count as guessing: an expired or revoked key is a client that was
        # not updated, and counting it could lock its valid neighbours behind the same address out.
        if not api_token_exists(key):
            refuse_if_guessing_keys(address)
            record_key_failure(address)
        raise exceptions.AuthenticationFailed("Invalid, expired or revoked API key.")


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """The API key in the schema: either keyword works, so two alternative security schemes."""

    target_class = ApiTokenAuthentication
    name = ["tokenAuth", "bearerAuth"]

    def get_security_requirement(self, auto_schema):
        return [{name: []} for name in self.name]  # either one, not both

    def get_security_definition(self, auto_schema):
        return [
            {"type": "apiKey", "in": "header", "name": "Authorization",
             "description": 'An API key with the prefix "Token": `Authorization: Token <key>`.'},
            {"type": "http", "scheme": "bearer",
             "description": "The same API key as a bearer token: `Authorization: Bearer <key>`."},
        ]
