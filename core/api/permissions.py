from rest_framework import exceptions
from rest_framework.permissions import BasePermission, DjangoModelPermissions

from core.api.throttling import ANY_SCOPE, required_scope
from core.models import ApiToken


def check_key_scope(request, view) -> None:
    """An API key acts only within its scopes; a signed-in session is bounded by the user's permissions alone.
    Every permission class of the API calls this first, so no endpoint skips it."""
    token = request.auth
    if not isinstance(token, ApiToken):
        return
    scope = required_scope(request, view)
    if scope != ANY_SCOPE and not token.allows(scope):
        raise exceptions.PermissionDenied(
            detail=f"This API key does not have the '{scope}' scope this request needs "
                   f"(it has: {', '.join(token.scopes) or 'none'}).",
            code="insufficient_scope")


class ModelPermissionsWithView(DjangoModelPermissions):
    """Django model permissions, with reading requiring the model's `view` permission too."""

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }

    def has_permission(self, request, view):
        check_key_scope(request, view)
        return super().has_permission(request, view)


class Authenticated(BasePermission):
    """Any signed-in user or key, within the key's scopes (for endpoints about the caller's own things)."""

    def has_permission(self, request, view):
        check_key_scope(request, view)
        return bool(request.user and request.user.is_authenticated)


def requires(*perms: str) -> type[BasePermission]:
    """A permission class for an action that changes something other than what its HTTP verb implies
    (e.g. a POST that changes a contact, where DjangoModelPermissions would ask for `add`)."""

    class RequiresPerms(BasePermission):
        def has_permission(self, request, view):
            check_key_scope(request, view)
            return bool(request.user and request.user.is_authenticated and request.user.has_perms(perms))

    RequiresPerms.__name__ = f"Requires({', '.join(perms)})"
    return RequiresPerms
