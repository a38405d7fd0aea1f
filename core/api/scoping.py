"""The API's side of core.access: every viewset's rows, and the rows a request may name in its body (a
provider, a contact, a template to send with), narrowed to the caller's teams. A token acts as its owner,
so it carries the owner's scope."""

from rest_framework import permissions, serializers

from core.access import scoped, sees_everything


# Put first among a viewset's bases: list, retrieve, every action that uses get_object or get_queryset,
# search and filters all start from the scoped queryset. (No docstring: the API schema would show it as the
# description of every viewset that has none of its own.)
class TeamScoped:

    def get_queryset(self):
        queryset = super().get_queryset()
        return queryset if self._describing() else scoped(queryset, self.request.user)

    def get_serializer(self, *args, **kwargs):
        serializer = super().get_serializer(*args, **kwargs)
        if not self._describing() and self.request.method not in ("GET", "HEAD", "OPTIONS"):
            related_fields_scope(serializer, self.request.user)
        return serializer

    def _describing(self) -> bool:
        # The OpenAPI schema is drawn from views with a stand-in request and no user.
        return getattr(self, "swagger_fake_view", False) or self.request is None


def related_fields_scope(serializer, user) -> None:
    """Narrow what the serializer's related fields accept to the rows `user` may see, nested serializers
    included (a campaign's variants name templates): naming another team's row reads as naming one that
    does not exist."""
    form = getattr(serializer, "child", serializer)
    for field in getattr(form, "fields", {}).values():
        if isinstance(field, serializers.BaseSerializer):
            related_fields_scope(field, user)
            continue
        relation = field.child_relation if isinstance(field, serializers.ManyRelatedField) else field
        if isinstance(relation, serializers.RelatedField) and relation.queryset is not None:
            relation.queryset = scoped(relation.queryset, user)


class SeesAllTeams(permissions.BasePermission):
    """For what spans every number at once (a person's GDPR export or erasure): only those who see every
    team's rows."""

    message = "Only users who see every team's conversations may do this."

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated and sees_everything(request.user))
