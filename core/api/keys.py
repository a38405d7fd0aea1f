"""The caller's own API keys: list them, and rotate the key a request is made with."""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from core.api.errors import REFUSAL, ReadableErrors, refuse
from core.api.permissions import Authenticated
from core.api.scoping import TeamScoped
from core.api.throttling import ANY_SCOPE
from core.api_tokens import api_token_rotate
from core.models import ApiToken


class ApiKeySerializer(serializers.ModelSerializer):
    replaced_by = serializers.SlugRelatedField(slug_field="prefix", read_only=True)

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "scopes", "is_active", "created_at", "expires_at", "last_used_at",
                  "last_used_from", "replaced_by", "revoked_at"]
        read_only_fields = fields


class RotatedKeySerializer(ApiKeySerializer):
    key = serializers.CharField(help_text="The new key itself: shown this once, never again.")
    old_key_expires_at = serializers.DateTimeField(help_text="Until when the calling key keeps working.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key", "old_key_expires_at"]
        read_only_fields = fields


@extend_schema_view(
    list=extend_schema(summary="The caller's API keys, newest first",
                       description="With their scopes, expiry and last use (time and client address); never the "
                                   "keys themselves."),
    retrieve=extend_schema(summary="One of the caller's API keys"),
)
class ApiKeyViewSet(TeamScoped, ReadableErrors, viewsets.ReadOnlyModelViewSet):
    serializer_class = ApiKeySerializer
    queryset = ApiToken.objects.all()  # narrowed to the caller's own in get_queryset
    permission_classes = [Authenticated]
    # Rotating needs no scope of its own: the new key gets exactly the old key's scopes.
    action_scopes = {"rotate": ANY_SCOPE}
    filter_backends = []

    def get_queryset(self):
        return ApiToken.objects.filter(user=self.request.user).select_related("replaced_by").order_by("-created_at")

    @extend_schema(
        summary="Rotate the API key this request is made with",
        description="Answers a new key with the same name and scopes (shown this once). The calling key keeps "
                    "working for the grace period (API_KEY_ROTATION_GRACE_HOURS, or its own earlier expiry), so a "
                    "client can switch without an outage. Only with an API key; a key rotates once.",
        request=None, responses={201: RotatedKeySerializer, 409: REFUSAL})
    @action(detail=False, methods=["post"])
    def rotate(self, request):
        if not isinstance(request.auth, ApiToken):
            return refuse(409, "not_an_api_key", "Only a request made with an API key can rotate it; keys made "
                                                 "in the admin are rotated there.")
        try:
            new_token, key = api_token_rotate(token=request.auth, actor=request.user)
        except ValueError as refusal:
            return refuse(409, "already_rotated", str(refusal))
        request.auth.refresh_from_db(fields=["expires_at"])
        body = ApiKeySerializer(new_token).data | {"key": key, "old_key_expires_at": request.auth.expires_at}
        return Response(body, status=201)
